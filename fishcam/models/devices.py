"""Where and how each model runs: device, precision, and the runtime that executes it."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from fishcam.errors import ConfigError

if TYPE_CHECKING:
    from fishcam.config import Config


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


def pick_precision(requested: str, device: str) -> str:
    """``auto`` → fp16 on CUDA, bf16 on CPUs with native bf16 (AVX-512 BF16, AMX), else fp32."""
    import torch

    if requested != "auto":
        if requested == "fp16" and not device.startswith("cuda"):
            raise ConfigError("precision fp16 needs a CUDA device; use bf16 or fp32 on a CPU")
        return requested
    if device.startswith("cuda"):
        return "fp16"
    bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return "bf16" if bf16 else "fp32"


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

AS_GIVEN = "as given"  # the detector's weights are already in a runtime's format (.onnx, OpenVINO folder)


def detector_backend(requested: str, device: str, weights_suffix: str) -> str:
    """What runs the detector. Only a ``.pt`` is exported to another runtime; other weights run
    as given. ``auto``: TensorRT on CUDA and OpenVINO on CPU where they are installed, else torch."""
    if weights_suffix != ".pt":
        return AS_GIVEN
    if requested != "auto":
        return requested
    if device.startswith("cuda"):
        return "tensorrt" if importlib.util.find_spec("tensorrt") else "torch"
    return "openvino" if importlib.util.find_spec("openvino") else "torch"


def expert_backend(requested: str) -> str:
    """What runs the expert. ``auto`` is torch: with bf16 autocast it decides exactly as fp32
    (tested), while OpenVINO's bf16 changed 3 % of the crop decisions on real weights."""
    return "torch" if requested == "auto" else requested


def settle_for_device(config: Config) -> Config:
    """The config as it runs here: ``detector.on_cpu``'s image size and stride where the detector
    runs on the CPU (the motion detector always does), else the config as given."""
    cpu = config.detector.on_cpu
    if cpu.image_size is None and cpu.stride is None:
        return config
    if config.detector.kind != "motion" and pick_device(config.detector.device) != "cpu":
        return config
    return config.on_cpu()
