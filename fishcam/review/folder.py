"""The review of a run folder: its review file read and applied, and the reviewed outputs
written (tracks.csv, detections.csv, species_counts.csv in the run's own formats). Reads the
run's files and never writes them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fishcam.config import CountConfig
from fishcam.errors import ConfigError, OutputError
from fishcam.review.apply import REVIEW_COLUMNS, ReviewConflict, ReviewedRun, apply_review
from fishcam.review.log import REVIEW_NAME, read_review_lines
from fishcam.sinks.exports import RunRecord, read_run
from fishcam.sinks.files import (
    DETECTION_COLUMNS,
    TRACK_COLUMNS,
    csv_text,
    output_problem,
    write_atomic,
    write_counts,
)
from fishcam.sinks.run_writer import CONFIG_NAME, COUNTS_NAME, DETECTIONS_NAME, TRACKS_NAME

log = logging.getLogger(__name__)

REVIEWED_DIR = "reviewed"  # RUN/reviewed/: where fishcam export --reviewed writes by default


def reviewed_run(folder: Path) -> ReviewedRun:
    """The run in ``folder`` with its review file applied (read_run + read_review + apply_review)."""
    return review_of(read_run(folder))


def review_of(record: RunRecord) -> ReviewedRun:
    """``record`` with the review file of its own folder applied; a correction that does not fit
    is a SourceError naming the file and its line."""
    lines = read_review_lines(record.folder)
    try:
        return apply_review(record, [c for _, c in lines], count_rules(record.folder))
    except ReviewConflict as exc:
        number = lines[exc.index][0]
        raise ReviewConflict(f"{record.folder / REVIEW_NAME}, line {number}: {exc}", exc.index) from None


def count_rules(folder: Path) -> CountConfig | None:
    """The count rules the run was made with (its config.yaml), or None when it cannot say."""
    from fishcam.config import load_config

    path = folder / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        return load_config(path).count
    except (OSError, UnicodeDecodeError, ConfigError) as exc:
        log.warning("%s cannot be read (%s): merged and split tracks keep the pipeline's evidence", path,
                    str(exc).splitlines()[0])  # fmt: skip
        return None


def write_reviewed(run: ReviewedRun, out_dir: Path) -> list[Path]:
    """tracks.csv (with the review columns), detections.csv and species_counts.csv of the
    reviewed run into ``out_dir``, each file whole or not at all."""
    if out_dir.resolve() == run.original.folder.resolve():
        raise ConfigError(f"{out_dir} is the run folder itself: the reviewed outputs go beside, never over, the run's")
    from fishcam.sinks.files import prepare_output_dir

    prepare_output_dir(out_dir)
    record = run.record
    track_columns = (*TRACK_COLUMNS, *REVIEW_COLUMNS)
    tracks = [[row.get(c, "") for c in track_columns] for _, row in sorted(record.tracks.items())]
    boxes = [[row.get(c, "") for c in DETECTION_COLUMNS] for row in record.boxes]
    written = [out_dir / TRACKS_NAME, out_dir / DETECTIONS_NAME, out_dir / COUNTS_NAME]
    try:
        write_atomic(written[0], csv_text(track_columns, tracks))
        write_atomic(written[1], csv_text(DETECTION_COLUMNS, boxes))
        write_counts(written[2], run.counts)
    except OSError as exc:
        raise OutputError(output_problem(exc, out_dir)) from exc
    return written


def reviewed_outputs(records: list[RunRecord], out_dir: Path) -> list[RunRecord]:
    """Each run with its own review applied and its reviewed tables written (one run into
    ``out_dir``, several into a folder each, as the exports lay them out); the reviewed records,
    for the exports."""
    reviewed = []
    for record in records:
        run = review_of(record)
        target = out_dir if len(records) == 1 else out_dir / record.folder.name
        for path in write_reviewed(run, target):
            log.info("reviewed: %s", path)
        done, total = run.progress
        log.info("%s: %d of %d tracks reviewed", record.folder, done, total)
        reviewed.append(run.record)
    return reviewed


def export_reviewed(
    run_dir: Path, formats: tuple[str, ...] | list[str] = (), out: Path | None = None, **camtrap: Any
) -> list[Path]:
    """``fishcam export RUN_DIR --reviewed``: the reviewed tables and the ``formats`` (mot, viame,
    coco; camtrap-dp with its ``defaults``, ``info`` and ``taxa``) of a run or a batch, each run
    with its own review, into ``out`` (default RUN_DIR/reviewed). Every file written, in order."""
    from fishcam.sinks.exports import export_all, read_runs

    out = out or run_dir / REVIEWED_DIR
    records = reviewed_outputs(read_runs(run_dir), out)
    written = [
        out / name if len(records) == 1 else out / r.folder.name / name
        for r in records
        for name in (TRACKS_NAME, DETECTIONS_NAME, COUNTS_NAME)
    ]
    for fmt in formats:
        try:
            written += export_all(records, fmt, out, **(camtrap if fmt == "camtrap-dp" else {}))
        except OSError as exc:
            raise OutputError(output_problem(exc, out)) from exc
    return written
