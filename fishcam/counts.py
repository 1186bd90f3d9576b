"""Species counts from finished tracks: unique fish and MaxN per species. Pure.

MaxN is the largest number of individuals of one species seen in a single frame, with the
time it first happened: the standard abundance figure of baited and remote underwater video.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from fishcam.types import SpeciesCount, TrackSummary


def species_counts(tracks: Iterable[TrackSummary]) -> list[SpeciesCount]:
    """Counts over the counted tracks only (:mod:`fishcam.evidence`); MaxN over every frame a
    track has a box on, interpolated ones included (a fish is there between detections).

    Each answer is counted at its rank: tracks named only to genus (no species was sure) are
    counted as that genus, apart from the tracks named to a species of it."""
    by_species: dict[tuple[str, str], list[TrackSummary]] = defaultdict(list)
    for track in tracks:
        if track.counted:
            by_species[(track.species, track.rank)].append(track)
    counts = []
    for (species, rank), members in by_species.items():
        per_frame: Counter[int] = Counter()
        frame_time: dict[int, float] = {}
        for track in members:
            per_frame.update(track.frames)
            frame_time.update(zip(track.frames, track.frame_times_s, strict=True))
        max_n = max(per_frame.values())
        max_n_frame = min(f for f, n in per_frame.items() if n == max_n)
        counts.append(
            SpeciesCount(
                species=species,
                unique=len(members),
                max_n=max_n,
                max_n_frame=max_n_frame,
                max_n_time_s=frame_time[max_n_frame],
                first_seen_s=min(t.first_time_s for t in members),
                last_seen_s=max(t.last_time_s for t in members),
                rank=rank,
            )
        )
    return sorted(counts, key=lambda c: (-c.unique, c.species, c.rank))
