import csv

from fishcam.review import Correction, append_correction

AT = "2026-12-02T21:30:00Z"


def rows(path):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def tracks(folder):
    return {int(r["track_id"]): r for r in rows(folder / "tracks.csv")}


def add(folder, action, track, reviewer="ana", **fields):
    return append_correction(folder, Correction(action, track, reviewer, AT, **fields))


def by_species(counts):
    return {c.species: (c.unique, c.max_n, c.max_n_frame) for c in counts}
