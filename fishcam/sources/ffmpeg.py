"""Opening an OpenCV capture with FFmpeg options of its own.

OpenCV takes FFmpeg's options from one process-wide environment variable, read when a capture
opens. A live camera needs its transport and a short probe there; left set, they would also
apply to every video file opened later in the process (a short probe changes how a damaged file
is resynchronised, and the frames after the damage). So each open sets the options it needs,
opens, and puts back what was there before (the user's own value, if any), under one lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

CAPTURE_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_lock = threading.Lock()


def open_with_options(options: str | None, open_capture: Callable[[], T]) -> T:
    """Run ``open_capture`` with FFmpeg's capture options set to ``options`` (None: as the user
    left them). Opens wait for each other: a camera's open takes at most its open timeout."""
    with _lock:
        before = os.environ.get(CAPTURE_OPTIONS)
        if options is not None:
            os.environ[CAPTURE_OPTIONS] = options
        try:
            return open_capture()
        finally:
            if before is None:
                os.environ.pop(CAPTURE_OPTIONS, None)
            else:
                os.environ[CAPTURE_OPTIONS] = before
