"""A detector that replays given boxes: the real fake for pipeline tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fishcam.types import Detections, Frame


class ScriptedDetector:
    """Returns ``script[frame.index]`` (empty when the frame is not in the script)."""

    def __init__(self, script: Mapping[int, Detections], class_names: dict[int, str] | None = None) -> None:
        self._script = dict(script)
        self.class_names = class_names or {0: "fish"}

    def detect(self, frame: Frame) -> Detections:
        return self._script.get(frame.index, Detections.empty())

    def describe(self) -> dict[str, Any]:
        return {"kind": "scripted", "frames": len(self._script)}
