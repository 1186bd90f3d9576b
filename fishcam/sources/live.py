"""Live cameras (RTSP, webcams, HTTP/MJPEG): newest frame only, reconnect forever, never hang.

OpenCV queues every decoded frame of a stream, so a consumer slower than the camera falls
further behind live. Here a reader thread decodes continuously and keeps only the newest frame;
frames the pipeline could not take are dropped and counted. Open and read timeouts are always
set (a stalled server otherwise blocks ``read()`` for 30 s); a failed read or a stream with no
*new* frame for ``read_timeout_s`` closes the capture, and it is reopened with capped
exponential backoff. A frame is new when its picture is not the last one again: a stalled server,
a frozen camera or an NVR's keep-alive may keep ``read()`` succeeding with the frame already
seen, and that must not count as the stream being alive. (Not by timestamp: FFmpeg's RTSP
timestamps jump back when the first RTCP report re-bases them, a few frames into every
connection, so an earlier timestamp is no sign of an old frame.)

Each (re)connection is a new ``segment`` on the frames, so the pipeline can close the tracks
that an outage cut.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import cv2
import numpy as np

from fishcam.config import LiveConfig
from fishcam.errors import ConfigError, SourceError
from fishcam.sources.base import SourceStatus
from fishcam.sources.ffmpeg import open_with_options
from fishcam.types import Frame

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def is_live(spec: str) -> bool:
    return spec.lower().startswith(LIVE_SCHEMES) or spec.isdigit()


# Query (or path) parameters whose values are secrets: ``?token=…``, ``&password=…``,
# ``X-Amz-Signature=…``, ``user=admin_password=…_channel=1`` (path-style cameras). Masking a
# harmless value (``keyframe=1``) costs nothing; showing a secret is the failure to avoid.
_SECRET_PARAM = re.compile(
    r"((?:[\w.-]*?)(?:pass|pw|secret|token|auth|credential|jwt|key|sig|session|ticket)[\w.-]*=)([^&;/?#]+)",
    re.IGNORECASE,
)


def expand_secrets(url: str) -> str:
    """``rtsp://cam:${CAM_PASSWORD}@host/…``: credentials come from the environment. A value
    expanded inside the user:password part is percent-encoded, so that ``@ / : # % ?`` in a
    password stay part of it (FFmpeg decodes them again before it authenticates)."""
    userinfo = _userinfo_span(url)

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"camera URL uses ${{{name}}} but the environment variable {name} is not set")
        if userinfo[0] <= match.start() < userinfo[1]:
            return quote(os.environ[name], safe="")
        return os.environ[name]

    return _ENV.sub(value, url)


def _userinfo_span(url: str, stops: str = "/?#") -> tuple[int, int]:
    """Where ``user:password`` lies in ``scheme://user:password@host/…`` ((0, 0) if nowhere):
    up to the last ``@`` before the first of ``stops``."""
    start = url.find("://")
    if start < 0:
        return 0, 0
    start += 3
    end = min((found for found in (url.find(stop, start) for stop in stops) if found >= 0), default=len(url))
    at = url.rfind("@", start, end)
    return (start, at) if at >= 0 else (0, 0)


def mask_url(url: str) -> str:
    """The URL with its password and secret-looking parameters replaced by ``***``, for logs,
    outputs and errors."""
    if url.isdigit():
        return f"webcam {url}"
    # A password typed with a raw "/" is no valid URL, but must not show either: "/" ends no
    # userinfo here.
    userinfo = _userinfo_span(url, stops="?#")
    if userinfo != (0, 0):
        user = url[userinfo[0] : userinfo[1]].partition(":")[0]
        url = f"{url[: userinfo[0]]}{user}:***{url[userinfo[1] :]}"
    return _SECRET_PARAM.sub(lambda match: f"{match.group(1)}***", url)


@dataclass
class LiveHealth:
    """Counters the reader thread and the consumer keep; read them at any time."""

    frames_in: int = 0  # decoded from the camera
    frames_out: int = 0  # handed to the pipeline
    dropped: int = 0  # replaced by a newer frame before the pipeline took them
    stale: int = 0  # the last picture again: neither handed on nor a sign of life
    reconnects: int = 0
    outages: int = 0
    last_frame_unix: float | None = None
    connected_unix: float | None = None
    connected: bool = False
    last_error: str = ""


class Freshness:
    """Whether each frame one connection decodes is new (see the module's docstring)."""

    def __init__(self) -> None:
        self._image: np.ndarray | None = None

    def is_new(self, image: np.ndarray) -> bool:
        if self._image is not None and same_picture(image, self._image):
            return False
        self._image = image
        return True


def same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical: a camera's sensor noise never is; a re-delivered frame always is. A sparse
    sample first, so that different frames (nearly all) cost almost nothing."""
    return a.shape == b.shape and np.array_equal(a[::16, ::16], b[::16, ::16]) and np.array_equal(a, b)


class LiveSource:
    """A camera as a Source. Iteration blocks until the next new frame and ends on ``stop()``
    or when ``retries`` reconnects in a row have failed."""

    live = True

    def __init__(self, spec: str, config: LiveConfig, connect: bool = True) -> None:
        """Connects at once unless ``connect`` is False: then :meth:`connect` does, and
        :meth:`stop` from another thread meanwhile ends its retries."""
        self.config = config
        self._url = expand_secrets(spec)
        self.name = mask_url(spec)
        self.location = self.name
        self.recorded_start_unix: float | None = None
        self.health = LiveHealth()
        self.status = SourceStatus()
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, int, float, int] | None = None  # image, sequence, unix time, segment
        self._stop = threading.Event()
        self._failed: str | None = None
        self._segment = 0
        self._sequence = 0
        self._generation = 0  # the reader thread whose frames count; a stalled one is abandoned
        self._thread: threading.Thread | None = None
        self.height = self.width = 0
        self.fps = 25.0
        if connect:
            self.connect()

    def connect(self) -> None:
        """Open the stream (retrying as configured), read its first frame, start the reader."""
        opened = self._connect_with_retries(first_frame=True)
        if opened is None:
            raise SourceError(f"cannot open live source {self.name}: {self.health.last_error}")
        cap, first = opened
        assert first is not None
        self.height, self.width = first.shape[:2]
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 240 else 25.0
        self.recorded_start_unix = time.time()  # the first frame's arrival: when this recording starts
        fresh = Freshness()
        fresh.is_new(first)
        self._publish(first, 0)
        self._start_reader(cap, fresh)

    def _start_reader(self, cap: cv2.VideoCapture | None, fresh: Freshness | None = None) -> None:
        self._thread = threading.Thread(
            target=self._read_loop,
            args=(cap, self._generation, fresh or Freshness()),
            name="fishcam-live-reader",
            daemon=True,
        )
        self._thread.start()

    def _abandon_stalled_reader(self) -> None:
        """Watchdog: FFmpeg's read timeout is not always kept (packets still buffered, retries
        inside the demuxer), so a stream silent for ``read_timeout_s`` is given up here: a new
        reader reconnects at once, and the stuck one exits when its read finally returns."""
        with self._cond:
            self._generation += 1
            self._segment += 1
            self.health.connected = False
            self.health.outages += 1
            self.health.last_error = (
                f"no new frame from {self.name} for {self.config.read_timeout_s:g} s (watchdog; "
                f"{self.health.stale} repeated frames ignored so far)"
            )
        log.warning("%s; reconnecting", self.health.last_error)
        self._start_reader(None)

    # ---- reader thread ----------------------------------------------------------------

    def _open(self) -> cv2.VideoCapture | None:
        if self._url.isdigit():
            cap = cv2.VideoCapture(int(self._url))
        else:
            options = "|".join([f"rtsp_transport;{self.config.transport}", "analyzeduration;100000"])
            os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
            # Failures are reported once, in fishcam's words; not as OpenCV's own warnings.
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.config.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.config.read_timeout_s * 1000),
            ]  # fmt: skip
            # For this open only: FFmpeg reads its options from the environment as a capture opens.
            cap = open_with_options(options, lambda: cv2.VideoCapture(self._url, cv2.CAP_FFMPEG, params))
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _connect_with_retries(
        self, first_frame: bool = False
    ) -> tuple[cv2.VideoCapture, np.ndarray | None] | None:
        """The capture, and with ``first_frame`` its first frame: then an attempt succeeds only
        once a frame has arrived, so a server that accepts the connection and sends nothing (its
        pipeline still starting, a camera waiting for a key frame) is retried under the same
        backoff as one that refuses."""
        delay = self.config.reconnect_initial_s
        attempt = 0
        while not self._stop.is_set():
            cap, image = self._open(), None
            if cap is None:
                self.health.last_error = (
                    f"cannot open stream {self.name} (unreachable host, wrong path, refused credentials, "
                    f"camera off, or no answer within {self.config.open_timeout_s:g} s)"
                )
            elif first_frame:
                ok, image = cap.read()
                if not ok:
                    cap.release()
                    cap = None
                    self.health.last_error = (
                        f"stream {self.name} opened but sent no frame within {self.config.read_timeout_s:g} s"
                    )
            if cap is not None:
                self.health.connected = True
                self.health.connected_unix = time.time()
                return cap, image
            if self.config.retries is not None and attempt >= self.config.retries:
                return None
            attempt += 1
            log.warning("%s; retry %d in %.1f s", self.health.last_error, attempt, delay)
            if self._stop.wait(delay):
                return None
            delay = min(delay * 2, self.config.reconnect_max_s)
        return None

    def _read_loop(self, cap: cv2.VideoCapture | None, generation: int, fresh: Freshness) -> None:
        try:
            while not self._stop.is_set() and generation == self._generation:
                if cap is None:
                    opened = self._connect_with_retries()
                    if opened is None:
                        if not self._stop.is_set() and generation == self._generation:
                            self._failed = self.health.last_error
                        break
                    cap = opened[0]
                    if generation != self._generation:
                        break
                    fresh = Freshness()
                    self.health.reconnects += 1
                    self.health.connected = True
                    log.info("reconnected to %s (reconnect %d)", self.name, self.health.reconnects)
                ok, image = cap.read()
                if ok:
                    if fresh.is_new(image):
                        self._publish(image, generation)
                    else:
                        self.health.stale += 1  # the watchdog's clock runs on
                    continue
                # A failed read or FFmpeg's read timeout: this capture never recovers.
                cap.release()
                cap = None
                if generation != self._generation:
                    break  # the watchdog already gave up on this connection
                with self._cond:
                    self._segment += 1
                    self.health.connected = False
                    self.health.outages += 1
                    self.health.last_error = f"stream {self.name} stopped sending frames"
                log.warning("%s; reconnecting", self.health.last_error)
        finally:
            if cap is not None:
                cap.release()
            with self._cond:
                self._cond.notify_all()

    def _publish(self, image: np.ndarray, generation: int) -> None:
        now = time.time()
        with self._cond:
            if generation != self._generation:
                return  # a late frame from an abandoned connection
            if self._latest is not None:
                self.health.dropped += 1
            self._latest = (image, self._sequence, now, self._segment)
            self._sequence += 1
            self.health.frames_in += 1
            self.health.last_frame_unix = now
            self._cond.notify_all()

    # ---- consumer -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        start = time.time()
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._latest is not None or self._stop.is_set() or self._failed, 0.5)
                latest, self._latest = self._latest, None
            if latest is None:
                alive = max(self.health.last_frame_unix or 0.0, self.health.connected_unix or 0.0)
                if self.health.connected and time.time() - alive > self.config.read_timeout_s:
                    self._abandon_stalled_reader()
                if self._failed:
                    self.status.warnings.append(f"gave up on {self.name}: {self._failed}")
                    self.status.gave_up = True
                    break
                continue
            image, sequence, captured, segment = latest
            self.health.frames_out += 1
            self.status.frames_read += 1
            yield Frame(image, sequence, captured - start, self.name, segment=segment, captured_unix=captured)
        self.close()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        self.stop()
        thread = self._thread
        if thread is not None and thread.is_alive() and threading.current_thread() is not thread:
            thread.join(timeout=self.config.read_timeout_s + self.config.open_timeout_s + 1)
