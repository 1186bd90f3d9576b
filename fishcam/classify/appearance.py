"""A fish's appearance as a small colour descriptor, to tell one fish from another. Pure.

Each classified crop gets one: a hue × saturation histogram of the box's central part (the
edges of a box are mostly water), square-rooted and made unit length, so the dot product of two
descriptors is their Bhattacharyya coefficient (1: the same colours, 0: none shared). It is what
the offline pass (:mod:`fishcam.track.refine`) uses to cut a track that changed fish and to
join fragments of one; colour is robust to the pose and scale changes of one fish, and cheap
(well under a millisecond per crop), and it needs no species model.
"""

from __future__ import annotations

import cv2
import numpy as np

HUE_BINS, SAT_BINS = 18, 4
CENTRE = 0.6  # the central share of the box, each way, that is described


def describe(image_bgr: np.ndarray, xyxy: np.ndarray) -> np.ndarray | None:
    """The descriptor of the fish in box ``xyxy`` of a frame, or None for a box too small."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    w, h = x2 - x1, y2 - y1
    m = (1 - CENTRE) / 2
    left, top = int(max(0, x1 + m * w)), int(max(0, y1 + m * h))
    right, bottom = int(min(image_bgr.shape[1], x2 - m * w)), int(min(image_bgr.shape[0], y2 - m * h))
    if right - left < 4 or bottom - top < 4:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(image_bgr[top:bottom, left:right]), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [HUE_BINS, SAT_BINS], [0, 180, 0, 256]).ravel()
    root = np.sqrt(hist / max(float(hist.sum()), 1.0))
    return (root / max(float(np.linalg.norm(root)), 1e-9)).astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya coefficient of two descriptors: 1 the same colours, 0 nothing shared."""
    return float(np.clip(np.dot(a, b), 0.0, 1.0))
