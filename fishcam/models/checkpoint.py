"""Safe loading of weight files: tensors only, never unpickled Python objects.

Two kinds of file are read here. A state dict (the expert, training checkpoints, open_clip
weights) must hold tensors and plain containers only. An Ultralytics ``.pt`` is a pickled model
(its layers are Python objects), so it is checked differently: every name its pickle imports must
be a layer class of torch or Ultralytics or a plain data type, and the file must load under
torch's restricted unpickler with exactly those classes allowed. Only then is Ultralytics, which
unpickles without restriction, allowed to open it.
"""

from __future__ import annotations

import importlib
import pickle
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fishcam import runtime
from fishcam.errors import ModelError, UnsafeCheckpointError

# Wrappers that training scripts put around a state dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "weights")


STATE_DICT_ADVICE = (
    "Use the file from its original source, or re-save it as tensors: torch.save(model.state_dict(), path) "
    "or safetensors"
)
DETECTOR_ADVICE = (
    "An Ultralytics .pt may hold only torch and Ultralytics layers and plain data. Use the file from its "
    "original source, or export it to ONNX on a machine you trust (yolo export model=FILE format=onnx)"
)


def unsafe_message(path: Path, names: list[str], advice: str = STATE_DICT_ADVICE) -> str:
    """The one line for a model file that holds code or objects, not only tensors."""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"{path} holds pickled Python objects, not just tensors ({shown or 'objects torch does not allow'}); "
        f"fishcam refuses to run code from a model file. {advice}"
    )


def torch_load_tensors(path: Path) -> object:
    """``torch.load`` with ``weights_only=True``; a file that needs more is refused, naming what
    it would import, and a damaged one is a ModelError. Nothing in the file runs."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        names = pickle_globals(path)
        if names is None:
            raise ModelError(f"{path} is not a readable PyTorch checkpoint (damaged or another format)") from exc
        raise UnsafeCheckpointError(unsafe_message(path, names)) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise ModelError(f"{path} is not a readable PyTorch checkpoint: {exc}".split("\n")[0]) from exc


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file into a flat name → tensor dict.

    Checkpoints saved from ``DataParallel`` (``module.`` prefix) are accepted. A file that
    needs full unpickling is refused with :class:`UnsafeCheckpointError`; nothing in it runs.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors: object = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"{path} is not a readable safetensors file: {exc}") from exc
    else:
        tensors = torch_load_tensors(path)
    return _flatten(tensors, path)


# Plain data an Ultralytics checkpoint may carry beside its layers (training arguments, metrics).
_DATA_GLOBALS = {
    "builtins.set", "builtins.frozenset", "collections.OrderedDict", "types.SimpleNamespace",
    "pathlib.PosixPath", "pathlib.WindowsPath", "datetime.datetime", "datetime.date",
    "ultralytics.utils.IterableSimpleNamespace",
    "numpy.dtype", "numpy.ndarray", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
}  # fmt: skip
# Modules whose nn.Module subclasses are layers; Ultralytics also pickles its loss helpers.
_LAYER_MODULES = ("torch.nn.modules.", "ultralytics.nn.")
_HELPER_MODULES = ("ultralytics.utils.loss", "ultralytics.utils.tal")
_load_lock = threading.Lock()  # torch's allow-list is process-wide: one restricted load at a time


def _allowed_global(name: str) -> object | None:
    """The object a checkpoint's global names, if it is a layer class or plain data; else None.
    Functions (``os.system``, ``builtins.eval``, ``getattr``) are never allowed."""
    module, _, attr = name.rpartition(".")
    if not module.startswith((*_LAYER_MODULES, *_HELPER_MODULES)) and name not in _DATA_GLOBALS:
        return None
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None
    if not isinstance(obj, type):
        return None
    if name in _DATA_GLOBALS or (module.startswith(_HELPER_MODULES) and obj.__module__ == module):
        return obj
    return obj if issubclass(obj, torch.nn.Module) else None


def _is_layer(name: str) -> bool:
    return name.startswith((*_LAYER_MODULES, *_HELPER_MODULES))


def _refuse_init(self, *args, **kwargs) -> None:
    raise pickle.UnpicklingError("the file calls a layer's constructor")


def _no_constructor(cls: type) -> type:
    """A subclass of ``cls`` whose constructor refuses to run (used only to check a file)."""
    return type(cls.__name__, (cls,), {"__init__": _refuse_init, "__module__": cls.__module__})


def check_ultralytics_checkpoint(path: Path) -> None:
    """Refuse an Ultralytics ``.pt`` that would run code when unpickled (UnsafeCheckpointError),
    or that is not a readable checkpoint (ModelError). Nothing in the file runs here."""
    runtime.setup()  # Ultralytics' layer classes are imported to check the file: offline, settings kept private
    path = Path(path)
    if not zipfile.is_zipfile(path):  # every torch.save since 1.6 is a zip archive
        names = pickle_globals(path)
        if names:
            raise UnsafeCheckpointError(unsafe_message(path, names, DETECTOR_ADVICE))
        raise ModelError(f"{path} is not a readable PyTorch checkpoint (damaged, or not a torch.save file)")
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # a damaged archive: zipfile, pickletools and torch raise many types
        raise ModelError(f"{path} is not a readable PyTorch checkpoint: {exc}".split("\n")[0]) from exc
    allowed = {name: _allowed_global(name) for name in needed}
    refused = [name for name, obj in allowed.items() if obj is None]
    if refused:
        raise UnsafeCheckpointError(unsafe_message(path, refused, DETECTOR_ADVICE))
    # The names are fine; now prove the whole pickle loads with only them, and that it builds each
    # layer the way torch.save stores one (an empty object, then its attributes), never by calling
    # a constructor with arguments from the file: the stand-ins below refuse __init__.
    stand_ins: list[Any] = [
        (_no_constructor(obj), name) if _is_layer(name) else (obj, name)  # type: ignore[arg-type]
        for name, obj in allowed.items()
    ]
    try:
        with _load_lock, torch.serialization.safe_globals(stand_ins):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        why = "it calls a layer's constructor" if "constructor" in str(exc) else "it needs more than layers"
        raise UnsafeCheckpointError(unsafe_message(path, [why], DETECTOR_ADVICE)) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise ModelError(f"{path} is not a readable PyTorch checkpoint: {exc}".split("\n")[0]) from exc
    if not isinstance(checkpoint, Mapping) or not isinstance(
        checkpoint.get("model", checkpoint.get("ema")), torch.nn.Module
    ):
        raise ModelError(f"{path} is not an Ultralytics checkpoint (no 'model' in it): give a .pt saved by Ultralytics")


RFDETR_ADVICE = (
    "An RF-DETR checkpoint may hold only tensors and plain training settings. Use the file from its original "
    "source, or re-save it as {'model': state_dict, 'args': {...}} of plain values"
)


def _rfdetr_data_types() -> dict[str, type]:
    """The two classes an RF-DETR checkpoint may carry besides tensors and plain containers: its
    training settings (``args``), an ``argparse.Namespace`` in files written by rfdetr's pre-1.7
    training loop (``engine.py``), a ``types.SimpleNamespace`` in some others. rfdetr's own safe
    loader (``rfdetr.utilities.io._safe_torch_load``) allows exactly these two.

    Why allowing them runs nothing from the file: both are attribute bags. The restricted unpickler
    makes one (``Namespace.__new__``, or calling ``SimpleNamespace``, which only stores keyword
    values as attributes) and fills its ``__dict__`` from the file; neither class has a
    ``__setstate__``, ``__getattr__`` or ``__del__`` that would act on what it holds. Every value
    it holds is read by the same unpickler, so it can only be a tensor, a number, a string or a
    container of those: never a function, a class or anything else that runs."""
    import argparse
    import types

    return {"argparse.Namespace": argparse.Namespace, "types.SimpleNamespace": types.SimpleNamespace}


def read_rfdetr_checkpoint(path: Path) -> dict[str, Any]:
    """An RF-DETR ``.pth`` as written by the ``rfdetr`` package (``{"model": tensors, "args": ...,
    "model_name": ..., "model_config": {...}}``), read with torch's restricted unpickler: tensors,
    plain data and the two namespace classes of :func:`_rfdetr_data_types`, nothing else. A file
    needing any other Python object is refused naming it (UnsafeCheckpointError); nothing in it runs."""
    path = Path(path)
    allowed = _rfdetr_data_types()
    try:
        with _load_lock, torch.serialization.safe_globals(list(allowed.values())):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        names = pickle_globals(path)
        if names is None:
            raise ModelError(f"{path} is not a readable PyTorch checkpoint (damaged or another format)") from exc
        refused = [name for name in names if name not in allowed]
        if any(name.startswith("ultralytics.") for name in refused):  # read, never unpickled: nothing ran
            raise ModelError(
                f"{path} is an Ultralytics YOLO model (it pickles {refused[0]}), not an RF-DETR checkpoint: "
                f"run it with detector.kind yolo"
            ) from exc
        raise UnsafeCheckpointError(unsafe_message(path, refused, RFDETR_ADVICE)) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelError(f"{path} is not a readable PyTorch checkpoint: {exc}".split("\n")[0]) from exc
    if not isinstance(checkpoint, dict):
        raise ModelError(
            f"{path} is not an RF-DETR checkpoint (it holds a {type(checkpoint).__name__}, not the rfdetr package's "
            f"dict of 'model' weights and 'args')"
        )
    return checkpoint


def pickle_globals(path: Path) -> list[str] | None:
    """The Python names a pickle would import, read without running it; None if not a pickle.
    Also the names in every pickle of torch's legacy format (several pickles back to back)."""
    import io
    import pickletools

    data = path.read_bytes()
    if zipfile.is_zipfile(path):  # torch.save's format: the pickle is archive/data.pkl
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not pickles:
                return None
            data = archive.read(pickles[0])
    names: list[str] = []
    stream = io.BytesIO(data)
    for index in range(8):  # legacy: magic number, protocol, system info, the object, storage keys
        strings: list[str] = []
        try:
            for opcode, arg, _ in pickletools.genops(stream):
                if opcode.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:  # pickletools raises ValueError and others on bytes that are not a pickle
            if index == 0:
                return None
            break  # the raw tensor bytes after the last pickle
        if stream.tell() >= len(data):
            break
    allowed = ("torch.", "collections.OrderedDict", "_codecs.encode", "numpy.")
    return [n for n in dict.fromkeys(names) if not n.startswith(allowed)]


def _flatten(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return strip_prefix({str(k): v for k, v in obj.items()}, "module.")


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove a prefix (``module.`` from DataParallel) when every key carries it."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def match_by_order(state: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename tensors to ``target``'s names by position, for checkpoints from a port of the
    same network under other names (shapes must agree one by one)."""
    ours = list(state.items())
    theirs = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    ours = [(k, v) for k, v in ours if not k.endswith("num_batches_tracked")]
    if len(ours) != len(theirs):
        raise ModelError(f"checkpoint has {len(ours)} tensors, the architecture {len(theirs)}: cannot match by order")
    renamed = {}
    for (src, tensor), (dst, ref) in zip(ours, theirs, strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise ModelError(
                f"tensor {src} {tuple(tensor.shape)} does not fit {dst} {tuple(ref.shape)} when matching by order"
            )
        renamed[dst] = tensor
    # Batch-norm step counters carry no weights; take the architecture's own.
    renamed.update({k: v for k, v in target.items() if k.endswith("num_batches_tracked")})
    return renamed
