"""Small labelled datasets from real imagery: the real fish cut-outs in samples/assets composited
on real underwater footage, with random size, place, mirror, tilt and light (seeded)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from builders import SAMPLES

CUTOUTS = SAMPLES / "assets" / "fish-cutouts"
FOOTAGE = SAMPLES / "assets" / "video" / "underwater_diver.mov"


def backgrounds(count: int = 12, seed: int = 0) -> list[np.ndarray]:
    """Frames spread over the real dive clip."""
    capture = cv2.VideoCapture(str(FOOTAGE))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    for index in np.linspace(0, total - 1, count).astype(int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
        if ok:
            frames.append(frame)
    capture.release()
    assert frames, f"cannot read {FOOTAGE}"
    return frames


def composite(cutout_bgra: np.ndarray, background: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``size``×``size`` image: a random patch of footage with the fish pasted on it."""
    h, w = background.shape[:2]
    patch_side = int(rng.integers(size * 2, min(h, w)))
    y, x = int(rng.integers(0, h - patch_side + 1)), int(rng.integers(0, w - patch_side + 1))
    canvas = cv2.resize(background[y : y + patch_side, x : x + patch_side], (size, size), interpolation=cv2.INTER_AREA)
    fish = cutout_bgra[:, ::-1] if rng.random() < 0.5 else cutout_bgra
    width = int(size * rng.uniform(0.55, 0.9))
    height = max(4, round(fish.shape[0] * width / fish.shape[1]))
    fish = cv2.resize(fish, (width, height), interpolation=cv2.INTER_AREA)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-12, 12), 1.0)
    fish = cv2.warpAffine(fish, matrix, (width, height))
    fh, fw = min(height, size), min(width, size)
    top, left = int(rng.integers(0, size - fh + 1)), int(rng.integers(0, size - fw + 1))
    alpha = fish[:fh, :fw, 3:4].astype(np.float32) / 255.0
    colour = fish[:fh, :fw, :3].astype(np.float32) * rng.uniform(0.75, 1.15)
    region = canvas[top : top + fh, left : left + fw].astype(np.float32)
    canvas[top : top + fh, left : left + fw] = np.clip(colour * alpha + region * (1 - alpha), 0, 255).astype(np.uint8)
    return canvas


def make_dataset(
    root: Path, species: list[str], per_class: int, size: int = 64, seed: int = 0, ext: str = ".jpg"
) -> Path:
    """``root/<species>/<n>.jpg``: one folder per cut-out name."""
    rng = np.random.default_rng(seed)
    scenes = backgrounds(seed=seed)
    for name in species:
        cutout = cv2.imread(str(CUTOUTS / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            image = composite(cutout, scenes[int(rng.integers(len(scenes)))], size, rng)
            cv2.imwrite(str(folder / f"{name}_{n:03d}{ext}"), image)
    return root
