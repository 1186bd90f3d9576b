"""The live view of a running run: what the frame loop hands over, and nothing more.

The frame loop's only cost is :meth:`LiveView.on_frame`: a reference to the latest frame and its
tracked boxes (no copy, no encoding). When, and only when, someone is watching, it also takes the
open tracks' current calls from the ledger (the ledger belongs to the loop's thread, so it is read
there), at most ``state_hz`` times a second. Everything else (drawing the overlay, JPEG encoding,
counting, health) happens on the server's side, in its own threads, at most ``max_fps`` times a
second, and not at all while nobody watches.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fishcam.classify.ledger import TrackLedger
from fishcam.counts import species_counts
from fishcam.pipeline import PipelineSink
from fishcam.serve.safety import masked
from fishcam.types import CallRecord, Detections, Frame, TrackSummary


@dataclass(frozen=True)
class OpenTrack:
    track_id: int
    species: str
    score: float | None
    origin: str


class LiveView:
    """A thread-safe holder between the frame loop (one writer) and the server (readers). Use
    :meth:`attach` as ``fishcam.app.run.run``'s ``tee``: it returns a sink that passes everything
    to the run's writer and keeps the latest of it here."""

    def __init__(self, max_fps: float = 8.0, state_hz: float = 4.0, jpeg_quality: int = 75) -> None:
        self.max_fps, self.jpeg_quality = max_fps, jpeg_quality
        self._state_interval = 1.0 / state_hz
        self._lock = threading.Lock()
        self._watchers = 0  # MJPEG and SSE clients now connected
        self.seq = 0  # frames seen; the server encodes a frame only when it changed
        self._frame: Frame | None = None
        self._detections: Detections | None = None
        self._labels: dict[int, tuple[str, float, str] | None] = {}
        self._labels_at = 0.0
        self._open: list[OpenTrack] = []
        self._jpeg: tuple[int, bytes] | None = None
        self._counts: tuple[int, list[dict[str, Any]]] | None = None
        self._overlay: Any = None
        self.source: Any = None
        self.stats: Any = None  # the loop's LoopStats, read for health
        self.writer: Any = None
        self._readings: list[tuple[float, int, int]] = []  # (when, frames processed, frames in)
        self.ended = False
        self.name = ""

    # ---- the frame loop's side --------------------------------------------------------------

    def attach(self, source, pipeline, writer: PipelineSink) -> PipelineSink:
        self.source, self.stats, self.writer = source, pipeline.stats, writer
        self.name = masked(getattr(source, "name", ""))
        return _Tee(writer, self)

    def on_frame(self, frame: Frame, detections: Detections, ledger: TrackLedger) -> None:
        self._frame, self._detections = frame, detections  # references: the server reads them
        self.seq += 1
        if self._watchers and time.monotonic() - self._labels_at >= self._state_interval:
            labels = {tid: ledger.label(tid) for tid in ledger.open_ids}
            with self._lock:
                self._labels = labels
                self._labels_at = time.monotonic()

    # ---- the server's side ------------------------------------------------------------------

    def watch(self) -> _Watching:
        return _Watching(self)

    @property
    def watchers(self) -> int:
        return self._watchers

    def jpeg(self) -> tuple[int, bytes] | None:
        """The latest frame with its overlay as JPEG, and its number; encoded once per new frame
        however many clients watch."""
        seq, frame, detections = self.seq, self._frame, self._detections
        if frame is None or detections is None:
            return None
        cached = self._jpeg
        if cached is not None and cached[0] == seq:
            return cached
        import cv2

        with self._lock:
            labels = dict(self._labels)
        if self._overlay is None:
            from fishcam.render.overlay import Overlay

            self._overlay = Overlay()
        from fishcam.render.overlay import label_text

        tracked = detections.filter(detections.track_id >= 0)
        texts = [label_text(tid, labels.get(tid)) for tid in tracked.track_id.tolist()]
        image = self._overlay.draw_labels(frame.image_bgr, tracked, texts, max_width=960)
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            return None
        self._jpeg = (seq, data.tobytes())
        return self._jpeg

    def state(self) -> dict[str, Any]:
        """Open tracks, counts and MaxN of the closed ones, and health, as JSON for the page."""
        with self._lock:
            labels = dict(self._labels)
        stats, frame = self.stats, self._frame
        open_tracks = []
        for tid in sorted(labels):
            call = labels[tid]
            species, score, origin = call if call is not None else ("…", None, "pending")
            open_tracks.append({"track_id": tid, "species": species, "score": score, "origin": origin})
        closed = _closed_tracks(self.writer)
        if self._counts is None or self._counts[0] != len(closed):  # counted again only when a track closed
            counts = [
                {"species": c.species, "unique": c.unique, "max_n": c.max_n, "max_n_time_s": round(c.max_n_time_s, 2)}
                for c in sorted(species_counts(closed), key=lambda c: (-c.unique, c.species))
            ]
            self._counts = (len(closed), counts)
        counts = self._counts[1]
        return {
            "source": self.name,
            "ended": self.ended,
            "frame": frame.index if frame is not None else None,
            "time_s": round(frame.time_s, 2) if frame is not None else None,
            "open_tracks": open_tracks,
            "closed_tracks": len(closed),
            "counted_tracks": sum(t.counted for t in closed),
            "counts": counts,
            "health": self._health(stats),
        }

    def _rates(self, frames: int, frames_in: int) -> tuple[float, float]:
        """Processed and input fps over the last few seconds (since the reading before last)."""
        now = time.monotonic()
        with self._lock:
            readings = self._readings
            if not readings or now - readings[-1][0] >= 1.0:
                readings.append((now, frames, frames_in))
                del readings[:-4]
            then, frames_then, in_then = readings[0]
        if now - then < 0.5:
            return 0.0, 0.0
        return (frames - frames_then) / (now - then), (frames_in - in_then) / (now - then)

    def _health(self, stats) -> dict[str, Any]:
        h = getattr(self.source, "health", None)
        frames = stats.frames if stats is not None else 0
        processed_fps, input_fps = self._rates(frames, h.frames_in if h is not None else 0)
        health: dict[str, Any] = {"frames": frames, "processed_fps": round(processed_fps, 1)}
        if h is not None:
            health.update(
                input_fps=round(input_fps, 1),
                frames_in=h.frames_in,
                dropped=h.dropped,
                reconnects=h.reconnects,
                outages=h.outages,
                connected=h.connected,
                last_error=masked(h.last_error),
            )
        if stats is not None and stats.latencies_s:
            health["latency_ms"] = round(1000 * stats.latencies_s[-1], 1)
        return health


class _Watching:
    """A client connected: while any is, the loop keeps the open tracks' calls for the page."""

    def __init__(self, view: LiveView) -> None:
        self.view = view

    def __enter__(self) -> _Watching:
        with self.view._lock:
            self.view._watchers += 1
        return self

    def __exit__(self, *exc) -> None:
        with self.view._lock:
            self.view._watchers -= 1


def _closed_tracks(writer) -> list[TrackSummary]:
    """The judged tracks the writer holds (a rotating writer: its current period's)."""
    current = getattr(writer, "current", None)
    tracks = getattr(current if current is not None else writer, "tracks", None) or []
    return list(tracks)


class _Tee:
    """The run's writer, and the live view beside it."""

    def __init__(self, writer: PipelineSink, view: LiveView) -> None:
        self.writer, self.view = writer, view

    def on_frame(self, frame: Frame, detections: Detections, detected: bool, ledger: TrackLedger) -> None:
        self.writer.on_frame(frame, detections, detected, ledger)
        self.view.on_frame(frame, detections, ledger)

    def on_calls(self, calls: list[CallRecord]) -> None:
        self.writer.on_calls(calls)

    def on_track_closed(self, track: TrackSummary) -> None:
        self.writer.on_track_closed(track)

    def __getattr__(self, name: str):  # finish(), flush(), tracks: the writer's
        return getattr(self.writer, name)
