"""Species calls for a run: the expert, then the fallback for what the expert is unsure about,
beside the frame loop.

:class:`SpeciesModels` is what a run is given (the loaded models and their thresholds, shared by
every run in a process); :class:`SpeciesService` is one run's use of them, with its own threads,
waiting answers and counts. Which model decides a crop is :func:`fishcam.classify.decide.route`,
pure; this module only decides where and when the models run. With the open-set check on
(``open_set_threshold``: a calibrated expert, ``classify.expert.open_set``), a crop unlike all the
expert's species is routed like an unsure one; the confident calls it takes from the expert are
counted as ``expert_out_of_set`` (docs/models.md, "Open set").

Timing. The frame loop detects and tracks the next frames while the expert looks at this frame's
crops: on a CPU the two overlap instead of taking turns. A look asked at frame ``f`` is answered
at frame ``f + lag``, waiting for it there if the models are behind, never earlier even if they
are ahead: what a run decides does not depend on the machine's speed. With ``lag`` no more than
the look policy's ``min_gap_frames`` the results are exactly those of answering at once, since
the ledger does not look at a track again sooner (tested). The one thing timing changes is which
frames share a batch; in bf16 that changes no bit of a crop's probabilities, in fp32 it can move
them by float rounding (about 1e-8; tested).

The fallback runs either in line, on the species threads (deterministic: files), or on a
background thread behind a bounded queue (live streams): a slow BioCLIP on a CPU then never
stalls the frame loop, crops beyond the queue's size are refused (the expert's unsure call
stands), and answers come back frames later through :meth:`SpeciesService.arrived`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from fishcam.classify.base import OpenSetModel, SpeciesModel
from fishcam.classify.decide import OpenSet, fallback_call, rejected_as_out_of_set, route, unsure_call
from fishcam.types import UNKNOWN_LABEL, Origin, SpeciesCall

log = logging.getLogger(__name__)

Answer = tuple[Hashable, SpeciesCall]


@dataclass(frozen=True)
class ExpertLook:
    """The expert's pass over a batch of crops: each crop's call (None where the fallback must
    decide), its probabilities and open-set scores, and how many confident calls the open-set
    check took from it."""

    routed: list[SpeciesCall | None]
    probs: np.ndarray | None
    open_set: np.ndarray | None = None
    out_of_set: int = 0


@dataclass(frozen=True)
class SpeciesModels:
    """The loaded species models of a process and the thresholds their calls are judged by.

    ``open_set_threshold``: the expert's calibrated open-set threshold when the check is on
    (``classify.expert.open_set``); None: the expert's confidence alone decides, as before."""

    expert: SpeciesModel | None
    fallback: SpeciesModel | None
    expert_threshold: float
    fallback_threshold: float
    open_set_threshold: float | None = None
    roll_up: bool = True  # unsure fallback calls named at genus, family or order (classify.fallback.roll_up)

    def __post_init__(self) -> None:
        if self.expert is None and self.fallback is None:
            raise ValueError("species models need an expert, a fallback, or both")
        if self.open_set_threshold is not None and not isinstance(self.expert, OpenSetModel):
            raise ValueError("an open-set threshold needs an expert with an open-set score (predict_scored)")

    @property
    def device(self) -> str:
        return (self.expert or self.fallback).device  # type: ignore[union-attr]

    @property
    def open_set(self) -> bool:
        """Whether the expert's calls are checked for crops that are none of its species."""
        return self.open_set_threshold is not None

    def classify(self, crops_bgr: Sequence[np.ndarray]) -> tuple[list[SpeciesCall], np.ndarray | None]:
        """Every crop decided now, in line: (calls, the expert's probabilities or None)."""
        calls, look = self.classify_scored(crops_bgr)
        return calls, look.probs

    def classify_scored(self, crops_bgr: Sequence[np.ndarray]) -> tuple[list[SpeciesCall], ExpertLook]:
        """Every crop decided now, in line, with the expert's look (probabilities, open-set scores)."""
        look = self._expert(crops_bgr)
        return self._fallback_in_line(crops_bgr, look.routed, look.probs), look

    def _expert(self, crops_bgr: Sequence[np.ndarray]) -> ExpertLook:
        """The expert's calls, None where the fallback must decide."""
        expert, n = self.expert, len(crops_bgr)
        probs = scores = None
        if expert is not None and n:
            if self.open_set_threshold is not None:
                assert isinstance(expert, OpenSetModel)  # __post_init__ checked it
                scored = expert.predict_scored(crops_bgr)
                probs, scores = scored.probs, scored.open_set
            else:
                probs = expert.predict(crops_bgr)
        labels = expert.labels if expert is not None else ()
        has_fallback = self.fallback is not None
        routed, out_of_set = [], 0
        for i in range(n):
            verdict = None
            if scores is not None and self.open_set_threshold is not None:
                verdict = OpenSet(float(scores[i]), self.open_set_threshold)
            row = None if probs is None else probs[i]
            routed.append(route(row, labels, self.expert_threshold, has_fallback, verdict))
            out_of_set += row is not None and rejected_as_out_of_set(row, self.expert_threshold, verdict)
        return ExpertLook(routed, probs, scores, out_of_set)

    def _fallback_in_line(
        self, crops_bgr: Sequence[np.ndarray], routed: list[SpeciesCall | None], expert_probs: np.ndarray | None
    ) -> list[SpeciesCall]:
        unsure = [i for i, call in enumerate(routed) if call is None]
        calls = list(routed)
        if unsure:
            assert self.fallback is not None  # route() asks for it only when there is one
            probs = self.fallback.predict([crops_bgr[i] for i in unsure])
            for i, row in zip(unsure, probs, strict=True):
                calls[i] = self.fallback_decision(row)
        return calls  # type: ignore[return-value]  # every None was replaced

    def fallback_decision(self, probs: np.ndarray) -> SpeciesCall:
        """The fallback's call on one crop's probabilities (rolled up when no species is sure)."""
        fallback = self.fallback
        assert fallback is not None
        taxonomy = getattr(fallback, "taxonomy", None)
        return fallback_call(probs, fallback.labels, self.fallback_threshold, taxonomy, self.roll_up)

    def without_fallback(self, expert_probs: np.ndarray | None) -> SpeciesCall:
        """The call when the fallback cannot answer (saturated, or it failed)."""
        if expert_probs is None or self.expert is None:
            return SpeciesCall(UNKNOWN_LABEL, 0.0, Origin.UNKNOWN)
        return unsure_call(expert_probs, self.expert.labels)


@dataclass(frozen=True)
class ServiceSettings:
    """How one run uses the models: see the module docstring for ``lag``."""

    lag: int = 0
    workers: int = 1  # species threads, each running torch on ``threads`` threads (None: the process's)
    threads: int | None = None
    background_fallback: bool = False
    fallback_queue: int = 16  # background: crops waiting; more are refused, never waited for
    fallback_batch: int = 8


class SpeciesService:
    """One run's species calls: :meth:`ask` a frame's crops, take :meth:`answers` when due and the
    background fallback's :meth:`arrived`, :meth:`finish` at the end (also after an error)."""

    def __init__(self, models: SpeciesModels, settings: ServiceSettings = ServiceSettings()) -> None:
        self.models = models
        self.lag = max(0, settings.lag)
        self.counts = {"expert": 0, "fallback": 0, "unknown": 0, "fallback_crops": 0, "fallback_refused": 0}
        if models.open_set:
            # Crops the expert was confident about that the open-set check sent on (fallback or unknown).
            self.counts["expert_out_of_set"] = 0
        self._lock = threading.Lock()  # counts and waiting: the species threads and the loop share them
        self._asked: deque[tuple[int, list[Hashable], Future]] = deque()
        # Unbounded, but never long: the frame loop waits for answers ``lag`` frames on.
        self._requests: queue.Queue = queue.Queue()
        self._background: FallbackQueue | None = None
        self._waiting: dict[Hashable, np.ndarray | None] = {}  # background: key -> the expert's probabilities
        if settings.background_fallback and models.fallback is not None:
            self._background = FallbackQueue(models.fallback, settings.fallback_queue, settings.fallback_batch)
        self._threads = [
            threading.Thread(target=self._serve, args=(settings.threads,), name=f"fishcam-species-{i}", daemon=True)
            for i in range(max(1, settings.workers))
        ]
        for thread in self._threads:
            thread.start()

    # ---- the frame loop's side ------------------------------------------------------------

    def ask(self, frame_index: int, crops_bgr: Sequence[np.ndarray], keys: Sequence[Hashable]) -> None:
        """Send one frame's crops. The crops are views of the frame: frames are never written to."""
        future: Future = Future()
        self._asked.append((frame_index, list(keys), future))
        self._requests.put((list(crops_bgr), list(keys), future))

    def answers(self, frame_index: int) -> list[Answer]:
        """The calls due at ``frame_index``: every look asked at ``frame_index - lag`` or before,
        less those passed on to the background fallback. A model's exception is raised here."""
        out: list[Answer] = []
        while self._asked and self._asked[0][0] <= frame_index - self.lag:
            _, keys, future = self._asked.popleft()
            out.extend((key, call) for key, call in zip(keys, future.result(), strict=True) if call is not None)
        return out

    def arrived(self) -> list[Answer]:
        """The background fallback's calls that came back since the last time."""
        if self._background is None:
            return []
        out = []
        for key, probs in self._background.collect():
            with self._lock:
                expert_probs = self._waiting.pop(key, None)
            # probs None: the fallback failed on it, the expert's unsure call stands.
            call = self.models.without_fallback(expert_probs) if probs is None else self.models.fallback_decision(probs)
            self._count(call.origin.value)
            out.append((key, call))
        return out

    def finish(self, timeout_s: float = 60.0) -> list[Answer]:
        """Every answer still due, the background's waited for up to ``timeout_s``; stops the
        threads. After an error the rest is logged and dropped, so the error that ended the run
        is the one reported."""
        out: list[Answer] = []
        while self._asked:
            _, keys, future = self._asked.popleft()
            try:
                out.extend((key, call) for key, call in zip(keys, future.result(), strict=True) if call is not None)
            except Exception:
                log.exception("species models failed on %d crops at the end of the run", len(keys))
        self._requests.put(None)  # each species thread passes it on to the next
        for thread in self._threads:
            thread.join()
        if self._background is not None:
            self._background.wait(timeout_s)
            out += self.arrived()
            self._background.close()
            self._background = None
        return out

    # ---- the species threads --------------------------------------------------------------

    def _serve(self, threads: int | None) -> None:
        if threads is not None:
            from fishcam import runtime

            runtime.set_torch_threads(threads)
        while True:
            item = self._requests.get()
            if item is None:
                self._requests.put(None)
                return
            # Frames asked while the models were busy go through them together: a batch of 8
            # costs 20 % less a crop than one at a time on a CPU. A crop's probabilities do not
            # depend on its batch (bf16: bit for bit; fp32: to float rounding, about 1e-8; tested).
            batch = _with_queued(self._requests, item)
            try:
                calls = self._call(
                    [c for crops, _, _ in batch for c in crops], [k for _, keys, _ in batch for k in keys]
                )
            except BaseException as exc:  # handed to the frame loop with the answers
                for _, _, future in batch:
                    future.set_exception(exc)
                continue
            start = 0
            for crops, _, future in batch:
                future.set_result(calls[start : start + len(crops)])
                start += len(crops)

    def _call(self, crops_bgr: list[np.ndarray], keys: list[Hashable]) -> list[SpeciesCall | None]:
        """One call per crop; None where the background fallback will answer later."""
        models = self.models
        look = models._expert(crops_bgr)
        routed, expert_probs = look.routed, look.probs
        if look.out_of_set:
            self._count("expert_out_of_set", look.out_of_set)
        unsure = [i for i, call in enumerate(routed) if call is None]
        if unsure:
            self._count("fallback_crops", len(unsure))
        if self._background is None:
            calls: list[SpeciesCall | None] = list(models._fallback_in_line(crops_bgr, routed, expert_probs))
        else:
            calls = list(routed)
            for i in unsure:
                probs = None if expert_probs is None else expert_probs[i]
                with self._lock:  # before submitting: the answer may come back at once
                    self._waiting[keys[i]] = probs
                calls[i] = None
                if not self._background.submit(keys[i], crops_bgr[i]):
                    # The fallback is saturated: the frame loop does not wait for it.
                    with self._lock:
                        self._waiting.pop(keys[i], None)
                    self._count("fallback_refused")
                    calls[i] = models.without_fallback(probs)
        for call in calls:
            if call is not None:
                self._count(call.origin.value)
        return calls

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n


class FallbackQueue:
    """The fallback on its own thread behind a bounded queue: requests beyond its size are refused."""

    def __init__(self, model: SpeciesModel, max_pending: int = 16, batch_size: int = 8) -> None:
        self.model = model
        self.batch_size = batch_size
        self._requests: queue.Queue[tuple[Hashable, np.ndarray] | None] = queue.Queue(maxsize=max_pending)
        self._answers: deque[tuple[Hashable, np.ndarray | None]] = deque()
        self._in_flight = 0
        self._lock = threading.Lock()
        self.refused = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._loop, name="fishcam-fallback", daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, crop: np.ndarray) -> bool:
        """Queue a crop; False (and nothing queued) when the queue is full."""
        try:
            self._requests.put_nowait((key, np.ascontiguousarray(crop)))
        except queue.Full:
            self.refused += 1
            return False
        with self._lock:
            self._in_flight += 1
        return True

    def collect(self) -> list[tuple[Hashable, np.ndarray | None]]:
        """Answers that came back since the last call: (key, probabilities or None on failure)."""
        out = []
        while self._answers:
            out.append(self._answers.popleft())
        with self._lock:
            self._in_flight -= len(out)
        return out

    def wait(self, timeout_s: float) -> None:
        """Block until every request is answered (or ``timeout_s``), for the end of a run."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._answers) >= self._in_flight:
                    return
            time.sleep(0.01)

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        _yield_cpu_to_the_frame_loop()
        while True:
            item = self._requests.get()
            if item is None:
                return
            batch = _with_queued(self._requests, item, self.batch_size)
            try:
                probs: Any = self.model.predict([crop for _, crop in batch])
            except Exception:  # a model failure must not kill the thread: the crops stay unsure
                log.exception("species model failed on %d crops", len(batch))
                self.failed += len(batch)
                probs = [None] * len(batch)
            for (key, _), row in zip(batch, probs, strict=True):
                self._answers.append((key, row))


def _with_queued(requests: queue.Queue, first: Any, limit: int | None = None) -> list:
    """``first`` and what else is waiting in ``requests`` (up to ``limit`` in all), without
    waiting; a None (stop) met on the way is put back for the next take."""
    batch = [first]
    while limit is None or len(batch) < limit:
        try:
            more = requests.get_nowait()
        except queue.Empty:
            break
        if more is None:
            requests.put(None)
            break
        batch.append(more)
    return batch


def _yield_cpu_to_the_frame_loop() -> None:
    """Run this thread, and the torch threads it starts, at a lower CPU priority (Linux: a
    thread's own nice value): a slow fallback uses the cores the live frame loop leaves idle
    instead of delaying its frames. Elsewhere, or where it is not allowed, nothing changes."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
