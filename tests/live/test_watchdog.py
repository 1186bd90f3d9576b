"""The live watchdog with exact timing: a scripted capture in place of FFmpeg's. A stall is no
*new* frame, so a stalled server that still lets a stale frame through now and then, or a frozen
camera that repeats its last picture, is an outage. (Against a real server: test_live.py.)"""

import threading
import time

import numpy as np
import pytest

from fishcam.config import LiveConfig
from fishcam.sources import live
from fishcam.sources.live import LiveSource

FPS = 25
TIMEOUT_S = 1.5
CONFIG = LiveConfig(open_timeout_s=1, read_timeout_s=TIMEOUT_S, reconnect_initial_s=0.1, retries=None)


def picture(number: int) -> np.ndarray:
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :, 0] = number % 256
    image[:, :, 1] = number // 256
    return image


class ScriptedCapture:
    """Frames at 25 fps for ``live_s``, then (if ``stale``) every ``stale_every_s`` the last frame
    again: ``"same"`` with its own timestamp (a stalled server letting it through again),
    ``"frozen"`` with a new timestamp (a frozen encoder, an NVR's keep-alive)."""

    def __init__(self, live_s: float | None, stale: str | None = None, stale_every_s: float = 1.0) -> None:
        self.live_s, self.stale, self.stale_every_s = live_s, stale, stale_every_s
        self.started = time.monotonic()
        self.released = threading.Event()
        self.number = -1
        self.ms = 0.0

    def isOpened(self) -> bool:  # OpenCV's name
        return True

    def read(self):
        elapsed = time.monotonic() - self.started
        if self.live_s is None or elapsed < self.live_s:
            due = self.started + (self.number + 1) / FPS
            time.sleep(max(0.0, due - time.monotonic()))
            self.number += 1
            self.ms = self.number * 1000 / FPS
            return True, picture(self.number)
        if self.released.wait(self.stale_every_s) or self.stale is None:
            return False, None
        if self.stale == "frozen":
            self.ms += self.stale_every_s * 1000
        return True, picture(self.number)

    def get(self, prop: int) -> float:
        import cv2

        return {cv2.CAP_PROP_POS_MSEC: self.ms, cv2.CAP_PROP_FPS: float(FPS)}.get(prop, 0.0)

    def release(self) -> None:
        self.released.set()


def stream(monkeypatch, captures):
    """A LiveSource whose connections are the given captures, in order."""
    opened = []

    def open_next(self):
        capture = captures[len(opened)]
        opened.append(capture)
        capture.started = time.monotonic()
        return capture

    monkeypatch.setattr(live.LiveSource, "_open", open_next)
    return LiveSource("rtsp://127.0.0.1:1/scripted", CONFIG), opened


def watch(source, seconds):
    """(arrival time, index, segment, picture number) of each frame handed over, for ``seconds``."""
    frames, start = [], time.monotonic()
    for frame in source:
        frames.append((time.monotonic() - start, frame.index, frame.segment, int(frame.image_bgr[0, 0, 0])))
        if time.monotonic() - start > seconds:
            break
    source.close()
    return frames


@pytest.mark.parametrize("stale", ["same", "frozen"])
def test_a_stall_that_lets_stale_frames_through_is_an_outage(monkeypatch, stale):
    # 0.5 s of stream, then a stall that lets a stale frame through every 1 s (under the timeout).
    source, opened = stream(monkeypatch, [ScriptedCapture(0.5, stale, 1.0), ScriptedCapture(None)])
    frames = watch(source, 3.0)
    health = source.health
    assert health.outages == 1 and health.reconnects == 1 and len(opened) == 2
    assert health.stale >= 1 and "no new frame" in health.last_error
    first = [f for f in frames if f[2] == 0]
    second = [f for f in frames if f[2] == 1]
    # No stale frame reaches the pipeline: the first connection's pictures are each new, in order.
    assert [n for *_, n in first] == list(range(len(first))) and 11 <= len(first) <= 15
    # Noticed read_timeout_s after the last new frame, not reset by the stale ones.
    gap = second[0][0] - first[-1][0]
    assert TIMEOUT_S <= gap <= TIMEOUT_S + 0.8


def test_a_healthy_stream_is_never_called_stalled(monkeypatch):
    source, opened = stream(monkeypatch, [ScriptedCapture(None)])
    frames = watch(source, 2.5)
    assert source.health.outages == 0 and source.health.stale == 0 and len(opened) == 1
    assert len(frames) >= 2.3 * FPS and {f[2] for f in frames} == {0}


def test_a_silent_stall_is_an_outage(monkeypatch):
    source, _ = stream(monkeypatch, [ScriptedCapture(0.5, None, 10.0), ScriptedCapture(None)])
    frames = watch(source, 2.8)
    assert source.health.outages == 1 and source.health.stale == 0
    assert {f[2] for f in frames} == {0, 1}


def test_freshness_is_the_picture_not_the_timestamp():
    fresh = live.Freshness()
    assert fresh.is_new(picture(0)) and fresh.is_new(picture(1))
    assert not fresh.is_new(picture(1))  # the last picture again, whatever its timestamp says
    assert fresh.is_new(picture(0))  # an earlier picture is a change (a scene can go back)
    big = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    changed = big.copy()
    changed[101, 203, 1] ^= 1  # one value, off the sparse sample
    assert fresh.is_new(big) and fresh.is_new(changed) and not fresh.is_new(changed.copy())


def test_a_camera_that_opens_and_sends_nothing_is_retried_not_fatal(monkeypatch):
    # The first connection is accepted but never sends a frame (a server whose pipeline is still
    # starting, a camera waiting for its key frame); fishcam retries as for a refused open.
    source, opened = stream(monkeypatch, [ScriptedCapture(0.0, None, 0.2), ScriptedCapture(None)])
    assert len(opened) == 2 and opened[0].released.is_set()
    frames = watch(source, 0.5)
    assert frames and frames[0][3] == 0 and source.health.connected


def test_with_retries_zero_a_silent_camera_is_one_clear_error(monkeypatch):
    from fishcam.errors import SourceError

    monkeypatch.setattr(live.LiveSource, "_open", lambda self: ScriptedCapture(0.0, None, 0.2))
    with pytest.raises(SourceError, match=r"opened but sent no frame within 1\.5 s"):
        LiveSource("rtsp://127.0.0.1:1/scripted", CONFIG.model_copy(update={"retries": 0}))
