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
            names = pickle_globals(path)
            if names is None:
                raise ModelError(f"{path} is not a readable PyTorch checkpoint (damaged or another format)") from exc
            shown = ", ".join(names[:3]) or "objects torch does not allow"
            raise UnsafeCheckpointError(
                f"{path} holds pickled Python objects, not just tensors ({shown}); fishcam refuses to "
                f"run code from a checkpoint. Re-save it with torch.save(model.state_dict(), path) or as safetensors"
            ) from exc
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
            raise ModelError(f"{path} is not a readable PyTorch checkpoint: {exc}".split("\n")[0]) from exc
    return _flatten(tensors, path)


def pickle_globals(path: Path) -> list[str] | None:
    """The Python names a pickle would import, read without running it; None if not a pickle."""
    import pickletools

    data = path.read_bytes()
    if zipfile.is_zipfile(path):  # torch.save's format: the pickle is archive/data.pkl
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not pickles:
                return None
            data = archive.read(pickles[0])
    names, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # pickletools raises ValueError and others on bytes that are not a pickle
        return None
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
