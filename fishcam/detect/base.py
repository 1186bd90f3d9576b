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


def reset_detector(detector: Detector) -> None:
    """Stateful detectors (background models) start afresh for each source."""
    reset = getattr(detector, "reset", None)
    if callable(reset):
        reset()
