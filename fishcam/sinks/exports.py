"""Finished runs in the formats other tools read: MOTChallenge (+ seqinfo.ini), VIAME CSV
(DIVE imports it), COCO-style JSON with track ids, and Camtrap DP (sinks/camtrap.py). Reads only
the runs' own outputs: one run folder, or a batch folder (every video it finished)."""

from __future__ import annotations

import configparser
import contextlib
import csv
import io
import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fishcam.errors import OutputError, SourceError
from fishcam.sinks import EXPORT_FORMATS
from fishcam.sinks.files import output_problem, prepare_output_dir
from fishcam.sinks.run_writer import DETECTIONS_NAME, SUMMARY_NAME, TRACKS_NAME, read_summary
from fishcam.types import RunStatus, RunSummary

log = logging.getLogger(__name__)

VIAME_HEADER = (
    "# 1: Detection or Track-id,2: Video or Image Identifier,3: Unique Frame Identifier,"
    "4-7: Img-bbox(TL_x,TL_y,BR_x,BR_y),8: Detection or Length Confidence,"
    "9: Target Length (0 or -1 if invalid),10-11+: Repeated Species,Confidence Pairs or Attributes\n"
)


@dataclass
class RunRecord:
    """What a run folder says: its summary, its tracks by id, and its tracked boxes."""

    folder: Path
    summary: RunSummary
    tracks: dict[int, dict[str, str]]
    boxes: list[dict[str, str]]
    metadata: dict[str, str] = field(default_factory=dict)  # a batch manifest's columns

    @property
    def name(self) -> str:
        """The video's name, safe as a file name (an export never writes outside its folder)."""
        stem = Path(self.summary.info.source or self.folder.name).stem
        return safe_name(stem) or safe_name(self.folder.name) or "run"


def safe_name(text: str) -> str:
    """A name that is one plain file name: no separators, not hidden, short enough to take a
    suffix and a temporary name's within the file system's 255 bytes."""
    safe = re.sub(r"[^\w.+-]", "_", text).lstrip(".")
    return safe.encode()[:200].decode(errors="ignore")


BATCH_REPORT = "batch_report.json"
DAMAGED = "the run's files are damaged: re-run fishcam on the video"


Parse = Callable[[str], Any]  # a column's parser: raises ValueError on a bad value


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


# Columns the exports read (Camtrap DP the most), and how each must parse.
_TRACK_FIELDS: dict[str, Parse] = {
    "track_id": int, "species": str, "score": _number, "origin": str, "votes": int, "detections": int,
    "first_frame": int, "last_frame": int, "first_time_s": _number, "last_time_s": _number,
}  # fmt: skip
_BOX_FIELDS: dict[str, Parse] = {
    "frame": int, "track_id": int, "x1": _number, "y1": _number, "x2": _number, "y2": _number, "confidence": _number,
}  # fmt: skip
_KIND_NAMES: dict[Parse, str] = {int: "whole number", _number: "number", str: "text"}
# Summary values the exports read, when present: numbers, texts, and the models' descriptions.


def read_runs(folder: Path) -> list[RunRecord]:
    """A run folder → [its run]; a batch folder → every run it finished, with manifest metadata."""
    report = folder / BATCH_REPORT
    if not report.is_file():
        return [read_run(folder)]
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
        finished = sorted(data.get("done", []) + data.get("skipped", []), key=lambda r: str(r["video"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SourceError(f"{report} is damaged ({exc}): run the batch again to rewrite it") from exc
    if not finished:
        raise SourceError(f"batch {folder} has no finished video to export (see {report})")
    # Folders are taken relative to the batch (it may have been moved or copied since) and must
    # be inside it: a report is data, and data does not choose what else on the disk is read.
    return [read_run(_inside(folder, record.get("folder")), _metadata(report, record)) for record in finished]


def _metadata(report: Path, record: dict[str, Any]) -> dict[str, str]:
    """A video's manifest columns as text (a report edited by hand may hold numbers)."""
    metadata = record.get("metadata") or {}
    plain = (str, int, float)
    if not isinstance(metadata, dict) or not all(
        isinstance(v, plain) and not isinstance(v, bool) for v in metadata.values()
    ):
        raise SourceError(
            f"{report}: the metadata of {record.get('video')} is {metadata!r}, not column names with text or "
            "numbers: run the batch again to rewrite it"
        )
    return {str(k): str(v) for k, v in metadata.items()}


def _inside(batch: Path, recorded: object) -> Path:
    name = Path(str(recorded or "")).name
    folder = batch / name
    if name in {"", ".", ".."} or folder.resolve().parent != batch.resolve():
        raise SourceError(f"{batch / BATCH_REPORT} names a run folder outside the batch ({recorded!r}): refused")
    return folder


def read_run(folder: Path, metadata: dict[str, str] | None = None) -> RunRecord:
    if not folder.is_dir():
        raise SourceError(f"{folder} not found: give the --out folder of a fishcam run or batch")
    for name in (SUMMARY_NAME, TRACKS_NAME, DETECTIONS_NAME):
        if not (folder / name).is_file():
            hint = (
                " (a rotated live run: export one of its period folders)" if (folder / SUMMARY_NAME).is_file() else ""
            )
            raise SourceError(f"{folder} is not a finished fishcam run: {name} is missing{hint}")
    tracks = {int(row["track_id"]): row for row in _read_rows(folder / TRACKS_NAME, _TRACK_FIELDS)}
    boxes = []
    for row in _read_rows(folder / DETECTIONS_NAME, _BOX_FIELDS):
        if int(row["track_id"]) in tracks:
            boxes.append(row)
    summary = _read_summary(folder / SUMMARY_NAME)
    if summary.status is not RunStatus.FINISHED:
        log.warning(
            "%s: the run did not finish (status %s): the export covers what it wrote", folder, summary.status.value
        )
    return RunRecord(folder, summary, tracks, boxes, dict(metadata or {}))


def _read_rows(path: Path, fields: dict[str, Parse]) -> list[dict[str, str]]:
    """Every row of a run's CSV, each field an export needs checked: a damaged file is one line
    naming the file, the row and the field, never a traceback."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [name for name in fields if name not in (reader.fieldnames or [])]
            if missing:
                raise SourceError(f"{path} lacks the column(s) {', '.join(missing)}; {DAMAGED}")
            rows = []
            for row in reader:
                problem = _row_problem(row, fields)
                if problem:
                    raise SourceError(f"{path}, line {reader.line_num}: {problem}; {DAMAGED}")
                rows.append(row)
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path} cannot be read ({exc}); {DAMAGED}") from exc


def _row_problem(row: dict[str | None, Any], fields: dict[str, Any]) -> str | None:
    """What is wrong with one row (a cut-short or run-together line, a value of the wrong kind)."""
    if None in row:  # DictReader keeps values beyond the header under None
        return "more values than columns"
    for name, kind in fields.items():
        value = row.get(name)
        if value is None:
            return f"fewer values than columns (no {name})"
        try:
            kind(value)
        except ValueError:
            return f"{name} is {value!r}, not a {_KIND_NAMES[kind]}"
    return None


def _read_summary(path: Path) -> RunSummary:
    """summary.json, with every value an export reads of the kind it must be."""
    try:
        return read_summary(path)
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path} is not valid JSON ({exc}); {DAMAGED}") from exc
    except ValueError as exc:  # a field that is not of its kind, named
        raise SourceError(f"{path}: {exc}; {DAMAGED}") from exc


def write_together(files: dict[Path, str]) -> None:
    """An export's files, all or none: each goes to a temporary name first, and only once every
    one is on disk are they renamed into place, so a disk that fills up midway leaves the
    previous export as it was (never a half-written file, nor new files beside old ones)."""
    staged: dict[Path, Path] = {}
    try:
        for path, text in files.items():
            staged[path] = path.with_name(f".{path.name}.tmp")
            with _naming(path), staged[path].open("w", encoding="utf-8", newline="") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        for path, tmp in staged.items():
            with _naming(path):
                os.replace(tmp, path)
    finally:
        for tmp in staged.values():
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _naming(path: Path):
    """A failed write as one OutputError line naming the export file (not its temporary name)."""
    try:
        yield
    except OSError as exc:
        raise OutputError(output_problem(OSError(exc.errno, exc.strerror or str(exc)), path)) from exc


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
    prepare_output_dir(out_dir)
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
    info = run.summary.info
    seq = configparser.ConfigParser()
    seq.optionxform = str  # type: ignore[assignment,method-assign]  # MOT's keys are case-sensitive
    seq["Sequence"] = {
        "name": run.name,
        "imDir": "img1",
        "frameRate": str(info.video_fps or 25),
        "seqLength": str(run.summary.frames),
        "imWidth": str(info.width or ""),
        "imHeight": str(info.height or ""),
        "imExt": ".jpg",
    }
    buffer = io.StringIO()
    seq.write(buffer, space_around_delimiters=False)
    seqinfo = out_dir / "seqinfo.ini"
    write_together({results: "\n".join(lines) + ("\n" if lines else ""), seqinfo: buffer.getvalue()})
    return [results, seqinfo]


def export_viame(run: RunRecord, path: Path) -> Path:
    """VIAME CSV: one row per box with the track's species and score; the last row of each track
    carries the track-level result as VIAME expects."""
    buffer = io.StringIO()
    buffer.write(VIAME_HEADER)
    buffer.write(f"# metadata,fps: {run.summary.info.video_fps or ''},exported_by: fishcam\n")
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
    write_together({path: buffer.getvalue()})
    return path


def export_coco(run: RunRecord, path: Path) -> Path:
    """COCO-style detections with ``track_id`` and the track's species as the category."""
    species = sorted({t["species"] for t in run.tracks.values()})
    category = {name: i + 1 for i, name in enumerate(species)}
    frames = sorted({int(r["frame"]) for r in run.boxes})
    fps = run.summary.info.video_fps or 25.0
    images = [
        {"id": f + 1, "file_name": f"{run.name}/{f:06d}.jpg", "frame_index": f, "time_s": round(f / fps, 3),
         "width": run.summary.info.width, "height": run.summary.info.height}
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
            "interpolated": row.get("interpolated") == "1", "counted": track.get("counted", "1") != "0",
        })  # fmt: skip
    data = {
        "info": {"description": f"fishcam run of {run.summary.info.source or run.name}"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "fish"} for name, i in category.items()],
    }
    write_together({path: json.dumps(data, indent=1) + "\n"})
    return path
