"""The evidence a reviewer looks at, saved as the run goes: each track's best views and each
species' MaxN frame.

``views/<track id>/f<frame>.jpg`` are the crops the species models classified (the same padded
boxes the pipeline cut), at most ``max_views`` a track, with ``views/index.json``::

    {"version": 1, "final": bool, "rule": "...",
     "tracks": {"<id>": {"species", "rank", "counted", "reason", "online_ids",
                         "views": [{"file": "<id>/f0000123.jpg", "frame", "time_s", "species",
                                    "score", "origin", "agrees", "area_px", "confidence", "box",
                                    "crop_px", "online_id"}]}}}

Views are listed best first: a look whose call agrees with the track's species before one that
does not, then by the call's score to two decimals, then by the crop's area (a bigger view). A
track's views are written when it closes and the index at the writer's next flush, so a live
run's closed tracks are reviewable; ``final`` becomes true at the end. For a recorded video the
offline pass renames and joins tracks: the views are then regrouped under the final ids
(``tracks.csv``'s) through the pass's (tracker id, frame) → final id map, and views of dropped
tracks or trimmed-away frames are deleted. JPEG encoding runs on a thread beside the frame loop.

``maxn/<safe species name>.jpg`` is, for each species of the final counts, the frame of its
MaxN with the boxes of its counted tracks there, labelled with their ids; ``maxn/index.json``::

    {"version": 1, "species": [{"species", "rank", "max_n", "frame", "time_s", "track_ids", "file",
                                "exact", "boxes_on_frame"}]}

While the run goes, each species (by the open tracks' vote of the moment) keeps the JPEG of the
first frame on which most of its tracks were seen together, encoded only when that number grows.
At the end the boxes drawn are always the final counted tracks' on the frame. Where the kept
frame is the final counts' MaxN frame (the usual case) it is used; otherwise a video file is read
again, through the same frame numbering as the run (``reread``), up to the frames still wanted, so
``exact`` is true. A live stream cannot be read back: its kept frame is written with ``exact``
false when it is not the counts' MaxN frame (it shows ``boxes_on_frame`` counted fish of the
species; the final votes or the evidence rules moved the maximum elsewhere).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fishcam.classify.crops import padded_boxes
from fishcam.classify.ledger import TrackLedger
from fishcam.errors import SourceError
from fishcam.sinks.files import write_json
from fishcam.types import (
    UNCLASSIFIED_LABEL,
    CallRecord,
    Detections,
    Frame,
    SpeciesCall,
    SpeciesCount,
    TrackSummary,
)

log = logging.getLogger(__name__)

VIEWS_DIR = "views"
MAXN_DIR = "maxn"
INDEX_NAME = "index.json"
JPEG_QUALITY = 90
KEPT_QUALITY = 95  # a kept MaxN candidate is decoded, drawn on and encoded again

# Frames of the run's video by index, numbered as the run numbered them.
Reread = Callable[[set[int]], dict[int, np.ndarray]]
RULE = "agrees with the track's species, then the call's score (to 0.01), then the crop's area (best first)"


def encode_jpeg(image_bgr: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image_bgr), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


@dataclass
class _View:
    online_id: int
    frame: int
    time_s: float
    area: float
    confidence: float
    box: tuple[float, ...]  # the detection's
    rect: tuple[int, int, int, int]  # the crop's pixels in the frame (padded, clipped)
    jpeg: Future[bytes] | bytes
    call: SpeciesCall | None = None
    file: str = ""  # relative to views/ once written

    def data(self) -> bytes:
        return self.jpeg if isinstance(self.jpeg, bytes) else self.jpeg.result()

    def rank(self, species: str) -> tuple[bool, float, float]:
        """The sort key of "best": agreement with the track's species, score, area."""
        if self.call is None:
            return (False, 0.0, self.area)
        # Scores to 0.01: a model's 0.99997 over its 0.99991 says nothing; a bigger view does.
        return (self.call.label == species, round(float(self.call.score), 2), self.area)

    def entry(self, species: str) -> dict[str, Any]:
        return {
            "file": self.file,
            "online_id": self.online_id,
            "frame": self.frame,
            "time_s": round(self.time_s, 3),
            "species": self.call.label if self.call else None,
            "score": round(float(self.call.score), 4) if self.call else None,
            "origin": self.call.origin.value if self.call else None,
            "agrees": self.call is not None and self.call.label == species,
            "area_px": round(self.area, 1),
            "confidence": round(self.confidence, 4),
            "box": [round(v, 1) for v in self.box],
            "crop_px": list(self.rect),
        }


@dataclass
class _Track:
    species: str
    counted: bool
    reason: str
    online_ids: tuple[int, ...]
    views: list[_View] = field(default_factory=list)
    rank: str = ""


@dataclass
class _Kept:
    """A species' first frame with the most of its open tracks on it, so far."""

    n: int
    frame: int
    time_s: float
    jpeg: Future[bytes]


class Evidence:
    """Best views and MaxN frames of one run folder; fed by the RunWriter (see the module)."""

    def __init__(
        self,
        out_dir: Path,
        *,
        views: bool = True,
        maxn: bool = True,
        max_views: int = 6,
        crop_padding: float = 0.1,
        classified: bool = True,
        reread: Reread | None = None,
        overlay: Any = None,
    ) -> None:
        """``classified``: species models run (else every track is unclassified); ``reread``:
        how to read the run's video again (None for a live stream)."""
        self.out_dir = out_dir
        self.views_on, self.maxn_on = views, maxn
        self.max_views = max_views
        self.crop_padding = crop_padding
        self.classified = classified
        self.reread = reread
        self.overlay = overlay
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fishcam-views")
        self._open: dict[int, list[_View]] = {}
        self._calls: dict[tuple[int, int], SpeciesCall] = {}
        self._closed: dict[int, _Track] = {}
        self._kept: dict[str, _Kept] = {}
        self._dirty = False

    # ---- during the run -------------------------------------------------------------------

    def on_frame(self, frame: Frame, detections: Detections, detected: bool, ledger: TrackLedger) -> None:
        if not detected or len(detections) == 0:
            return
        if self.views_on:
            looked = ledger.looked_on(frame.index)
            if looked:
                rows = [i for i, tid in enumerate(detections.track_id.tolist()) if tid in looked]
                height, width = frame.image_bgr.shape[:2]
                rects = padded_boxes(detections.xyxy[rows], self.crop_padding, width, height)
                for row, rect in zip(rows, rects.tolist(), strict=True):
                    x1, y1, x2, y2 = rect  # the very crop the species models were given
                    if x2 <= x1 or y2 <= y1:
                        continue
                    tid = int(detections.track_id[row])
                    views = self._open.setdefault(tid, [])
                    views.append(
                        _View(
                            tid, frame.index, frame.time_s, float(detections.area[row]),
                            float(detections.confidence[row]), tuple(float(v) for v in detections.xyxy[row]),
                            (x1, y1, x2, y2), self._pool.submit(encode_jpeg, frame.image_bgr[y1:y2, x1:x2].copy()),
                        )
                    )  # fmt: skip
                    if len(views) > 4 * self.max_views:  # calls unknown yet: the smallest view goes
                        views.remove(min(views, key=lambda v: v.area))
        if self.maxn_on:
            self._keep_candidate(frame, detections, ledger)

    def _keep_candidate(self, frame: Frame, detections: Detections, ledger: TrackLedger) -> None:
        on_frame: dict[str, int] = {}
        for tid in detections.track_id.tolist():
            if tid < 0:
                continue
            label = ledger.label(tid) if self.classified else (UNCLASSIFIED_LABEL,)
            if label is not None:
                on_frame[label[0]] = on_frame.get(label[0], 0) + 1
        encoded: Future[bytes] | None = None
        for species, n in on_frame.items():
            kept = self._kept.get(species)
            if kept is None or n > kept.n:
                if encoded is None:  # one encoding for every species that peaks here
                    encoded = self._pool.submit(encode_jpeg, frame.image_bgr.copy(), KEPT_QUALITY)
                self._kept[species] = _Kept(n, frame.index, frame.time_s, encoded)

    def on_calls(self, calls: list[CallRecord]) -> None:
        if self.views_on:
            for record in calls:
                self._calls[(record.track_id, record.frame)] = record.call

    def on_track_closed(self, track: TrackSummary) -> None:
        """The track's best views written under its (online) id."""
        if not self.views_on:
            return
        tid = int(track.track_id)
        views = self._open.pop(tid, [])
        calls = {look.frame: look.call for look in track.looks if look.call is not None}
        for view in views:
            view.call = calls.get(view.frame) or self._calls.pop((tid, view.frame), None)
        for key in [k for k in self._calls if k[0] == tid]:
            del self._calls[key]
        entry = _Track(
            track.species, track.counted, track.reason, (tid,), self._ranked(views, track.species), track.rank
        )
        folder = self.out_dir / VIEWS_DIR / str(tid)
        if folder.is_dir():  # an id used again (a tracker reset): the newer track's views
            shutil.rmtree(folder)
        for view in entry.views:
            view.file = f"{tid}/f{view.frame:07d}.jpg"
            self._write_bytes(self.out_dir / VIEWS_DIR / view.file, view.data())
            view.jpeg = b""  # on disk now: a day-long live run keeps no JPEGs in memory
        self._closed[tid] = entry
        self._dirty = True

    def flush(self, final: bool = False) -> None:
        """views/index.json rewritten (atomically) when a track has closed since the last time."""
        if self.views_on and (self._dirty or final):
            (self.out_dir / VIEWS_DIR).mkdir(parents=True, exist_ok=True)
            write_json(self.out_dir / VIEWS_DIR / INDEX_NAME, self._index(final))
            self._dirty = False

    # ---- at the end -----------------------------------------------------------------------

    def finish(
        self, tracks: list[TrackSummary], owner: dict[tuple[int, int], int] | None, counts: list[SpeciesCount]
    ) -> None:
        """Views regrouped under the final ids (``owner``: the offline pass's map, None when the
        tracks kept their online ids), the final index, and the MaxN frames."""
        try:
            if self.views_on:
                if owner is not None:
                    self._regroup(tracks, owner)
                else:
                    for t in tracks:
                        entry = self._closed.get(t.track_id)
                        if entry is not None:
                            entry.species, entry.counted, entry.reason, entry.rank = (
                                t.species,
                                t.counted,
                                t.reason,
                                t.rank,
                            )
                self.flush(final=True)
            if self.maxn_on:
                self._write_maxn(tracks, counts)
        finally:
            self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _regroup(self, tracks: list[TrackSummary], owner: dict[tuple[int, int], int]) -> None:
        root = self.out_dir / VIEWS_DIR
        staging = self.out_dir / (VIEWS_DIR + ".final")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        by_id = {t.track_id: t for t in tracks}
        grouped: dict[int, list[_View]] = {}
        for online_id, entry in self._closed.items():
            for view in entry.views:
                final = owner.get((online_id, view.frame))
                if final in by_id:
                    grouped.setdefault(final, []).append(view)
        regrouped: dict[int, _Track] = {}
        for t in tracks:
            views = self._ranked(grouped.get(t.track_id, []), t.species)
            seen: set[int] = set()
            kept = []
            for view in views:
                if view.frame in seen:  # two joined fragments seen on one frame: one view
                    continue
                seen.add(view.frame)
                name = f"{t.track_id}/f{view.frame:07d}.jpg"
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(root / view.file, target)
                view.file = name
                kept.append(view)
            regrouped[t.track_id] = _Track(t.species, t.counted, t.reason, tuple(t.online_ids), kept, t.rank)
        if root.exists():
            shutil.rmtree(root)  # what is left: views of dropped tracks and trimmed frames
        os.replace(staging, root)
        self._closed = regrouped

    def _ranked(self, views: list[_View], species: str) -> list[_View]:
        return sorted(views, key=lambda v: v.rank(species), reverse=True)[: self.max_views]

    def _index(self, final: bool) -> dict[str, Any]:
        tracks = {
            str(tid): {
                "species": entry.species,
                "counted": entry.counted,
                "rank": entry.rank,
                "reason": entry.reason,
                "online_ids": list(entry.online_ids),
                "views": [view.entry(entry.species) for view in entry.views],
            }
            for tid, entry in sorted(self._closed.items())
        }
        return {"version": 1, "final": final, "rule": RULE, "tracks": tracks}

    def _write_maxn(self, tracks: list[TrackSummary], counts: list[SpeciesCount]) -> None:
        wanted = [c for c in counts if c.max_n > 0]
        if not wanted:
            return
        folder = self.out_dir / MAXN_DIR
        folder.mkdir(parents=True, exist_ok=True)
        images: dict[int, np.ndarray] = {}
        chosen: dict[str, tuple[int, float]] = {}
        for c in wanted:
            kept = self._kept.get(c.species)
            if kept is not None and kept.frame == c.max_n_frame and kept.frame not in images:
                _decode_into(images, kept)
            chosen[c.species] = (c.max_n_frame, c.max_n_time_s)
        missing = {c.max_n_frame for c in wanted if c.max_n_frame not in images}
        if missing and self.reread is not None:
            try:
                images.update(self.reread(missing))
            except SourceError as exc:  # the video moved or went since the run read it
                log.warning("MaxN frames not read back: %s", exc)
        elif missing:  # a live stream: the kept frame, which is not the counts' MaxN frame
            for c in wanted:
                kept = self._kept.get(c.species)
                if c.max_n_frame in missing and kept is not None:
                    _decode_into(images, kept)
                    chosen[c.species] = (kept.frame, kept.time_s)
        entries = []
        for c in wanted:
            frame, time_s = chosen[c.species]
            image = images.get(frame)
            boxes, ids = _boxes_on(tracks, c.species, frame)
            if image is None or not ids:
                why = "no picture of it was kept or read back" if image is None else "no counted box of it there"
                log.warning("no MaxN evidence frame for %s (frame %d: %s)", c.species, frame, why)
                continue
            exact = frame == c.max_n_frame and len(ids) == c.max_n
            entries.append(self._save_maxn(folder, c, image, boxes, ids, frame, time_s, exact=exact))
        write_json(folder / INDEX_NAME, {"version": 1, "species": entries})

    def _save_maxn(
        self, folder: Path, count: SpeciesCount, image: np.ndarray, boxes: np.ndarray, ids: list[int],
        frame: int, time_s: float, *, exact: bool,
    ) -> dict[str, Any]:  # fmt: skip
        from fishcam.sinks.exports import safe_name  # here: exports imports the run writer, which imports this

        name = safe_name(count.species) + ".jpg"
        self._write_bytes(folder / name, encode_jpeg(self._annotated(image, boxes, ids, count.species)))
        return {
            "species": count.species,
            "rank": count.rank,
            "max_n": count.max_n,
            "frame": frame,
            "time_s": round(time_s, 3),
            "track_ids": ids,
            "file": name,
            "exact": exact,
            "boxes_on_frame": len(ids),
        }

    def _annotated(self, image: np.ndarray, boxes: np.ndarray, ids: list[int], species: str) -> np.ndarray:
        detections = Detections.build(boxes, track_id=ids)
        labels = [f"#{tid} {species}" for tid in ids]
        if self.overlay is None:
            from fishcam.render.overlay import Overlay

            self.overlay = Overlay()
        return self.overlay.draw_labels(image, detections, labels)

    @staticmethod
    def _write_bytes(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name("." + path.name + ".tmp")
        temp.write_bytes(data)
        os.replace(temp, path)


def _boxes_on(tracks: list[TrackSummary], species: str, frame: int) -> tuple[np.ndarray, list[int]]:
    """The boxes of ``species``' counted tracks on ``frame`` and their ids."""
    boxes, ids = [], []
    for t in tracks:
        if t.counted and t.species == species and frame in t.frames:
            boxes.append(t.boxes[t.frames.index(frame)])
            ids.append(int(t.track_id))
    return np.asarray(boxes, np.float32).reshape(-1, 4), ids


def _decode_into(images: dict[int, np.ndarray], kept: _Kept) -> None:
    import cv2

    image = cv2.imdecode(np.frombuffer(kept.jpeg.result(), np.uint8), cv2.IMREAD_COLOR)
    if image is not None:
        images[kept.frame] = image


def reread_video(path: Path) -> Reread:
    """Frames of a video file by index, read again through :class:`VideoFileSource`, so that they
    carry the numbers the run gave them (from timestamps, past damaged stretches); decoded
    sequentially up to the last one wanted: exact, where a seek may land on another frame."""

    def read(wanted: set[int]) -> dict[int, np.ndarray]:
        from fishcam.sources.file import VideoFileSource

        found: dict[int, np.ndarray] = {}
        if not wanted:
            return found
        source = VideoFileSource(path)
        try:
            last = max(wanted)
            for frame in source:
                if frame.index in wanted:
                    found[frame.index] = frame.image_bgr
                if frame.index >= last:
                    break
        finally:
            source.close()
        return found

    return read
