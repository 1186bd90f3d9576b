"""The source protocol, its end-of-input status, and opening a source from a user's path."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fishcam.config import SourceConfig
from fishcam.errors import SourceError
from fishcam.types import Frame

if TYPE_CHECKING:
    from fishcam.sources.live import LiveHealth

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".ts"}


@dataclass
class SourceStatus:
    """How reading went: filled in while frames are read, final when iteration ends."""

    frames_read: int = 0
    frames_expected: int | None = None
    unreadable_frames: int = 0
    ended_early: bool = False
    gave_up: bool = False  # a live source stopped retrying
    warnings: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        """Frames were lost to damage: skipped inside the file or cut off at its end."""
        return self.ended_early or self.unreadable_frames > 0


class Source(Protocol):
    name: str
    fps: float
    width: int
    height: int
    status: SourceStatus
    live: bool  # a camera: frames come at its pace, and are dropped rather than waited for
    location: str  # where the input is: a file or folder's absolute path, a camera's masked URL
    recorded_start_unix: float | None  # when the recording began, where known

    @property
    def health(self) -> LiveHealth | None:
        """A camera's counters (frames in, dropped, reconnects, outages); None for files."""
        ...

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def open_source(spec: str, config: SourceConfig) -> Source:
    """A camera URL or index, a file or a folder → the right source, or a one-line SourceError."""
    from fishcam.sources.live import is_live

    if is_live(spec):
        from fishcam.sources.live import LiveSource

        return LiveSource(spec, config.live)
    path = Path(spec).expanduser()
    info = _stat(path)
    if stat.S_ISDIR(info.st_mode):
        from fishcam.sources.images import ImageFolderSource

        return ImageFolderSource(path, fps=config.image_fps)
    if info.st_size == 0:
        raise SourceError(f"input {path} is an empty file (0 bytes): nothing to process")
    from fishcam.sources.file import VideoFileSource

    return VideoFileSource(path, max_read_failures=config.max_read_failures)


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise SourceError(f"input not found: {path}") from exc
    except PermissionError as exc:  # a folder on the way may not be entered
        raise SourceError(f"cannot reach {path}: permission denied") from exc
