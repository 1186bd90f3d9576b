"""Adapter from fishcam Detections to the ``trackers`` library's ByteTrack and back."""

from __future__ import annotations

import numpy as np

from fishcam.config import TrackerConfig
from fishcam.types import Detections

_REFERENCE_FPS = 30.0  # `trackers` counts its lost-track buffer in 30 fps frames


class ByteTracker:
    def __init__(self, config: TrackerConfig, frame_rate: float) -> None:
        from trackers import ByteTrackTracker

        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(0, round(config.lost_track_s * _REFERENCE_FPS)),
            frame_rate=frame_rate,
            track_activation_threshold=config.activation_confidence,
            minimum_consecutive_frames=config.min_consecutive_frames,
            minimum_iou_threshold=config.min_iou,
            high_conf_det_threshold=config.high_confidence,
        )

    def update(self, detections: Detections, time_s: float) -> Detections:
        """Track ids for this frame's detections, in the input order (-1: not confirmed yet).

        Passing capture times lets the tracker bridge frames that were not detected on
        (detection stride) and uneven live frame intervals.
        """
        import supervision as sv

        n = len(detections)
        sv_dets = sv.Detections(
            xyxy=detections.xyxy.astype(np.float32),
            confidence=detections.confidence.astype(np.float32),
            class_id=detections.class_id.astype(int),
            data={"row": np.arange(n)},
        )
        tracked = self._tracker.update(sv_dets, timestamp=time_s)
        track_id = np.full(n, -1, dtype=np.int64)
        if len(tracked) and tracked.tracker_id is not None:
            track_id[np.asarray(tracked.data["row"], dtype=np.int64)] = tracked.tracker_id
        return detections.with_track_ids(track_id)

    def reset(self) -> None:
        """Forget every track (a live stream came back after an outage)."""
        self._tracker.reset()
