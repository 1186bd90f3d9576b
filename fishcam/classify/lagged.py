"""Species calls on their own thread, answered a fixed number of frames after they were asked.

The frame loop detects and tracks the next frames while the expert looks at this frame's crops:
on a CPU the two overlap instead of taking turns. A look asked at frame ``f`` is answered at
frame ``f + lag``, waiting for it there if the models are behind, never earlier even if they are
ahead: what a run decides does not depend on the machine's speed. With ``lag`` no more than the
look policy's ``min_gap_frames`` the results are exactly those of answering at once, since the
ledger does not look at a track again sooner (tested). The one thing timing changes is which
frames share a batch; in bf16 that changes no bit of a crop's probabilities, in fp32 it can
move them by float rounding (about 1e-8; tested).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import Future

import numpy as np

from fishcam.classify.caller import SpeciesCaller
from fishcam.classify.worker import with_queued
from fishcam.types import SpeciesCall

log = logging.getLogger(__name__)

Answer = tuple[Hashable, SpeciesCall | None]  # None: passed on to the background fallback


class LaggedCalls:
    def __init__(self, caller: SpeciesCaller, lag: int, workers: int = 1, threads: int | None = None) -> None:
        """``workers`` threads take requests in turn, each running torch on ``threads`` threads
        (None: the process's setting). On a CPU two one-thread workers keep both cores busy where
        one two-thread worker leaves one idle at every step of the network that splits unevenly."""
        self.caller = caller
        self.lag = max(0, lag)
        self._asked: deque[tuple[int, list[Hashable], Future]] = deque()
        # Unbounded, but never long: the frame loop waits for answers ``lag`` frames on.
        self._requests: queue.Queue = queue.Queue()
        self._threads = [
            threading.Thread(target=self._loop, args=(threads,), name=f"fishcam-species-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def ask(self, frame_index: int, crops_bgr: Sequence[np.ndarray], keys: Sequence[Hashable]) -> None:
        """Send one frame's crops. The crops are views of the frame: frames are never written to."""
        future: Future = Future()
        self._asked.append((frame_index, list(keys), future))
        self._requests.put((list(crops_bgr), list(keys), future))

    def answers(self, frame_index: int) -> list[Answer]:
        """The answers due at ``frame_index``: every look asked at ``frame_index - lag`` or before.
        A model's exception is raised here, in the frame loop."""
        out: list[Answer] = []
        while self._asked and self._asked[0][0] <= frame_index - self.lag:
            _, keys, future = self._asked.popleft()
            out.extend(zip(keys, future.result(), strict=True))
        return out

    def drain(self) -> list[Answer]:
        """Every answer still due (end of a run). After an error the rest is logged and dropped,
        so the error that ended the run is the one reported."""
        out: list[Answer] = []
        while self._asked:
            _, keys, future = self._asked.popleft()
            try:
                out.extend(zip(keys, future.result(), strict=True))
            except Exception:
                log.exception("species models failed on %d crops at the end of the run", len(keys))
        return out

    def close(self) -> None:
        self._requests.put(None)  # each worker passes it on to the next
        for thread in self._threads:
            thread.join()

    def _loop(self, threads: int | None) -> None:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)  # OpenMP's thread count is per calling thread
        while True:
            item = self._requests.get()
            if item is None:
                self._requests.put(None)
                return
            # Frames asked while the models were busy go through them together: a batch of 8
            # costs 20 % less a crop than one at a time on a CPU. A crop's probabilities do not
            # depend on its batch (bf16: bit for bit; fp32: to float rounding, about 1e-8; tested).
            batch = with_queued(self._requests, item)
            try:
                calls = self.caller.call(
                    [c for crops, _, _ in batch for c in crops], [k for _, keys, _ in batch for k in keys]
                )
            except BaseException as exc:  # handed to the frame loop with the answers
                for _, _, future in batch:
                    future.set_exception(exc)
                continue
            start = 0
            for crops, _, future in batch:
                future.set_result(calls[start : start + len(crops)])
                start += len(crops)
