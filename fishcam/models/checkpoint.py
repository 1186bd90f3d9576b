"""Safe loading of weight files: tensors only, never unpickled Python objects."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from fishcam.errors import ModelError, UnsafeCheckpointError

# Wrappers that training scripts put around a state dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "weights")


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
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UnsafeCheckpointError(
                f"{path} holds pickled Python objects, not just tensors ({first_line}); fishcam "
                f"refuses to run code from a checkpoint. Re-save it with "
                f"torch.save(model.state_dict(), path) or as safetensors"
            ) from exc
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
            raise ModelError(f"{path} is not a readable PyTorch checkpoint: {exc}".split("\n")[0]) from exc
    return _flatten(tensors, path)


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
    return renamed
