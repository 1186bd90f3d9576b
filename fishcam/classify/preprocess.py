"""Crops to a normalised NCHW batch with cv2 and one numpy pass (no PIL on the hot path)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fishcam.models.expert_spec import Preprocess

_INTERP = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def to_batch(crops_bgr: Sequence[np.ndarray], pre: Preprocess) -> np.ndarray:
    """float32 array (N, 3, H, W) ready for the network."""
    height, width = pre.size
    batch = np.empty((len(crops_bgr), height, width, 3), dtype=np.uint8)
    for i, crop in enumerate(crops_bgr):
        batch[i] = _resize(crop, pre, width, height)
    if pre.color == "RGB":
        batch = batch[..., ::-1]
    mean = np.asarray(pre.mean, dtype=np.float32) * 255.0
    scale = 1.0 / (np.asarray(pre.std, dtype=np.float32) * 255.0)
    out = (batch.astype(np.float32) - mean) * scale
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _resize(crop: np.ndarray, pre: Preprocess, width: int, height: int) -> np.ndarray:
    if crop.ndim == 2:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    if pre.resize == "center_crop":
        h, w = crop.shape[:2]
        short = min(height, width) / pre.crop_pct
        scale = short / min(h, w)
        new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
        crop = cv2.resize(crop, (new_w, new_h), interpolation=_interpolation(pre, scale))
        top, left = (new_h - height) // 2, (new_w - width) // 2
        return crop[top : top + height, left : left + width]
    scale = min(width / crop.shape[1], height / crop.shape[0])
    return cv2.resize(crop, (width, height), interpolation=_interpolation(pre, scale))


def _interpolation(pre: Preprocess, scale: float) -> int:
    # Shrinking with INTER_AREA matches the anti-aliased resize the models were trained with.
    return cv2.INTER_AREA if scale < 1.0 else _INTERP[pre.interpolation]
