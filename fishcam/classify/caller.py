"""Crops → species calls: the expert first, the fallback for what the expert is unsure about."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fishcam.classify.base import SpeciesModel
from fishcam.classify.decide import expert_call, fallback_call, unsure_call
from fishcam.types import SpeciesCall


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
        self.counts = {"expert": 0, "fallback": 0, "unknown": 0, "fallback_crops": 0}

    def call(self, crops_bgr: Sequence[np.ndarray]) -> list[SpeciesCall]:
        """One call per crop; crops of several tracks go through each model in one batch."""
        calls: list[SpeciesCall | None] = [None] * len(crops_bgr)
        expert_probs = None
        if self.expert is not None and len(crops_bgr):
            expert_probs = self.expert.predict(crops_bgr)
            for i, probs in enumerate(expert_probs):
                calls[i] = expert_call(probs, self.expert.labels, self.expert_threshold)
        unsure = [i for i, call in enumerate(calls) if call is None]
        if unsure and self.fallback is not None:
            self.counts["fallback_crops"] += len(unsure)
            fallback_probs = self.fallback.predict([crops_bgr[i] for i in unsure])
            for i, probs in zip(unsure, fallback_probs, strict=True):
                calls[i] = fallback_call(probs, self.fallback.labels, self.fallback_threshold)
        elif unsure:
            assert expert_probs is not None and self.expert is not None
            for i in unsure:
                calls[i] = unsure_call(expert_probs[i], self.expert.labels)
        final = [call for call in calls if call is not None]
        for call in final:
            self.counts[call.origin.value] += 1
        return final
