"""Recorded video files through OpenCV: every frame, in order, to the end.

A damaged file makes ``read()`` fail for some frames and then succeed again, so a run of
failures only ends the file after ``max_read_failures`` in a row; what was skipped and where the
file stopped short of its stated length are reported, never hidden.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import cv2

from fishcam.errors import SourceError
from fishcam.sources.base import VIDEO_SUFFIXES, SourceStatus
from fishcam.types import Frame

log = logging.getLogger(__name__)


class VideoFileSource:
    def __init__(self, path: Path, max_read_failures: int = 50) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.max_read_failures = max_read_failures
        # Damage is reported once in the run summary, not as FFmpeg's line per broken packet.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            hint = (
                "" if self.path.suffix.lower() in VIDEO_SUFFIXES else f" (a {self.path.suffix or 'suffix-less'} file)"
            )
            raise SourceError(f"{self.path} is not a video OpenCV can open{hint}: it is damaged or not a video")
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise SourceError(f"{self.path} opened but no frame could be decoded: the video is damaged or empty")
        self._first = first
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 25.0
        self.height, self.width = first.shape[:2]
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.status = SourceStatus(frames_expected=count if count > 0 else None)
        if not (fps and 0 < fps < 1000):
            self.status.warnings.append(f"{self.name} states no frame rate; assuming 25 fps for times")
        self.recorded_start_unix = recorded_start(self.path)

    def __iter__(self) -> Iterator[Frame]:
        status = self.status
        expected = status.frames_expected
        index, frame, failures = 0, self._first, 0
        while True:
            if frame is not None:
                status.frames_read += 1
                yield Frame(frame, index, index / self.fps, self.name)
            index += 1
            ok, frame = self._cap.read()
            if ok:
                status.unreadable_frames += failures  # a damaged stretch inside the file
                failures = 0
                continue
            frame, failures = None, failures + 1
            if failures >= self.max_read_failures or (expected and index >= expected):
                break
        self._finish(stopped_at=index - failures + 1)

    def _finish(self, stopped_at: int) -> None:
        status = self.status
        expected = status.frames_expected
        if status.unreadable_frames:
            status.warnings.append(f"{self.name}: {status.unreadable_frames} unreadable frames skipped")
        # Containers may overstate their length by a frame; more than that is a short file.
        if expected and stopped_at < expected - 1:
            status.ended_early = True
            status.warnings.append(
                f"{self.name} ended early: {status.frames_read} of {expected} frames readable; "
                f"stopped at frame {stopped_at} (truncated or corrupt); outputs cover frames 0-{stopped_at - 1}"
            )
        self.close()

    def close(self) -> None:
        self._cap.release()


def recorded_start(path: Path) -> float | None:
    """When the camera started recording, from the container's ``creation_time`` tag (cameras and
    most encoders write it), or None. Exports place observations in real time with it."""
    import av

    try:
        with av.open(str(path)) as container:
            tag = container.metadata.get("creation_time") or ""
    except (av.error.FFmpegError, OSError):
        return None
    try:
        stamp = datetime.fromisoformat(tag.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)  # the MP4 tag is UTC by definition
    # Encoders with no clock write the MP4 epoch (1904) or 1970: not a recording time.
    return stamp.timestamp() if stamp.year > 1990 else None
