"""RF-DETR detectors: Roboflow's ``rfdetr`` package (``pip install "fishcam[rfdetr]"``), the
format of the Community Fish Detector's current files (``cfd-rf-detr-nano-640-….pth``).

Loading is fishcam's, not the package's: the checkpoint is read with torch's restricted unpickler
(:func:`fishcam.models.checkpoint.read_rfdetr_checkpoint`: tensors, plain data and the two
namespace classes of the training settings, nothing that runs), the model size and class names
are read from the file's own content, the package builds that network with no pretrained weights
(nothing is downloaded: the nano, small, medium and large networks take no DINOv2 hub weights),
and every tensor of the file is loaded into it, strictly. The package's ``predict`` then runs it.

What an RF-DETR ``.pth`` holds (rfdetr's sources, 1.4 to 1.11):

- ``model``: the network's state dict. ``class_embed`` has ``num_classes + 1`` rows (the last is
  the no-object slot); ``transformer.decoder.layers.N`` gives the decoder depth (nano 2, small 3,
  medium and large 4); the backbone's ``position_embeddings`` are sized for the training resolution.
- ``args``: the training settings, with ``class_names``. A dict (``TrainConfig.model_dump()``,
  rfdetr >= 1.7, ``training/callbacks/best_model.py``) or an ``argparse.Namespace`` of every
  setting (the pre-1.7 ``main.py`` loop). The Community Fish Detector's own conversion scripts add
  ``model_type`` and ``resolution`` to it.
- ``model_name`` (``"RFDETRNano"``) and ``model_config`` (architecture, resolution), rfdetr >= 1.7.
- Lightning ``.ckpt`` files keep the weights under ``state_dict`` with a ``model.`` prefix.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fishcam import runtime
from fishcam.errors import ConfigError, ModelError
from fishcam.models import hub
from fishcam.models.devices import pick_device

if TYPE_CHECKING:
    import torch

    from fishcam.config import DetectorConfig
    from fishcam.detect.rfdetr import RFDETRDetector

log = logging.getLogger(__name__)

INSTALL = 'pip install "fishcam[rfdetr]"'
# The detection networks fishcam runs: the package class of each. Medium and large are one network
# (4 decoder layers) trained at different resolutions; base (patch 14) is deprecated since rfdetr 1.7.
VARIANTS = {"nano": "RFDETRNano", "small": "RFDETRSmall", "medium": "RFDETRMedium", "large": "RFDETRLarge"}
# Architecture settings a checkpoint's model_config (or pre-1.7 args) records, restored as
# RFDETR.from_checkpoint restores them; resolution is fishcam's detector.image_size instead.
ARCH_FIELDS = (
    "encoder", "hidden_dim", "dec_layers", "sa_nheads", "ca_nheads", "dec_n_points", "num_windows", "patch_size",
    "out_feature_indexes", "projector_scale", "num_queries", "num_select", "group_detr", "two_stage",
    "bbox_reparam", "lite_refpoint_refine", "layer_norm", "num_decoder_registers",
)  # fmt: skip
HEAD_KEY = "class_embed.bias"
EMBED = "backbone.0.encoder.encoder.embeddings."
POSITION_KEY = EMBED + "position_embeddings"
PATCH_KEY = EMBED + "patch_embeddings.projection.weight"
LORA_PREFIX = "backbone.0.encoder.base_model.model."
DERIVED_BUFFERS = ("_kp_active_mask",)  # made from the config by the network itself, not learnt (rfdetr 1.8+)
NOT_RFDETR = (
    "is not an RF-DETR detector checkpoint (no 'model' weights with RF-DETR's class_embed head and DINOv2 "
    "backbone): detector.kind rfdetr needs a .pth written by the rfdetr package, e.g. checkpoint_best_total.pth "
    "or the Community Fish Detector's cfd-rf-detr-*.pth"
)


def require_rfdetr() -> None:
    """A one-line ConfigError when the ``rfdetr`` package is not installed (found without importing it)."""
    from fishcam.extras import installed

    if not installed("rfdetr"):
        raise ConfigError(f"detector.kind rfdetr needs the rfdetr package, which is not installed here: {INSTALL}")


@dataclass(frozen=True)
class CheckpointInfo:
    """What an RF-DETR checkpoint says about itself, read from its content."""

    variant: str  # nano, small, medium or large
    found_by: str  # where the size came from: model_name, args.model_type, …, or the decoder's depth
    num_classes: int  # class_embed rows - 1 (the last row is the no-object slot)
    class_names: dict[int, str]
    architecture: dict[str, Any]  # ModelConfig settings recorded in the file
    patch_size: int
    trained_resolution: int | None
    written_by: str | None  # the rfdetr version that wrote it, when recorded
    notes: tuple[str, ...] = ()  # what fishcam had to assume, for the log


@dataclass(frozen=True)
class LoadedRFDETR:
    """An RF-DETR network holding a checkpoint's tensors, ready to predict."""

    model: Any  # the package's RFDETRNano/Small/Medium/Large
    weights: Path
    info: CheckpointInfo
    resolution: int
    device: str

    @property
    def class_names(self) -> dict[int, str]:
        return self.info.class_names

    def describe(self) -> dict[str, Any]:
        return hub.describe(self.weights)


def load_rfdetr_detector(config: DetectorConfig) -> RFDETRDetector:
    """The RF-DETR detector a config names, loaded and warmed up."""
    from fishcam.detect.rfdetr import RFDETRDetector

    detector = RFDETRDetector(load_rfdetr(config), config)
    detector.warm_up()
    return detector


def load_rfdetr(config: DetectorConfig) -> LoadedRFDETR:
    """``detector.weights`` as an RF-DETR network: file checked and read as tensors, network built
    by the package at ``detector.image_size`` on ``detector.device``, the file's tensors loaded."""
    runtime.setup()  # offline before the package (and transformers) is imported
    require_rfdetr()
    rfdetr_package()
    if config.backend not in {"auto", "torch"}:
        raise ConfigError(
            f"detector.backend {config.backend}: fishcam runs an RF-DETR detector on torch only; set detector.backend "
            f"to auto or torch"
        )
    weights = hub.resolve(config.weights, "detector")
    if weights.is_dir():
        raise ModelError(f"{weights} is a folder: an RF-DETR detector's weights are one .pth file written by rfdetr")
    from fishcam.models.checkpoint import read_rfdetr_checkpoint

    checkpoint = read_rfdetr_checkpoint(weights)
    state, info = read_checkpoint(checkpoint, weights)
    device = pick_device(config.device)
    check_image_size(config.image_size, info)
    with runtime.torch_threads():
        model = _build(info, config.image_size, device, weights)
        _load_weights(model, state, info, weights)
    for note in info.notes:
        log.warning("%s: %s", weights.name, note)
    if info.trained_resolution and info.trained_resolution != config.image_size:
        log.info(
            "%s was trained at %d px; detecting at detector.image_size %d", weights.name,
            info.trained_resolution, config.image_size,
        )  # fmt: skip
    return LoadedRFDETR(model, weights, info, config.image_size, device)


# ---- reading the checkpoint --------------------------------------------------------------


def _get(meta: Any, key: str) -> Any:
    """A setting of ``args`` or ``model_config``: a dict or a namespace (rfdetr's _ckpt_args_get)."""
    if meta is None:
        return None
    if isinstance(meta, Mapping):
        return meta.get(key)
    return getattr(meta, key, None)


def model_state(checkpoint: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """The network's tensors: ``model``, or a Lightning ``state_dict``'s ``model.`` entries."""
    import torch

    state = checkpoint.get("model")
    if not isinstance(state, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        state = {
            key[len("model.") :].removeprefix("_orig_mod."): value
            for key, value in checkpoint["state_dict"].items()
            if isinstance(key, str) and key.startswith("model.")
        }
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} {NOT_RFDETR}")
    state = {str(k): v for k, v in state.items()}
    if any(k.startswith(LORA_PREFIX) for k in state):
        raise ModelError(
            f"{path} was trained with LoRA adapters on its backbone (backbone_lora): fishcam does not merge them; "
            f"load it in rfdetr, merge the adapters and save the model's state_dict as 'model'"
        )
    if any(k.startswith(("segmentation_head.", "keypoint_embed.")) for k in state):
        raise ModelError(f"{path} is an RF-DETR segmentation or keypoint model: fishcam runs detection models only")
    missing = [k for k in (HEAD_KEY, POSITION_KEY, PATCH_KEY) if k not in state]
    if missing:
        raise ModelError(f"{path} {NOT_RFDETR}")
    return state


def read_checkpoint(checkpoint: Mapping[str, Any], path: Path) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """The network's tensors and what the file says it is (size, classes, settings)."""
    state = model_state(checkpoint, path)
    args, model_config = checkpoint.get("args"), checkpoint.get("model_config")
    if _get(model_config, "segmentation_head") or _get(model_config, "use_grouppose_keypoints"):
        raise ModelError(f"{path} is an RF-DETR segmentation or keypoint model: fishcam runs detection models only")
    patch = int(state[PATCH_KEY].shape[-1])
    if patch != 16:
        raise ModelError(
            f"{path} is an RF-DETR network with {patch}-pixel patches (the deprecated base or large of rfdetr < 1.7): "
            f"fishcam runs the nano, small, medium and large detectors (16-pixel patches)"
        )
    num_classes = int(state[HEAD_KEY].shape[0]) - 1
    if num_classes < 1:
        raise ModelError(f"{path} has a class_embed head of {num_classes + 1} row(s): no classes to detect")
    depth = len({k.split(".")[3] for k in state if k.startswith("transformer.decoder.layers.")})
    variant, found_by = _variant(checkpoint, args, model_config, depth, path)
    architecture = _architecture(variant, args, model_config)
    expected = architecture.get("dec_layers", _default(variant, "dec_layers"))
    if depth != expected:
        raise ModelError(
            f"{path} says it is RF-DETR {variant} ({found_by}), whose decoder has {expected} layers, but its weights "
            f"have {depth}: the file's settings and tensors disagree"
        )
    notes: list[str] = []
    names = _class_names(_get(args, "class_names"), num_classes, notes)
    resolution = _get(model_config, "resolution") or _get(args, "resolution")
    trained = int(resolution) if isinstance(resolution, int) and not isinstance(resolution, bool) else None
    version = checkpoint.get("rfdetr_version")
    return state, CheckpointInfo(
        variant=variant,
        found_by=found_by,
        num_classes=num_classes,
        class_names=names,
        architecture=architecture,
        patch_size=patch,
        trained_resolution=trained,
        written_by=str(version) if isinstance(version, str) else None,
        notes=tuple(notes),
    )


def _variant_of(text: str) -> str | None:
    """The size a model name or weights file name says (``RFDETRNano``, ``rf-detr-small.pth``,
    ``nano``), ``"unsupported:WHAT"`` for one fishcam does not run, None when it says none."""
    t = text.lower().replace("_", "-")
    for word, what in (("seg", "a segmentation model"), ("keypoint", "a keypoint model"),
                       ("xlarge", "RF-DETR XLarge (rfdetr_plus)"), ("deprecated", "the deprecated RF-DETR large"),
                       ("base", "the deprecated RF-DETR base")):  # fmt: skip
        if word in t:
            return f"unsupported:{what}"
    for variant in ("large", "medium", "small", "nano"):
        if variant in t:
            return variant
    return None


def _variant(checkpoint: Mapping[str, Any], args: Any, model_config: Any, depth: int, path: Path) -> tuple[str, str]:
    """(size, where the file says so): ``model_name``, the CFD scripts' ``args.model_type``, then the
    name of the weights it was fine-tuned from; failing those, the decoder's depth."""
    hints = [("model_name", checkpoint.get("model_name")), ("args.model_type", _get(args, "model_type"))]
    hints += [(f"{where}.pretrain_weights", _get(meta, "pretrain_weights"))
              for where, meta in (("model_config", model_config), ("args", args))]  # fmt: skip
    for where, value in hints:
        if not isinstance(value, str) or not value.strip() or value.strip().lower() in {"none", "null"}:
            continue
        variant = _variant_of(Path(value.strip()).name)
        if variant is None:
            continue
        if variant.startswith("unsupported:"):
            raise ModelError(
                f"{path} is {variant.split(':', 1)[1]} ({where} {value.strip()!r}): fishcam runs the RF-DETR nano, "
                f"small, medium and large detectors"
            )
        return variant, f"{where} {value.strip()!r}"
    by_depth = {_default(v, "dec_layers"): v for v in ("large", "medium", "small", "nano")}  # medium wins over large
    if depth not in by_depth:
        raise ModelError(
            f"{path} has an RF-DETR decoder of {depth} layers and names no model size: fishcam runs nano (2), "
            f"small (3), medium and large (4)"
        )
    return by_depth[depth], f"its {depth}-layer decoder"


def rfdetr_package() -> Any:
    """The ``rfdetr`` module, imported quietly, its logging routed through fishcam's."""
    with _package_quiet():
        try:
            import rfdetr
            import rfdetr.config
        except ImportError as exc:
            raise ConfigError(
                f"detector.kind rfdetr needs the rfdetr package, which cannot be imported here ({exc}): {INSTALL}"
            ) from exc
    _route_rfdetr_logging()
    return rfdetr


def _config_class(variant: str) -> Any:
    return getattr(rfdetr_package().config, f"{VARIANTS[variant]}Config")


def _default(variant: str, name: str) -> Any:
    return _config_class(variant).model_fields[name].default


def _architecture(variant: str, args: Any, model_config: Any) -> dict[str, Any]:
    fields = _config_class(variant).model_fields
    found: dict[str, Any] = {}
    for name in ARCH_FIELDS:
        if name not in fields:
            continue
        for meta in (model_config, args):
            value = _get(meta, name)
            if value is not None:
                found[name] = list(value) if isinstance(value, tuple) else value
                break
    return found


def _class_names(raw: Any, num_classes: int, notes: list[str]) -> dict[int, str]:
    """Class id → name, by the file's ``class_names``. rfdetr >= 1.5 numbers classes from 0 in
    that order. Files from rfdetr < 1.5 trained on a Roboflow COCO export have one more class slot
    than names: slot 0 is the export's root category, the names are ids 1… (1.4's
    ``RFDETR.class_names`` was ``{i + 1: name}``). An id the file does not name is named by its number."""
    names: dict[int, str] = {}
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            with contextlib.suppress(TypeError, ValueError):
                names[int(key)] = str(value)
    elif isinstance(raw, list | tuple) and all(isinstance(n, str) for n in raw):
        first = 1 if len(raw) == num_classes - 1 else 0
        names = {first + i: name for i, name in enumerate(raw)}
        if first:
            notes.append(
                f"{num_classes} class slots and {len(raw)} class names (rfdetr < 1.5 numbering): the names are "
                f"ids 1-{num_classes - 1}, id 0 is the dataset's root category"
            )
    elif isinstance(raw, str) and raw:
        names = {0: raw}
    if not names:
        notes.append(
            f"the file names no classes: they are numbered 0-{num_classes - 1}; give detector.classes as ids, or null"
        )
    names = {cid: name for cid, name in names.items() if 0 <= cid < num_classes}
    return {cid: names.get(cid, str(cid)) for cid in range(num_classes)}


# ---- building and loading ----------------------------------------------------------------


def check_image_size(size: int, info: CheckpointInfo) -> None:
    """RF-DETR's backbone cuts the image into patches grouped in windows: a side must be a
    multiple of patch size x windows (32 for nano to large)."""
    windows = int(info.architecture.get("num_windows", _default(info.variant, "num_windows")))
    block = info.patch_size * windows
    if size % block:
        below, above = max(block, size // block * block), (size // block + 1) * block
        raise ConfigError(
            f"detector.image_size {size} does not fit RF-DETR {info.variant}: it takes multiples of {block} (patch "
            f"size {info.patch_size} x {windows} windows), e.g. {below} or {above}"
        )


class _DropNoise(logging.Filter):
    """rfdetr's messages that say nothing about a fishcam run: the DINOv2 hub weights it does not
    load (fishcam loads every tensor from the file), and the GPU compile fishcam does not ask for."""

    NOISE = (
        "Using a different number of positional encodings than DINOv2",
        "Using patch size",
        "Model is not optimized for inference",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.NOISE)


def _route_rfdetr_logging() -> None:
    """rfdetr logs through handlers of its own, INFO to stdout (where fishcam writes CSV) and
    WARNING to stderr in another format: its warnings go through fishcam's logging instead, its
    INFO lines nowhere. A NullHandler stays on its logger so rfdetr's get_logger, which sets up its
    handlers on a logger that has none, leaves it alone when later modules import it."""
    logger = logging.getLogger("rf-detr")
    if any(isinstance(f, _DropNoise) for f in logger.filters):
        return
    logger.handlers[:] = [logging.NullHandler()]
    logger.propagate = True
    logger.setLevel(logging.WARNING)
    logger.addFilter(_DropNoise())


@contextlib.contextmanager
def _package_quiet() -> Iterator[None]:
    """Python warnings of importing and building: torch.jit's deprecation at rfdetr's import,
    rfdetr's deprecated classes, and 'pretrain_weights=None' (fishcam loads the weights itself)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*pretrain_weights=None.*")
        yield


def _build(info: CheckpointInfo, image_size: int, device: str, path: Path) -> Any:
    """The package's network for the checkpoint, random weights, nothing downloaded: no
    pretrained weights (``pretrain_weights=None``), and a 16-pixel-patch backbone, for which
    rfdetr builds DINOv2 from its bundled config instead of fetching the hub's weights."""
    from pydantic import ValidationError

    cls = getattr(rfdetr_package(), VARIANTS[info.variant])
    with _package_quiet():
        kwargs = {
            **info.architecture,
            "num_classes": info.num_classes,
            "resolution": image_size,  # the positional grid follows it, as RFDETRNano(resolution=640) does
            "device": device,
            "pretrain_weights": None,
        }
        try:
            model = cls(**kwargs)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise ModelError(
                f"{path}: its settings do not fit RF-DETR {info.variant}: {where}: {first.get('msg')}"
            ) from exc
    model.model.class_names = [info.class_names[i] for i in range(info.num_classes)]
    return model


def _load_weights(model: Any, state: dict[str, torch.Tensor], info: CheckpointInfo, path: Path) -> None:
    """Every tensor of the file into the network (strict). The position embeddings are resized to
    the run's grid with rfdetr's own ``interpolate_position_embeddings``, as the package's loader does
    when the resolution differs from training's; buffers the network derives from its config are its own."""
    from rfdetr.models.weights import interpolate_position_embeddings

    network = model.model.model
    own = network.state_dict()
    state = dict(state)
    interpolate_position_embeddings(state, model.model_config.positional_encoding_size)
    for name in DERIVED_BUFFERS:
        if name in own and (name not in state or state[name].shape != own[name].shape):
            state[name] = own[name]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]  # fmt: skip
    if missing or unexpected or shapes:
        parts = [
            f"{label} {', '.join(items[:3])}{f' and {len(items) - 3} more' if len(items) > 3 else ''}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("shapes differ:", shapes))
            if items
        ]
        raise ModelError(
            f"{path} does not fit RF-DETR {info.variant} with {info.num_classes} class(es) ({info.found_by}): "
            + "; ".join(parts)
        )
    network.load_state_dict(state, strict=True)
    network.eval()
