"""Motion detector for fixed cameras: OpenCV background subtraction, no weights.

Every moving blob larger than ``min_area_px`` is a candidate fish. It does not work on a moving
camera (dive footage), where everything moves: use a YOLO fish detector there.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from fishcam.config import MotionConfig
from fishcam.types import Detections, Frame


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

    def detect(self, frame: Frame) -> Detections:
        image = frame.image_bgr
        if self.config.blur_px > 1:
            k = self.config.blur_px | 1
            image = cv2.GaussianBlur(image, (k, k), 0)
        mask = self._subtractor.apply(image)
        self._seen += 1
        if self._seen <= self.config.warmup_frames:
            return Detections.empty()
        _, mask = cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        if self._kernel is not None:
            mask = cv2.dilate(mask, self._kernel)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        blobs = [(x, y, x + w, y + h, area) for x, y, w, h, area in stats[1:count].tolist()]
        merged = merge_fragments(blobs, self.config.merge_gap_px, self.config.fragment_ratio)
        boxes = [b[:4] for b in merged if b[4] >= self.config.min_area_px]
        return Detections.build(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))

    def describe(self) -> dict[str, Any]:
        return {"kind": "motion", **self.config.model_dump()}


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
