"""What an expert classifier is: architecture, labels in output order, preprocessing, weights.

The published ConvNeXt-Tiny fish expert is one built-in spec; any other timm/torchvision
classifier comes in through a small manifest file (JSON or YAML) that travels with its weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fishcam.errors import ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The published checkpoint's classes in output order, spelled as it was trained.
PUBLISHED_LABELS = (
    "Bangus", "Big Head Carp", "Black Sea Sprat", "Black Spotted Barb", "Catfish",
    "Climbing Perch", "Fourfinger Threadfin", "Freshwater Eel", "Gilt-Head Bream",
    "Glass Perchlet", "Goby", "Gold Fish", "Gourami", "Grass Carp", "Green Spotted Puffer",
    "Hourse Mackerel", "Indian Carp", "Indo-Pacific Tarpon", "Jaguar Gapote", "Janitor Fish",
    "KnifeFish", "Long-Snouted Pipefish", "Mosquito Fish", "Mudfish", "Mullet", "Pangasius",
    "Perch", "Red Mullet", "Red Sea Bream", "Scat Fish", "Sea Bass", "Shrimp", "Silver Barb",
    "Silver Carp", "Silver Perch", "Snakehead", "Striped Red Mullet", "Tenpounder", "Tilapia",
    "Trout",
)  # fmt: skip

MANIFEST_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass(frozen=True)
class Preprocess:
    """How a crop becomes the network's input."""

    size: tuple[int, int] = (224, 224)  # (height, width)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color: Literal["RGB", "BGR"] = "RGB"
    resize: Literal["squash", "center_crop"] = "squash"
    crop_pct: float = 1.0  # center_crop: resize the shorter side to size/crop_pct, then crop
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"


@dataclass(frozen=True)
class ExpertSpec:
    name: str
    architecture: str  # "torchvision:<fn>" or "timm:<model name>"
    weights: str  # a model reference (see fishcam.models.hub)
    labels: tuple[str, ...]
    preprocess: Preprocess = Preprocess()
    head: str | None = None  # torchvision: dotted path of the Linear layer sized to the labels
    sha256: str | None = None
    key_match: Literal["name", "order"] = "name"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.labels:
            raise ModelError(f"expert {self.name}: no labels")
        if len(set(self.labels)) != len(self.labels):
            raise ModelError(f"expert {self.name}: duplicate labels")
        if not self.architecture.startswith(("torchvision:", "timm:")):
            raise ModelError(f"expert {self.name}: architecture must be torchvision:<name> or timm:<name>")


def published_expert(weights: str) -> ExpertSpec:
    """The model card's ConvNeXt-Tiny: classifier[2] → 40 outputs, RGB 224² squash, ImageNet norm."""
    return ExpertSpec(
        name="convnext-fish-40",
        architecture="torchvision:convnext_tiny",
        weights=weights,
        labels=PUBLISHED_LABELS,
        head="classifier.2",
    )


def expert_spec_for(weights: str) -> ExpertSpec:
    """A manifest file describes its own model; any other file is the published architecture."""
    if weights.lower().endswith(MANIFEST_SUFFIXES):
        return read_manifest(Path(weights))
    return published_expert(weights)


def read_manifest(path: Path) -> ExpertSpec:
    if not path.is_file():
        raise ModelError(f"expert manifest not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ModelError(f"expert manifest {path} cannot be read: {exc}".split("\n")[0]) from exc
    if not isinstance(data, dict):
        raise ModelError(f"expert manifest {path} must be a mapping")
    known = {"name", "architecture", "weights", "labels", "labels_file", "preprocess", "head", "sha256", "key_match"}
    unknown = set(data) - known - {"metrics", "training", "fallback_threshold"}
    if unknown:
        raise ModelError(f"expert manifest {path}: unknown keys {sorted(unknown)}")
    for key in ("architecture", "weights"):
        if key not in data:
            raise ModelError(f"expert manifest {path}: missing '{key}'")
    labels = data.get("labels")
    if labels is None and "labels_file" in data:
        labels_path = _relative(path, data["labels_file"])
        text = Path(labels_path).read_text(encoding="utf-8-sig")  # -sig: no BOM in the first label
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ModelError(f"expert manifest {path}: give 'labels' or 'labels_file'")
    pre = dict(data.get("preprocess") or {})
    for key in ("size", "mean", "std"):
        if key in pre:
            pre[key] = tuple(pre[key]) if isinstance(pre[key], list) else (pre[key], pre[key])
    try:
        preprocess = Preprocess(**pre)
    except TypeError as exc:
        raise ModelError(f"expert manifest {path}: bad preprocess: {exc}") from exc
    return ExpertSpec(
        name=str(data.get("name", path.stem)),
        architecture=str(data["architecture"]),
        weights=_relative(path, str(data["weights"])),
        labels=tuple(str(x) for x in labels),
        preprocess=preprocess,
        head=data.get("head"),
        sha256=data.get("sha256"),
        key_match=data.get("key_match", "name"),
        extra={k: data[k] for k in ("metrics", "training", "fallback_threshold") if k in data},
    )


def _relative(manifest: Path, ref: str) -> str:
    if ref.startswith(("hf://", "hf-hub:")) or Path(ref).is_absolute():
        return ref
    return str((manifest.parent / ref).resolve())
