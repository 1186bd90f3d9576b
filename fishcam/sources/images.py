"""A folder of images as a sequence, in natural name order, at a given frame rate.

An image that cannot be read (damaged, not an image, permission denied) is skipped and counted,
as a damaged stretch of a video is: it keeps its place in the sequence, so the times of the
others stay those of their names. Only a folder with no readable image at all is an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from fishcam.errors import SourceError
from fishcam.sources.base import SourceStatus
from fishcam.types import Frame

if TYPE_CHECKING:
    from fishcam.sources.live import LiveHealth

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
PERMISSION_DENIED = "permission denied"
_NAMED_WARNINGS = 10  # unreadable images named one by one; the rest are counted in one line


def natural_key(path: Path) -> list:
    """``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_images(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except PermissionError as exc:
        raise SourceError(f"cannot list folder {folder}: permission denied") from exc
    return sorted((p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=natural_key)


def read_image(path: Path) -> tuple[np.ndarray | None, str]:
    """(BGR image, "") or (None, why not). The bytes are read here, not by OpenCV, whose
    ``imread`` says None for a file it may not open just as for a damaged one."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except PermissionError:
        return None, PERMISSION_DENIED
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    if not data:
        return None, "an empty file"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return (image, "") if image is not None else (None, "not a readable image")


class ImageFolderSource:
    live = False
    recorded_start_unix: float | None = None
    health: LiveHealth | None = None

    def __init__(self, folder: Path, fps: float = 1.0) -> None:
        self.folder = Path(folder)
        self.location = str(self.folder.resolve())
        self.name = self.folder.name
        self.fps = fps
        self.files = list_images(self.folder)
        if not self.files:
            raise SourceError(f"folder {self.folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.status = SourceStatus(frames_expected=len(self.files))
        self._reasons: dict[str, int] = {}
        self._start, self._first = self._first_readable()
        self.height, self.width = self._first.shape[:2]

    def _first_readable(self) -> tuple[int, np.ndarray]:
        for index, path in enumerate(self.files):
            image, reason = read_image(path)
            if image is not None:
                return index, image
            self._skip(path, reason)
        raise SourceError(f"none of the {len(self.files)} images in {self.folder} can be read: {self._why()}")

    def _skip(self, path: Path, reason: str) -> None:
        status = self.status
        status.unreadable_frames += 1
        self._reasons[reason] = self._reasons.get(reason, 0) + 1
        if status.unreadable_frames <= _NAMED_WARNINGS:
            status.warnings.append(f"{path.name}: {reason}: skipped")
        log.debug("%s: %s: skipped", path, reason)

    def _why(self) -> str:
        """``permission denied`` (2), not a readable image (1): the reasons, most common first."""
        ranked = sorted(self._reasons.items(), key=lambda item: -item[1])
        return ", ".join(f"{reason} ({count})" for reason, count in ranked)

    def __iter__(self) -> Iterator[Frame]:
        for index in range(self._start, len(self.files)):
            path = self.files[index]
            image, reason = (self._first, "") if index == self._start else read_image(path)
            if image is None:
                self._skip(path, reason)
                continue
            self.status.frames_read += 1
            yield Frame(image, index, index / self.fps, path.name)
        unnamed = self.status.unreadable_frames - _NAMED_WARNINGS
        if unnamed > 0:
            self.status.warnings.append(
                f"{self.name}: {unnamed} more unreadable images skipped "
                f"({self.status.unreadable_frames} in all: {self._why()})"
            )

    def close(self) -> None:
        pass
