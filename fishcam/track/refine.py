"""The offline pass over a recorded video's tracks, before they are counted. Pure.

An online tracker decides each frame from the past alone; once a whole video is tracked, each
track can be judged from all of it. In order:

1. **Trim** each track's first and last boxes below ``tail_confidence``: the low-confidence
   matches (ByteTrack's second pass) that keep a track alive after its fish left, or start it
   on a fin before the fish is in view. This step also runs live, as each track closes.
2. **Cut** a track where its views say it followed two fish: the species calls before a point
   agree on one species and those after on another, or the views' colours before and after are
   unlike each other while alike among themselves. The cut goes where the change happened: the
   frame another track overlapped this one most (a crossing where identities swapped), else
   the track's longest gap (a fish left and another came in its place), else its biggest jump.
3. **Join** fragments of one fish: a track that starts where, and soon after, another ended
   (within ``link_gap_s``, ``link_distance`` box diagonals of where it was heading), of a like
   size and colour and no other species; never a track that ended at the frame edge to one that
   started there (the fish left; the one coming in may be another of its kind).
4. **Fill in** boxes over detection stride and short gaps, marked interpolated, so a track has
   a box on every frame its fish was in view (not across an exit at the frame edge).

Each result says which of the tracker's ids it was made of; :func:`refine` also returns which
final track each tracker box went to, so the detections and calls logs can be rewritten.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from fishcam.classify.appearance import similarity
from fishcam.classify.ledger import summarize
from fishcam.config import OfflineConfig
from fishcam.types import Look, Origin, TrackSummary


@dataclass(frozen=True)
class Geometry:
    """What the pass needs to know of the video."""

    width: int
    height: int
    fps: float
    stride: int = 1
    edge_margin_px: int = 2


@dataclass
class _Piece:
    """A track or a part of one, with the tracker id of each of its boxes."""

    frames: np.ndarray
    times: np.ndarray
    boxes: np.ndarray
    confidences: np.ndarray
    interpolated: np.ndarray
    sources: np.ndarray  # the tracker's id per box
    looks: list[Look]
    classifying: bool
    origin_id: int  # the tracker's track this piece was cut from
    cut_before: bool = False  # this piece starts at a cut
    cut_after: bool = False
    after: list[_Piece] = field(default_factory=list)  # the pieces joined after it, in order

    @classmethod
    def of(cls, track: TrackSummary) -> _Piece:
        n = len(track.frames)
        return cls(
            frames=np.asarray(track.frames, np.int64),
            times=np.asarray(track.frame_times_s, np.float64),
            boxes=np.asarray(track.boxes, np.float32).reshape(-1, 4),
            confidences=np.asarray(track.confidences, np.float32),
            interpolated=np.asarray(track.interpolated, bool) if len(track.interpolated) == n else np.zeros(n, bool),
            sources=np.full(n, track.track_id, np.int64),
            looks=sorted(track.looks, key=lambda look: look.frame),
            classifying=track.origin is not Origin.NONE,
            origin_id=track.track_id,
        )

    def part(self, keep: np.ndarray) -> _Piece:
        frames = self.frames[keep]
        first, last = (int(frames[0]), int(frames[-1])) if len(frames) else (0, -1)
        return _Piece(
            frames,
            self.times[keep],
            self.boxes[keep],
            self.confidences[keep],
            self.interpolated[keep],
            self.sources[keep],
            [look for look in self.looks if first <= look.frame <= last],
            self.classifying,
            self.origin_id,
            self.cut_before,
            self.cut_after,
        )

    def summary(self, track_id: int) -> TrackSummary:
        online = tuple(dict.fromkeys(self.sources.tolist()))
        return summarize(
            track_id,
            tuple(self.frames.tolist()),
            tuple(self.times.tolist()),
            self.boxes,
            self.confidences,
            self.interpolated,
            tuple(self.looks),
            classifying=self.classifying,
            online_ids=online,
        )

    @property
    def calls(self):
        return [look.call for look in self.looks if look.call is not None]


@dataclass(frozen=True)
class Refined:
    tracks: list[TrackSummary]
    owner: dict[tuple[int, int], int]  # (tracker id, frame) -> final track id; absent: trimmed away


def trim(track: TrackSummary, tail_confidence: float) -> TrackSummary:
    """The track without its first and last boxes below ``tail_confidence`` (all of it kept
    when none reaches it: the evidence rules judge such a track)."""
    piece = _trimmed(_Piece.of(track), tail_confidence)
    if len(piece.frames) == len(track.frames):
        return track
    return piece.summary(track.track_id)


def refine(tracks: list[TrackSummary], geometry: Geometry, config: OfflineConfig) -> Refined:
    """Trim, cut, join and fill in a whole video's tracks (see the module docstring)."""
    pieces = [_trimmed(_Piece.of(t), config.tail_confidence) for t in sorted(tracks, key=lambda t: t.first_frame)]
    pieces = [p for p in pieces if len(p.frames)]
    cut: list[_Piece] = []
    for piece in pieces:
        cut.extend(_cut(piece, pieces, geometry, config))
    chains = _join(cut, geometry, config)
    max_gap = max(geometry.stride, round(config.interpolate_gap_s * geometry.fps))
    ids = _final_ids(chains)
    final, owner = [], {}
    for chain, track_id in zip(chains, ids, strict=True):
        piece = _fill(_merged(chain), max_gap, geometry)
        for source, frame, filled in zip(
            piece.sources.tolist(), piece.frames.tolist(), piece.interpolated, strict=True
        ):
            if not filled:
                owner[(source, frame)] = track_id
        final.append(piece.summary(track_id))
    return Refined(sorted(final, key=lambda t: t.track_id), owner)


# ---- 1. trim --------------------------------------------------------------------------------


def _trimmed(piece: _Piece, tail_confidence: float) -> _Piece:
    sure = np.flatnonzero((piece.confidences >= tail_confidence) & ~piece.interpolated)
    if len(sure) == 0 or (sure[0] == 0 and sure[-1] == len(piece.frames) - 1):
        return piece
    keep = np.zeros(len(piece.frames), bool)
    keep[sure[0] : sure[-1] + 1] = True
    return piece.part(keep)


# ---- 2. cut ---------------------------------------------------------------------------------


def _majority(calls) -> tuple[str | None, int, float]:
    """The most called known species, its votes and its share of the known calls."""
    known = [c.label for c in calls if c.is_known]
    if not known:
        return None, 0, 0.0
    label, votes = Counter(known).most_common(1)[0]
    return label, votes, votes / len(known)


def _change_at(piece: _Piece, config: OfflineConfig) -> tuple[int, bool] | None:
    """Index into the piece's looks where a second fish begins, and whether the colours
    changed there too; None if nothing says two fish."""
    looks = [look for look in piece.looks if look.call is not None]
    best, best_strength, best_colour = None, 0.0, False
    for j in range(1, len(looks)):
        before, after = looks[:j], looks[j:]
        a, a_votes, a_share = _majority([x.call for x in before])
        b, b_votes, b_share = _majority([x.call for x in after])
        colour = _colour_change(before, after, config)
        species_change = a is not None and b is not None and a != b
        if species_change and min(a_votes, b_votes) >= 2 and min(a_share, b_share) >= 2 / 3:
            if _colours_alike(before, after, config):
                continue  # the same colours throughout: one fish the expert is unsure about
            strength = 2.0 + a_votes + b_votes + colour  # species evidence outranks colour alone
        elif a is not None and a == b and min(a_votes, b_votes) >= 2:
            continue  # both sides named the same species: colour alone does not split them
        else:
            strength = colour
        if strength > best_strength:
            best, best_strength, best_colour = j, strength, colour > 0
    return None if best is None else (best, best_colour)


def _colour_change(before: list[Look], after: list[Look], config: OfflineConfig) -> float:
    """How clearly the colours before and after are two fish (0: not)."""
    x = [look.appearance for look in before if look.appearance is not None]
    y = [look.appearance for look in after if look.appearance is not None]
    if len(x) < 2 or len(y) < 2:
        return 0.0

    def mean_pairwise(group):
        sims = [similarity(group[i], group[k]) for i in range(len(group)) for k in range(i + 1, len(group))]
        return float(np.mean(sims))

    across = float(np.mean([similarity(u, v) for u in x for v in y]))
    within = min(mean_pairwise(x), mean_pairwise(y))
    if across < config.other_fish_similarity and within >= config.same_fish_similarity:
        return within - across
    return 0.0


def _colours_alike(before: list[Look], after: list[Look], config: OfflineConfig) -> bool:
    alike = _likeness(before, after)
    return alike is not None and alike >= config.same_fish_similarity


def _cut(piece: _Piece, others: list[_Piece], geometry: Geometry, config: OfflineConfig) -> list[_Piece]:
    change = _change_at(piece, config)
    if change is None:
        return [piece]
    j, colour_changed = change
    looks = [look for look in piece.looks if look.call is not None]
    start, end = looks[j - 1].frame, looks[j].frame
    found = _cut_index(piece, start, end, others, geometry)
    if found is None:
        return [piece]
    k, how = found
    if how == "jump" and not colour_changed:
        return [piece]  # the species calls alone changed, with nothing seen to happen: not enough
    keep = np.arange(len(piece.frames)) < k
    # Each side's ends are a track's ends: trimmed as the whole track's were (the last boxes
    # before a swap are often a doubtful box of the other fish).
    head, tail = _trimmed(piece.part(keep), config.tail_confidence), _trimmed(piece.part(~keep), config.tail_confidence)
    head.cut_after, tail.cut_before = True, True
    return _cut(head, others, geometry, config) + _cut(tail, others, geometry, config)


def _cut_index(piece: _Piece, start: int, end: int, others: list[_Piece], geometry: Geometry) -> tuple[int, str] | None:
    """Index of the first box of the second fish, between frames ``start`` (exclusive) and
    ``end`` (inclusive), and what marks it: a crossing, a gap or (weakest) a jump."""
    inside = np.flatnonzero((piece.frames > start) & (piece.frames <= end))
    if len(inside) == 0:
        return None
    # A crossing: identities swap where the other fish covered this one most.
    best_iou, at = 0.1, None
    for other in others:
        if other is piece or other.frames[0] > end or other.frames[-1] <= start:
            continue
        common, mine, theirs = np.intersect1d(piece.frames[inside], other.frames, return_indices=True)
        if len(common) == 0:
            continue
        ious = _iou(piece.boxes[inside][mine], other.boxes[theirs])
        i = int(np.argmax(ious))
        if ious[i] > best_iou:
            best_iou, at = float(ious[i]), int(inside[mine[i]])
    if at is not None:
        return at, "crossing"
    gaps = piece.frames[inside] - piece.frames[inside - 1]
    if gaps.max() > geometry.stride:
        return int(inside[int(np.argmax(gaps))]), "gap"  # a fish left, another came in its place
    prev, cur = piece.boxes[inside - 1], piece.boxes[inside]
    jump = np.linalg.norm(_centre(cur) - _centre(prev), axis=1) / np.maximum(_diag(prev), 1e-6)
    jump += np.abs(np.log(np.maximum(_area(cur), 1e-6) / np.maximum(_area(prev), 1e-6)))
    return int(inside[int(np.argmax(jump))]), "jump"


# ---- 3. join --------------------------------------------------------------------------------


def _join(pieces: list[_Piece], geometry: Geometry, config: OfflineConfig) -> list[list[_Piece]]:
    pieces = sorted(pieces, key=lambda p: float(p.times[0]))
    starts = [float(p.times[0]) for p in pieces]
    candidates = []
    if config.link_gap_s > 0:
        for a in pieces:
            # Only the pieces starting within link_gap_s of a's end: a long video has thousands.
            end = float(a.times[-1])
            earliest = end - (2 * geometry.stride + 1) / geometry.fps  # (an overlap at a swap: _link_cost)
            for b in pieces[
                bisect.bisect_left(starts, earliest) : bisect.bisect_right(starts, end + config.link_gap_s)
            ]:
                cost = _link_cost(a, b, geometry, config)
                if cost is not None:
                    candidates.append((cost, id(a), id(b), a, b))
    candidates.sort(key=lambda c: c[:3])
    successor: dict[int, _Piece] = {}
    has_predecessor: set[int] = set()
    for _, _, _, a, b in candidates:
        if id(a) in successor or id(b) in has_predecessor:
            continue
        successor[id(a)] = b
        has_predecessor.add(id(b))
    chains = []
    for piece in pieces:
        if id(piece) in has_predecessor:
            continue
        chain = [piece]
        while id(chain[-1]) in successor:
            chain.append(successor[id(chain[-1])])
        chains.append(chain)
    return chains


def _link_cost(a: _Piece, b: _Piece, geometry: Geometry, config: OfflineConfig) -> float | None:
    """How well ``b`` continues ``a`` as the same fish (lower is better), or None if it cannot."""
    # Two detections of one fish in the frames where a swap happened may overlap a little in
    # time: up to ``overlap`` frames, the later piece's boxes stand (see _merged).
    overlap = 2 * geometry.stride
    if b is a or b.frames[0] <= a.frames[0] or b.frames[0] <= a.frames[-1] - overlap:
        return None
    if a.origin_id == b.origin_id and (a.cut_after or b.cut_before):
        return None  # cut apart on evidence of two fish: never joined back
    gap_s = float(b.times[0] - a.times[-1])
    if gap_s > config.link_gap_s or (gap_s <= 0 and not (a.cut_after or b.cut_before)):
        return None  # (an overlap only where a track was cut at a swap)
    gap_s = max(gap_s, 0.0)
    a_box, b_box = a.boxes[-1], b.boxes[0]
    size = max(float(_diag(a_box[None])[0]), float(_diag(b_box[None])[0]))
    area_ratio = float(_area(a_box[None])[0] / max(float(_area(b_box[None])[0]), 1e-6))
    if not 1 / 3 <= area_ratio <= 3:
        return None
    heading = _centre(a_box[None])[0] + _velocity(a) * min(gap_s, 1.0)
    distance = float(np.linalg.norm(_centre(b_box[None])[0] - heading)) / max(size, 1e-6)
    if distance > config.link_distance:
        return None
    a_species, a_votes, _ = _majority(a.calls)
    b_species, b_votes, _ = _majority(b.calls)
    if a_species is not None and b_species is not None and a_species != b_species and min(a_votes, b_votes) >= 1:
        return None
    alike = _likeness(a.looks[-3:], b.looks[:3])
    if alike is not None and alike < config.same_fish_similarity:
        return None
    if _near_edge(a_box, geometry) and _near_edge(b_box, geometry):
        # It left the frame and one came in: the same fish back, or another of its kind, is
        # more than a video can tell (measured: joining like-looking ones merged three pairs
        # of fish in 20). Two visits are two tracks; MaxN never counts one fish twice.
        return None
    return distance / config.link_distance + (1 - (alike if alike is not None else 0.5)) + gap_s / config.link_gap_s


def _likeness(x: list[Look], y: list[Look]) -> float | None:
    u = [look.appearance for look in x if look.appearance is not None]
    v = [look.appearance for look in y if look.appearance is not None]
    if not u or not v:
        return None
    return float(np.mean([similarity(p, q) for p in u for q in v]))


def _velocity(piece: _Piece) -> np.ndarray:
    """Pixels per second over the piece's last second (0 for a single box)."""
    recent = piece.times >= piece.times[-1] - 1.0
    times, boxes = piece.times[recent], piece.boxes[recent]
    if len(times) < 2 or times[-1] - times[0] <= 0:
        return np.zeros(2)
    return (_centre(boxes[-1:])[0] - _centre(boxes[:1])[0]) / (times[-1] - times[0])


def _merged(chain: list[_Piece]) -> _Piece:
    if len(chain) == 1:
        return chain[0]
    # Where a piece overlaps the next by a frame or two (a swap), the next one's boxes stand.
    chain = [p.part(p.frames < nxt.frames[0]) for p, nxt in itertools.pairwise(chain)] + [chain[-1]]
    first = chain[0]
    return _Piece(
        np.concatenate([p.frames for p in chain]),
        np.concatenate([p.times for p in chain]),
        np.concatenate([p.boxes for p in chain]),
        np.concatenate([p.confidences for p in chain]),
        np.concatenate([p.interpolated for p in chain]),
        np.concatenate([p.sources for p in chain]),
        [look for p in chain for look in p.looks],
        first.classifying,
        first.origin_id,
    )


def _final_ids(chains: list[list[_Piece]]) -> list[int]:
    """A chain keeps its first piece's tracker id unless an earlier chain has it; cut-off
    pieces get new ids above every tracker id."""
    used: set[int] = set()
    top = max((int(p.sources.max()) for chain in chains for p in chain), default=0)
    ids = []
    for chain in chains:
        wanted = int(chain[0].sources[0])
        if wanted in used:
            top += 1
            wanted = top
        used.add(wanted)
        ids.append(wanted)
    return ids


# ---- 4. fill in -----------------------------------------------------------------------------


def _fill(piece: _Piece, max_gap: int, geometry: Geometry) -> _Piece:
    """Boxes on the frames between two boxes up to ``max_gap`` apart, linearly, marked
    interpolated; not across an exit (both ends at the frame edge) longer than the stride."""
    steps = np.diff(piece.frames)
    if len(steps) == 0 or steps.max() <= 1:
        return piece
    parts = {
        name: [getattr(piece, name)[:1]]
        for name in ("frames", "times", "boxes", "confidences", "interpolated", "sources")
    }
    for i, step in enumerate(steps.tolist()):
        a, b = i, i + 1
        exit_gap = step > geometry.stride and _at_edge(piece.boxes[a], geometry) and _at_edge(piece.boxes[b], geometry)
        if 1 < step <= max_gap and not exit_gap:
            w = (np.arange(1, step) / step)[:, None]
            parts["frames"].append(piece.frames[a] + np.arange(1, step))
            parts["times"].append(piece.times[a] + (piece.times[b] - piece.times[a]) * w[:, 0])
            parts["boxes"].append(((1 - w) * piece.boxes[a] + w * piece.boxes[b]).astype(np.float32))
            parts["confidences"].append(np.full(step - 1, min(piece.confidences[a], piece.confidences[b]), np.float32))
            parts["interpolated"].append(np.ones(step - 1, bool))
            parts["sources"].append(np.full(step - 1, piece.sources[a], np.int64))
        for name in parts:
            parts[name].append(getattr(piece, name)[b : b + 1])
    joined = {name: np.concatenate(values) for name, values in parts.items()}
    return _Piece(
        joined["frames"],
        joined["times"],
        joined["boxes"],
        joined["confidences"],
        joined["interpolated"],
        joined["sources"],
        piece.looks,
        piece.classifying,
        piece.origin_id,
    )


# ---- geometry ---------------------------------------------------------------------------------


def _centre(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def _diag(boxes: np.ndarray) -> np.ndarray:
    return np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=1)


def _area(boxes: np.ndarray) -> np.ndarray:
    wh = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None)
    return wh[:, 0] * wh[:, 1]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of the boxes of ``a`` and ``b`` row by row."""
    lt = np.maximum(a[:, :2], b[:, :2])
    rb = np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    return inter / np.maximum(_area(a) + _area(b) - inter, 1e-6)


def _near_edge(box: np.ndarray, geometry: Geometry) -> bool:
    """Within half its size of the frame border: leaving or coming in (a track's last boxes at
    the very edge are often trimmed as low-confidence)."""
    m = max(geometry.edge_margin_px, 0.5 * float(min(box[2] - box[0], box[3] - box[1])))
    return bool(box[0] <= m or box[1] <= m or box[2] >= geometry.width - m or box[3] >= geometry.height - m)


def _at_edge(box: np.ndarray, geometry: Geometry) -> bool:
    m = geometry.edge_margin_px
    return bool(box[0] <= m or box[1] <= m or box[2] >= geometry.width - m or box[3] >= geometry.height - m)
