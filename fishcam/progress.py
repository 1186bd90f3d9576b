"""Progress on long work: frames, fps, open and finished tracks (rich, on stderr)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from fishcam.pipeline import LoopStats

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class RunProgress:
    def __init__(self, total_frames: int | None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.total = total_frames
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> RunProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            progress = Progress(
                TextColumn("[bold]frames"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "{task.fields[fps]:>6.1f} fps  tracks {task.fields[open]} open / {task.fields[closed]} done"
                ),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            progress.start()
            self._task = progress.add_task("run", total=self.total, fps=0.0, open=0, closed=0)
            self._progress = progress
        return self

    def update(self, stats: LoopStats) -> None:
        if self._progress is None or self._task is None or (stats.frames % 5 and stats.open_tracks):
            return
        self._progress.update(
            self._task, completed=stats.frames, fps=stats.fps, open=stats.open_tracks, closed=stats.closed_tracks
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
