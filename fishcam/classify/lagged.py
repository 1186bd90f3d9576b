"""Species calls on their own thread, answered a fixed number of frames after they were asked.

The frame loop detects and tracks the next frames while the expert looks at this frame's crops:
on a CPU the two overlap instead of taking turns. A look asked at frame ``f`` is answered at
frame ``f + lag``, waiting for it there if the models are behind, never earlier even if they are
ahead: what a run decides does not depend on the machine's speed. With ``lag`` no more than the
look policy's ``min_gap_frames`` the results are exactly those of answering at once, since the
ledger does not look at a track again sooner (tested).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from fishcam.classify.caller import SpeciesCaller
from fishcam.types import SpeciesCall

log = logging.getLogger(__name__)

Answer = tuple[Hashable, SpeciesCall | None]  # None: passed on to the background fallback


class LaggedCalls:
    def __init__(self, caller: SpeciesCaller, lag: int) -> None:
        self.caller = caller
        self.lag = max(0, lag)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fishcam-species")
        self._asked: deque[tuple[int, Sequence[Hashable], Future]] = deque()

    def ask(self, frame_index: int, crops_bgr: Sequence[np.ndarray], keys: Sequence[Hashable]) -> None:
        """Send one frame's crops. The crops are views of the frame: frames are never written to."""
        self._asked.append((frame_index, list(keys), self._pool.submit(self.caller.call, list(crops_bgr), keys)))

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

    @property
    def waiting(self) -> int:
        return sum(len(keys) for _, keys, _ in self._asked)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
