"""The frame loop: source → detector → tracker → ledger → species calls → sinks.

Stateful stages (tracker, ledger) live here on one thread. The loop only decides policy; I/O
happens in the sink, models live behind their protocols.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fishcam.classify import appearance
from fishcam.classify.crops import crop
from fishcam.classify.ledger import TrackLedger
from fishcam.classify.service import ServiceSettings, SpeciesModels, SpeciesService
from fishcam.config import PolicyConfig
from fishcam.detect.base import Detector
from fishcam.types import CallRecord, Detections, Frame, TrackSummary

log = logging.getLogger(__name__)


class Tracker(Protocol):
    def update(self, detections: Detections, time_s: float) -> Detections: ...

    def reset(self) -> None: ...


class PipelineSink(Protocol):
    def on_frame(self, frame: Frame, detections: Detections, detected: bool, ledger: TrackLedger) -> None: ...

    def on_calls(self, calls: list[CallRecord]) -> None: ...

    def on_track_closed(self, track: TrackSummary) -> None: ...


@dataclass
class LoopStats:
    frames: int = 0
    detected_frames: int = 0
    crops_classified: int = 0
    elapsed_s: float = 0.0
    open_tracks: int = 0
    closed_tracks: int = 0
    segments: int = 0
    last_frame_time_s: float = 0.0
    # Seconds spent per stage: where the time of a run goes.
    stage_s: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("read", "detect", "track", "classify", "output"), 0.0)
    )
    # Species calls by who decided: expert / fallback / unknown, and the fallback's load.
    calls: dict[str, int] = field(default_factory=dict)
    # Live frames: seconds from capture to written output, the most recent ones.
    latencies_s: deque = field(default_factory=lambda: deque(maxlen=20000))

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_ms(self) -> dict[str, float] | None:
        if not self.latencies_s:
            return None
        values = np.asarray(self.latencies_s) * 1000
        return {
            "p50": round(float(np.percentile(values, 50)), 1),
            "p95": round(float(np.percentile(values, 95)), 1),
            "max": round(float(values.max()), 1),
        }


@dataclass(frozen=True)
class LoopSettings:
    stride: int = 1
    lost_track_s: float = 1.0
    crop_padding: float = 0.1
    max_frames: int | None = None
    max_duration_s: float | None = None
    pending_grace_s: float = 30.0  # how long a finished track may wait for a slow fallback answer
    # Frames between asking for a crop's species and taking the answer: the expert works while
    # the loop detects on. At most (None: exactly) the policy's min_gap_frames, so results do not
    # change; 0 answers at once.
    answer_lag_frames: int | None = None
    species_workers: int = 1  # threads running the species models, each on species_threads torch threads
    species_threads: int | None = None
    background_fallback: bool = False  # the fallback on its own thread (live): answers come frames later
    fallback_queue: int = 16
    fallback_batch: int = 8


class Stop:
    """A request, from another thread, that running loops stop as if ``exception`` had reached
    them: Ctrl-C and SIGTERM arrive in the main thread only, cameras run on their own."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.exception: type[BaseException] = KeyboardInterrupt

    def request(self, exception: type[BaseException] = KeyboardInterrupt) -> None:
        if not self._event.is_set():  # the first reason stays
            self.exception = exception
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise the requested exception if a stop was requested."""
        if self._event.is_set():
            raise self.exception()


class Pipeline:
    def __init__(
        self,
        detector: Detector,
        tracker: Tracker,
        species: SpeciesModels | None,
        policy: PolicyConfig,
        settings: LoopSettings,
    ) -> None:
        self.detector = detector
        self.tracker = tracker
        self.species = species
        self.settings = settings
        self.ledger = TrackLedger(policy, classifying=species is not None, stride=settings.stride)
        self.stats = LoopStats()
        lag = settings.answer_lag_frames
        self.lag = policy.min_gap_frames if lag is None else min(lag, policy.min_gap_frames)

    def run(
        self,
        frames: Iterable[Frame],
        fps: float,
        sink: PipelineSink,
        on_progress: Callable[[LoopStats], None] | None = None,
        stop: Stop | None = None,
    ) -> LoopStats:
        """Process every frame; on any exit (end, error, Ctrl-C, ``stop``) close open tracks into the sink."""
        s = self.settings
        # A track is over once the tracker can no longer revive it.
        max_gap_frames = int(np.ceil(s.lost_track_s * fps)) + s.stride
        # A track waiting for a slow fallback answer stays open this much longer.
        grace_frames = int(s.pending_grace_s * fps)
        last = Detections.empty()
        segment = None
        start = time.perf_counter()
        clock = time.perf_counter
        stage = self.stats.stage_s
        frames = iter(frames)
        service = None
        if self.species is not None:
            service = SpeciesService(
                self.species,
                ServiceSettings(
                    self.lag, s.species_workers, s.species_threads, s.background_fallback, s.fallback_queue,
                    s.fallback_batch,
                ),
            )  # fmt: skip
        try:
            while True:
                t0 = clock()
                frame = next(frames, None)
                t1 = clock()
                stage["read"] += t1 - t0
                if stop is not None:  # before the end check: a stopped live source ends its frames
                    stop.check()
                if frame is None:
                    break
                if s.max_duration_s is not None and frame.time_s >= s.max_duration_s:
                    break
                if frame.segment != segment:
                    if segment is not None:
                        # The stream dropped and came back: no track spans an outage.
                        self._close(self.ledger.close_all(), sink)
                        self.tracker.reset()
                        last = Detections.empty()
                    segment = frame.segment
                    self.stats.segments += 1
                detected = frame.index % s.stride == 0
                calls: list[CallRecord] = []
                if detected:
                    found = self.detector.detect(frame)
                    t2 = clock()
                    last = self.tracker.update(found, frame.time_s)
                    self.ledger.update(frame.index, frame.time_s, last)
                    stage["detect"] += t2 - t1
                    stage["track"] += clock() - t2
                    self.stats.detected_frames += 1
                t3 = clock()
                if service is not None:
                    # The answers due now go onto their tracks before the ledger picks new looks.
                    calls = self._resolve(service.answers(frame.index))
                    if detected:
                        self._ask(service, frame, last)
                    calls += self._resolve(service.arrived())
                stage["classify"] += clock() - t3
                t4 = clock()
                if calls:
                    sink.on_calls(calls)
                sink.on_frame(frame, last, detected, self.ledger)
                self.stats.frames += 1  # at once: a stop from here on leaves as many frames counted as written
                stage["output"] += clock() - t4
                if frame.captured_unix is not None:
                    self.stats.latencies_s.append(time.time() - frame.captured_unix)
                self.stats.last_frame_time_s = frame.time_s
                self._close(self.ledger.close_stale(frame.index, max_gap_frames, grace_frames), sink)
                self.stats.elapsed_s = time.perf_counter() - start
                self.stats.open_tracks = len(self.ledger)
                if on_progress is not None:
                    on_progress(self.stats)
                if s.max_frames is not None and self.stats.frames >= s.max_frames:
                    break
        finally:
            if service is not None:
                final = self._resolve(service.finish())
                self.stats.calls = dict(service.counts)
                if final:
                    sink.on_calls(final)
            self._close(self.ledger.close_all(), sink)
            self.stats.elapsed_s = time.perf_counter() - start
            self.stats.open_tracks = 0
            if on_progress is not None:
                on_progress(self.stats)
        return self.stats

    def _close(self, tracks: list[TrackSummary], sink: PipelineSink) -> None:
        for track in tracks:
            self.stats.closed_tracks += 1
            sink.on_track_closed(track)

    def _resolve(self, answers: list) -> list[CallRecord]:
        """Answers onto their tracks; keys are (track, frame, time)."""
        records = []
        for (track_id, frame_index, time_s), call in answers:
            if self.ledger.resolve(track_id, call, frame_index):
                records.append(CallRecord(frame_index, time_s, track_id, call))
        return records

    def _ask(self, service: SpeciesService, frame: Frame, detections: Detections) -> None:
        """Send the crops the ledger wants looked at; each look is pending until answered."""
        described: dict[int, np.ndarray | None] = {}

        def colours(row: int) -> np.ndarray | None:
            if row not in described:
                described[row] = appearance.describe(frame.image_bgr, detections.xyxy[row])
            return described[row]

        chosen = self.ledger.select(frame.index, detections, frame.width, frame.height, colours)
        if len(chosen) == 0:
            return
        crops = crop(frame.image_bgr, detections.xyxy[chosen], self.settings.crop_padding)
        keep = [i for i, c in enumerate(crops) if c.size > 0]
        if not keep:
            return
        keys = []
        for i in keep:
            row = int(chosen[i])
            track_id = int(detections.track_id[row])
            self.ledger.observe(track_id, frame.index, None, float(detections.area[row]), colours(row))
            keys.append((track_id, frame.index, frame.time_s))
        service.ask(frame.index, [crops[i] for i in keep], keys)
        self.stats.crops_classified += len(keep)
