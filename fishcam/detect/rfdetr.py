"""The RF-DETR detector: a loaded network (``fishcam.models.rfdetr.load_rfdetr``) run on frames
by the package's own ``predict``. Loading and checking the weights are ``fishcam.models``'."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from fishcam import runtime
from fishcam.config import DetectorConfig
from fishcam.detect.base import resolve_classes
from fishcam.types import Detections, Frame

if TYPE_CHECKING:
    from fishcam.models.rfdetr import LoadedRFDETR


class RFDETRDetector:
    """Implements the Detector protocol over a loaded RF-DETR network.

    ``predict`` squashes the RGB frame to ``image_size`` x ``image_size`` (bilinear, no letterbox),
    normalises it with ImageNet's mean and std and keeps the best 300 query-class pairs scoring
    above ``detector.confidence``, boxes in frame pixels. DETR needs no NMS, so ``detector.iou``
    does not apply. Class ids count from 0; the head's last slot, "no object", is never a detection.
    """

    def __init__(self, model: LoadedRFDETR, config: DetectorConfig) -> None:
        self.loaded = model
        self.config = config
        self._model = model.model
        self.device = model.device
        self.backend = "torch"
        self.class_names = model.class_names
        self._class_ids = resolve_classes(config.classes, self.class_names, model.weights.name)
        wanted = self._class_ids if self._class_ids is not None else list(self.class_names)
        self._wanted = np.asarray(sorted(wanted), dtype=np.int64)

    def warm_up(self) -> None:
        """The first predict moves the network to its device and sets up its kernels: at load
        time, not on the first frame of a video or a live stream."""
        blank = np.zeros((self.loaded.resolution, self.loaded.resolution, 3), np.uint8)
        self.detect(Frame(blank, 0, 0.0, "warm-up"))

    def detect(self, frame: Frame) -> Detections:
        rgb = cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2RGB)
        with runtime.torch_threads():
            found = self._model.predict(
                rgb,
                threshold=self.config.confidence,
                shape=(self.loaded.resolution, self.loaded.resolution),
                include_source_image=False,
            )
        if len(found) == 0:
            return Detections.empty()
        class_id = np.asarray(found.class_id, dtype=np.int64)
        keep = np.isin(class_id, self._wanted)  # also drops the no-object slot (id = number of classes)
        return Detections.build(
            np.asarray(found.xyxy, dtype=np.float32)[keep],
            np.asarray(found.confidence, dtype=np.float32)[keep],
            class_id[keep],
        )

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        info = self.loaded.info
        described: dict[str, Any] = {
            "kind": "rfdetr",
            "weights": self.config.weights,
            **self.loaded.describe(),
            "architecture": f"RF-DETR {info.variant}",
            "size_from": info.found_by,
            "backend": self.backend,
            "classes": self._class_ids,
            "class_names": {str(k): v for k, v in self.class_names.items()},
            "image_size": self.loaded.resolution,
            "trained_image_size": info.trained_resolution,
            "device": self.device,
        }
        if info.written_by:
            described["written_by_rfdetr"] = info.written_by
        described["rfdetr"] = version("rfdetr")
        return described
