"""The sink of one run: annotated video, detections log, tracks, species counts, summary.

Long runs lose nothing: tracks and counts are rewritten (atomically: a ``kill -9`` leaves the
last complete version) whenever a track closes and at least every ``flush_interval_s``; the
detections log is flushed as whole lines at the same interval; the video is fragmented MP4.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fishcam.classify.ledger import TrackLedger
from fishcam.counts import species_counts
from fishcam.render.overlay import Overlay, label_text
from fishcam.sinks.files import CallsLog, DetectionsLog, write_counts, write_json, write_tracks
from fishcam.sinks.video import AnnotatedVideo, H264Writer
from fishcam.types import CallRecord, Detections, Frame, TrackSummary

log = logging.getLogger(__name__)

VIDEO_NAME = "annotated.mp4"
TRACKS_NAME = "tracks.csv"
DETECTIONS_NAME = "detections.csv"
CALLS_NAME = "calls.csv"
COUNTS_NAME = "species_counts.csv"
SUMMARY_NAME = "summary.json"
CONFIG_NAME = "config.yaml"


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
    ) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.tracks: list[TrackSummary] = []
        self.video = None
        if overlay is not None:
            scale = min(1.0, max_width / width) if max_width else 1.0
            encoder = H264Writer(out_dir / VIDEO_NAME, round(width * scale), round(height * scale), fps, crf, preset)
            self.video = AnnotatedVideo(
                encoder, lambda image, tracked, labels: overlay.draw_labels(image, tracked, labels, max_width)
            )
        self.log = DetectionsLog(out_dir / DETECTIONS_NAME, class_names) if detections_log else None
        self.calls = CallsLog(out_dir / CALLS_NAME)
        self.flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()
        self._dirty = True
        self.flush()

    def on_frame(self, frame: Frame, detections: Detections, detected: bool, ledger: TrackLedger) -> None:
        if detected and self.log is not None:
            self.log.write(frame, detections)
        if self.video is not None:
            tracked = detections.filter(detections.track_id >= 0)
            labels = [label_text(tid, ledger.label(tid)) for tid in tracked.track_id.tolist()]
            self.video.submit(frame.image_bgr, tracked, labels)
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def on_calls(self, calls: list[CallRecord]) -> None:
        self.calls.write(calls)

    def on_track_closed(self, track: TrackSummary) -> None:
        self.tracks.append(track)
        self._dirty = True
        self.flush()

    def flush(self) -> None:
        """Make what is on disk complete up to now."""
        if self.log is not None:
            self.log.flush()
        self.calls.flush()
        if self._dirty:
            write_tracks(self.out_dir / TRACKS_NAME, self.tracks)
            write_counts(self.out_dir / COUNTS_NAME, species_counts(self.tracks))
            self._dirty = False
        self._last_flush = time.monotonic()

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Close the video and log, write tracks, counts and summary. Safe to call once after any exit."""
        if self.video is not None:
            self.video.close()
        if self.log is not None:
            self.log.close()
        self.calls.close()
        counts = species_counts(self.tracks)
        self._dirty = True
        self.flush()
        outputs = {p.name for p in self.out_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
        summary = {
            **summary,
            "tracks": len(self.tracks),
            "species": {c.species: {"unique": c.unique, "max_n": c.max_n} for c in counts},
            "outputs": sorted(outputs | {SUMMARY_NAME}),
        }
        write_json(self.out_dir / SUMMARY_NAME, summary)
        return summary


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
                self.current.finish({"period": self.period, "rotated": True})
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

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        writer = self._now_writer()
        result = writer.finish({**summary, "period": self.period})
        periods = [*self.finished, self.period]
        overall = {**summary, "periods": periods, "tracks": self.tracks_before + result["tracks"]}
        write_json(self.out_dir / SUMMARY_NAME, overall)
        return overall
