"""Models converted for a faster runtime, once: cached in ``cache_dir("exports")`` under the
weights' checksum, so an export is reused while the weights stay the same and rebuilt when they
change. Exporting takes seconds; a run finds it done."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fishcam.errors import ModelError
from fishcam.models.paths import cache_dir

log = logging.getLogger(__name__)

# Ultralytics' export format and the name of what it writes, per detector runtime.
DETECTOR_FORMATS = {
    "openvino": ("openvino", "_openvino_model"),
    "tensorrt": ("engine", ".engine"),
    "onnx": ("onnx", ".onnx"),
}


def exported_detector(weights: Path, sha256: str, runtime: str, image_size: int, device: str) -> Path:
    """An Ultralytics ``.pt`` exported for ``runtime``. The caller has checked the file
    (fishcam.models.checkpoint): Ultralytics unpickles it to export it."""
    fmt, suffix = DETECTOR_FORMATS[runtime]
    # CPU runtimes take any input shape, so a frame is letterboxed to its own aspect (320x192
    # for 16:9, as torch does) rather than padded to a square: 40 % less to compute at 1080p.
    dynamic = runtime in {"openvino", "onnx"}
    key = f"{sha256[:16]}-{runtime}-{image_size}{'-dynamic' if dynamic else ''}"
    exports = cache_dir("exports")
    folder = exports / key
    target = folder / f"model{suffix}"
    if target.exists():
        return target
    from ultralytics import YOLO

    # Exported in a folder of this process's own, then renamed into place: two batch workers
    # exporting the same weights at once must not write into one folder.
    exports.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=exports))
    try:
        shutil.copyfile(weights, work / "model.pt")
        log.info("exporting detector %s to %s (once; cached in %s)", weights.name, runtime, folder)
        try:
            options = {"half": True} if runtime == "tensorrt" else {"dynamic": dynamic}
            YOLO(str(work / "model.pt"), task="detect").export(
                format=fmt, imgsz=image_size, device=device, verbose=False, **options
            )
        except Exception as exc:
            raise ModelError(f"cannot export detector to {runtime}: {exc}; use detector.backend=torch") from exc
        try:
            os.rename(work, folder)
        except OSError:  # another process finished first: use its export
            if not target.exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not target.exists():
        raise ModelError(f"exporting the detector to {runtime} left no {target.name}; use detector.backend=torch")
    return target


def compiled_expert(
    network: Any, sha256: str, size: tuple[int, int], precision: str, name: str, with_features: bool = False
) -> Any:
    """The expert's torch network converted to OpenVINO once and compiled for this CPU: the same
    runtime as the detector, so one thread pool. ``size``: (height, width) of its input.
    ``with_features``: ``network`` returns (logits, features) and so does the compiled model."""
    import openvino as ov
    import torch

    height, width = size
    outputs = "-features" if with_features else ""
    folder = cache_dir("exports") / f"{sha256[:16]}-expert-openvino-{height}x{width}{outputs}"
    xml = folder / "model.xml"
    if not xml.exists():
        log.info("converting expert %s to OpenVINO (once; cached in %s)", name, folder)
        folder.mkdir(parents=True, exist_ok=True)
        converted = ov.convert_model(
            network.float().to(memory_format=torch.contiguous_format),
            example_input=torch.zeros(1, 3, height, width),
            input=[ov.PartialShape([-1, 3, height, width])],
        )
        ov.save_model(converted, str(xml.with_suffix(".tmp.xml")), compress_to_fp16=False)
        for suffix in (".xml", ".bin"):
            xml.with_suffix(".tmp" + suffix).replace(xml.with_suffix(suffix))
    hint = {"bf16": "bf16", "fp16": "f16"}.get(precision, "f32")
    return ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})
