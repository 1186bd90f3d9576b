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

    def draw(
        self, image_bgr: np.ndarray, detections: Detections, lookup: LabelLookup, max_width: int | None = None
    ) -> np.ndarray:
        """A copy of the image with every tracked fish's box, id, species, score and origin."""
        tracked = detections.filter(detections.track_id >= 0)
        labels = [label_text(tid, lookup(tid)) for tid in tracked.track_id.tolist()]
        return self.draw_labels(image_bgr, tracked, labels, max_width)

    def draw_labels(
        self, image_bgr: np.ndarray, tracked: Detections, labels: list[str], max_width: int | None = None
    ) -> np.ndarray:
        """Draw given labels; with ``max_width`` the frame is first scaled down (boxes too)."""
        scale = 1.0
        if max_width is not None and image_bgr.shape[1] > max_width:
            import cv2

            scale = max_width / image_bgr.shape[1]
            size = (max_width, round(image_bgr.shape[0] * scale))
            canvas = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
        else:
            canvas = image_bgr.copy()
        if len(tracked) == 0:
            return canvas
        sv_dets = self._sv.Detections(
            xyxy=tracked.xyxy.astype(np.float32) * scale,
            confidence=tracked.confidence,
            class_id=tracked.class_id.astype(int),
            tracker_id=tracked.track_id.astype(int),
        )
        canvas = self._boxes.annotate(canvas, sv_dets)
        return self._labels.annotate(canvas, sv_dets, labels=labels)
