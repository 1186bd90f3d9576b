"""Motion detector for fixed cameras: background subtraction, no weights.

It does not work on a moving camera (dive footage), where everything moves: use a YOLO fish
detector there.

Two background models, as in the dual-background detectors of temporarily static objects
(Porikli, Ivanov & Haga 2008; Tian, Feris & Hampapur 2008):

* OpenCV's MOG2 (``history`` frames) finds what *moves*. It adapts quickly, so ripples, weed and
  slow light changes become background, but so does a fish that stops: within about a tenth of
  ``history`` frames it is gone, and it comes back as a new fish when it swims on.
* A per-pixel running average of the scene is updated **selectively**: only outside the boxes of
  the fish being followed (Koller et al. 1994). It is the scene as it was before each fish
  arrived. Where a fish is (or stopped), the frame still differs from it, and that difference,
  within the fish's last box, keeps the fish detected at its full outline while it rests. When
  it swims away the pixels it leaves match this background again, so nothing is held there (no
  ghost); MOG2's own ghost of a fish that rested long (the place it left, foreground to MOG2
  until it relearns it) does not differ from this background either and is dropped, since a
  new blob must be foreground to both models.

What is not a fish:

* Light: a global brightness change (sun through waves, cloud, a lamp) is divided out per colour
  channel before subtraction: the gain is the median ratio of the frame to the background over
  the pixels where no fish is.
* Fins, tails, ripples, glints: small blobs close to a much larger one are folded into it
  (``merge_fragments``); blobs under ``min_area_px`` are dropped; and a blob becomes a fish only
  once it has moved, as a whole, ``min_travel`` of its size from where it appeared (both edges
  of its box the same way: a blob that only grows or shrinks, as a glint does, has not moved).
  A shimmering patch of light or swaying weed stays where it is; a fish arrives. A fish that
  stops keeps being one, since it travelled to get there.
* A fish that rests longer than ``max_still_s`` is given up to the background.
* A ghost: a region the background model learnt while a fish rested there (one already in view
  when the video starts) is, once the fish leaves, still and different from the background.
  It is told from a resting fish by its outline (as Tian et al. tell removed from abandoned
  objects): a fish's edges are in the frame, a ghost's are in the background image. A ghost is
  copied into the background at once.

The detector sees only its own frames: it follows blobs from frame to frame itself (greedy box
overlap), independently of the tracker, to know which blobs have travelled and which are still.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fishcam.config import MotionConfig
from fishcam.types import Detections, Frame

_GAIN_STEP = 8  # every 8th pixel, each way, estimates the global gain and the noise
_MAX_MISSED = 3  # frames a blob may vanish before what the detector knows of it is forgotten
_STILL_SUPPORT = 0.05  # a blob whose pixels are under 5 % moving (MOG2) is still
_GHOST_CHECK_S = 0.5  # a still fish is checked for a ghost when it stops and this often after


@dataclass
class _Blob:
    """One object the detector follows: where it appeared, how far it went, whether it is still."""

    box: tuple[int, int, int, int]
    origin: tuple[int, int, int, int]  # its box when first seen
    travel: float = 0.0  # farthest it has moved (as a whole) from there, px
    fish: bool = False  # has travelled far enough to be a fish
    missed: int = 0
    still_since: float | None = None  # time it stopped moving (MOG2 lost it), None while it moves
    checked: float | None = None  # time it was last checked for a ghost while still


class MotionDetector:
    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self.class_names = {0: "moving object"}
        self.reset()
        size = config.dilate_px
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)) if size > 1 else None

    def reset(self) -> None:
        """Forget the background: a new video or camera starts learning its own."""
        self._subtractor = cv2.createBackgroundSubtractorMOG2(
            history=self.config.history, varThreshold=self.config.var_threshold, detectShadows=False
        )
        self._seen = 0
        self._background: np.ndarray | None = None  # float32 BGR, updated only where no fish is
        self._blobs: list[_Blob] = []

    def detect(self, frame: Frame) -> Detections:
        cfg = self.config
        image = frame.image_bgr
        if cfg.blur_px > 1:
            k = cfg.blur_px | 1
            image = cv2.GaussianBlur(image, (k, k), 0)
        if self._background is None or self._background.shape != image.shape:
            self._background = image.astype(np.float32)
            self._blobs = []
        # Where the fish followed so far are: the background must not learn there, and there the
        # difference from the background before they came counts, moving or not.
        protect = self._boxes_mask(image.shape[:2], self.config.dilate_px, fish_only=False)
        still = cv2.convertScaleAbs(self._background)
        if cfg.compensate_light:
            image = self._relight(image, still, protect)
        self._seen += 1
        moving = self._subtractor.apply(image)
        if self._seen <= cfg.warmup_frames:
            self._learn(image, protect)
            return Detections.empty()
        opening = np.ones((3, 3), np.uint8)
        moving = cv2.morphologyEx(cv2.threshold(moving, 127, 255, cv2.THRESH_BINARY)[1], cv2.MORPH_OPEN, opening)
        differs = cv2.morphologyEx(self._differs(image, still, protect), cv2.MORPH_OPEN, opening)
        hold = self._boxes_mask(image.shape[:2], max(2, cfg.dilate_px // 2), fish_only=True)
        mask = cv2.bitwise_and(differs, cv2.bitwise_or(moving, hold))
        grown = cv2.dilate(mask, self._kernel) if self._kernel is not None else mask
        count, _, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
        blobs = [(x, y, x + w, y + h, area) for x, y, w, h, area in stats[1:count].tolist()]
        merged = merge_fragments(blobs, cfg.merge_gap_px, cfg.fragment_ratio)
        boxes = [(x1, y1, x2, y2) for x1, y1, x2, y2, area in merged if area >= cfg.min_area_px]
        found = self._follow(boxes, moving, mask, image, frame.time_s)
        self._learn(image, self._boxes_mask(image.shape[:2], cfg.dilate_px, fish_only=False))
        return Detections.build(np.asarray(found, dtype=np.float32).reshape(-1, 4))

    def describe(self) -> dict[str, Any]:
        return {"kind": "motion", **self.config.model_dump()}

    # ---- the selective background ---------------------------------------------------------

    def _relight(self, image: np.ndarray, background: np.ndarray, protect: np.ndarray) -> np.ndarray:
        """The frame with a global brightness change divided out, per colour channel (``background``:
        the selective background, uint8)."""
        s = _GAIN_STEP
        free = protect[::s, ::s] == 0
        now = image[::s, ::s][free].astype(np.float32)
        then = background[::s, ::s][free].astype(np.float32)
        usable = (then > 8) & (now > 8) & (now < 250)  # ratios of dark or clipped pixels are noise
        gains = []
        for c in range(3):
            ok = usable[:, c]
            gains.append(float(np.median(now[ok, c] / then[ok, c])) if ok.sum() > 100 else 1.0)
        if all(abs(g - 1.0) < 0.005 for g in gains):
            return image
        relit = cv2.transform(image, np.diag([1 / g for g in gains]).astype(np.float32))
        if max(gains) > 1.0 and int(now.max(initial=0)) >= 253:
            # Where the brighter light saturates the sensor, the frame says only "at least 255":
            # where the relit background would saturate too, that is the background.
            unclipped = cv2.inRange(image, (0, 0, 0), (252, 252, 252))
            unsaturated = cv2.inRange(background, (0, 0, 0), tuple(250 / g for g in gains))
            cv2.copyTo(background, cv2.bitwise_not(cv2.bitwise_or(unclipped, unsaturated)), relit)
        return relit

    def _differs(self, image: np.ndarray, background: np.ndarray, protect: np.ndarray) -> np.ndarray:
        """255 where the frame differs from the selective background by more than MOG2's
        threshold would allow (``var_threshold`` times the pixel noise, at least 2 grey levels)."""
        diff = cv2.transform(cv2.absdiff(image, background), np.ones((1, 3), np.float32))  # |dB|+|dG|+|dR|
        s = _GAIN_STEP
        sample = diff[::s, ::s][protect[::s, ::s] == 0]
        # The noise: that sum's median is about 2.3 sigma for Gaussian noise of sigma per channel;
        # at least 2 grey levels, MOG2's smallest variance (4). MOG2 thresholds the squared colour
        # distance at var_threshold x variance; the sum of the three differences is at most sqrt(3)
        # times that distance.
        sigma = max(2.0, float(np.median(sample)) / 2.3) if len(sample) else 2.0
        limit = min(254.0, np.sqrt(3.0 * self.config.var_threshold) * sigma)
        return cv2.threshold(diff, limit, 255, cv2.THRESH_BINARY)[1]

    def _boxes_mask(self, shape: tuple[int, ...], margin: int, fish_only: bool) -> np.ndarray:
        """255 in the boxes (grown by ``margin``) of the fish followed, and, unless ``fish_only``, of
        the blobs seen this frame that are not fish yet."""
        mask = np.zeros(shape[:2], np.uint8)
        for blob in self._blobs:
            if blob.fish or (not fish_only and blob.missed == 0):
                x1, y1, x2, y2 = blob.box
                mask[max(0, y1 - margin) : y2 + margin, max(0, x1 - margin) : x2 + margin] = 255
        return mask

    def _learn(self, image: np.ndarray, protect: np.ndarray) -> None:
        """Update the background outside ``protect``, at MOG2's rate (1/frames seen, then 1/history)."""
        assert self._background is not None
        rate = 1.0 / min(self._seen, self.config.history)
        cv2.accumulateWeighted(image, self._background, rate, mask=cv2.bitwise_not(protect))

    # ---- following blobs -----------------------------------------------------------------

    def _follow(
        self, boxes: list[tuple], moving: np.ndarray, mask: np.ndarray, image: np.ndarray, time_s: float
    ) -> list[tuple]:
        """Match this frame's boxes to the blobs followed so far; the fish among them."""
        cfg = self.config
        height, width = mask.shape
        old = self._blobs
        iou = _iou_matrix(boxes, [b.box for b in old])
        taken: set[int] = set()
        now: list[_Blob] = []
        out = []
        for i in np.argsort([-(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]) if boxes else []:
            box = boxes[i]
            j = next((int(j) for j in np.argsort(-iou[i]) if iou[i, j] > 0.1 and int(j) not in taken), None)
            if j is None:
                blob = _Blob(box, box)
            else:
                taken.add(j)
                blob = old[j]
                blob.box, blob.missed = box, 0
            blob.travel = max(blob.travel, _shift(blob.origin, box, width, height))
            side = min(box[2] - box[0], box[3] - box[1])
            blob.fish = blob.fish or blob.travel >= cfg.min_travel * side
            x1, y1, x2, y2 = box
            inside = mask[y1:y2, x1:x2]
            support = cv2.countNonZero(cv2.bitwise_and(moving[y1:y2, x1:x2], inside)) / max(1, cv2.countNonZero(inside))
            if support >= _STILL_SUPPORT:
                blob.still_since = blob.checked = None
            elif blob.still_since is None:
                blob.still_since = time_s
            if blob.fish and blob.still_since is not None:
                if blob.checked is None or time_s - blob.checked >= _GHOST_CHECK_S:
                    blob.checked = time_s
                    if self._is_ghost(image, box, inside):
                        self._forget(image, box)
                        continue
                if time_s - blob.still_since > cfg.max_still_s:
                    continue  # rested too long: the background may learn it
            now.append(blob)
            if blob.fish:
                out.append(box)
        for j, blob in enumerate(old):
            if j not in taken and blob.missed < _MAX_MISSED:
                blob.missed += 1
                now.append(blob)
        self._blobs = now
        return out

    def _is_ghost(self, image: np.ndarray, box: tuple, inside: np.ndarray) -> bool:
        """Whether the still region's outline is in the background image rather than in the frame."""
        assert self._background is not None
        x1, y1, x2, y2 = box
        ring = cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        if ring.sum() < 8:
            return False
        here = _edges(cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY))
        before = _edges(cv2.cvtColor(cv2.convertScaleAbs(self._background[y1:y2, x1:x2]), cv2.COLOR_BGR2GRAY))
        return float(before[ring].mean()) > float(here[ring].mean())

    def _forget(self, image: np.ndarray, box: tuple) -> None:
        """A ghost: what is there now is the background."""
        assert self._background is not None
        x1, y1, x2, y2 = box
        self._background[y1:y2, x1:x2] = image[y1:y2, x1:x2]


def _shift(before: tuple, after: tuple, width: int, height: int) -> float:
    """How far a box moved as a whole, px: along each axis, the smaller move of its two edges if
    both moved the same way (a blob that grows or shrinks, as a ghost does while it forms, has not
    moved). An edge on the frame's border in either box is not known: the other edge tells."""
    moves = []
    for lo, hi, size in ((0, 2, width), (1, 3, height)):
        edges = []
        for k in (lo, hi):
            on_border = before[k] <= 0 or after[k] <= 0 if k == lo else before[k] >= size or after[k] >= size
            if not on_border:
                edges.append(after[k] - before[k])
        if len(edges) == 2:
            a, b = edges
            moves.append(min(abs(a), abs(b)) if a * b > 0 else 0.0)
        else:
            moves.append(abs(edges[0]) if edges else 0.0)
    return float(np.hypot(moves[0], moves[1]))


def _edges(gray: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def _iou_matrix(a: list[tuple], b: list[tuple]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    p, q = np.asarray(a, np.float64)[:, None, :4], np.asarray(b, np.float64)[None, :, :4]
    w = np.clip(np.minimum(p[..., 2], q[..., 2]) - np.maximum(p[..., 0], q[..., 0]), 0, None)
    h = np.clip(np.minimum(p[..., 3], q[..., 3]) - np.maximum(p[..., 1], q[..., 1]), 0, None)
    inter = w * h
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / np.maximum(area(p) + area(q) - inter, 1e-9)


def merge_fragments(blobs: list[tuple[int, int, int, int, int]], gap_px: int, ratio: float) -> list[tuple]:
    """Fold small blobs into a much larger neighbour within ``gap_px``: a fin or tail that moves
    apart from its body is one fish, while two fish of similar size side by side stay two."""
    blobs = sorted(blobs, key=lambda b: -b[4])
    merged: list[list[int]] = []
    for x1, y1, x2, y2, area in blobs:
        for big in merged:
            near = x1 <= big[2] + gap_px and big[0] <= x2 + gap_px and y1 <= big[3] + gap_px and big[1] <= y2 + gap_px
            if near and area < ratio * big[4]:
                big[0], big[1], big[2], big[3] = min(big[0], x1), min(big[1], y1), max(big[2], x2), max(big[3], y2)
                big[4] += area
                break
        else:
            merged.append([x1, y1, x2, y2, area])
    return [tuple(b) for b in merged]
