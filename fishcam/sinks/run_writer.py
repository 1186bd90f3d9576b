"""The sink of one run: annotated video, detections log, tracks, species counts, summary.

Long runs lose nothing: tracks and counts are rewritten (atomically: a ``kill -9`` leaves the
last complete version) every ``flush_interval_s`` when a track has closed since the last time
(not at every closed track: on a long live run that would rewrite ever longer files for every
fish); the detections and calls logs are flushed as whole lines at the same interval; the video
is fragmented MP4.

``summary.json`` is there from the start and says whether the run is complete: its ``status``
is ``running`` (rewritten at every flush with the progress so far; after a ``kill -9`` it stays
so), then ``finished``, ``interrupted`` or ``failed`` (with ``error``). A write that fails (a
full disk, storage gone read-only) raises OutputError once; the writer then writes nothing more,
cuts the logs back to their last whole row and tries to mark the summary ``failed``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from fishcam.classify.ledger import TrackLedger
from fishcam.config import CountConfig, OfflineConfig
from fishcam.counts import species_counts
from fishcam.errors import OutputError
from fishcam.evidence import judge
from fishcam.render.overlay import Overlay, label_text
from fishcam.sinks.files import (
    CallsLog,
    DetectionsLog,
    output_problem,
    rewrite_calls,
    rewrite_detections,
    write_counts,
    write_json,
    write_tracks,
)
from fishcam.sinks.video import AnnotatedVideo, H264Writer
from fishcam.sinks.views import Evidence
from fishcam.track.refine import Geometry, refine, trim
from fishcam.types import (
    CallRecord,
    Detections,
    Frame,
    RunFigures,
    RunInfo,
    RunProgress,
    RunStatus,
    RunSummary,
    SpeciesTally,
    TrackSummary,
)

log = logging.getLogger(__name__)

VIDEO_NAME = "annotated.mp4"
TRACKS_NAME = "tracks.csv"
DETECTIONS_NAME = "detections.csv"
CALLS_NAME = "calls.csv"
COUNTS_NAME = "species_counts.csv"
SUMMARY_NAME = "summary.json"
CONFIG_NAME = "config.yaml"


@dataclass(frozen=True)
class Counting:
    """How a run's tracks become counts: trimmed as they close, judged by the evidence rules,
    and, for a recorded video (``offline``), refined as a whole at the end."""

    rules: CountConfig = field(default_factory=CountConfig)
    tracking: OfflineConfig = field(default_factory=OfflineConfig)
    offline: bool = False  # the offline pass at the end (files; a live stream's tracks are final)
    stride: int = 1
    edge_margin_px: int = 2


class RunWriter:
    def __init__(
        self,
        out_dir: Path,
        *,
        width: int,
        height: int,
        fps: float,
        class_names: dict[int, str],
        overlay: Overlay | None,
        crf: int = 23,
        preset: str = "veryfast",
        max_width: int | None = None,
        detections_log: bool = True,
        flush_interval_s: float = 10.0,
        info: RunInfo | None = None,
        counting: Counting | None = None,
        evidence: Evidence | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.evidence = evidence  # views/ and maxn/ (fishcam.sinks.views)
        self._owner: dict[tuple[int, int], int] | None = None
        self.counting = counting or Counting()
        self.width, self.height, self.fps = width, height, fps
        self.info = info or RunInfo()  # what summary.json says from the start: source, models, ...
        self.tracks: list[TrackSummary] = []
        self.failure: OSError | None = None
        self.frames = 0
        self.last_time_s: float | None = None
        self.video: AnnotatedVideo | None = None
        self.log: DetectionsLog | None = None
        self.calls: CallsLog | None = None
        self.flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()
        self._dirty = True

        def open_outputs() -> None:
            out_dir.mkdir(parents=True, exist_ok=True)
            if overlay is not None:
                scale = min(1.0, max_width / width) if max_width else 1.0
                size = round(width * scale), round(height * scale)
                encoder = H264Writer(out_dir / VIDEO_NAME, *size, fps, crf, preset)
                self.video = AnnotatedVideo(
                    encoder, lambda image, tracked, labels: overlay.draw_labels(image, tracked, labels, max_width)
                )
            self.log = DetectionsLog(out_dir / DETECTIONS_NAME, class_names) if detections_log else None
            self.calls = CallsLog(out_dir / CALLS_NAME)
            self._flush()

        self._write(open_outputs)

    def _write(self, action: Callable[[], None]) -> None:
        """Run a write; the first one that fails stops all writing and raises OutputError."""
        if self.failure is not None:
            return
        try:
            action()
        except OSError as exc:
            self.failure = exc
            self._abandon()
            raise OutputError(output_problem(exc, self.out_dir)) from exc

    def on_frame(self, frame: Frame, detections: Detections, detected: bool, ledger: TrackLedger) -> None:
        self.frames += 1
        self.last_time_s = frame.time_s

        def write() -> None:
            if detected and self.log is not None:
                self.log.write(frame, detections)
            if self.video is not None:
                tracked = detections.filter(detections.track_id >= 0)
                labels = [label_text(tid, ledger.label(tid)) for tid in tracked.track_id.tolist()]
                self.video.submit(frame.image_bgr, tracked, labels)
            if self.evidence is not None:
                self.evidence.on_frame(frame, detections, detected, ledger)
            if time.monotonic() - self._last_flush >= self.flush_interval_s:
                self._flush()

        self._write(write)

    def on_calls(self, calls: list[CallRecord]) -> None:
        self._write(lambda: self.calls.write(calls) if self.calls is not None else None)
        if self.evidence is not None:
            self.evidence.on_calls(calls)

    def on_track_closed(self, track: TrackSummary) -> None:
        track = trim(track, self.counting.tracking.tail_confidence)
        self.tracks.append(judge(track, self.counting.rules))
        if self.evidence is not None:
            evidence = self.evidence
            self._write(lambda: evidence.on_track_closed(self.tracks[-1]))
        self._dirty = True  # on disk at the next flush

    def flush(self) -> None:
        """Make what is on disk complete up to now."""
        self._write(self._flush)

    def _flush(self) -> None:
        if self.log is not None:
            self.log.flush()
        if self.calls is not None:
            self.calls.flush()
        if self._dirty:
            write_tracks(self.out_dir / TRACKS_NAME, self.tracks)
            write_counts(self.out_dir / COUNTS_NAME, species_counts(self.tracks))
            self._dirty = False
        if self.evidence is not None:
            self.evidence.flush()
        progress = RunProgress(self.frames, self.last_time_s, len(self.tracks))
        write_json(self.out_dir / SUMMARY_NAME, RunSummary(RunStatus.RUNNING, self.info, progress=progress).to_json())
        self._last_flush = time.monotonic()

    def _abandon(self) -> None:
        """After a failed write: stop the encoder and cut the logs back to whole rows, raising nothing."""
        if self.video is not None:
            self.video.abandon()
        if self.evidence is not None:
            self.evidence.close()
        for handle in (self.log, self.calls):
            if handle is not None:
                handle.abandon()

    def finish(
        self,
        figures: RunFigures | None,
        status: RunStatus = RunStatus.FINISHED,
        error: str | None = None,
        *,
        period: str | None = None,
        rotated: bool = False,
    ) -> RunSummary:
        """Close the video and logs, write tracks, counts and the final summary. Safe to call once
        after any exit; raises OutputError if the outputs cannot be completed (the summary then
        stays ``running``, or says ``failed`` where it could still be written)."""

        def complete() -> None:
            if self.video is not None:
                self.video.close()
            if self.log is not None:
                self.log.close()
            if self.calls is not None:
                self.calls.close()
            if self.counting.offline and self.counting.tracking.enabled and status is not RunStatus.FAILED:
                self._offline_pass()
            if self.evidence is not None:
                self.evidence.finish(self.tracks, self._owner, species_counts(self.tracks))
            self._dirty = True
            self._flush()

        with contextlib.suppress(OutputError):  # reported below, once the summary has had its chance
            self._write(complete)
        counts = species_counts(self.tracks)
        final = RunSummary(
            status,
            self.info,
            error,
            figures=figures,
            period=period,
            rotated=rotated,
            tracks=len(self.tracks),
            counted_tracks=sum(t.counted for t in self.tracks),
            species={c.species: SpeciesTally(c.unique, c.max_n) for c in counts},
            outputs=tuple(sorted(self._outputs() | {SUMMARY_NAME})),
        )
        if self.failure is None:
            self._write(lambda: write_json(self.out_dir / SUMMARY_NAME, final.to_json()))
            if self.failure is None:
                return final
        final = failed(final, output_problem(self.failure, self.out_dir))
        with contextlib.suppress(OSError):  # the last word, if the disk still takes a small file
            write_json(self.out_dir / SUMMARY_NAME, final.to_json())  # (else the summary stays "running")
        raise OutputError(final.error) from self.failure

    def _offline_pass(self) -> None:
        """The whole video's tracks refined (fishcam.track.refine) and judged again; the
        detections and calls logs rewritten under the final track ids."""
        c = self.counting
        geometry = Geometry(self.width, self.height, self.fps, c.stride, c.edge_margin_px)
        refined = refine(self.tracks, geometry, c.tracking)
        self.tracks = [judge(t, c.rules) for t in refined.tracks]
        self._owner = refined.owner
        if self.log is not None:
            rewrite_detections(self.log.path, self.tracks, refined.owner)
        if self.calls is not None:
            rewrite_calls(self.calls.path, refined.owner)

    def _outputs(self) -> set[str]:
        try:
            return {p.name for p in self.out_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
        except OSError:
            return set()


PERIOD_FORMATS = {"hourly": "%Y%m%d-%H", "daily": "%Y%m%d"}


class RotatingWriter:
    """One RunWriter per hour or day of wall-clock time, each in its own folder under ``out_dir``,
    for multi-day live runs. A track belongs to the period of the frame on which it closes."""

    def __init__(self, out_dir: Path, rotate: str, make: Callable[[Path], RunWriter]) -> None:
        self.out_dir = out_dir
        self.format = PERIOD_FORMATS[rotate]
        self.make = make
        self.period = ""
        self.current: RunWriter | None = None
        self.finished: list[str] = []
        self.tracks_before = 0  # tracks written by finished periods

    def _writer_for(self, unix: float) -> RunWriter:
        period = datetime.fromtimestamp(unix).strftime(self.format)
        if period != self.period or self.current is None:
            if self.current is not None:
                self.current.finish(None, period=self.period, rotated=True)  # this period is complete
                self.tracks_before += len(self.current.tracks)
                self.finished.append(self.period)
            self.period = period
            self.current = self.make(self.out_dir / period)
            log.info("writing outputs of period %s into %s", period, self.out_dir / period)
        return self.current

    def on_frame(self, frame: Frame, detections: Detections, detected: bool, ledger: TrackLedger) -> None:
        self._writer_for(frame.captured_unix or time.time()).on_frame(frame, detections, detected, ledger)

    def _now_writer(self) -> RunWriter:
        """The writer of the period the stream is in (its last frame's), or of now before any frame."""
        return self.current if self.current is not None else self._writer_for(time.time())

    def on_calls(self, calls: list[CallRecord]) -> None:
        self._now_writer().on_calls(calls)

    def on_track_closed(self, track: TrackSummary) -> None:
        self._now_writer().on_track_closed(track)

    def finish(
        self, figures: RunFigures | None, status: RunStatus = RunStatus.FINISHED, error: str | None = None
    ) -> RunSummary:
        writer = self._now_writer()
        result = writer.finish(figures, status, error, period=self.period)
        overall = RunSummary(
            result.status,
            writer.info,
            result.error,
            figures=result.figures,
            periods=(*self.finished, self.period),
            tracks=self.tracks_before + (result.tracks or 0),
        )
        try:
            write_json(self.out_dir / SUMMARY_NAME, overall.to_json())
        except OSError as exc:
            raise OutputError(output_problem(exc, self.out_dir)) from exc
        return overall


def failed(summary: RunSummary, error: str) -> RunSummary:
    """``summary`` of a run whose outputs could not be completed: status and exit code say so.
    A run that had failed already keeps its first error, the one reported."""
    if summary.status is RunStatus.FAILED and summary.error:
        return summary
    figures = summary.figures or RunFigures()
    return replace(
        summary, status=RunStatus.FAILED, error=error, figures=replace(figures, exit_code=OutputError.exit_code)
    )


def read_summary(path: Path) -> RunSummary:
    """A run folder's summary.json; ValueError (or OSError) when it cannot be read as one."""
    return RunSummary.from_json(json.loads(path.read_text(encoding="utf-8")))
