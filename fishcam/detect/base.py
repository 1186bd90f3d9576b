"""The detector protocol."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from fishcam.errors import ConfigError
from fishcam.types import Detections, Frame


class Detector(Protocol):
    """What the pipeline and the app use of a detector (YOLO, RF-DETR, motion, scripted)."""

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


def resolve_classes(wanted: list[str | int] | None, class_names: dict[int, str], weights_name: str) -> list[int] | None:
    """``detector.classes`` as class ids of a model: names (any case) or ids it has; None keeps
    every class. One it does not have is a ConfigError naming the model's classes."""
    if not wanted:
        return None
    by_name = {name.casefold(): cid for cid, name in class_names.items()}
    ids = []
    for item in wanted:
        if isinstance(item, int) and item in class_names:
            ids.append(item)
        elif isinstance(item, str) and item.casefold() in by_name:
            ids.append(by_name[item.casefold()])
        else:
            raise ConfigError(
                f"detector.classes: {item!r} is not a class of {weights_name}; "
                f"its classes are {sorted(class_names.values())}"
            )
    return ids
