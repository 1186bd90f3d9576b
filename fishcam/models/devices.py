"""Device choice shared by every model."""

from __future__ import annotations

from fishcam.errors import ConfigError


def pick_device(requested: str) -> str:
    """``auto`` → ``cuda:0`` when a GPU is usable, else ``cpu``; explicit choices are checked."""
    import torch

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} asked for, but no CUDA GPU is usable here; use 'auto' or 'cpu'")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {requested!r}")
    return requested
