"""The Ultralytics YOLO detector: a loaded model (``fishcam.models.loading.load_yolo``) run on
frames. Loading, checking and exporting the weights are ``fishcam.models``'; this only predicts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fishcam import runtime
from fishcam.config import DetectorConfig
from fishcam.detect.base import resolve_classes
from fishcam.types import Detections, Frame

if TYPE_CHECKING:
    from fishcam.models.loading import LoadedDetector


class YoloDetector:
    """Implements the Detector protocol over a loaded Ultralytics model.

    ``YoloDetector(load_yolo(config), config)`` adapts a loaded model; ``load_detector(config)``
    does that and warms it up.
    """

    def __init__(self, model: LoadedDetector, config: DetectorConfig) -> None:
        self.loaded = model
        self.config = config
        self._model = model.yolo
        self.device = model.device
        self.backend = model.backend
        self.class_names = model.class_names
        self._class_ids = self._resolve_classes(config.classes)

    def warm_up(self) -> None:
        """Ultralytics sets up its predictor on the first call (about a second): at load time, not
        on the first frame of a video or a live stream."""
        blank = np.zeros((self.config.image_size, self.config.image_size, 3), np.uint8)
        self.detect(Frame(blank, 0, 0.0, "warm-up"))

    def _resolve_classes(self, wanted: list[str | int] | None) -> list[int] | None:
        return resolve_classes(wanted, self.class_names, self.loaded.weights.name)

    def detect(self, frame: Frame) -> Detections:
        # With another runtime doing the inference, torch only pre- and post-processes a small
        # tensor: one thread, so no OpenMP thread spins after each of those ops against the
        # decoder, the encoder and the expert (20-fish benchmark: 51 -> 65 fps where torch had been
        # imported before fishcam could ask OpenMP to wait passively). Ultralytics' device set-up
        # at the first predict would change the process's count: kept.
        with runtime.torch_threads(None if self.backend == "torch" else 1):
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
            **self.loaded.describe(),
            "backend": self.backend,
            "classes": self._class_ids,
            "image_size": self.config.image_size,
            "device": self.device,
        }
