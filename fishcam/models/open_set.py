"""The open-set test of an expert: is a crop one of the expert's species at all?

A softmax over K classes always sums to 1, so a confident top class is no evidence that the fish
is one of the K. The test here asks another question of the same forward pass: how close are the
crop's pooled penultimate features to what the expert saw of each class in training?

- **Features**: the expert's pooled penultimate features (the input of its classifier head),
  centred on the training images' mean feature and L2-normalised. Centring matters for
  CNNs whose features come after a ReLU: all-positive vectors are all alike by cosine.
- **Prototypes**: per class, the normalised mean of its training images' normalised features.
- **Score**: the cosine similarity of the crop to the nearest prototype (higher: more like a
  training class). A crop below the threshold is out of the set: routed like an unsure call.
- **Threshold**: chosen on held-out in-set images (validation), as the split-conformal quantile:
  the ``floor((n + 1) (1 - keep))``-th lowest validation score. For a new crop of one of the
  species, drawn like the validation images, ``P(score >= threshold) >= keep`` (Vovk et al.
  2005; Angelopoulos & Bates 2021). It is a measured value, never a guess: an expert without
  a calibration has no open-set check (docs/models.md, "Open set").

The numbers are pure numpy; the side file that carries the tensors is read as tensors only
(safetensors), checked against its sha256 and its shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fishcam.errors import ModelError

METHOD = "prototype_cosine"
TENSORS = ("center", "prototypes", "counts")
SUFFIX = ".open-set.safetensors"
# What the one log line at load and the docs tell a user to run for an expert without calibration.
CALIBRATE_COMMAND = "python -m fishcam.train.calibrate LABELLED_IMAGES/ --expert WEIGHTS --out DIR"


@dataclass(frozen=True)
class Prototypes:
    """The tensors of a calibration: ``center`` (D,), unit ``prototypes`` (K, D) (a zero row for
    a class without calibration images: never the nearest), ``counts`` (K,) images per class."""

    center: np.ndarray
    prototypes: np.ndarray
    counts: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.center.shape[0])

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Each crop's similarity to its nearest calibrated prototype, in [-1, 1]."""
        return similarity(features, self)


@dataclass(frozen=True)
class Calibration:
    """An expert's open-set check as loaded: its prototypes and the threshold on their score."""

    prototypes: Prototypes
    threshold: float
    keep: float  # the share of in-set crops the threshold was chosen to keep
    source: str  # the side file it came from


def normalise(features: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Centred, unit-length rows (a zero row stays zero)."""
    centred = np.asarray(features, dtype=np.float64) - center
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.maximum(norms, 1e-12)


def build_prototypes(features: np.ndarray, targets: np.ndarray, classes: int) -> Prototypes:
    """Prototypes from the training images' features and their class indices."""
    features, targets = np.asarray(features, dtype=np.float64), np.asarray(targets, dtype=int)
    if features.ndim != 2 or len(features) != len(targets) or not len(features):
        raise ValueError("one feature row per target, at least one")
    counts = np.bincount(targets, minlength=classes)
    # The mean of the class means: a class with many images does not pull the centre its way.
    present = counts > 0
    means = np.stack([features[targets == k].mean(0) for k in np.flatnonzero(present)])
    center = means.mean(0)
    unit = normalise(features, center)
    prototypes = np.zeros((classes, features.shape[1]))
    for k in np.flatnonzero(present):
        mean = unit[targets == k].mean(0)
        prototypes[k] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return Prototypes(center.astype(np.float32), prototypes.astype(np.float32), counts.astype(np.int64))


def similarity(features: np.ndarray, prototypes: Prototypes) -> np.ndarray:
    """Cosine similarity of each row to its nearest calibrated prototype."""
    unit = normalise(features, prototypes.center.astype(np.float64))
    cosines = unit @ prototypes.prototypes.astype(np.float64).T
    cosines[:, prototypes.counts == 0] = -np.inf
    return cosines.max(1).astype(np.float32)


def keep_threshold(scores: np.ndarray, keep: float) -> dict[str, Any]:
    """The split-conformal threshold that keeps at least ``keep`` of new in-set crops: the
    ``floor((n + 1) (1 - keep))``-th lowest of ``n`` held-out in-set scores. With fewer than
    ``1 / (1 - keep) - 1`` scores no score gives that guarantee; the lowest is used and
    ``guaranteed`` is false."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(scores)
    if not n:
        raise ValueError("no held-out in-set images to calibrate the open-set threshold on")
    rank = math.floor((n + 1) * (1 - keep) + 1e-9)
    guaranteed = rank >= 1
    threshold = float(scores[max(rank, 1) - 1])
    return {
        "threshold": round(threshold, 6),
        "keep": keep,
        "guaranteed": guaranteed,
        "images": n,
        "kept": round(float((scores >= round(threshold, 6)).mean()), 4),
    }


def calibrate(
    train_features: np.ndarray, train_targets: np.ndarray, held_out_features: np.ndarray, classes: int, keep: float
) -> tuple[Prototypes, dict[str, Any]]:
    """Prototypes from the training images, the threshold from held-out in-set images (their
    features computed by the same expert), and the record of both."""
    prototypes = build_prototypes(train_features, train_targets, classes)
    record = keep_threshold(similarity(held_out_features, prototypes), keep)
    record["prototype_images"] = int(prototypes.counts.sum())
    record["classes_without_images"] = int((prototypes.counts == 0).sum())
    return prototypes, record


# ---- the side file -----------------------------------------------------------------------


def write_prototypes(path: Path, prototypes: Prototypes) -> None:
    """``center``, ``prototypes`` and ``counts`` as a safetensors file (tensors only)."""
    import torch
    from safetensors.torch import save_file

    tensors = {
        "center": torch.from_numpy(np.ascontiguousarray(prototypes.center, dtype=np.float32)),
        "prototypes": torch.from_numpy(np.ascontiguousarray(prototypes.prototypes, dtype=np.float32)),
        "counts": torch.from_numpy(np.ascontiguousarray(prototypes.counts, dtype=np.int64)),
    }
    save_file(tensors, str(path), metadata={"fishcam": "open-set", "method": METHOD})


def read_prototypes(path: Path, labels: int, sha256: str | None = None) -> Prototypes:
    """The side file, as tensors only: a safetensors file (nothing in it can run), its checksum
    when the manifest gives one, the three tensors with shapes that fit ``labels`` classes."""
    from fishcam.models.hub import sha256_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ModelError(
            f"open-set prototypes {path} must be a .safetensors file (tensors only; fishcam never unpickles "
            f"a calibration): run `{CALIBRATE_COMMAND}` again"
        )
    if not path.is_file():
        raise ModelError(f"open-set prototypes not found: {path} (the manifest's open_set.prototypes)")
    if sha256 and sha256_file(path) != sha256.lower():
        raise ModelError(f"open-set prototypes {path} do not match the manifest's sha256: damaged or replaced")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"open-set prototypes {path} are not a readable safetensors file: {exc}") from exc
    if sorted(tensors) != sorted(TENSORS):
        raise ModelError(f"open-set prototypes {path} hold {sorted(tensors)}, expected {list(TENSORS)}")
    center, protos, counts = (tensors[name] for name in TENSORS)
    shapes_fit = (
        center.ndim == 1 and protos.shape == (labels, center.shape[0]) and counts.shape == (labels,)
        and np.issubdtype(protos.dtype, np.floating) and np.issubdtype(center.dtype, np.floating)
    )  # fmt: skip
    if not shapes_fit:
        raise ModelError(
            f"open-set prototypes {path} do not fit an expert with {labels} labels: center {center.shape}, "
            f"prototypes {protos.shape}, counts {counts.shape}"
        )
    if not np.isfinite(protos).all() or not np.isfinite(center).all() or not (counts > 0).any():
        raise ModelError(f"open-set prototypes {path} hold no usable prototype (NaN, or no class calibrated)")
    return Prototypes(center.astype(np.float32), protos.astype(np.float32), counts.astype(np.int64))
