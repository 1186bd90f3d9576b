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
        self._subtractor = cv2.createBackgroundSubtractorMOG2(
            history=config.history, varThreshold=config.var_threshold, detectShadows=False
        )
        size = config.dilate_px
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)) if size > 1 else None
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
        boxes = [
            (x, y, x + w, y + h) for x, y, w, h, area in stats[1:count].tolist() if area >= self.config.min_area_px
        ]
        # Blobs carry no score: every blob is a full-confidence candidate.
        return Detections.build(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))

    def describe(self) -> dict[str, Any]:
        return {"kind": "motion", **self.config.model_dump()}
