"""The expert-versus-fallback decision for one crop, and the vote that names a track. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fishcam.classify.taxonomy import ROLL_UP_RANKS, UNRANKED, Taxonomy, prefix, vote_group
from fishcam.types import UNKNOWN_LABEL, Origin, SpeciesCall


def expert_call(probs: np.ndarray, labels: Sequence[str], threshold: float) -> SpeciesCall | None:
    """The expert's call when it is confident enough, else None (ask the fallback)."""
    best = int(np.argmax(probs))
    score = float(probs[best])
    if score >= threshold:
        return SpeciesCall(labels[best], score, Origin.EXPERT, candidate=labels[best])
    return None


@dataclass(frozen=True)
class OpenSet:
    """The open-set verdict on one crop: its score (similarity to the nearest class prototype of
    the expert's training images) and the calibrated least score of an in-set crop."""

    score: float
    threshold: float

    @property
    def in_set(self) -> bool:
        return self.score >= self.threshold


def route(
    expert_probs: np.ndarray | None,
    expert_labels: Sequence[str],
    threshold: float,
    has_fallback: bool,
    open_set: OpenSet | None = None,
) -> SpeciesCall | None:
    """Who decides a crop: the expert's call when it is sure and the crop is one of its species;
    None when the fallback must decide (the expert is unsure, the crop is out of its set, or
    there is no expert); else ``unknown`` with the expert's best guess as ``candidate``.
    ``open_set`` None: no open-set check (an uncalibrated expert), the confidence alone decides."""
    if expert_probs is None:
        return None if has_fallback else SpeciesCall(UNKNOWN_LABEL, 0.0, Origin.UNKNOWN)
    out_of_set = open_set is not None and not open_set.in_set
    call = None if out_of_set else expert_call(expert_probs, expert_labels, threshold)
    if call is not None or has_fallback:
        return call
    return unsure_call(expert_probs, expert_labels)


def rejected_as_out_of_set(expert_probs: np.ndarray, threshold: float, open_set: OpenSet | None) -> bool:
    """Whether the open-set check, and only it, took the call from the expert: confident enough,
    but not like any of its species (the service counts these as ``expert_out_of_set``)."""
    return open_set is not None and not open_set.in_set and float(np.max(expert_probs)) >= threshold


def fallback_call(
    probs: np.ndarray,
    labels: Sequence[str],
    threshold: float,
    taxonomy: Taxonomy | None = None,
    roll_up: bool = True,
) -> SpeciesCall:
    """The fallback's call, or ``unknown`` (keeping its best guess) when it is unsure too.

    With the labels' ``taxonomy``, calls keep their rank and lineage, and (``roll_up``) an unsure
    species rolls up: the lowest rank (genus, family, order) whose summed probability reaches
    ``threshold`` is the call, at that rank. ``roll_up`` False: species or unknown, and no lineage
    (so the track's vote does not roll up either)."""
    if taxonomy is None:
        best = int(np.argmax(probs))
        score = float(probs[best])
        if score >= threshold:
            return SpeciesCall(labels[best], score, Origin.FALLBACK, candidate=labels[best])
        return SpeciesCall(UNKNOWN_LABEL, score, Origin.UNKNOWN, candidate=labels[best])
    answer = taxonomy.roll_up(probs, threshold, ROLL_UP_RANKS if roll_up else ())
    candidate = labels[answer.best]
    if answer.label:
        lineage = answer.lineage if roll_up else ()
        return SpeciesCall(candidate, answer.score, Origin.FALLBACK, candidate, answer.rank, lineage)
    if answer.rank != UNRANKED:
        return SpeciesCall(answer.name, answer.score, Origin.FALLBACK, candidate, answer.rank, answer.lineage)
    return SpeciesCall(UNKNOWN_LABEL, answer.score, Origin.UNKNOWN, candidate=candidate)


def unsure_call(probs: np.ndarray, labels: Sequence[str]) -> SpeciesCall:
    """``unknown`` when the expert is unsure and there is no fallback to ask."""
    best = int(np.argmax(probs))
    return SpeciesCall(UNKNOWN_LABEL, float(probs[best]), Origin.UNKNOWN, candidate=labels[best])


@dataclass(frozen=True)
class TrackVote:
    """A track's species from its calls, how many calls back it, and at which rank."""

    label: str
    score: float
    origin: Origin
    votes: int
    rank: str = UNRANKED


def track_vote(calls: Sequence[SpeciesCall]) -> TrackVote:
    """One species for a track from its calls.

    Majority of calls wins ("unknown" is a label like any other, so a track most models were
    unsure about stays unknown); ties go to the higher summed score. The score is the mean
    score of the winning calls; the origin is the model that made most of them.

    Roll-up: when the winner holds no more than half of the known calls and more than half fall
    under one genus (then family, then order) that holds several of the called taxa, the track is
    that genus (family, order): calls split between two species of one genus name the genus, not
    the winner of a coin toss. Calls without a lineage (the expert's) never roll up.
    """
    if not calls:
        return TrackVote(UNKNOWN_LABEL, 0.0, Origin.UNKNOWN, 0)
    counts = Counter(call.label for call in calls)
    sums: dict[str, float] = {}
    for call in calls:
        sums[call.label] = sums.get(call.label, 0.0) + call.score
    label = max(counts, key=lambda name: (counts[name], sums[name]))
    winners = [call for call in calls if call.label == label]
    known = [call for call in calls if call.is_known]
    if label != UNKNOWN_LABEL and 2 * len(winners) <= len(known):
        group = vote_group([call.lineage for call in known])
        if group is not None:
            rank, key = group
            members = [call for call in known if prefix(call.lineage, rank) == key]
            score = sum(c.score for c in members) / len(members)
            return TrackVote(key[-1], score, _origin(members), len(members), rank)
    return TrackVote(label, sums[label] / len(winners), _origin(winners), len(winners), winners[0].rank)


def _origin(calls: Sequence[SpeciesCall]) -> Origin:
    origins = Counter(call.origin for call in calls)
    return max(origins, key=lambda o: (origins[o], o is Origin.EXPERT))


def vote(calls: Sequence[SpeciesCall]) -> tuple[str, float, Origin, int]:
    """:func:`track_vote` as (label, score, origin, votes for it)."""
    result = track_vote(calls)
    return result.label, result.score, result.origin, result.votes
