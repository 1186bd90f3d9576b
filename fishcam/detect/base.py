"""The detector protocol."""

from __future__ import annotations

from typing import Any, Protocol

from fishcam.types import Detections, Frame


class Detector(Protocol):
    class_names: dict[int, str]

    def detect(self, frame: Frame) -> Detections:
        """Boxes of the fish in one frame (track ids unset)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What this detector is, for the run summary."""
        ...
