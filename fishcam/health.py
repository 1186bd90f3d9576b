"""Live health: input and processed fps, drops, lag, reconnects; logged at an interval."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fishcam.pipeline import LoopStats
from fishcam.sources.base import Source

log = logging.getLogger(__name__)


class HealthLog:
    def __init__(
        self,
        source: Source,
        interval_s: float,
        on_progress: Callable[[LoopStats], None] | None,
        label: str | None = None,
    ) -> None:
        self.health = source.health  # only live sources keep health counters
        # Which camera a line is about, when one process runs several: "health [reef-north]: …".
        self.prefix = f"health [{label}]" if label else "health"
        self.interval_s = interval_s
        self.on_progress = on_progress
        self._started = time.monotonic()
        self._last = self._started
        self._last_in = self._last_out = 0

    def update(self, stats: LoopStats) -> None:
        if self.on_progress is not None:
            self.on_progress(stats)
        now = time.monotonic()
        if self.health is None or now - self._last < self.interval_s:
            return
        h, span = self.health, now - self._last
        input_fps, processed_fps = (h.frames_in - self._last_in) / span, (stats.frames - self._last_out) / span
        lag = f"{stats.latencies_s[-1]:.2f} s" if stats.latencies_s else "n/a"
        last = time.strftime("%H:%M:%S", time.localtime(h.last_frame_unix)) if h.last_frame_unix else "never"
        log.info(
            "%s: input %.1f fps, processed %.1f fps, dropped %d of %d (%.1f%%), lag %s, reconnects %d, "
            "last frame %s, tracks %d open / %d done",
            self.prefix, input_fps, processed_fps, h.dropped, h.frames_in, 100 * h.dropped / max(h.frames_in, 1), lag,
            h.reconnects, last, stats.open_tracks, stats.closed_tracks,
        )  # fmt: skip
        self._last, self._last_in, self._last_out = now, h.frames_in, stats.frames

    def summary(self, stats: LoopStats) -> dict[str, Any] | None:
        if self.health is None:
            return None
        h = self.health
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return {
            "input_fps": round(h.frames_in / elapsed, 2),
            "processed_fps": round(stats.frames / elapsed, 2),
            "frames_in": h.frames_in,
            "frames_processed": stats.frames,
            "dropped": h.dropped,
            "drop_rate": round(h.dropped / max(h.frames_in, 1), 4),
            "stale_frames": h.stale,  # frames seen before, sent again by a stalled camera
            "reconnects": h.reconnects,
            "outages": h.outages,
            "segments": stats.segments,
            "last_frame": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(h.last_frame_unix))
            if h.last_frame_unix
            else None,
            "latency_ms": stats.latency_ms(),
        }
