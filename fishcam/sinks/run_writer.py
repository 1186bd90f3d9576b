"""The sink of one run: annotated video, detections log, tracks, species counts, summary."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fishcam.classify.ledger import TrackLedger
from fishcam.counts import species_counts
from fishcam.render.overlay import Overlay
from fishcam.sinks.files import DetectionsLog, write_counts, write_json, write_tracks
from fishcam.sinks.video import H264Writer
from fishcam.types import Detections, Frame, SpeciesCall, TrackSummary

log = logging.getLogger(__name__)

VIDEO_NAME = "annotated.mp4"
TRACKS_NAME = "tracks.csv"
DETECTIONS_NAME = "detections.csv"
COUNTS_NAME = "species_counts.csv"
SUMMARY_NAME = "summary.json"
CONFIG_NAME = "config.yaml"


class RunWriter:
    def __init__(
        self,
        out_dir: Path,
        *,
        width: int,
        height: int,
        fps: float,
        class_names: dict[int, str],
        overlay: Overlay | None,
        crf: int = 23,
        preset: str = "veryfast",
        detections_log: bool = True,
    ) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.tracks: list[TrackSummary] = []
        self.overlay = overlay
        self.video = H264Writer(out_dir / VIDEO_NAME, width, height, fps, crf, preset) if overlay else None
        self.log = DetectionsLog(out_dir / DETECTIONS_NAME, class_names) if detections_log else None

    def on_frame(
        self, frame: Frame, detections: Detections, detected: bool, calls: dict[int, SpeciesCall], ledger: TrackLedger
    ) -> None:
        if detected and self.log is not None:
            self.log.write(frame, detections, calls)
        if self.video is not None and self.overlay is not None:
            self.video.write(self.overlay.draw(frame.image_bgr, detections, ledger.label))

    def on_track_closed(self, track: TrackSummary) -> None:
        self.tracks.append(track)

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Close the video and log, write tracks, counts and summary. Safe to call once after any exit."""
        if self.video is not None:
            self.video.close()
        if self.log is not None:
            self.log.close()
        counts = species_counts(self.tracks)
        write_tracks(self.out_dir / TRACKS_NAME, self.tracks)
        write_counts(self.out_dir / COUNTS_NAME, counts)
        summary = {
            **summary,
            "tracks": len(self.tracks),
            "species": {c.species: {"unique": c.unique, "max_n": c.max_n} for c in counts},
            "outputs": [*sorted(p.name for p in self.out_dir.iterdir() if not p.name.startswith(".")), SUMMARY_NAME],
        }
        summary["outputs"] = sorted(set(summary["outputs"]))
        write_json(self.out_dir / SUMMARY_NAME, summary)
        return summary
