"""What an expert classifier is: architecture, labels in output order, preprocessing, weights.

The published ConvNeXt-Tiny fish expert is one built-in spec; any other timm/torchvision
classifier comes in through a small manifest file (JSON or YAML) that travels with its weights.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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

    __pydantic_config__ = ConfigDict(extra="forbid")  # a manifest's preprocess: no unknown keys

    size: tuple[int, int] = (224, 224)  # (height, width)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color: Literal["RGB", "BGR"] = "RGB"
    resize: Literal["squash", "center_crop"] = "squash"
    crop_pct: float = 1.0  # center_crop: resize the shorter side to size/crop_pct, then crop
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"


@dataclass(frozen=True)
class KeyLayout:
    """One way a checkpoint of a network names its tensors: the architecture that reads it, that
    architecture's head, and the top-level names (before the first dot) that mark it."""

    architecture: str
    head: str | None
    prefixes: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.architecture} ({', '.join(prefix + '.*' for prefix in self.prefixes)})"


# The published checkpoint's card builds torchvision's convnext_tiny but names timm's
# convnext_tiny.in12k as its base model: the file may be in either layout (the same network).
TORCHVISION_CONVNEXT_TINY = KeyLayout("torchvision:convnext_tiny", "classifier.2", ("features", "classifier"))
TIMM_CONVNEXT_TINY = KeyLayout("timm:convnext_tiny", "head.fc", ("stem", "stages", "head"))
PUBLISHED_LAYOUTS = (TORCHVISION_CONVNEXT_TINY, TIMM_CONVNEXT_TINY)


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
    open_set: OpenSetManifest | None = None  # the open-set calibration (prototypes' path resolved)
    # The key layouts its checkpoint may be in, the architecture then found from the checkpoint's
    # keys (architectures.fit_layout): the published expert's. Empty: ``architecture`` as given.
    layouts: tuple[KeyLayout, ...] = ()

    def __post_init__(self) -> None:
        if not self.labels:
            raise ModelError(f"expert {self.name}: no labels")
        if len(set(self.labels)) != len(self.labels):
            raise ModelError(f"expert {self.name}: duplicate labels")
        if not self.architecture.startswith(("torchvision:", "timm:")):
            raise ModelError(f"expert {self.name}: architecture must be torchvision:<name> or timm:<name>")


def published_expert(weights: str) -> ExpertSpec:
    """The model card's ConvNeXt-Tiny: 40 outputs, RGB 224² squash, ImageNet norm. Its weights
    may be torchvision's layout (classifier[2] the head) or timm's (head.fc): the checkpoint's keys
    say which, and the architecture becomes that one when it is loaded."""
    return ExpertSpec(
        name="convnext-fish-40",
        architecture=TORCHVISION_CONVNEXT_TINY.architecture,
        weights=weights,
        labels=PUBLISHED_LABELS,
        head=TORCHVISION_CONVNEXT_TINY.head,
        layouts=PUBLISHED_LAYOUTS,
    )


def is_manifest(ref: str) -> bool:
    """Whether an expert reference names a manifest (which names the weights) or the weights."""
    return ref.lower().endswith(MANIFEST_SUFFIXES)


def expert_spec_for(weights: str) -> ExpertSpec:
    """A manifest file describes its own model; any other file is the published architecture."""
    if is_manifest(weights):
        return read_manifest(Path(weights))
    return published_expert(weights)


def expert_weights(ref: str) -> str:
    """The weights an expert reference loads: a manifest's ``weights``, else the reference."""
    return read_manifest(Path(ref)).weights if is_manifest(ref) else ref


class OpenSetManifest(BaseModel):
    """A manifest's ``open_set``: the calibration of the open-set test (fishcam.models.open_set)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["prototype_cosine"] = "prototype_cosine"
    prototypes: str  # a .safetensors file (center, prototypes, counts), relative to the manifest
    sha256: str | None = None  # of the prototypes file: checked before it is read
    threshold: float = Field(ge=-1, le=1)  # the least similarity of an in-set crop
    keep: float = Field(gt=0, lt=1)  # the share of in-set crops the threshold was chosen to keep
    calibration: Any = None  # what it was measured on (images, split, kept shares)


class Manifest(BaseModel):
    """An expert manifest as written (``fishcam train`` writes them; see docs/models.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    name: str | None = None  # default: the manifest's file name
    architecture: str
    weights: str  # relative to the manifest's folder, or a hub reference
    labels: list[str] | None = None  # in output order
    labels_file: str | None = None  # one label a line, when there is no `labels`
    preprocess: Preprocess | None = None
    head: str | None = None
    sha256: str | None = None
    key_match: Literal["name", "order"] = "name"
    # What `fishcam train` measured; carried in ExpertSpec.extra.
    fallback_threshold: float | None = Field(None, ge=0, le=1)
    open_set: OpenSetManifest | None = None
    metrics: Any = None
    training: Any = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: Any) -> Any:
        return [str(item) for item in value] if isinstance(value, list) else value

    @field_validator("preprocess", mode="before")
    @classmethod
    def _one_number_for_all(cls, value: Any) -> Any:
        """``size: 224`` is 224 x 224, ``mean: 0.5`` the same mean for each channel."""
        if not isinstance(value, dict):
            return value
        value = dict(value)
        for key, length in (("size", 2), ("mean", 3), ("std", 3)):
            if isinstance(value.get(key), int | float) and not isinstance(value.get(key), bool):
                value[key] = (value[key],) * length
        return value

    @field_validator("architecture")
    @classmethod
    def _known_library(cls, value: str) -> str:
        if not value.startswith(("torchvision:", "timm:")):
            raise ValueError("must be torchvision:<name> or timm:<name>")
        return value


EXTRA_KEYS = ("metrics", "training", "fallback_threshold")


def read_manifest(path: Path) -> ExpertSpec:
    """The spec a manifest describes; a ModelError of one line naming the file and the key when
    it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"expert manifest not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ModelError(f"expert manifest {path} cannot be read: {exc}".split("\n")[0]) from exc
    if not isinstance(data, dict):
        raise ModelError(f"expert manifest {path} must be a mapping")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise ModelError(f"expert manifest {path}: {_problems(exc)}") from None
    labels = manifest.labels
    if labels is None and manifest.labels_file is not None:
        labels = _read_labels(path, manifest.labels_file)
    if not labels:
        raise ModelError(f"expert manifest {path}: give 'labels' or 'labels_file'")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ModelError(f"expert manifest {path}: labels repeated: {repeated[:5]}")
    return ExpertSpec(
        name=manifest.name or path.stem,
        architecture=manifest.architecture,
        weights=_relative(path, manifest.weights),
        labels=tuple(labels),
        preprocess=manifest.preprocess or Preprocess(),
        head=manifest.head,
        sha256=manifest.sha256,
        key_match=manifest.key_match,
        extra=manifest.model_dump(include=set(EXTRA_KEYS), exclude_unset=True),
        open_set=_open_set(path, manifest.open_set),
    )


def _open_set(manifest: Path, open_set: OpenSetManifest | None) -> OpenSetManifest | None:
    if open_set is None:
        return None
    return open_set.model_copy(update={"prototypes": _relative(manifest, open_set.prototypes)})


def _read_labels(manifest: Path, labels_file: str) -> list[str]:
    labels_path = Path(_relative(manifest, labels_file))
    try:
        text = labels_path.read_text(encoding="utf-8-sig")  # -sig: no BOM in the first label
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"expert manifest {manifest}: labels_file {labels_path} cannot be read: {exc}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def _problems(exc: ValidationError) -> str:
    """Each problem as the dotted key and what is wrong with it."""
    problems = []
    for error in exc.errors():
        dotted = ".".join(str(part) for part in error["loc"])
        if error["type"] in {"extra_forbidden", "unexpected_keyword_argument"}:
            problems.append(f"unknown key '{dotted}'{_suggestion(error['loc'])}")
        elif error["type"] == "missing":
            problems.append(f"missing '{dotted}'")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{dotted}: {message} (got {error.get('input')!r})")
    return "; ".join(problems)


def _suggestion(loc: tuple) -> str:
    sections: dict[str, list[str]] = {
        "preprocess": list(Preprocess.__dataclass_fields__),
        "open_set": list(OpenSetManifest.model_fields),
    }
    known = sections.get(str(loc[0]), list(Manifest.model_fields)) if len(loc) > 1 else list(Manifest.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _relative(manifest: Path, ref: str) -> str:
    if ref.startswith(("hf://", "hf-hub:")) or Path(ref).is_absolute():
        return ref
    return str((manifest.parent / ref).resolve())
