"""The review file of a run: ``review.jsonl`` beside its outputs, one correction a line.

Append-only: a correction is one line written with ``O_APPEND``, flushed and synced, so a crash
can cut short only the line being written, never one before it. A line counts once its newline
is on disk; a last line without one (a crash mid-write) is not a correction: reading ignores it
with a warning, and the next append cuts it off before writing. Any other line that is not a
correction is an error naming the file and the line. The run's own files are never written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fishcam.errors import ConfigError, OutputError, SourceError
from fishcam.sinks.files import output_problem

try:  # one writer at a time on POSIX (two browser tabs, the CLI beside the web page)
    import fcntl
except ImportError:  # pragma: no cover - Windows: appends are still whole lines
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

REVIEW_NAME = "review.jsonl"
VERSION = 1
ACTIONS = ("confirm", "species", "not_fish", "merge", "split")
VERDICTS = ("confirm", "species", "not_fish")  # what a person decided about one track as it stands


@dataclass(frozen=True)
class Correction:
    """One reviewer's correction of one track.

    ``confirm``: the track is a fish of the species the pipeline gave. ``species``: it is a fish of
    ``species``. ``not_fish``: it is not a fish. ``merge``: ``track`` is the same fish as ``into``;
    its boxes join ``into`` and ``track`` is gone. ``split``: two fish were joined; the boxes of
    ``track`` at frames >= ``frame`` become a new track (the largest id the run has had, plus one).
    ``at`` is ISO 8601 UTC; :func:`append_correction` stamps the time when it is empty.
    """

    action: str
    track: int
    reviewer: str
    at: str = ""
    species: str | None = None
    into: int | None = None
    frame: int | None = None
    v: int = VERSION

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"v": self.v, "at": self.at, "reviewer": self.reviewer, "action": self.action,
                                "track": self.track}  # fmt: skip
        for name in ("species", "into", "frame"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data

    @classmethod
    def from_json(cls, data: Any) -> Correction:
        """A correction read back; ValueError naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        unknown = sorted(set(data) - {"v", "at", "reviewer", "action", "track", "species", "into", "frame"})
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}")
        if data.get("v") != VERSION:
            raise ValueError(f"v is {data.get('v')!r}: this fishcam reads review version {VERSION}")
        for name in ("at", "reviewer", "action"):
            if not isinstance(data.get(name), str):
                raise ValueError(f"{name} is {data.get(name)!r}, not text")
        for name in ("track", "into", "frame"):
            value = data.get(name)
            if (value is not None or name == "track") and (type(value) is not int):
                raise ValueError(f"{name} is {value!r}, not a whole number")
        if data.get("species") is not None and not isinstance(data["species"], str):
            raise ValueError(f"species is {data['species']!r}, not text")
        correction = cls(
            action=data["action"], track=data["track"], reviewer=data["reviewer"], at=data["at"],
            species=data.get("species"), into=data.get("into"), frame=data.get("frame"),
        )  # fmt: skip
        problem = form_problem(correction)
        if problem:
            raise ValueError(problem)
        return correction


def form_problem(correction: Correction) -> str | None:
    """What is wrong with a correction on its own (not yet against a run), or None."""
    c = correction
    if c.action not in ACTIONS:
        return f"action is {c.action!r}, not one of {', '.join(ACTIONS)}"
    if not c.reviewer.strip():
        return "the reviewer's name is empty: say who reviewed"
    if c.at:
        try:
            moment = datetime.fromisoformat(c.at.replace("Z", "+00:00"))
        except ValueError:
            return f"at is {c.at!r}, not an ISO 8601 time like 2026-12-02T21:30:00Z"
        if moment.tzinfo is None:
            return f"at is {c.at!r}, without a time zone: write it in UTC, e.g. {c.at}Z"
    needs = {"species": "species", "merge": "into", "split": "frame"}.get(c.action)
    for name in ("species", "into", "frame"):
        value = getattr(c, name)
        if name == needs and value is None:
            return f"a {c.action} correction needs {name}"
        if name != needs and value is not None:
            return f"a {c.action} correction takes no {name}"
    if c.action == "species" and not (c.species or "").strip():
        return "the species is empty: give a name from the species list or the name you see"
    if c.action == "merge" and c.into == c.track:
        return f"track {c.track} cannot be merged into itself"
    return None


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_review(folder: Path) -> list[Correction]:
    """The run's corrections in the order they were made ([] when it has no review file)."""
    return [c for _, c in read_review_lines(folder)]


def read_review_lines(folder: Path) -> list[tuple[int, Correction]]:
    """The corrections with the line each is on."""
    path = folder / REVIEW_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SourceError(f"{path} cannot be read ({exc.strerror or exc})") from exc
    return _parse(path, data)


def _parse(path: Path, data: bytes) -> list[tuple[int, Correction]]:
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: b"" unless the last write was cut short
    if tail.strip():
        log.warning("%s: line %d was cut short (a crash while writing it): ignored", path, len(lines) + 1)
    found = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            correction = Correction.from_json(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SourceError(f"{path}, line {number}: not a JSON line ({exc}); fix or remove that line") from None
        except ValueError as exc:
            raise SourceError(
                f"{path}, line {number}: not a review correction ({exc}); fix or remove that line"
            ) from None
        found.append((number, correction))
    return found


def append_correction(folder: Path, correction: Correction) -> Correction:
    """Check ``correction`` against the run as reviewed so far and append it to the review file;
    the correction as written (its time stamped when ``at`` was empty). ConfigError, and nothing
    written, when it does not fit: an unknown or merged-away track, a merge into itself or into a
    track that is gone, a split frame outside the track, an empty reviewer or species."""
    from fishcam.review.apply import ReviewConflict, replay  # apply imports this module
    from fishcam.sinks.exports import read_run

    if not correction.at:
        correction = replace(correction, at=now_utc())
    problem = form_problem(correction)
    if problem:
        raise ConfigError(f"correction of track {correction.track} refused: {problem}")
    path = folder / REVIEW_NAME
    record = read_run(folder)  # before the file is created: a folder that is not a run gets none
    line = (json.dumps(correction.to_json(), ensure_ascii=False) + "\n").encode("utf-8")
    with _locked_append(path) as fd:
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0) if size else b""
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            log.warning("%s: cutting off a line left incomplete by a crash before appending", path)
            os.ftruncate(fd, keep)
        lines = _parse(path, data[: data.rfind(b"\n") + 1])
        try:
            state = replay(record, [c for _, c in lines])
        except ReviewConflict as exc:  # an earlier line edited by hand: named, nothing appended
            raise ReviewConflict(f"{path}, line {lines[exc.index][0]}: {exc}", exc.index) from None
        problem = state.problem(correction)
        if problem:
            raise ConfigError(f"correction of track {correction.track} refused: {problem}")
        written = 0
        while written < len(line):  # a write may take part of it (a signal): the rest follows
            written += os.write(fd, line[written:])
        os.fsync(fd)
    return correction


@contextlib.contextmanager
def _locked_append(path: Path) -> Iterator[int]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(output_problem(exc, path)) from exc
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield fd
        except OSError as exc:
            raise OutputError(output_problem(exc, path)) from exc
    finally:
        os.close(fd)  # releases the lock
