"""CSV and JSON outputs. Whole-file outputs are written atomically (temp file + rename), so a
reader never sees half a file; the detections log is a stream flushed as it goes."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fishcam.errors import OutputError
from fishcam.types import CallRecord, Detections, Frame, SpeciesCount, TrackSummary

TRACK_COLUMNS = (
    "track_id", "species", "score", "origin", "votes", "observations", "detections",
    "first_frame", "last_frame", "first_time_s", "last_time_s", "duration_s",
)  # fmt: skip
COUNT_COLUMNS = ("species", "unique_tracks", "max_n", "max_n_frame", "max_n_time_s", "first_seen_s", "last_seen_s")
DETECTION_COLUMNS = ("frame", "time_s", "track_id", "x1", "y1", "x2", "y2", "confidence", "class_id", "class_name")
CALL_COLUMNS = ("frame", "time_s", "track_id", "species", "score", "origin", "candidate")


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: a full disk or a kill leaves the previous version."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def output_problem(exc: OSError, where: Path) -> str:
    """One line for an output that cannot be written: the path, the cause, what to do."""
    path = exc.filename or where
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full: cannot write {path}; free some space or give another --out"
    if exc.errno == errno.EROFS:
        return f"cannot write {path}: the file system is read-only; give an --out on writable storage"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write {path}: permission denied; give an --out you can write to"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"cannot write {path}: a part of the path is a file, not a folder; give a folder as --out"
    return f"cannot write {path}: {exc.strerror or exc}"


def prepare_output_dir(folder: Path, keep: bool = True) -> None:
    """Create an output folder and prove it takes a file, before any work is done; OutputError if
    not. ``keep=False``: only check, removing the folders the check created (nothing is left
    behind by a run that stops before its first output)."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder} is a file, not a folder: give a folder path")
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".fishcam-write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(output_problem(exc, folder)) from exc
    finally:
        if not keep:
            for path in created:  # deepest first
                with contextlib.suppress(OSError):
                    path.rmdir()


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def write_tracks(path: Path, tracks: Iterable[TrackSummary]) -> None:
    rows = [
        (
            t.track_id,
            t.species,
            f"{t.score:.4f}",
            t.origin.value,
            t.votes,
            t.observations,
            t.detections,
            t.first_frame,
            t.last_frame,
            f"{t.first_time_s:.3f}",
            f"{t.last_time_s:.3f}",
            f"{t.last_time_s - t.first_time_s:.3f}",
        )
        for t in sorted(tracks, key=lambda t: t.track_id)
    ]
    write_atomic(path, csv_text(TRACK_COLUMNS, rows))


def write_counts(path: Path, counts: Iterable[SpeciesCount]) -> None:
    rows = [
        (
            c.species,
            c.unique,
            c.max_n,
            c.max_n_frame,
            f"{c.max_n_time_s:.3f}",
            f"{c.first_seen_s:.3f}",
            f"{c.last_seen_s:.3f}",
        )
        for c in counts
    ]
    write_atomic(path, csv_text(COUNT_COLUMNS, rows))


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


class CsvLog:
    """A CSV written row by row and flushed as whole lines, for logs that grow through a run."""

    columns: tuple[str, ...] = ()

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._writer.writerow(self.columns)
        self._complete = 0  # bytes on disk that end with a whole row
        self.flush()

    def flush(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            self._complete = self._handle.tell()

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def abandon(self) -> None:
        """After a failed write (a full disk): close without raising and cut the file back to
        its last whole row, so that what is there stays a valid CSV."""
        with contextlib.suppress(OSError):
            self._handle.close()
        with contextlib.suppress(OSError):
            os.truncate(self.path, self._complete)


class DetectionsLog(CsvLog):
    """One row per tracked box per detected frame."""

    columns = DETECTION_COLUMNS

    def __init__(self, path: Path, class_names: dict[int, str]) -> None:
        super().__init__(path)
        self.class_names = class_names

    def write(self, frame: Frame, detections: Detections) -> None:
        for i in np.flatnonzero(detections.track_id >= 0):
            x1, y1, x2, y2 = (f"{v:.1f}" for v in detections.xyxy[i])
            class_id = int(detections.class_id[i])
            self._writer.writerow(
                (
                    frame.index,
                    f"{frame.time_s:.3f}",
                    int(detections.track_id[i]),
                    x1,
                    y1,
                    x2,
                    y2,
                    f"{detections.confidence[i]:.3f}",
                    class_id,
                    self.class_names.get(class_id, str(class_id)),
                )
            )


class CallsLog(CsvLog):
    """One row per classified crop: which model said what about which track, on which frame."""

    columns = CALL_COLUMNS

    def write(self, records: Iterable[CallRecord]) -> None:
        for r in records:
            c = r.call
            self._writer.writerow(
                (r.frame, f"{r.time_s:.3f}", r.track_id, c.label, f"{c.score:.4f}", c.origin.value, c.candidate)
            )
