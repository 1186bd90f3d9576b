"""Crop geometry: which pixels of a frame a box's crop takes. Pure numpy."""

from __future__ import annotations

import numpy as np


def padded_boxes(xyxy: np.ndarray, padding: float, width: int, height: int) -> np.ndarray:
    """Integer boxes grown by ``padding`` × their size on each side, clipped to the frame."""
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    wh = boxes[:, 2:] - boxes[:, :2]
    grown = np.concatenate([boxes[:, :2] - wh * padding, boxes[:, 2:] + wh * padding], axis=1)
    grown = np.round(grown).astype(np.int64)
    grown[:, [0, 2]] = np.clip(grown[:, [0, 2]], 0, width)
    grown[:, [1, 3]] = np.clip(grown[:, [1, 3]], 0, height)
    return grown


def crop(image: np.ndarray, xyxy: np.ndarray, padding: float = 0.0) -> list[np.ndarray]:
    """Views of ``image`` under each box (padded, clipped); empty boxes give empty arrays."""
    h, w = image.shape[:2]
    return [image[y1:y2, x1:x2] for x1, y1, x2, y2 in padded_boxes(xyxy, padding, w, h)]


def touches_edge(xyxy: np.ndarray, width: int, height: int, margin: int) -> np.ndarray:
    """True for boxes within ``margin`` pixels of the frame border (a fish only partly in view)."""
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    return (
        (boxes[:, 0] <= margin)
        | (boxes[:, 1] <= margin)
        | (boxes[:, 2] >= width - margin)
        | (boxes[:, 3] >= height - margin)
    )
