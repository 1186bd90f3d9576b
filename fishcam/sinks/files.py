"""CSV and JSON outputs. Whole-file outputs are written atomically (temp file + rename), so a
reader never sees half a file; the detections log is a stream flushed as it goes."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fishcam.errors import OutputError
from fishcam.types import CallRecord, Detections, Frame, SpeciesCount, TrackSummary

TRACK_COLUMNS = (
    "track_id", "species", "score", "origin", "votes", "observations", "detections",
    "first_frame", "last_frame", "first_time_s", "last_time_s", "duration_s",
    "mean_confidence", "counted", "reason", "online_ids", "rank",
)  # fmt: skip
# ``rank`` (species, genus, family, order; empty for the expert's unranked classes) comes last in
# each file, so readers by column name, and of older files, read on.
COUNT_COLUMNS = (
    "species", "unique_tracks", "max_n", "max_n_frame", "max_n_time_s", "first_seen_s", "last_seen_s", "rank",
)  # fmt: skip
DETECTION_COLUMNS = (
    "frame", "time_s", "track_id", "x1", "y1", "x2", "y2", "confidence", "class_id", "class_name", "interpolated",
)  # fmt: skip
CALL_COLUMNS = ("frame", "time_s", "track_id", "species", "score", "origin", "candidate", "rank")


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[Any]:
    """A text file written whole or not at all: through a temporary file, synced and renamed
    over ``path`` when the block ends; an error or a kill leaves the previous version."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: a full disk or a kill leaves the previous version."""
    with atomic_open(path) as handle:
        handle.write(text)


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
            f"{t.mean_confidence:.3f}",
            int(t.counted),
            t.reason,
            " ".join(str(i) for i in t.online_ids),
            t.rank,
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
            c.rank,
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
                    0,
                )
            )


class CallsLog(CsvLog):
    """One row per classified crop: which model said what about which track, on which frame."""

    columns = CALL_COLUMNS

    def write(self, records: Iterable[CallRecord]) -> None:
        for r in records:
            c = r.call
            self._writer.writerow(
                (r.frame, f"{r.time_s:.3f}", r.track_id, c.label, f"{c.score:.4f}", c.origin.value, c.candidate, c.rank)
            )


def rewrite_detections(path: Path, tracks: Sequence[TrackSummary], owner: dict[tuple[int, int], int]) -> None:
    """Rewrite the detections log after the offline pass: each box under its final track
    (boxes trimmed off every track dropped), and the interpolated boxes added, marked, in frame
    order. Atomic: a kill leaves the log as it was."""
    filled: dict[int, list[tuple[int, float, np.ndarray, float]]] = {}
    for t in tracks:
        for i in np.flatnonzero(t.interpolated):
            filled.setdefault(t.frames[i], []).append(
                (t.track_id, t.frame_times_s[i], t.boxes[i], float(t.confidences[i]))
            )
    class_of: dict[int, tuple[str, str]] = {}
    pending = sorted(filled)
    at = 0
    with path.open(encoding="utf-8", newline="") as source, atomic_open(path) as out:
        rows = csv.reader(source)
        next(rows, None)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(DETECTION_COLUMNS)

        def fill_until(frame: int | None) -> None:
            nonlocal at
            while at < len(pending) and (frame is None or pending[at] < frame):
                for track_id, time_s, box, confidence in filled[pending[at]]:
                    class_id, class_name = class_of.get(track_id, ("0", ""))
                    x1, y1, x2, y2 = (f"{v:.1f}" for v in box)
                    writer.writerow(
                        (pending[at], f"{time_s:.3f}", track_id, x1, y1, x2, y2, f"{confidence:.3f}",
                         class_id, class_name, 1)
                    )  # fmt: skip
                at += 1

        for row in rows:
            if len(row) < 10:
                continue  # a torn last line after a crash
            frame = int(row[0])
            fill_until(frame)
            track_id = owner.get((int(row[2]), frame))
            if track_id is None:
                continue
            class_of.setdefault(track_id, (row[8], row[9]))
            writer.writerow((*row[:2], track_id, *row[3:10], 0))
        fill_until(None)


def rewrite_calls(path: Path, owner: dict[tuple[int, int], int]) -> None:
    """Rewrite the calls log after the offline pass: each call under its final track (-1 for a
    call on a box the pass trimmed off). Atomic."""
    with path.open(encoding="utf-8", newline="") as source:
        rows = list(csv.reader(source))[1:]
    fixed = [
        (*row[:2], owner.get((int(row[2]), int(row[0])), -1), *row[3:]) for row in rows if len(row) == len(CALL_COLUMNS)
    ]
    write_atomic(path, csv_text(CALL_COLUMNS, fixed))
