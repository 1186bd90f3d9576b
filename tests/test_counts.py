from fishcam.counts import species_counts
from fishcam.types import Origin, TrackSummary


def track(tid, species, frames, fps=10.0):
    return TrackSummary(
        tid, species, 0.9, Origin.EXPERT, frames[0], frames[-1], frames[0] / fps, frames[-1] / fps,
        len(frames), 1, 1, tuple(frames), tuple(f / fps for f in frames),
    )  # fmt: skip


def test_unique_and_max_n_with_time_of_first_max():
    tracks = [
        track(1, "cod", [0, 1, 2, 3]),
        track(2, "cod", [2, 3, 4]),
        track(3, "cod", [10, 11]),
        track(4, "hake", [5]),
    ]
    counts = {c.species: c for c in species_counts(tracks)}
    assert (counts["cod"].unique, counts["cod"].max_n, counts["cod"].max_n_frame) == (3, 2, 2)
    assert counts["cod"].max_n_time_s == 0.2
    assert (counts["cod"].first_seen_s, counts["cod"].last_seen_s) == (0.0, 1.1)
    assert (counts["hake"].unique, counts["hake"].max_n) == (1, 1)
    assert [c.species for c in species_counts(tracks)] == ["cod", "hake"]
    assert species_counts([]) == []
