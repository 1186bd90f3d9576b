"""The detector protocol."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from fishcam.types import Detections, Frame


class Detector(Protocol):
    """What the pipeline and the app use of a detector (YOLO, motion, scripted)."""

    class_names: dict[int, str]  # class id -> name, for the outputs

    def detect(self, frame: Frame) -> Detections:
        """Boxes of the fish in one frame (track ids unset)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What this detector is, for the run summary."""
        ...


@runtime_checkable
class Stateful(Protocol):
    """A detector that learns from the frames it sees (a background model)."""

    def reset(self) -> None:
        """Forget what was learnt: the next frame starts a new source."""
        ...


def reset_detector(detector: Detector) -> None:
    """Stateful detectors (background models) start afresh for each source."""
    if isinstance(detector, Stateful):
        detector.reset()
