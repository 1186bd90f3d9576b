"""The track ledger: which tracks need a look this frame, their votes, and their summaries. Pure.

Classifying tracks rather than frames is what keeps fishcam fast and its counts honest: a
track is looked at when it is new, while it is still uncertain, and when a clearly better view
comes along, up to a budget; its species is the vote over everything it was called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from fishcam.classify.crops import touches_edge
from fishcam.classify.decide import track_vote, vote
from fishcam.config import PolicyConfig
from fishcam.types import UNCLASSIFIED_LABEL, Detections, Look, Origin, SpeciesCall, TrackSummary


@dataclass
class _Track:
    track_id: int
    frames: list[int] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    looks: list[Look] = field(default_factory=list)
    pending: int = 0  # looks whose answer has not come back yet (asynchronous fallback)
    last_look_frame: int = -(10**9)
    last_look_s: float = -1e9
    best_area_looked: float = 0.0
    extra_looks: int = 0  # granted when a call disagrees with the one before: the track may have changed fish
    disturbed: bool = False  # lost for a while, or overlapped by another fish, since its last look

    def add_call(self, look: Look, settle_votes: int, at: int | None = None) -> None:
        known = [c for c in self.calls if c.is_known]
        call = look.call
        if call is not None and call.is_known and known and known[-1].label != call.label:
            self.extra_looks += settle_votes
        if at is None:
            self.looks.append(look)
        else:
            self.looks[at] = look

    @property
    def calls(self) -> list[SpeciesCall]:
        return [look.call for look in self.looks if look.call is not None]

    def settled(self, settle_votes: int) -> bool:
        """The latest ``settle_votes`` calls agree on a known species: a track whose later looks
        disagree with its earlier ones (it may have swapped fish) is unsettled again."""
        recent = self.calls[-settle_votes:]
        return len(recent) == settle_votes and recent[0].is_known and all(c.label == recent[0].label for c in recent)


class TrackLedger:
    def __init__(self, policy: PolicyConfig, classifying: bool = True, stride: int = 1) -> None:
        self.policy = policy
        self.classifying = classifying
        self.stride = stride
        self._tracks: dict[int, _Track] = {}
        self._now_s = 0.0
        self.closed = 0

    def __len__(self) -> int:
        return len(self._tracks)

    @property
    def open_ids(self) -> list[int]:
        return list(self._tracks)

    def update(self, frame_index: int, time_s: float, detections: Detections) -> None:
        """Record where each confirmed track was seen this frame, with its box and confidence."""
        self._now_s = time_s
        for row in np.flatnonzero(detections.track_id >= 0).tolist():
            track_id = int(detections.track_id[row])
            track = self._tracks.setdefault(track_id, _Track(track_id))
            if not track.frames or track.frames[-1] != frame_index:
                if track.frames and frame_index - track.frames[-1] > self.stride:
                    track.disturbed = True  # missed: another fish may have taken its place
                track.frames.append(frame_index)
                track.times_s.append(time_s)
                track.boxes.append(detections.xyxy[row].astype(np.float32))
                track.confidences.append(float(detections.confidence[row]))

    def select(
        self,
        frame_index: int,
        detections: Detections,
        width: int,
        height: int,
        appearance: Callable[[int], np.ndarray | None] | None = None,
    ) -> np.ndarray:
        """Indices of the detections whose crops should be classified this frame.

        Good views only: big enough, whole (not cut by the frame edge, unless the fish never
        leaves it), not overlapped by another fish. A track is looked at every ``min_gap_frames``
        until its species is settled (or ``max_crops_per_track`` looks were spent), then again
        on a clearly bigger view, and re-checked every ``recheck_s`` through its life so that a
        track that changed fish is noticed. A re-check costs a classification only when
        something may have changed: the track was lost or overlapped since its last look, or
        the colours of its view (``appearance(i)``, cheap) are no longer like its last looks'."""
        p = self.policy
        if len(detections) == 0:
            return np.zeros(0, dtype=np.int64)
        sides = np.minimum(detections.xyxy[:, 2] - detections.xyxy[:, 0], detections.xyxy[:, 3] - detections.xyxy[:, 1])
        at_edge = touches_edge(detections.xyxy, width, height, p.edge_margin_px)
        overlapped = overlap_share(detections.xyxy) > p.max_overlap
        areas = detections.area
        chosen = []
        for i, track_id in enumerate(detections.track_id.tolist()):
            track = self._tracks.get(track_id)
            if track is None or sides[i] < p.min_box_px:
                continue
            if frame_index - track.last_look_frame < p.min_gap_frames:
                continue
            # A poor view (half out of frame, half hidden): wait for a good one, unless that never comes.
            waited = len(track.frames) >= 2 * max(p.min_gap_frames, 1)
            if overlapped[i]:
                track.disturbed = True
            if (at_edge[i] or overlapped[i]) and (track.looks or not waited):
                continue
            spent = len(track.looks) >= p.max_crops_per_track + track.extra_looks
            if spent or track.settled(p.settle_votes):
                due = p.recheck_s > 0 and self._now_s - track.last_look_s >= p.recheck_s - 1e-6
                bigger = not spent and areas[i] >= p.better_view_ratio * track.best_area_looked
                if not bigger and not (due and self._may_have_changed(track, i, appearance)):
                    continue
            chosen.append(i)
        # A frame's budget: tracks never looked at first, then the fewest looks, then the biggest view;
        # the rest wait for a later frame, so no frame stalls on a burst of new fish.
        chosen.sort(key=lambda i: (len(self._tracks[int(detections.track_id[i])].looks), -areas[i]))
        return np.asarray(chosen[: p.max_crops_per_frame], dtype=np.int64)

    def _may_have_changed(self, track: _Track, row: int, appearance: Callable[[int], np.ndarray | None] | None) -> bool:
        """Whether a due re-check needs a classification; if not, it counts as done."""
        if track.disturbed or appearance is None:
            return True
        seen = [look.appearance for look in track.looks[-3:] if look.appearance is not None]
        now = appearance(row)
        if now is None or not seen:
            return True
        if np.mean([float(np.dot(now, x)) for x in seen]) < self.policy.recheck_similarity:
            return True
        track.last_look_s = self._now_s  # checked: the same colours; the next check in recheck_s
        return False

    def observe(
        self,
        track_id: int,
        frame_index: int,
        call: SpeciesCall | None,
        area: float,
        appearance: np.ndarray | None = None,
    ) -> None:
        """Count one look at a track's crop, with its call, or None while the answer is pending."""
        track = self._tracks.get(track_id)
        if track is None:
            return
        if call is None:
            track.pending += 1
        track.add_call(Look(frame_index, float(area), call, appearance), self.policy.settle_votes)
        track.last_look_frame = frame_index
        track.last_look_s = self._now_s
        track.disturbed = False
        track.best_area_looked = max(track.best_area_looked, float(area))

    def resolve(self, track_id: int, call: SpeciesCall, frame_index: int | None = None) -> bool:
        """A pending look's answer arrived (the look taken on ``frame_index``: the earliest
        pending one if not given); False if its track is already closed."""
        track = self._tracks.get(track_id)
        if track is None:
            return False
        for i, look in enumerate(track.looks):
            if look.call is None and (frame_index is None or look.frame == frame_index):
                track.add_call(replace(look, call=call), self.policy.settle_votes, at=i)
                track.pending = max(0, track.pending - 1)
                return True
        frame = frame_index if frame_index is not None else track.frames[-1]
        track.add_call(Look(frame, 0.0, call), self.policy.settle_votes)
        return True

    def looked_on(self, frame_index: int) -> set[int]:
        """The open tracks whose latest look was taken on ``frame_index`` (their crop was sent)."""
        return {tid for tid, t in self._tracks.items() if t.last_look_frame == frame_index}

    def label(self, track_id: int) -> tuple[str, float, str] | None:
        """The current vote of an open track for display, or None before any call."""
        track = self._tracks.get(track_id)
        if track is None or not track.calls:
            return None
        label, score, origin, _ = vote(track.calls)
        return label, score, origin.value

    def close_stale(self, frame_index: int, max_gap_frames: int, pending_grace_frames: int = 0) -> list[TrackSummary]:
        """Close tracks not seen for more than ``max_gap_frames`` frames; a track still waiting
        for an answer gets up to ``pending_grace_frames`` more."""

        def stale(t: _Track) -> bool:
            gap = frame_index - t.frames[-1]
            return gap > max_gap_frames + (pending_grace_frames if t.pending else 0)

        return [self._close(tid) for tid in [tid for tid, t in self._tracks.items() if stale(t)]]

    @property
    def pending(self) -> int:
        return sum(t.pending for t in self._tracks.values())

    def close_all(self) -> list[TrackSummary]:
        return [self._close(tid) for tid in list(self._tracks)]

    def _close(self, track_id: int) -> TrackSummary:
        track = self._tracks.pop(track_id)
        self.closed += 1
        looks = tuple(look for look in track.looks if look.call is not None)
        return summarize(
            track_id,
            tuple(track.frames),
            tuple(track.times_s),
            np.asarray(track.boxes, np.float32).reshape(-1, 4),
            np.asarray(track.confidences, np.float32),
            np.zeros(len(track.frames), bool),
            looks,
            classifying=self.classifying,
            online_ids=(track_id,),
        )


def summarize(
    track_id: int,
    frames: tuple[int, ...],
    times_s: tuple[float, ...],
    boxes: np.ndarray,
    confidences: np.ndarray,
    interpolated: np.ndarray,
    looks: tuple[Look, ...],
    *,
    classifying: bool = True,
    online_ids: tuple[int, ...] = (),
) -> TrackSummary:
    """A track's summary from its boxes and looks: its species is the vote over every call."""
    calls = [look.call for look in looks if look.call is not None]
    if classifying:
        decided = track_vote(calls)
        label, score, origin, votes, rank = decided.label, decided.score, decided.origin, decided.votes, decided.rank
    else:
        label, score, origin, votes, rank = UNCLASSIFIED_LABEL, 0.0, Origin.NONE, 0, ""
    return TrackSummary(
        track_id=track_id,
        species=label,
        score=round(score, 4),
        origin=origin,
        first_frame=frames[0],
        last_frame=frames[-1],
        first_time_s=times_s[0],
        last_time_s=times_s[-1],
        detections=int((~interpolated).sum()),
        observations=len(calls),
        votes=votes,
        frames=frames,
        frame_times_s=times_s,
        boxes=boxes,
        confidences=confidences,
        interpolated=interpolated,
        looks=looks,
        online_ids=online_ids,
        rank=rank,
    )


def overlap_share(xyxy: np.ndarray) -> np.ndarray:
    """For each box, the largest share of its area that another box covers (0: alone)."""
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    n = len(boxes)
    if n < 2:
        return np.zeros(n, np.float32)
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = np.clip(boxes[:, 2] - boxes[:, 0], 1e-6, None) * np.clip(boxes[:, 3] - boxes[:, 1], 1e-6, None)
    share = inter / area[:, None]
    np.fill_diagonal(share, 0.0)
    return share.max(axis=1)
