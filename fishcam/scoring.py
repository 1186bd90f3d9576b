"""``fishcam score RUN GT``: a run measured against ground truth a person annotated.

Tracking quality (IDF1, MOTA, identity switches, precision and recall of boxes) comes from
py-motmetrics, and HOTA with its parts DetA (detection), AssA (association) and LocA
(localisation) from TrackEval's own HOTA class, not from home-made metrics. Both are scored on
every frame of the video, the way MOTChallenge scores a tracker, so a run that detected on every
k-th frame is scored as it is; the run's boxes are every row of ``detections.csv`` with a track
(whether detected or filled in between detections). HOTA is averaged over IoU thresholds 0.05 to
0.95, as TrackEval reports it: ``--iou`` sets only the py-motmetrics match.
Counts are per species: unique fish and MaxN, the run's (``species_counts.csv``) against the
ground truth's, and their errors.

Ground truth comes as MOTChallenge ``gt.txt`` (frame, id, left, top, width, height, …; frames,
ids and pixels counted from 1, no species), VIAME CSV (track id, video, frame, x1, y1, x2, y2,
confidence, length, species, …) or fishcam's sample CSV (``frame, fish_id, species, x1, y1, x2,
y2``, with a header). A damaged file is one line naming the file and the row.
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fishcam.errors import SourceError
from fishcam.sinks.run_writer import COUNTS_NAME, DETECTIONS_NAME

Box = tuple[float, float, float, float]  # x1, y1, x2, y2: pixels from 0


@dataclass(frozen=True)
class TruthBox:
    frame: int  # from 0
    object_id: str
    species: str | None  # None: the format has no species (MOTChallenge)
    xyxy: Box


@dataclass(frozen=True)
class SpeciesScore:
    species: str
    truth_unique: int | None  # None: the ground truth names no species
    run_unique: int
    truth_max_n: int | None
    run_max_n: int

    @property
    def unique_error(self) -> int | None:
        return None if self.truth_unique is None else self.run_unique - self.truth_unique

    @property
    def max_n_error(self) -> int | None:
        return None if self.truth_max_n is None else self.run_max_n - self.truth_max_n


@dataclass(frozen=True)
class Score:
    run: str
    ground_truth: str
    frames: int
    tracking: dict[str, float]  # idf1, hota, deta, assa, loca, mota, motp, num_switches, precision, recall
    truth_fish: int
    run_tracks: int
    species: tuple[SpeciesScore, ...]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["species"] = [
            {**asdict(s), "unique_error": s.unique_error, "max_n_error": s.max_n_error} for s in self.species
        ]
        return data


# ---- ground truth ------------------------------------------------------------------------------


def read_truth(path: Path) -> list[TruthBox]:
    """Every box of a ground-truth file, in whichever of the three formats it is."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise SourceError(f"ground truth {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"ground truth {path} cannot be read ({exc})") from None
    rows = [(n, row) for n, row in enumerate(csv.reader(lines), start=1) if row and not row[0].startswith("#")]
    if not rows:
        raise SourceError(f"ground truth {path} holds no boxes")
    header = [cell.strip() for cell in rows[0][1]]
    if {"frame", "x1", "y1", "x2", "y2"} <= set(header):
        return [_sample_row(path, n, dict(zip(header, row, strict=False))) for n, row in rows[1:]]
    if len(rows[0][1]) >= 10 and not _is_number(rows[0][1][1]):  # VIAME: column 2 names the video
        return [_viame_row(path, n, row) for n, row in rows]
    return [box for n, row in rows if (box := _mot_row(path, n, row)) is not None]


def _sample_row(path: Path, line: int, row: dict[str, str]) -> TruthBox:
    try:
        box = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))
        ident = row.get("fish_id") or row.get("track_id") or row["id"]
        return TruthBox(int(row["frame"]), ident, row.get("species") or None, _checked(box))
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError(f"ground truth {path}, line {line}: {_why(exc)}") from None


def _viame_row(path: Path, line: int, row: list[str]) -> TruthBox:
    try:
        box = tuple(float(v) for v in row[3:7])
        return TruthBox(int(row[2]), row[0].strip(), row[9].strip() or None, _checked(box))
    except (IndexError, ValueError) as exc:
        raise SourceError(f"ground truth {path}, line {line}: {_why(exc)} (VIAME CSV)") from None


def _mot_row(path: Path, line: int, row: list[str]) -> TruthBox | None:
    try:
        frame, ident, left, top, width, height = (float(v) for v in row[:6])
        if len(row) > 6 and float(row[6]) == 0:  # MOTChallenge: a box to ignore
            return None
        x, y = left - 1, top - 1  # MOTChallenge counts pixels from 1
        return TruthBox(int(frame) - 1, str(int(ident)), None, _checked((x, y, x + width, y + height)))
    except ValueError as exc:
        raise SourceError(f"ground truth {path}, line {line}: {_why(exc)} (MOTChallenge gt.txt)") from None


def _checked(box: tuple[float, ...]) -> Box:
    if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"box {box} is not x1 < x2, y1 < y2")
    return box  # type: ignore[return-value]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _why(exc: Exception) -> str:
    return f"no {exc} column" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__


# ---- scoring -----------------------------------------------------------------------------------


def score(run_dir: Path, truth_path: Path, min_iou: float = 0.5) -> Score:
    """The run in ``run_dir`` against the ground truth in ``truth_path``."""
    from fishcam.sinks.exports import read_run

    run = read_run(run_dir)
    truth = read_truth(truth_path)
    frames = max(run.summary.frames, 1 + max((box.frame for box in truth), default=-1))
    hypotheses: dict[int, list[tuple[str, Box]]] = defaultdict(list)
    for row in _run_boxes(run_dir):
        box = (float(row["x1"]), float(row["y1"]), float(row["x2"]), float(row["y2"]))
        hypotheses[int(row["frame"])].append((row["track_id"], box))
    tracking = tracking_metrics(truth, hypotheses, frames, min_iou)
    return Score(
        run=str(run_dir),
        ground_truth=str(truth_path),
        frames=frames,
        tracking=tracking,
        truth_fish=len({box.object_id for box in truth}),
        run_tracks=len(run.tracks),
        species=species_scores(truth, _run_counts(run_dir)),
    )


def tracking_metrics(
    truth: list[TruthBox], hypotheses: dict[int, list[tuple[str, Box]]], frames: int, min_iou: float = 0.5
) -> dict[str, float]:
    """IDF1, MOTA, MOTP (1 - IoU), identity switches, precision and recall over every frame, from
    py-motmetrics; HOTA, DetA, AssA and LocA from TrackEval, on the same IoUs."""
    from fishcam.extras import require

    require("score", ("motmetrics", "trackeval"), "score")
    import motmetrics as mm
    import supervision as sv  # its IoU: motmetrics 1.4's own helper predates NumPy 2

    by_frame: dict[int, list[TruthBox]] = defaultdict(list)
    for box in truth:
        by_frame[box.frame].append(box)
    # Ids numbered from 0 in order of appearance: motmetrics 1.4 keeps ids as floats (a fish id
    # "A3" would stop it), and TrackEval's HOTA indexes arrays with them.
    gt_ids = _numbered([[b.object_id for b in by_frame.get(frame, [])] for frame in range(frames)])
    run_ids = _numbered([[t for t, _ in hypotheses.get(frame, [])] for frame in range(frames)])
    accumulator = mm.MOTAccumulator(auto_id=False)
    ious = []
    for frame in range(frames):
        gt, hyp = by_frame.get(frame, []), hypotheses.get(frame, [])
        iou = sv.box_iou_batch(
            np.array([b.xyxy for b in gt], np.float32).reshape(-1, 4),
            np.array([b for _, b in hyp], np.float32).reshape(-1, 4),
        ).astype(np.float64)
        ious.append(iou)
        distances = np.where(iou >= min_iou, 1.0 - iou, np.nan)
        accumulator.update(gt_ids[frame], run_ids[frame], distances, frameid=frame)
    names = ["idf1", "mota", "motp", "num_switches", "precision", "recall"]
    summary = mm.metrics.create().compute(accumulator, metrics=names, name="run")
    metrics = {"idf1": _plain(summary["idf1"].iloc[0]), **hota_metrics(gt_ids, run_ids, ious)}  # HOTA by IDF1
    return metrics | {name: _plain(summary[name].iloc[0]) for name in names[1:]}


def _numbered(per_frame: list[list[str]]) -> list[np.ndarray]:
    index: dict[str, int] = {}
    return [np.array([index.setdefault(i, len(index)) for i in ids], dtype=int) for ids in per_frame]


def hota_metrics(gt_ids: list[np.ndarray], run_ids: list[np.ndarray], ious: list[np.ndarray]) -> dict[str, float]:
    """HOTA, DetA, AssA and LocA from TrackEval's HOTA class, given each frame's truth ids, run
    ids (each numbered from 0 over the sequence) and their IoUs (truth × run), each averaged over
    the IoU thresholds 0.05 … 0.95 as TrackEval's summaries do. The class is called on data in
    memory, in the form TrackEval's own datasets hand it, so no files are written for it."""
    # trackeval 1.3.0 runs on NumPy 2 (none of the np.float / np.int aliases NumPy removed), so
    # its HOTA class is used as it is. Importing it imports trackeval's dataset readers too (scipy;
    # about half a second), which are not used: the data is built here, as its datasets do.
    from trackeval.metrics import HOTA

    data = {
        "num_timesteps": len(ious),
        "num_gt_ids": 1 + max((int(ids.max()) for ids in gt_ids if ids.size), default=-1),
        "num_tracker_ids": 1 + max((int(ids.max()) for ids in run_ids if ids.size), default=-1),
        "num_gt_dets": sum(ids.size for ids in gt_ids),
        "num_tracker_dets": sum(ids.size for ids in run_ids),
        "gt_ids": gt_ids,
        "tracker_ids": run_ids,
        "similarity_scores": ious,
    }
    result = HOTA().eval_sequence(data)
    return {name.lower(): _plain(np.mean(result[name])) for name in ("HOTA", "DetA", "AssA", "LocA")}


def _plain(value: Any) -> float:
    number = float(value)
    return round(number, 4) if math.isfinite(number) else float("nan")


def species_scores(truth: list[TruthBox], run_counts: dict[str, tuple[int, int]]) -> tuple[SpeciesScore, ...]:
    """Unique fish and MaxN per species, the ground truth's beside the run's. Without species in
    the ground truth, one row "all species" compares the totals."""
    if any(box.species is None for box in truth):
        # MaxN per species does not add up to a MaxN over all species: only the totals compare.
        fish = len({box.object_id for box in truth})
        run_unique = sum(unique for unique, _ in run_counts.values())
        run_max_n = max((m for _, m in run_counts.values()), default=0)
        return (SpeciesScore("all species", fish, run_unique, None, run_max_n),) if fish or run_unique else ()
    ids: dict[str, set[str]] = defaultdict(set)
    per_frame: dict[str, Counter[int]] = defaultdict(Counter)
    for box in truth:
        species = box.species or ""
        ids[species].add(box.object_id)
        per_frame[species][box.frame] += 1
    rows = []
    for species in sorted(set(ids) | set(run_counts)):
        run_unique, run_max_n = run_counts.get(species, (0, 0))
        truth_unique = len(ids.get(species, ()))
        truth_max_n = max(per_frame[species].values(), default=0)
        rows.append(SpeciesScore(species, truth_unique, run_unique, truth_max_n, run_max_n))
    return tuple(rows)


def _run_boxes(run_dir: Path) -> list[dict[str, str]]:
    """Every box of the run's detections.csv with a track, read by column name (so a column the
    scorer does not read, such as ``interpolated``, may be there or not): tracking is scored on
    all of them, counted tracks or not."""
    from fishcam.sinks.exports import _BOX_FIELDS, _read_rows

    return [row for row in _read_rows(run_dir / DETECTIONS_NAME, _BOX_FIELDS) if int(row["track_id"]) >= 0]


def _run_counts(run_dir: Path) -> dict[str, tuple[int, int]]:
    path = run_dir / COUNTS_NAME
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return {row["species"]: (int(row["unique_tracks"]), int(row["max_n"])) for row in csv.DictReader(handle)}
    except FileNotFoundError:
        raise SourceError(f"{run_dir} is not a finished fishcam run: {COUNTS_NAME} is missing") from None
    except (KeyError, ValueError) as exc:
        raise SourceError(f"{path} is damaged ({_why(exc)}): re-run fishcam on the video") from None
