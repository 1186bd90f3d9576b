"""A run's tracks as reviewed: its corrections replayed in order over what the pipeline wrote.
Pure: a RunRecord and the corrections in, a ReviewedRun out; the same input, the same output.

The evidence rules of a review (docs/review.md):

- a track a person confirmed, or gave a species, is counted: a person has seen the fish (its
  origin becomes ``review``, and who reviewed it is recorded);
- a track marked ``not_fish`` is not counted ("not a fish (review: NAME)");
- every other track keeps the pipeline's ``counted`` and ``reason``; one whose boxes a merge or a
  split changed is judged again by the run's count rules (fishcam.evidence) when they are given.

The last verdict (confirm, species, not_fish) on a track is the one in force: a reviewer changes
their mind by correcting again. Merges and splits change which boxes make which track, in order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fishcam.config import CountConfig
from fishcam.counts import species_counts
from fishcam.errors import SourceError
from fishcam.evidence import judge
from fishcam.review.log import Correction, form_problem
from fishcam.sinks.exports import RunRecord
from fishcam.types import UNCLASSIFIED_LABEL, UNKNOWN_LABEL, Origin, SpeciesCount, SpeciesTally, TrackSummary

REVIEW_ORIGIN = "review"
REVIEW_COLUMNS = ("reviewed_by", "reviewed_at", "review_action")  # added after tracks.csv's own columns
UNSURE = frozenset({UNKNOWN_LABEL, UNCLASSIFIED_LABEL})  # no species yet: first in the queue


class ReviewConflict(SourceError):
    """A recorded correction does not fit the run (a review file edited by hand, or copied from
    another run); ``index`` is its place among the corrections, from 0."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class TrackReview:
    """Where one reviewed track stands: the verdict in force (who, when, what), and every
    correction that shaped it, in order: its own, a merge into it (with the corrections the
    merged track had had before), the split that made it or cut it."""

    track_id: int
    action: str | None  # confirm, species or not_fish; None: no verdict yet
    reviewer: str
    at: str
    species: str  # as reviewed
    pipeline_species: str  # what the pipeline said (of the track it came from)
    pipeline_score: float
    counted: bool
    reason: str
    history: tuple[Correction, ...] = ()

    @property
    def reviewed(self) -> bool:
        return self.action is not None


@dataclass(frozen=True)
class ReviewedRun:
    """A run with its review applied: ``record`` holds the reviewed tracks (tracks.csv rows with
    the review columns) and boxes, and feeds every export unchanged; ``original`` is the run as
    the pipeline wrote it."""

    record: RunRecord
    original: RunRecord
    counts: tuple[SpeciesCount, ...]
    reviewed: frozenset[int]  # the tracks with a verdict
    total: int  # tracks after the review's merges and splits
    states: dict[int, TrackReview]
    corrections: tuple[Correction, ...]

    @property
    def progress(self) -> tuple[int, int]:
        """n of m tracks reviewed."""
        return len(self.reviewed), self.total

    @property
    def queue(self) -> list[int]:
        return review_queue(self)


def review_queue(run: ReviewedRun) -> list[int]:
    """The tracks still to review, in the order to review them: no species yet (unknown,
    unclassified) first, then the least sure model score first, then by track id."""
    waiting = [tid for tid in run.states if tid not in run.reviewed]
    rows = run.record.tracks
    return sorted(waiting, key=lambda tid: (rows[tid]["species"] not in UNSURE, float(rows[tid]["score"]), tid))


def progress(run: ReviewedRun) -> tuple[int, int]:
    """n of m tracks reviewed."""
    return run.progress


def reviewed_run(folder: Path) -> ReviewedRun:
    """The run in ``folder`` with its review file applied: read_run + read_review + apply_review
    (the one function here that reads files; it is fishcam.review.folder.reviewed_run)."""
    from fishcam.review.folder import reviewed_run as read

    return read(folder)


def apply_review(record: RunRecord, corrections: Iterable[Correction], rules: CountConfig | None = None) -> ReviewedRun:
    """``record``'s tracks with ``corrections`` replayed in order; ReviewConflict on one that does
    not fit the run as reviewed up to it. ``rules``: the run's count rules, to judge again a track
    whose boxes a merge or split changed (without them it keeps the pipeline's verdict: a merged
    track is counted when either part was)."""
    return replay(record, corrections).result(rules)


def replay(record: RunRecord, corrections: Iterable[Correction]) -> Replay:
    state = Replay(record)
    for index, correction in enumerate(corrections):
        problem = state.problem(correction)
        if problem:
            raise ReviewConflict(
                f"review correction {index + 1} ({correction.action} of track {correction.track}) does not fit "
                f"the run: {problem}",
                index,
            )
        state.apply(correction)
    return state


class Replay:
    """The run as reviewed so far, one correction at a time."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.rows = {tid: dict(row) for tid, row in record.tracks.items()}
        self.boxes: dict[int, list[dict[str, str]]] = defaultdict(list)
        for box in record.boxes:
            self.boxes[int(box["track_id"])].append(dict(box))
        for boxes in self.boxes.values():
            boxes.sort(key=lambda b: int(b["frame"]))  # stable: the log's order within a frame
        self.origin_of = {tid: tid for tid in record.tracks}  # the pipeline track each one came from
        self.verdicts: dict[int, Correction] = {}
        self.history: dict[int, list[Correction]] = defaultdict(list)
        self.changed: set[int] = set()  # boxes changed by a merge or split: figures recomputed
        self.gone: dict[int, int] = {}  # merged-away track -> the track it is now part of
        self.next_id = max(record.tracks, default=-1) + 1  # above every id the run has had
        self.corrections: list[Correction] = []

    def problem(self, c: Correction) -> str | None:
        """Why ``c`` cannot be applied now, or None."""
        problem = form_problem(c)
        if problem:
            return problem
        problem = self._missing(c.track)
        if problem:
            return problem
        if c.action == "merge":
            assert c.into is not None
            gone = self._missing(c.into)
            if gone:
                return f"cannot merge into it: {gone}"
        if c.action == "split":
            frames = [int(b["frame"]) for b in self.boxes[c.track]]
            if not frames or not frames[0] < (c.frame or 0) <= frames[-1]:
                span = f"frames {frames[0]}-{frames[-1]}" if frames else "no frame"
                if frames and frames[0] == frames[-1]:
                    return f"track {c.track} is on frame {frames[0]} only: nothing to split"
                return f"track {c.track} is on {span}: split it at a frame from {frames[0] + 1} to {frames[-1]}" \
                    if frames else f"track {c.track} has no boxes to split"  # fmt: skip
        return None

    def _missing(self, tid: int) -> str | None:
        if tid in self.rows:
            return None
        if tid in self.gone:
            now = tid
            while now in self.gone:
                now = self.gone[now]
            return f"track {tid} was merged into track {now}: correct track {now}"
        known = ", ".join(str(t) for t in sorted(self.rows)) or "none"
        return f"the run has no track {tid} (its tracks: {known})"

    def apply(self, c: Correction) -> None:
        """Apply ``c``, which :meth:`problem` passed."""
        self.corrections.append(c)
        self.history[c.track].append(c)
        if c.action in ("confirm", "species", "not_fish"):
            self.verdicts[c.track] = c
        elif c.action == "merge":
            assert c.into is not None
            self._merge(c.track, c.into)
            self.history[c.into].extend(self.history.pop(c.track))
        else:
            assert c.frame is not None
            new = self.next_id
            self.next_id += 1
            self.boxes[new] = [{**b, "track_id": str(new)} for b in self.boxes[c.track] if int(b["frame"]) >= c.frame]
            self.boxes[c.track] = [b for b in self.boxes[c.track] if int(b["frame"]) < c.frame]
            self.rows[new] = {**self.rows[c.track], "track_id": str(new)}
            self.origin_of[new] = self.origin_of[c.track]
            self.history[new].append(c)
            self.changed |= {c.track, new}

    def _merge(self, source: int, into: int) -> None:
        """``source``'s boxes join ``into``; on a frame both have a box, one is kept: a detected one
        before an interpolated one, then ``into``'s."""
        kept = {int(b["frame"]): b for b in self.boxes[into]}
        for box in self.boxes.pop(source):
            frame = int(box["frame"])
            mine = kept.get(frame)
            if mine is None or (_interpolated(mine) and not _interpolated(box)):
                kept[frame] = {**box, "track_id": str(into)}
        self.boxes[into] = [kept[f] for f in sorted(kept)]
        a, b = self.rows[into], self.rows.pop(source)
        for name in ("votes", "observations"):
            if name in a:
                a[name] = str(int(a.get(name) or 0) + int(b.get(name) or 0))
        ids = {int(i) for row in (a, b) for i in str(row.get("online_ids", "")).split()}
        if "online_ids" in a:
            a["online_ids"] = " ".join(str(i) for i in sorted(ids))
        if a.get("counted", "1") == "0" and b.get("counted", "1") != "0":
            a["counted"], a["reason"] = "1", ""  # the fish had the evidence in one of its parts
        self.verdicts.pop(source, None)
        self.changed.discard(source)
        self.changed.add(into)
        self.gone = {old: (into if now == source else now) for old, now in self.gone.items()}
        self.gone[source] = into

    def result(self, rules: CountConfig | None = None) -> ReviewedRun:
        record = self.record
        fps = record.summary.info.video_fps or 25.0
        rows: dict[int, dict[str, str]] = {}
        states: dict[int, TrackReview] = {}
        summaries: list[TrackSummary] = []
        for tid in sorted(self.rows):
            row = dict(self.rows[tid])
            boxes = self.boxes.get(tid, [])
            if tid in self.changed:
                _refigure(row, boxes, fps)
                if rules is not None:
                    judged = judge(_summary(row, boxes, fps, with_boxes=True), rules)
                    row["counted"], row["reason"] = str(int(judged.counted)), judged.reason
            source = record.tracks[self.origin_of[tid]]
            verdict = self.verdicts.get(tid)
            _set_verdict(row, verdict)
            rows[tid] = row
            summaries.append(_summary(row, boxes, fps))
            states[tid] = TrackReview(
                track_id=tid, action=verdict.action if verdict else None, reviewer=verdict.reviewer if verdict else "",
                at=verdict.at if verdict else "", species=row["species"], pipeline_species=source["species"],
                pipeline_score=float(source["score"]), counted=row.get("counted", "1") != "0",
                reason=row.get("reason", ""), history=tuple(self.history.get(tid, ())),
            )  # fmt: skip
        boxes = sorted(
            (b for tid in rows for b in self.boxes.get(tid, [])), key=lambda b: (int(b["frame"]), int(b["track_id"]))
        )
        counts = species_counts(summaries)
        summary = replace(
            record.summary,
            tracks=len(rows),
            counted_tracks=sum(s.counted for s in summaries),
            species={c.species: SpeciesTally(c.unique, c.max_n) for c in counts},
        )
        reviewed_record = RunRecord(record.folder, summary, rows, boxes, dict(record.metadata))
        return ReviewedRun(
            record=reviewed_record,
            original=record,
            counts=tuple(counts),
            reviewed=frozenset(self.verdicts),
            total=len(rows),
            states=states,
            corrections=tuple(self.corrections),
        )


def _interpolated(box: dict[str, str]) -> bool:
    return box.get("interpolated", "0") == "1"


def _time(box: dict[str, str], fps: float) -> float:
    text = box.get("time_s")
    return float(text) if text not in (None, "") else int(box["frame"]) / fps


def _refigure(row: dict[str, str], boxes: Sequence[dict[str, str]], fps: float) -> None:
    """A track's figures from its boxes, as tracks.csv writes them (after a merge or split)."""
    if not boxes:
        return
    first, last = boxes[0], boxes[-1]
    detected = [float(b["confidence"]) for b in boxes if not _interpolated(b)]
    confidences = detected or [float(b["confidence"]) for b in boxes]
    start, end = _time(first, fps), _time(last, fps)
    row.update(
        first_frame=str(int(first["frame"])), last_frame=str(int(last["frame"])), first_time_s=f"{start:.3f}",
        last_time_s=f"{end:.3f}", duration_s=f"{end - start:.3f}", detections=str(len(detected)),
        mean_confidence=f"{sum(confidences) / len(confidences):.3f}",
    )  # fmt: skip


def _set_verdict(row: dict[str, str], verdict: Correction | None) -> None:
    """The review's evidence rules on one tracks.csv row, and the review columns."""
    if verdict is None:
        row.update(dict.fromkeys(REVIEW_COLUMNS, ""))
        return
    if verdict.action == "not_fish":
        row.update(counted="0", reason=f"not a fish (review: {verdict.reviewer})")
    else:
        if verdict.action == "species":
            given = (verdict.species or "").strip()
            if given != row.get("species"):
                row["rank"] = ""  # a reviewer's name: its rank is not stated
            row["species"] = given
        row.update(counted="1", reason="", origin=REVIEW_ORIGIN, score="1.0000")  # a person is sure
    row.update(reviewed_by=verdict.reviewer, reviewed_at=verdict.at, review_action=verdict.action)


def _origin(text: str) -> Origin:
    try:
        return Origin(text)
    except ValueError:  # review: counts do not ask who decided
        return Origin.NONE


def _summary(
    row: dict[str, str], boxes: Sequence[dict[str, str]], fps: float, with_boxes: bool = False
) -> TrackSummary:
    """The TrackSummary the counts (and the evidence rules) read, from a row and its boxes."""
    times = {int(b["frame"]): _time(b, fps) for b in boxes} or {int(row["first_frame"]): float(row["first_time_s"])}
    frames = tuple(sorted(times))
    extra = {}
    if with_boxes:
        extra = {
            "boxes": np.array([[float(b[k]) for k in ("x1", "y1", "x2", "y2")] for b in boxes], np.float32).reshape(
                -1, 4
            ),
            "confidences": np.array([float(b["confidence"]) for b in boxes], np.float32),
            "interpolated": np.array([_interpolated(b) for b in boxes], bool),
        }
    return TrackSummary(
        track_id=int(row["track_id"]), species=row["species"], score=float(row["score"]), origin=_origin(row["origin"]),
        first_frame=int(row["first_frame"]), last_frame=int(row["last_frame"]),
        first_time_s=float(row["first_time_s"]), last_time_s=float(row["last_time_s"]),
        detections=int(row["detections"]), observations=int(row.get("observations") or 0), votes=int(row["votes"]),
        frames=frames, frame_times_s=tuple(times[f] for f in frames), counted=row.get("counted", "1") != "0",
        reason=row.get("reason", ""), rank=row.get("rank", ""), **extra,  # type: ignore[arg-type]
    )  # fmt: skip
