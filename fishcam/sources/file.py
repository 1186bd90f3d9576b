"""Recorded video files through OpenCV: every frame, in order, to the end.

A damaged file makes ``read()`` fail for some frames and then succeed again, so a run of
failures only ends the file after ``max_read_failures`` in a row; what was skipped and where the
file stopped short of its stated length are reported, never hidden.

Frames are numbered from their container timestamps, not by counting reads: after garbage in a
file the demuxer often resynchronises at a later keyframe without any failed read (Matroska
skips the rest of a cluster), and counting would number every later frame too early.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from fishcam.errors import SourceError
from fishcam.sources.base import VIDEO_SUFFIXES, SourceStatus
from fishcam.sources.ffmpeg import open_with_options
from fishcam.types import Frame

if TYPE_CHECKING:
    from fishcam.sources.live import LiveHealth

log = logging.getLogger(__name__)


class VideoFileSource:
    live = False
    health: LiveHealth | None = None

    def __init__(self, path: Path, max_read_failures: int = 50) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.location = str(self.path.resolve())
        self.max_read_failures = max_read_failures
        check_readable(self.path)
        # Damage is reported once in the run summary, not as FFmpeg's line per broken packet.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        self._cap = open_with_options(None, lambda: cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG))
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
        # Frame 0 is the first decoded frame, whatever the container's start time.
        self._origin_ms = self._last_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        self._lost: list[tuple[int, int]] = []  # first and last frame of each skipped stretch

    def __iter__(self) -> Iterator[Frame]:
        expected = self.status.frames_expected
        index, failures = 0, 0
        frame: np.ndarray | None = self._first
        while True:
            if frame is not None:
                self.status.frames_read += 1
                yield Frame(frame, index, index / self.fps, self.name)
            ok, frame = self._cap.read()
            if ok:
                number = self._number(index, failures)
                self._skipped(index + 1, number)
                index, failures = number, 0
                continue
            frame, failures = None, failures + 1
            if failures >= self.max_read_failures or (expected and index + failures >= expected):
                break
        self._finish(stopped_at=index + 1)

    def _number(self, previous: int, failures: int) -> int:
        """The number of the frame just read, from its timestamp. Without a usable one (none,
        or not after the last), one more than the last plus the failed reads between."""
        ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        if not ms > self._last_ms:
            return previous + 1 + failures
        self._last_ms = ms
        return max(previous + 1, round((ms - self._origin_ms) * self.fps / 1000))

    def _skipped(self, first: int, reached: int) -> None:
        if reached > first:
            self.status.unreadable_frames += reached - first
            self._lost.append((first, reached - 1))

    def _finish(self, stopped_at: int) -> None:
        status = self.status
        expected = status.frames_expected
        if status.unreadable_frames:
            status.warnings.append(
                f"{self.name}: {status.unreadable_frames} unreadable frames skipped ({self._stretches()}); "
                "later frames keep their numbers and times"
            )
        # Containers may overstate their length by a frame; more than that is a short file.
        if expected and stopped_at < expected - 1:
            status.ended_early = True
            status.warnings.append(
                f"{self.name} ended early: {status.frames_read} of {expected} frames readable; "
                f"stopped at frame {stopped_at} (truncated or corrupt); outputs cover frames 0-{stopped_at - 1}"
            )
        self.close()

    def _stretches(self, shown: int = 5) -> str:
        text = ", ".join(
            f"frames {a}-{b} at {a / self.fps:.2f}-{(b + 1) / self.fps:.2f} s" for a, b in self._lost[:shown]
        )
        more = len(self._lost) - shown
        return text + (f" and {more} more stretches" if more > 0 else "")

    def close(self) -> None:
        self._cap.release()


def check_readable(path: Path) -> None:
    """Open the file ourselves first: OpenCV reports a file it may not read as one it cannot
    decode, so a permission problem would read as damage."""
    try:
        open(path, "rb").close()
    except PermissionError as exc:
        raise SourceError(f"cannot read {path}: permission denied") from exc
    except OSError as exc:
        raise SourceError(f"{path} cannot be read: {exc.strerror or exc}") from exc


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
