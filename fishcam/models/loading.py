"""Every model fishcam runs, from its reference to a module ready on its device.

Loading is: resolve the reference on this machine (:mod:`fishcam.models.hub`, never the network),
check the file (the manifest's checksum; :mod:`fishcam.models.checkpoint`: tensors only, an
Ultralytics ``.pt`` vetted before Ultralytics unpickles it), build the network and fit the weights
into it, convert it for its runtime (:mod:`fishcam.models.convert`) and put it on its device. The
adapters (``fishcam.detect.yolo``, ``fishcam.classify.expert``, ``fishcam.classify.fallback``) are
built from what this returns and only run it.

One entry per kind of model, each giving its adapter, warmed up:

- :func:`load_detector` (a ``DetectorConfig``) → ``YoloDetector``
- :func:`load_expert` (an ``ExpertSpec``) → ``ExpertClassifier``
- :func:`load_fallback` (a reference and a species list) → ``ZeroShotFallback``

Each first calls :func:`fishcam.runtime.setup` (offline, no telemetry), so a program that only
imports fishcam gets the same process as the CLI. Importing this module imports no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fishcam import runtime
from fishcam.errors import ModelError
from fishcam.models import hub
from fishcam.models.devices import AS_GIVEN, detector_backend, expert_backend, pick_device, pick_precision
from fishcam.models.expert_spec import ExpertSpec, Preprocess

if TYPE_CHECKING:
    import torch

    from fishcam.classify.expert import ExpertClassifier
    from fishcam.classify.fallback import OpenEndedFallback, ZeroShotFallback
    from fishcam.classify.species_list import SpeciesEntry
    from fishcam.config import DetectorConfig
    from fishcam.detect.yolo import YoloDetector
    from fishcam.models.open_set import Calibration

log = logging.getLogger(__name__)


# ---- the detector ------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedDetector:
    """An Ultralytics model ready to predict."""

    yolo: Any  # ultralytics.YOLO
    weights: Path  # the configured weights, on this machine (.pt, .onnx or an OpenVINO folder)
    model_path: Path  # what runs: the weights, or their export for the backend
    backend: str  # torch, openvino, onnx, tensorrt, or "as given" for weights already exported
    device: str
    class_names: dict[int, str]

    def describe(self) -> dict[str, Any]:
        return hub.describe(self.weights)


def load_detector(config: DetectorConfig) -> YoloDetector:
    """The YOLO detector a config names, loaded and warmed up."""
    from fishcam.detect.yolo import YoloDetector

    detector = YoloDetector(load_yolo(config), config)
    detector.warm_up()
    return detector


def load_yolo(config: DetectorConfig) -> LoadedDetector:
    """The Ultralytics model of ``detector.weights``: a ``.pt`` checked before Ultralytics opens it
    and exported for ``detector.backend`` (once), an ``.onnx`` or OpenVINO folder as given."""
    runtime.setup()  # before anything imports ultralytics: offline, no telemetry, its settings private
    with runtime.torch_threads():  # Ultralytics' device set-up changes torch's threads for the process
        return _load_yolo(config)


def _load_yolo(config: DetectorConfig) -> LoadedDetector:
    from fishcam.models.checkpoint import check_ultralytics_checkpoint

    weights = hub.resolve(config.weights, "detector")
    if weights.suffix not in {".pt", ".onnx"} and not weights.is_dir():
        raise ModelError(f"detector weights must be an Ultralytics .pt, .onnx or OpenVINO folder: {weights}")
    if weights.suffix == ".pt":  # Ultralytics unpickles .pt files without restriction: check first
        check_ultralytics_checkpoint(weights)
    from ultralytics import YOLO

    device = pick_device(config.device)
    backend = detector_backend(config.backend, device, weights.suffix)
    model_path = weights
    if backend not in {"torch", AS_GIVEN}:
        from fishcam.models.convert import exported_detector

        model_path = exported_detector(weights, hub.sha256_file(weights), backend, config.image_size, device)
    try:
        yolo = YOLO(str(model_path), task="detect")
    except Exception as exc:  # ultralytics raises many types for a bad file
        raise ModelError(f"cannot load detector {model_path}: {exc}".split("\n")[0]) from exc
    names = yolo.names or {}
    class_names = {int(k): str(v) for k, v in (names.items() if isinstance(names, dict) else enumerate(names))}
    return LoadedDetector(yolo, weights, model_path, backend, device, class_names)


# ---- the expert --------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedExpert:
    """An expert classifier's network with its weights, on its device."""

    spec: ExpertSpec
    network: torch.nn.Module  # eval mode, channels-last
    compiled: Any | None  # the network compiled by OpenVINO when that is the backend, else None
    weights: Path
    sha256: str
    device: str
    precision: str  # fp32, bf16 or fp16 (autocast)
    backend: str  # torch or openvino
    # The same pass giving (logits, pooled features), sharing the network's weights; None when
    # the network's head input cannot be read (see architectures.with_features).
    features: torch.nn.Module | None = None
    calibration: Calibration | None = None  # the manifest's open-set calibration, loaded
    compiled_features: bool = False  # the compiled model outputs (logits, features)

    def describe(self) -> dict[str, Any]:
        return hub.describe(self.weights)


def load_expert(
    spec: ExpertSpec, device: str = "auto", batch_size: int = 16, precision: str = "fp32", backend: str = "torch"
) -> ExpertClassifier:
    """The expert a spec describes (``expert_spec_for`` reads one from a manifest or a checkpoint
    reference), loaded and warmed up."""
    from fishcam.classify.expert import ExpertClassifier

    expert = ExpertClassifier(load_expert_network(spec, device, precision, backend), batch_size=batch_size)
    expert.warm_up()
    return expert


def load_expert_network(spec: ExpertSpec, device: str, precision: str, backend: str) -> LoadedExpert:
    """The spec's network with its weights (tensors only, the manifest's checksum checked), on
    ``device``, compiled by OpenVINO when that is the backend. The published expert's architecture
    is the one its checkpoint's key layout names; the returned spec says which."""
    runtime.setup()
    import torch

    from fishcam.models.architectures import build_architecture, fit_layout, load_into, with_features
    from fishcam.models.checkpoint import load_state_dict

    device = pick_device(device)
    precision = pick_precision(precision, device)
    weights = hub.resolve(spec.weights, "expert")
    checksum = hub.sha256_file(weights)
    if spec.sha256 and spec.sha256.lower() != checksum:
        raise ModelError(
            f"expert weights {weights} have sha256 {checksum[:12]}…, the manifest says "
            f"{spec.sha256[:12]}…: the file is damaged or not the one the manifest describes"
        )
    state = load_state_dict(weights)
    spec = fit_layout(spec, state)  # the published expert: torchvision's or timm's, as its keys say
    network = build_architecture(spec)
    load_into(network, state, spec)
    # Channels-last memory and bf16/fp16 autocast are what make the network fast (REFERENCE §4);
    # autocast keeps the sensitive ops in fp32, so decisions stay those of fp32 (tested).
    network = network.eval().to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    features = with_features(network, spec)
    calibration = _calibration(spec, features, network) if spec.open_set is not None else None
    backend = expert_backend(backend)
    compiled = None
    if backend == "openvino":
        from fishcam.models.convert import compiled_expert

        # With a calibration, the compiled model gives the features too (one pass, as torch).
        source = features if calibration is not None else network
        compiled = compiled_expert(
            source, checksum, spec.preprocess.size, precision, weights.name, with_features=calibration is not None
        )
    return LoadedExpert(
        spec, network, compiled, weights, checksum, device, precision, backend, features, calibration,
        compiled_features=compiled is not None and calibration is not None,
    )  # fmt: skip


def _calibration(spec: ExpertSpec, features: torch.nn.Module | None, network: torch.nn.Module) -> Calibration | None:
    """The manifest's open-set calibration, read as tensors and checked against the network."""
    import torch

    from fishcam.models.open_set import Calibration, read_prototypes

    open_set = spec.open_set
    assert open_set is not None
    prototypes = read_prototypes(Path(open_set.prototypes), len(spec.labels), open_set.sha256)
    if features is None:
        return None  # with_features said why
    parameter = next(network.parameters())
    with torch.inference_mode():
        probe = torch.zeros(1, 3, *spec.preprocess.size, device=parameter.device, dtype=parameter.dtype)
        dim = int(features(probe)[1].shape[1])
    if dim != prototypes.dim:
        raise ModelError(
            f"open-set prototypes {open_set.prototypes} have {prototypes.dim} features, the expert's head "
            f"takes {dim}: they were calibrated for another network"
        )
    return Calibration(prototypes, open_set.threshold, open_set.keep, open_set.prototypes)


# ---- the fallback ------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedClip:
    """An open_clip model (BioCLIP) with its tokenizer and the preprocessing it was trained with."""

    ref: str  # the reference it was loaded from, as configured
    network: Any  # open_clip's CLIP, eval mode, on its device
    tokenizer: Callable[[list[str]], Any]
    folder: Path  # open_clip_config.json and the weights
    weights: dict[str, Any]  # path, bytes and sha256 of the weights file
    preprocess: Preprocess
    logit_scale: float
    device: str

    def describe(self) -> dict[str, Any]:
        return dict(self.weights)


def load_fallback(
    model_ref: str,
    species: Sequence[SpeciesEntry],
    templates: str | Sequence[str] = "openai_imagenet",
    device: str = "auto",
    batch_size: int = 8,
    embeddings_dir: Path | None = None,
    *,
    prompt_form: str = "taxonomic_common",
    resize: str = "squash",
) -> ZeroShotFallback:
    """The zero-shot fallback over a species list: the model loaded, the list's text embeddings
    computed once and cached in ``embeddings_dir`` (default ``cache_dir("text-embeddings")``).
    ``templates``: a named set (``openai_imagenet``) or format strings; ``resize``: ``squash``
    (crops squashed to the model's size, as pybioclip feeds BioCLIP) or ``model`` (open_clip's own)."""
    from fishcam.classify.fallback import ZeroShotFallback, species_embeddings
    from fishcam.classify.templates import resolve_templates

    clip = with_resize(load_clip(model_ref, device), resize)
    features = species_embeddings(clip, species, resolve_templates(templates), embeddings_dir, prompt_form)
    return ZeroShotFallback(clip, species, features, batch_size=batch_size)


def load_open_ended(
    model_ref: str,
    embeddings: str | Path,
    taxa: Sequence[str] = (),
    device: str = "auto",
    batch_size: int = 8,
    *,
    resize: str = "squash",
) -> OpenEndedFallback:
    """The open-ended fallback: the model and the Tree-of-Life embeddings at ``embeddings``
    (memory-mapped), kept to ``taxa`` (names at any rank) when given."""
    from fishcam.classify.fallback import OpenEndedFallback
    from fishcam.classify.tree_of_life import read_tree_of_life

    tree = read_tree_of_life(embeddings)
    if taxa:
        tree = tree.select(taxa)
    fallback = OpenEndedFallback(with_resize(load_clip(model_ref, device), resize), tree, batch_size=batch_size)
    fallback.check_dimension()
    return fallback


def with_resize(clip: LoadedClip, resize: str) -> LoadedClip:
    """The clip with its crops squashed (no centre crop, bilinear, as pybioclip's transform) or as
    its open_clip config says (``model``)."""
    if resize != "squash":
        return clip
    return replace(clip, preprocess=replace(clip.preprocess, resize="squash", interpolation="bilinear"))


CLIP_CONFIG = "open_clip_config.json"
# open_clip's own preference among the weight files of a folder, tensor formats first.
CLIP_WEIGHT_FILES = (
    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "model.safetensors",
    "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
)  # fmt: skip


def load_clip(model_ref: str, device: str = "auto") -> LoadedClip:
    """An open_clip folder (config and weights, a hub snapshot or a local folder) as a model:
    the architecture from its config, its own tensors (never random weights, never unpickled)."""
    runtime.setup()
    import open_clip

    from fishcam.models.checkpoint import load_state_dict

    device = pick_device(device)
    folder = _clip_folder(hub.resolve(model_ref, "fallback"))
    weights = clip_weights_file(folder)
    state = load_state_dict(weights)  # tensors only: open_clip would fall back to full unpickling
    name = f"{hub.LOCAL_DIR}{folder}"
    try:
        # The architecture from the folder's config, with no weights of its own (and no base
        # tower weights fetched from a hub); fishcam loads the folder's tensors itself.
        network, _, _ = open_clip.create_model_and_transforms(
            name, load_weights=False, pretrained_image=False, pretrained_text=False
        )
        tokenizer = open_clip.get_tokenizer(name)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot build fallback model from {folder}: {exc}".split("\n")[0]) from exc
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        raise ModelError(
            f"fallback weights {weights} do not fit the architecture in {folder / CLIP_CONFIG}: "
            f"{lines[1].strip() if len(lines) > 1 else exc}"
        ) from exc
    scale = network.logit_scale.exp().item() if hasattr(network, "logit_scale") else 100.0
    return LoadedClip(
        ref=model_ref,
        network=network.to(device).eval(),
        tokenizer=tokenizer,
        folder=folder,
        weights=hub.describe(weights),
        preprocess=_clip_preprocess(network),
        logit_scale=float(scale),
        device=device,
    )


def _clip_folder(path: Path) -> Path:
    """An open_clip model folder: open_clip_config.json beside the weights."""
    folder = path if path.is_dir() else path.parent
    if not (folder / CLIP_CONFIG).is_file():
        raise ModelError(
            f"fallback model {path} needs {CLIP_CONFIG} beside its weights "
            f"(the layout of an open_clip Hugging Face repo)"
        )
    return folder


def clip_weights_file(folder: Path) -> Path:
    """The weights of an open_clip folder. None at all is refused: open_clip would build the model
    with random weights and only log a warning, and every species in every output would be noise."""
    for name in CLIP_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    others = sorted(p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin", ".pth", ".pt"} and p.is_file())
    if len(others) == 1:
        return others[0]
    if others:
        raise ModelError(
            f"fallback folder {folder} holds several weight files ({', '.join(p.name for p in others)}): "
            f"keep one, or name it open_clip_model.safetensors"
        )
    raise ModelError(
        f"fallback folder {folder} has {CLIP_CONFIG} but no weights (open_clip_model.safetensors): fishcam will not "
        f"run a randomly initialised model. Download open_clip_model.safetensors from the model's Hugging Face repo "
        f"into that folder"
    )


def _clip_preprocess(network: Any) -> Preprocess:
    """The crop preprocessing open_clip's config gives the model (its image tower's)."""
    cfg = getattr(network.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", cfg.get("image_size", 224))
    size = tuple(size) if isinstance(size, list | tuple) else (size, size)
    mode = cfg.get("resize_mode", "shortest")
    return Preprocess(
        size=size,
        mean=tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
        color="RGB",
        resize="squash" if mode == "squash" else "center_crop",
        interpolation="bicubic" if cfg.get("interpolation", "bicubic") == "bicubic" else "bilinear",
    )
