"""H.264 MP4 writer through PyAV (OpenCV's wheels cannot encode H.264).

Fragmented MP4: every keyframe closes a fragment, so a run that is killed still leaves a file
that plays up to the last fragment, and common players (VLC, browsers, ffplay) read it.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


class H264Writer:
    def __init__(
        self, path: Path, width: int, height: int, fps: float, crf: int = 23, preset: str = "veryfast"
    ) -> None:
        import av

        self.path = Path(path)
        self.width, self.height = width - width % 2, height - height % 2  # yuv420p needs even sizes
        self._container = av.open(
            str(self.path),
            mode="w",
            options={"movflags": "frag_keyframe+empty_moov+default_base_moof"},
        )
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": preset, "g": str(max(1, round(fps * 2)))}
        self._av = av
        self.frames = 0

    def write(self, image_bgr: np.ndarray) -> None:
        if image_bgr.shape[0] != self.height or image_bgr.shape[1] != self.width:
            import cv2

            image_bgr = cv2.resize(image_bgr, (self.width, self.height), interpolation=cv2.INTER_AREA)
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image_bgr), format="bgr24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
