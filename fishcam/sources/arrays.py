"""Frames from memory: the synthetic source for tests and for callers that decode themselves."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from fishcam.sources.base import SourceStatus
from fishcam.types import Frame

if TYPE_CHECKING:
    from fishcam.sources.live import LiveHealth


class ArraySource:
    live = False
    recorded_start_unix: float | None = None
    health: LiveHealth | None = None

    def __init__(self, images_bgr: Sequence[np.ndarray], fps: float = 25.0, name: str = "arrays") -> None:
        if not len(images_bgr):
            raise ValueError("ArraySource needs at least one image")
        self.images = images_bgr
        self.fps = fps
        self.name = name
        self.location = name
        self.height, self.width = images_bgr[0].shape[:2]
        self.status = SourceStatus(frames_expected=len(images_bgr))

    def __iter__(self) -> Iterator[Frame]:
        for index, image in enumerate(self.images):
            self.status.frames_read += 1
            yield Frame(image, index, index / self.fps, self.name)

    def close(self) -> None:
        pass
