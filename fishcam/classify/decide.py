"""The expert-versus-fallback decision for one crop, and the vote that names a track. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from fishcam.types import UNKNOWN_LABEL, Origin, SpeciesCall


def expert_call(probs: np.ndarray, labels: Sequence[str], threshold: float) -> SpeciesCall | None:
    """The expert's call when it is confident enough, else None (ask the fallback)."""
    best = int(np.argmax(probs))
    score = float(probs[best])
    if score >= threshold:
        return SpeciesCall(labels[best], score, Origin.EXPERT, candidate=labels[best])
    return None


def route(
    expert_probs: np.ndarray | None, expert_labels: Sequence[str], threshold: float, has_fallback: bool
) -> SpeciesCall | None:
    """Who decides a crop: the expert's call when it is sure; None when the fallback must decide
    (the expert is unsure, or there is no expert); else ``unknown`` with the expert's best guess."""
    if expert_probs is None:
        return None if has_fallback else SpeciesCall(UNKNOWN_LABEL, 0.0, Origin.UNKNOWN)
    call = expert_call(expert_probs, expert_labels, threshold)
    if call is not None or has_fallback:
        return call
    return unsure_call(expert_probs, expert_labels)


def fallback_call(probs: np.ndarray, labels: Sequence[str], threshold: float) -> SpeciesCall:
    """The fallback's call, or ``unknown`` (keeping its best guess) when it is unsure too."""
    best = int(np.argmax(probs))
    score = float(probs[best])
    if score >= threshold:
        return SpeciesCall(labels[best], score, Origin.FALLBACK, candidate=labels[best])
    return SpeciesCall(UNKNOWN_LABEL, score, Origin.UNKNOWN, candidate=labels[best])


def unsure_call(probs: np.ndarray, labels: Sequence[str]) -> SpeciesCall:
    """``unknown`` when the expert is unsure and there is no fallback to ask."""
    best = int(np.argmax(probs))
    return SpeciesCall(UNKNOWN_LABEL, float(probs[best]), Origin.UNKNOWN, candidate=labels[best])


def vote(calls: Sequence[SpeciesCall]) -> tuple[str, float, Origin, int]:
    """One species for a track from its calls: (label, score, origin, votes for it).

    Majority of calls wins ("unknown" is a label like any other, so a track most models were
    unsure about stays unknown); ties go to the higher summed score. The score is the mean
    score of the winning calls; the origin is the model that made most of them.
    """
    if not calls:
        return UNKNOWN_LABEL, 0.0, Origin.UNKNOWN, 0
    counts = Counter(call.label for call in calls)
    sums: dict[str, float] = {}
    for call in calls:
        sums[call.label] = sums.get(call.label, 0.0) + call.score
    label = max(counts, key=lambda name: (counts[name], sums[name]))
    winners = [call for call in calls if call.label == label]
    origins = Counter(call.origin for call in winners)
    origin = max(origins, key=lambda o: (origins[o], o is Origin.EXPERT))
    return label, sums[label] / len(winners), origin, len(winners)
