"""The track ledger: which tracks need a look this frame, their votes, and their summaries. Pure.

Classifying tracks rather than frames is what keeps fishcam fast and its counts honest: a
track is looked at when it is new, while it is still uncertain, and when a clearly better view
comes along, up to a budget; its species is the vote over everything it was called.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fishcam.classify.crops import touches_edge
from fishcam.classify.decide import vote
from fishcam.config import PolicyConfig
from fishcam.types import UNCLASSIFIED_LABEL, Detections, Origin, SpeciesCall, TrackSummary


@dataclass
class _Track:
    track_id: int
    frames: list[int] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    calls: list[SpeciesCall] = field(default_factory=list)
    looks: int = 0
    pending: int = 0  # looks whose answer has not come back yet (asynchronous fallback)
    last_look_frame: int = -(10**9)
    best_area_looked: float = 0.0

    def settled(self, settle_votes: int) -> bool:
        label, _, _, votes = vote(self.calls)
        return votes >= settle_votes and any(c.is_known and c.label == label for c in self.calls)


class TrackLedger:
    def __init__(self, policy: PolicyConfig, classifying: bool = True) -> None:
        self.policy = policy
        self.classifying = classifying
        self._tracks: dict[int, _Track] = {}
        self.closed = 0

    def __len__(self) -> int:
        return len(self._tracks)

    @property
    def open_ids(self) -> list[int]:
        return list(self._tracks)

    def update(self, frame_index: int, time_s: float, detections: Detections) -> None:
        """Record where each confirmed track was seen this frame."""
        for track_id in detections.track_id[detections.track_id >= 0].tolist():
            track = self._tracks.setdefault(track_id, _Track(track_id))
            if not track.frames or track.frames[-1] != frame_index:
                track.frames.append(frame_index)
                track.times_s.append(time_s)

    def select(self, frame_index: int, detections: Detections, width: int, height: int) -> np.ndarray:
        """Indices of the detections whose crops should be classified this frame."""
        p = self.policy
        if len(detections) == 0:
            return np.zeros(0, dtype=np.int64)
        sides = np.minimum(detections.xyxy[:, 2] - detections.xyxy[:, 0], detections.xyxy[:, 3] - detections.xyxy[:, 1])
        at_edge = touches_edge(detections.xyxy, width, height, p.edge_margin_px)
        areas = detections.area
        chosen = []
        for i, track_id in enumerate(detections.track_id.tolist()):
            track = self._tracks.get(track_id)
            if track is None or sides[i] < p.min_box_px or track.looks >= p.max_crops_per_track:
                continue
            if frame_index - track.last_look_frame < p.min_gap_frames:
                continue
            # A fish half out of frame is a poor view: wait for a whole one, unless that never comes.
            if at_edge[i] and (track.looks > 0 or len(track.frames) < 2 * max(p.min_gap_frames, 1)):
                continue
            if track.settled(p.settle_votes) and areas[i] < p.better_view_ratio * track.best_area_looked:
                continue
            chosen.append(i)
        # A frame's budget: tracks never looked at first, then the fewest looks, then the biggest view;
        # the rest wait for a later frame, so no frame stalls on a burst of new fish.
        chosen.sort(key=lambda i: (self._tracks[int(detections.track_id[i])].looks, -areas[i]))
        return np.asarray(chosen[: p.max_crops_per_frame], dtype=np.int64)

    def observe(self, track_id: int, frame_index: int, call: SpeciesCall | None, area: float) -> None:
        """Count one look at a track's crop, with its call, or None while the answer is pending."""
        track = self._tracks.get(track_id)
        if track is None:
            return
        if call is None:
            track.pending += 1
        else:
            track.calls.append(call)
        track.looks += 1
        track.last_look_frame = frame_index
        track.best_area_looked = max(track.best_area_looked, float(area))

    def resolve(self, track_id: int, call: SpeciesCall) -> bool:
        """A pending look's answer arrived; False if its track is already closed."""
        track = self._tracks.get(track_id)
        if track is None:
            return False
        track.pending = max(0, track.pending - 1)
        track.calls.append(call)
        return True

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
        if self.classifying:
            label, score, origin, votes = vote(track.calls)
        else:
            label, score, origin, votes = UNCLASSIFIED_LABEL, 0.0, Origin.NONE, 0
        return TrackSummary(
            track_id=track_id,
            species=label,
            score=round(score, 4),
            origin=origin,
            first_frame=track.frames[0],
            last_frame=track.frames[-1],
            first_time_s=track.times_s[0],
            last_time_s=track.times_s[-1],
            detections=len(track.frames),
            observations=len(track.calls),
            votes=votes,
            frames=tuple(track.frames),
            frame_times_s=tuple(track.times_s),
        )
