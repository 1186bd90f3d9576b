"""A folder of images as a sequence, in natural name order, at a given frame rate."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import cv2

from fishcam.errors import SourceError
from fishcam.sources.base import SourceStatus
from fishcam.types import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def natural_key(path: Path) -> list:
    """``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class ImageFolderSource:
    def __init__(self, folder: Path, fps: float = 1.0) -> None:
        self.folder = Path(folder)
        self.name = self.folder.name
        self.fps = fps
        self.files = sorted(
            (p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
            key=natural_key,
        )
        if not self.files:
            raise SourceError(f"folder {self.folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        first = cv2.imread(str(self.files[0]), cv2.IMREAD_COLOR)
        if first is None:
            raise SourceError(f"{self.files[0]} is not a readable image")
        self.height, self.width = first.shape[:2]
        self.status = SourceStatus(frames_expected=len(self.files))

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.files):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.status.unreadable_frames += 1
                self.status.warnings.append(f"{path.name} is not a readable image: skipped")
                continue
            self.status.frames_read += 1
            yield Frame(image, index, index / self.fps, path.name)

    def close(self) -> None:
        pass
