"""Finished runs in the formats other tools read: MOTChallenge (+ seqinfo.ini), VIAME CSV
(DIVE imports it), COCO-style JSON with track ids, and Camtrap DP (sinks/camtrap.py). Reads only
the runs' own outputs: one run folder, or a batch folder (every video it finished)."""

from __future__ import annotations

import configparser
import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fishcam.errors import SourceError
from fishcam.sinks import EXPORT_FORMATS
from fishcam.sinks.files import write_atomic
from fishcam.sinks.run_writer import DETECTIONS_NAME, SUMMARY_NAME, TRACKS_NAME

VIAME_HEADER = (
    "# 1: Detection or Track-id,2: Video or Image Identifier,3: Unique Frame Identifier,"
    "4-7: Img-bbox(TL_x,TL_y,BR_x,BR_y),8: Detection or Length Confidence,"
    "9: Target Length (0 or -1 if invalid),10-11+: Repeated Species,Confidence Pairs or Attributes\n"
)


@dataclass
class RunRecord:
    """What a run folder says: its summary, its tracks by id, and its tracked boxes."""

    folder: Path
    summary: dict[str, Any]
    tracks: dict[int, dict[str, str]]
    boxes: list[dict[str, str]]
    metadata: dict[str, str] = field(default_factory=dict)  # a batch manifest's columns

    @property
    def name(self) -> str:
        return Path(str(self.summary.get("source", self.folder.name))).stem or self.folder.name


BATCH_REPORT = "batch_report.json"


def read_runs(folder: Path) -> list[RunRecord]:
    """A run folder → [its run]; a batch folder → every run it finished, with manifest metadata."""
    report = folder / BATCH_REPORT
    if not report.is_file():
        return [read_run(folder)]
    data = json.loads(report.read_text(encoding="utf-8"))
    finished = sorted(data.get("done", []) + data.get("skipped", []), key=lambda r: r["video"])
    if not finished:
        raise SourceError(f"batch {folder} has no finished video to export (see {report})")
    # Folders are taken relative to the batch: it may have been moved or copied since.
    return [read_run(folder / Path(r["folder"]).name, r.get("metadata", {})) for r in finished]


def read_run(folder: Path, metadata: dict[str, str] | None = None) -> RunRecord:
    if not folder.is_dir():
        raise SourceError(f"{folder} not found: give the --out folder of a fishcam run or batch")
    for name in (SUMMARY_NAME, TRACKS_NAME, DETECTIONS_NAME):
        if not (folder / name).is_file():
            hint = (
                " (a rotated live run: export one of its period folders)" if (folder / SUMMARY_NAME).is_file() else ""
            )
            raise SourceError(f"{folder} is not a finished fishcam run: {name} is missing{hint}")
    with (folder / TRACKS_NAME).open(encoding="utf-8") as handle:
        tracks = {int(row["track_id"]): row for row in csv.DictReader(handle)}
    with (folder / DETECTIONS_NAME).open(encoding="utf-8") as handle:
        boxes = [row for row in csv.DictReader(handle) if int(row["track_id"]) in tracks]
    summary = json.loads((folder / SUMMARY_NAME).read_text(encoding="utf-8"))
    return RunRecord(folder, summary, tracks, boxes, dict(metadata or {}))


def export_all(runs: list[RunRecord], fmt: str, out_dir: Path, **camtrap: Any) -> list[Path]:
    """One package for Camtrap DP (a deployment per video); the per-video formats into a folder
    per video when there are several."""
    if fmt == "camtrap-dp":
        from fishcam.sinks.camtrap import export_camtrap_dp

        return export_camtrap_dp(runs, out_dir / "camtrap-dp", **camtrap)
    if len(runs) == 1:
        return export(runs[0], fmt, out_dir)
    return [path for run in runs for path in export(run, fmt, out_dir / run.folder.name)]


def export(run: RunRecord, fmt: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "mot":
        return export_mot(run, out_dir)
    if fmt == "viame":
        return [export_viame(run, out_dir / f"{run.name}.viame.csv")]
    if fmt == "coco":
        return [export_coco(run, out_dir / f"{run.name}.coco.json")]
    raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")


def _xywh(row: dict[str, str]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(row[k]) for k in ("x1", "y1", "x2", "y2"))
    return x1, y1, x2 - x1, y2 - y1


def export_mot(run: RunRecord, out_dir: Path) -> list[Path]:
    """MOTChallenge: ``frame(1-based),id,x,y,w,h,conf,-1,-1,-1`` and a ``seqinfo.ini``."""
    lines = []
    for row in sorted(run.boxes, key=lambda r: (int(r["frame"]), int(r["track_id"]))):
        x, y, w, h = _xywh(row)
        # MOT counts frames, ids and pixels from 1; fishcam from 0.
        lines.append(f"{int(row['frame']) + 1},{int(row['track_id']) + 1},{x + 1:.1f},{y + 1:.1f},{w:.1f},{h:.1f},"
                     f"{float(row['confidence']):.3f},-1,-1,-1")  # fmt: skip
    results = out_dir / f"{run.name}.txt"
    write_atomic(results, "\n".join(lines) + ("\n" if lines else ""))
    info = configparser.ConfigParser()
    info.optionxform = str  # MOT's keys are case-sensitive
    info["Sequence"] = {
        "name": run.name,
        "imDir": "img1",
        "frameRate": str(run.summary.get("video_fps", 25)),
        "seqLength": str(run.summary.get("frames", 0)),
        "imWidth": str(run.summary.get("width", "")),
        "imHeight": str(run.summary.get("height", "")),
        "imExt": ".jpg",
    }
    buffer = io.StringIO()
    info.write(buffer, space_around_delimiters=False)
    seqinfo = out_dir / "seqinfo.ini"
    write_atomic(seqinfo, buffer.getvalue())
    return [results, seqinfo]


def export_viame(run: RunRecord, path: Path) -> Path:
    """VIAME CSV: one row per box with the track's species and score; the last row of each track
    carries the track-level result as VIAME expects."""
    buffer = io.StringIO()
    buffer.write(VIAME_HEADER)
    buffer.write(f"# metadata,fps: {run.summary.get('video_fps', '')},exported_by: fishcam\n")
    writer = csv.writer(buffer, lineterminator="\n")
    by_track: dict[int, list[dict[str, str]]] = defaultdict(list)
    for row in run.boxes:
        by_track[int(row["track_id"])].append(row)
    for track_id in sorted(by_track):
        track = run.tracks[track_id]
        for row in sorted(by_track[track_id], key=lambda r: int(r["frame"])):
            writer.writerow([
                track_id, run.name, int(row["frame"]), row["x1"], row["y1"], row["x2"], row["y2"],
                row["confidence"], -1, track["species"], track["score"],
            ])  # fmt: skip
    write_atomic(path, buffer.getvalue())
    return path


def export_coco(run: RunRecord, path: Path) -> Path:
    """COCO-style detections with ``track_id`` and the track's species as the category."""
    species = sorted({t["species"] for t in run.tracks.values()})
    category = {name: i + 1 for i, name in enumerate(species)}
    frames = sorted({int(r["frame"]) for r in run.boxes})
    fps = float(run.summary.get("video_fps", 25) or 25)
    images = [
        {"id": f + 1, "file_name": f"{run.name}/{f:06d}.jpg", "frame_index": f, "time_s": round(f / fps, 3),
         "width": run.summary.get("width"), "height": run.summary.get("height")}
        for f in frames
    ]  # fmt: skip
    annotations = []
    for n, row in enumerate(sorted(run.boxes, key=lambda r: (int(r["frame"]), int(r["track_id"])))):
        track = run.tracks[int(row["track_id"])]
        x, y, w, h = _xywh(row)
        annotations.append({
            "id": n + 1, "image_id": int(row["frame"]) + 1, "category_id": category[track["species"]],
            "bbox": [round(x, 1), round(y, 1), round(w, 1), round(h, 1)], "area": round(w * h, 1), "iscrowd": 0,
            "score": float(row["confidence"]), "track_id": int(row["track_id"]),
            "species_score": float(track["score"]), "origin": track["origin"],
        })  # fmt: skip
    data = {
        "info": {"description": f"fishcam run of {run.summary.get('source', run.name)}"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "fish"} for name, i in category.items()],
    }
    write_atomic(path, json.dumps(data, indent=1) + "\n")
    return path
