"""Boxes and labels on the frame (supervision's annotators: no fonts to download)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fishcam.types import Detections

# (track id) -> (species, score, origin) or None while the track has no call yet
LabelLookup = Callable[[int], "tuple[str, float, str] | None"]


def label_text(track_id: int, call: tuple[str, float, str] | None) -> str:
    if call is None:
        return f"#{track_id} ..."
    species, score, origin = call
    if origin == "none":
        return f"#{track_id} {species}"
    return f"#{track_id} {species} {score:.2f} {origin}"


class Overlay:
    def __init__(self, thickness: int = 2, text_scale: float = 0.5) -> None:
        import supervision as sv

        self._sv = sv
        self._boxes = sv.BoxAnnotator(thickness=thickness, color_lookup=sv.ColorLookup.TRACK)
        self._labels = sv.LabelAnnotator(
            text_scale=text_scale, text_padding=4, color_lookup=sv.ColorLookup.TRACK, smart_position=True
        )

    def draw(self, image_bgr: np.ndarray, detections: Detections, lookup: LabelLookup) -> np.ndarray:
        """A copy of the image with every tracked fish's box, id, species, score and origin."""
        tracked = detections.filter(detections.track_id >= 0)
        canvas = image_bgr.copy()
        if len(tracked) == 0:
            return canvas
        sv_dets = self._sv.Detections(
            xyxy=tracked.xyxy.astype(np.float32),
            confidence=tracked.confidence,
            class_id=tracked.class_id.astype(int),
            tracker_id=tracked.track_id.astype(int),
        )
        labels = [label_text(tid, lookup(tid)) for tid in tracked.track_id.tolist()]
        canvas = self._boxes.annotate(canvas, sv_dets)
        return self._labels.annotate(canvas, sv_dets, labels=labels)
