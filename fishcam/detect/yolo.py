"""Ultralytics YOLO detector, kept off the network. The only module that imports ultralytics."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fishcam.config import DetectorConfig
from fishcam.errors import ConfigError, ModelError
from fishcam.models import hub
from fishcam.models.checkpoint import check_ultralytics_checkpoint
from fishcam.models.devices import exports_dir, pick_device
from fishcam.types import Detections, Frame

log = logging.getLogger(__name__)


def pick_backend(requested: str, device: str) -> str:
    """``auto``: TensorRT on CUDA and OpenVINO on CPU where they are installed, else torch."""
    import importlib.util

    if requested != "auto":
        return requested
    if device.startswith("cuda"):
        return "tensorrt" if importlib.util.find_spec("tensorrt") else "torch"
    return "openvino" if importlib.util.find_spec("openvino") else "torch"


EXPORT_FORMATS = {
    "openvino": ("openvino", "_openvino_model"),
    "tensorrt": ("engine", ".engine"),
    "onnx": ("onnx", ".onnx"),
}


@contextmanager
def keep_torch_threads(inside: int | None = None) -> Iterator[None]:
    """Ultralytics' device setup (loading, the first predict) sets torch to cores - 1 threads for
    the whole process: 1 of 2 on a dual-core laptop, which halved the expert's speed. Undo it.
    ``inside``: torch's thread count for this thread meanwhile."""
    import torch

    threads = torch.get_num_threads()
    if inside is not None:
        torch.set_num_threads(inside)
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


class YoloDetector:
    def __init__(self, config: DetectorConfig) -> None:
        with keep_torch_threads():
            self._load(config)

    def _load(self, config: DetectorConfig) -> None:
        from fishcam import runtime

        runtime.setup()  # before anything imports ultralytics: offline, no telemetry, fonts in place
        self.config = config
        self.path = hub.resolve(config.weights, "detector")
        if self.path.suffix not in {".pt", ".onnx"} and not self.path.is_dir():
            raise ModelError(f"detector weights must be an Ultralytics .pt, .onnx or OpenVINO folder: {self.path}")
        if self.path.suffix == ".pt":  # Ultralytics unpickles .pt files without restriction: check first
            check_ultralytics_checkpoint(self.path)
        from ultralytics import YOLO

        self.device = pick_device(config.device)
        self.backend = pick_backend(config.backend, self.device) if self.path.suffix == ".pt" else "as given"
        self.model_path = self._exported() if self.backend not in {"torch", "as given"} else self.path
        try:
            self._model = YOLO(str(self.model_path), task="detect")
        except Exception as exc:  # ultralytics raises many types for a bad file
            raise ModelError(f"cannot load detector {self.model_path}: {exc}".split("\n")[0]) from exc
        names = self._model.names or {}
        self.class_names = {int(k): str(v) for k, v in (names.items() if isinstance(names, dict) else enumerate(names))}
        self._class_ids = self._resolve_classes(config.classes)
        # Ultralytics sets up its predictor on the first call (about a second): at load time, not
        # on the first frame of a video or a live stream.
        blank = np.zeros((config.image_size, config.image_size, 3), np.uint8)
        self.detect(Frame(blank, 0, 0.0, "warm-up"))

    def _exported(self) -> Path:
        """The weights exported for this backend, cached by checksum: reused while the weights
        stay the same, rebuilt when they change. Exporting takes seconds, once."""
        fmt, suffix = EXPORT_FORMATS[self.backend]
        # CPU runtimes take any input shape, so a frame is letterboxed to its own aspect (320x192
        # for 16:9, as torch does) rather than padded to a square: 40 % less to compute at 1080p.
        dynamic = self.backend in {"openvino", "onnx"}
        shape = f"{self.config.image_size}{'-dynamic' if dynamic else ''}"
        key = f"{hub.sha256_file(self.path)[:16]}-{self.backend}-{shape}"
        folder = exports_dir() / key
        target = folder / f"model{suffix}"
        if target.exists():
            return target
        from ultralytics import YOLO

        # Exported in a folder of this process's own, then renamed into place: two batch workers
        # exporting the same weights at once must not write into one folder.
        exports_dir().mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=exports_dir()))
        try:
            shutil.copyfile(self.path, work / "model.pt")
            log.info("exporting detector %s to %s (once; cached in %s)", self.path.name, self.backend, folder)
            try:
                options = {"half": True} if self.backend == "tensorrt" else {"dynamic": dynamic}
                YOLO(str(work / "model.pt"), task="detect").export(
                    format=fmt, imgsz=self.config.image_size, device=self.device, verbose=False, **options
                )
            except Exception as exc:
                raise ModelError(
                    f"cannot export detector to {self.backend}: {exc}; use detector.backend=torch"
                ) from exc
            try:
                os.rename(work, folder)
            except OSError:  # another process finished first: use its export
                if not target.exists():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if not target.exists():
            raise ModelError(
                f"exporting the detector to {self.backend} left no {target.name}; use detector.backend=torch"
            )
        return target

    def _resolve_classes(self, wanted: list[str | int] | None) -> list[int] | None:
        if not wanted:
            return None
        by_name = {name.casefold(): cid for cid, name in self.class_names.items()}
        ids = []
        for item in wanted:
            if isinstance(item, int) and item in self.class_names:
                ids.append(item)
            elif isinstance(item, str) and item.casefold() in by_name:
                ids.append(by_name[item.casefold()])
            else:
                raise ConfigError(
                    f"detector.classes: {item!r} is not a class of {self.path.name}; "
                    f"its classes are {sorted(self.class_names.values())}"
                )
        return ids

    def detect(self, frame: Frame) -> Detections:
        # With another runtime doing the inference, torch only pre- and post-processes a small
        # tensor: one thread, so no OpenMP thread spins after each of those ops against the
        # decoder, the encoder and the expert (20-fish benchmark: 51 -> 65 fps where torch had been
        # imported before fishcam could ask OpenMP to wait passively).
        with keep_torch_threads(None if self.backend == "torch" else 1):
            result = self._model.predict(
                frame.image_bgr,
                conf=self.config.confidence,
                iou=self.config.iou,
                imgsz=self.config.image_size,
                device=self.device,
                classes=self._class_ids,
                verbose=False,
                **({"quantize": 16} if self.device.startswith("cuda") else {}),
            )[0]
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return Detections.empty()
        return Detections.build(
            boxes.xyxy.cpu().numpy(),
            boxes.conf.cpu().numpy(),
            boxes.cls.cpu().numpy().astype(np.int64),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "yolo",
            "weights": self.config.weights,
            **hub.describe(self.path),
            "backend": self.backend,
            "classes": self._class_ids,
            "image_size": self.config.image_size,
            "device": self.device,
        }
