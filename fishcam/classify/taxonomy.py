"""Ranks, lineages and the roll-up from species to genus, family or order. Pure (numpy).

A label of the fallback is a taxon with a lineage: its names from kingdom down to its own rank
(``""`` where a rank is not known). When no species is sure enough, the fallback answers the
lowest rank that is: the probabilities of the species under one genus (then one family, then one
order) are summed, as pybioclip does for its higher-rank predictions, and the first group whose
sum reaches the threshold is the answer, at its rank (SpeciesNet's roll-up). Groups are keyed by
the whole lineage down to their rank, never by the name alone: homonym genera in two kingdoms
stay two groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
ROLL_UP_RANKS = ("genus", "family", "order")  # tried in this order when no species is sure
UNRANKED = ""  # a label whose rank nobody stated (the expert's classes: "Tilapia", "Shrimp")

Lineage = tuple[str, ...]  # names from kingdom down, one per rank in RANKS (the species: its binomial)


def lineage_name(lineage: Lineage, rank: str) -> str:
    """The name at ``rank`` in a lineage, ``""`` when not known."""
    i = RANKS.index(rank)
    return lineage[i] if i < len(lineage) else ""


def prefix(lineage: Lineage, rank: str) -> Lineage:
    """The lineage down to ``rank`` (a group's key); ``()`` when the rank's name is not known."""
    i = RANKS.index(rank)
    if i >= len(lineage) or not lineage[i]:
        return ()
    return tuple(lineage[: i + 1])


@dataclass(frozen=True)
class RollUp:
    """One crop's answer over a ranked label set: ``label`` True when the best label itself is
    sure; else a group's name and rank; ``rank`` ``""`` with ``label`` False: nothing is sure."""

    label: bool
    name: str
    rank: str
    score: float
    lineage: Lineage
    best: int  # the most probable label, kept as the candidate


class Taxonomy:
    """The lineages of a label set as integer codes: for each roll-up rank, each label's group
    (``-1``: that rank not known), so summing a crop's probabilities per group is one
    ``np.bincount``, fast over the Tree of Life's near million species as over a list of ten."""

    def __init__(self, lineages: Sequence[Lineage], ranks: Sequence[str]) -> None:
        if len(lineages) != len(ranks):
            raise ValueError(f"{len(lineages)} lineages for {len(ranks)} ranks")
        self.lineages = tuple(tuple(x) for x in lineages)
        self.ranks = tuple(ranks)
        self.codes: dict[str, np.ndarray] = {}
        self.groups: dict[str, list[Lineage]] = {}
        self._known: dict[str, np.ndarray | None] = {}
        self._known_codes: dict[str, np.ndarray] = {}
        for rank in ROLL_UP_RANKS:
            index: dict[Lineage, int] = {}
            codes = np.full(len(self.lineages), -1, dtype=np.int64)
            for i, lineage in enumerate(self.lineages):
                key = prefix(lineage, rank)
                if key:
                    codes[i] = index.setdefault(key, len(index))
            self.codes[rank] = codes
            self.groups[rank] = list(index)
            known = np.flatnonzero(codes >= 0)
            # The labels known at this rank, and their groups (all of them: no indexing needed).
            self._known[rank] = None if len(known) == len(codes) else known
            self._known_codes[rank] = codes if len(known) == len(codes) else codes[known]

    def __len__(self) -> int:
        return len(self.lineages)

    @property
    def ranked(self) -> bool:
        """Whether any roll-up is possible (some label has a genus, family or order)."""
        return any(len(g) for g in self.groups.values())

    def roll_up(self, probs: np.ndarray, threshold: float, ranks: Sequence[str] = ROLL_UP_RANKS) -> RollUp:
        """The answer for one crop's probabilities over the labels: the best label when it
        reaches ``threshold``; else the lowest rank (genus, family, order) whose best group's
        summed probability does; else nothing sure (``rank`` ``""``, ``name`` ``""``)."""
        probs = np.asarray(probs)
        best = int(np.argmax(probs))
        score = float(probs[best])
        if score >= threshold:
            return RollUp(True, "", self.ranks[best], score, self.lineages[best], best)
        for rank in ranks:
            groups = self.groups[rank]
            if not groups:
                continue
            known = self._known[rank]
            weights = probs if known is None else probs[known]
            sums = np.bincount(self._known_codes[rank], weights=weights, minlength=len(groups))
            top = int(np.argmax(sums))
            if sums[top] >= threshold:
                key = groups[top]
                return RollUp(False, key[-1], rank, float(sums[top]), key, best)
        return RollUp(False, "", UNRANKED, score, (), best)


def vote_group(lineages: Sequence[Lineage], share: float = 0.5) -> tuple[str, Lineage] | None:
    """The lowest roll-up rank at which more than ``share`` of ``lineages`` (one per known call)
    fall in one group that holds more than one distinct taxon: (rank, the group's lineage), or None.

    This is how a track's calls split between two species of one genus become that genus."""
    n = len(lineages)
    if n < 2:
        return None
    for rank in ROLL_UP_RANKS:
        members: dict[Lineage, set[Lineage]] = {}
        counts: dict[Lineage, int] = {}
        for lineage in lineages:
            key = prefix(lineage, rank)
            if key:
                counts[key] = counts.get(key, 0) + 1
                members.setdefault(key, set()).add(tuple(lineage))
        if not counts:
            continue
        key = max(counts, key=lambda k: counts[k])
        if counts[key] > share * n and len(members[key]) > 1:
            return rank, key
    return None
