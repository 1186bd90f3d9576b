"""A species model on its own thread behind a bounded queue, so a slow model (BioCLIP on a CPU)
never stalls the frame loop: requests beyond the queue's size are refused, not waited for."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Hashable
from typing import Any

import numpy as np

from fishcam.classify.base import SpeciesModel

log = logging.getLogger(__name__)


class ModelWorker:
    def __init__(self, model: SpeciesModel, max_pending: int = 16, batch_size: int = 8) -> None:
        self.model = model
        self.batch_size = batch_size
        self._requests: queue.Queue[tuple[Hashable, np.ndarray] | None] = queue.Queue(maxsize=max_pending)
        self._answers: deque[tuple[Hashable, np.ndarray | None]] = deque()
        self._in_flight = 0
        self._lock = threading.Lock()
        self.refused = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._loop, name="fishcam-model-worker", daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, crop: np.ndarray) -> bool:
        """Queue a crop; False (and nothing queued) when the queue is full."""
        try:
            self._requests.put_nowait((key, np.ascontiguousarray(crop)))
        except queue.Full:
            self.refused += 1
            return False
        with self._lock:
            self._in_flight += 1
        return True

    def collect(self) -> list[tuple[Hashable, np.ndarray | None]]:
        """Answers that came back since the last call: (key, probabilities or None on failure)."""
        out = []
        while self._answers:
            out.append(self._answers.popleft())
        with self._lock:
            self._in_flight -= len(out)
        return out

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def wait(self, timeout_s: float) -> None:
        """Block until every request is answered (or ``timeout_s``), for the end of a run."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self._answers) < self.in_flight:
            time.sleep(0.01)

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        _yield_cpu_to_the_frame_loop()
        while True:
            item = self._requests.get()
            if item is None:
                return
            batch = with_queued(self._requests, item, self.batch_size)
            try:
                probs: Any = self.model.predict([crop for _, crop in batch])
            except Exception:  # a model failure must not kill the worker: the crops stay unknown
                log.exception("species model failed on %d crops", len(batch))
                self.failed += len(batch)
                probs = [None] * len(batch)
            for (key, _), row in zip(batch, probs, strict=True):
                self._answers.append((key, row))


def with_queued(requests: queue.Queue, first: Any, limit: int | None = None) -> list:
    """``first`` and what else is waiting in ``requests`` (up to ``limit`` in all), without
    waiting; a None (stop) met on the way is put back for the next take."""
    batch = [first]
    while limit is None or len(batch) < limit:
        try:
            more = requests.get_nowait()
        except queue.Empty:
            break
        if more is None:
            requests.put(None)
            break
        batch.append(more)
    return batch


def _yield_cpu_to_the_frame_loop() -> None:
    """Run this thread, and the torch threads it starts, at a lower CPU priority (Linux: a
    thread's own nice value): a slow fallback uses the cores the live frame loop leaves idle
    instead of delaying its frames. Elsewhere, or where it is not allowed, nothing changes."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
