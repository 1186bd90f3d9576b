"""Crops → species calls: the expert first, the fallback for what the expert is unsure about.

The fallback either runs in line (deterministic, for files) or on a worker thread (live
streams): then a crop's call comes back frames later through :meth:`SpeciesCaller.collect`.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence

import numpy as np

from fishcam.classify.base import SpeciesModel
from fishcam.classify.decide import expert_call, fallback_call, unsure_call
from fishcam.classify.worker import ModelWorker
from fishcam.types import UNKNOWN_LABEL, Origin, SpeciesCall


class SpeciesCaller:
    def __init__(
        self,
        expert: SpeciesModel | None,
        fallback: SpeciesModel | None,
        expert_threshold: float,
        fallback_threshold: float,
    ) -> None:
        if expert is None and fallback is None:
            raise ValueError("SpeciesCaller needs an expert, a fallback, or both")
        self.expert = expert
        self.fallback = fallback
        self.expert_threshold = expert_threshold
        self.fallback_threshold = fallback_threshold
        self.worker: ModelWorker | None = None
        self._waiting: dict[Hashable, np.ndarray | None] = {}  # key -> the expert's probabilities
        self.last_expert_probs: np.ndarray | None = None  # of the latest call, for reports
        self.counts = {"expert": 0, "fallback": 0, "unknown": 0, "fallback_crops": 0, "fallback_refused": 0}
        # call() may run on the species thread while the frame loop collects fallback answers.
        self._lock = threading.Lock()

    def run_fallback_in_background(self, max_pending: int, batch_size: int) -> None:
        if self.fallback is not None and self.worker is None:
            self.worker = ModelWorker(self.fallback, max_pending, batch_size)

    def call(self, crops_bgr: Sequence[np.ndarray], keys: Sequence[Hashable] | None = None) -> list[SpeciesCall | None]:
        """One call per crop, or None where the answer will come later from :meth:`collect`.
        Crops of several tracks go through each model in one batch."""
        calls: list[SpeciesCall | None] = [None] * len(crops_bgr)
        expert_probs = None
        if self.expert is not None and len(crops_bgr):
            expert_probs = self.expert.predict(crops_bgr)
            self.last_expert_probs = expert_probs
            for i, probs in enumerate(expert_probs):
                calls[i] = expert_call(probs, self.expert.labels, self.expert_threshold)
        unsure = [i for i, call in enumerate(calls) if call is None]
        if unsure and self.fallback is not None:
            self._count("fallback_crops", len(unsure))
            if self.worker is not None:
                for i in unsure:
                    key = keys[i] if keys is not None else i
                    with self._lock:  # before submitting: the answer may come back at once
                        self._waiting[key] = None if expert_probs is None else expert_probs[i]
                    if not self.worker.submit(key, crops_bgr[i]):
                        # The fallback is saturated: the frame loop does not wait for it.
                        with self._lock:
                            self._waiting.pop(key, None)
                        self._count("fallback_refused")
                        calls[i] = self._without_fallback(None if expert_probs is None else expert_probs[i])
            else:
                fallback_probs = self.fallback.predict([crops_bgr[i] for i in unsure])
                for i, probs in zip(unsure, fallback_probs, strict=True):
                    calls[i] = fallback_call(probs, self.fallback.labels, self.fallback_threshold)
        elif unsure:
            for i in unsure:
                calls[i] = self._without_fallback(None if expert_probs is None else expert_probs[i])
        for call in calls:
            if call is not None:
                self._count(call.origin.value)
        return calls

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    def collect(self) -> list[tuple[Hashable, SpeciesCall]]:
        """Fallback answers that arrived since the last call, with the keys given to :meth:`call`."""
        if self.worker is None:
            return []
        out = []
        for key, probs in self.worker.collect():
            with self._lock:
                expert_probs = self._waiting.pop(key, None)
            if probs is None:
                call = self._without_fallback(expert_probs)
            else:
                assert self.fallback is not None
                call = fallback_call(probs, self.fallback.labels, self.fallback_threshold)
            self._count(call.origin.value)
            out.append((key, call))
        return out

    def finish(self, timeout_s: float = 60.0) -> list[tuple[Hashable, SpeciesCall]]:
        """Wait for the answers still pending (end of a run) and stop the worker."""
        if self.worker is None:
            return []
        self.worker.wait(timeout_s)
        answers = self.collect()
        self.worker.close()
        self.worker = None
        return answers

    def _without_fallback(self, expert_probs: np.ndarray | None) -> SpeciesCall:
        if expert_probs is None or self.expert is None:
            return SpeciesCall(UNKNOWN_LABEL, 0.0, Origin.UNKNOWN)
        return unsure_call(expert_probs, self.expert.labels)
