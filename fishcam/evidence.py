"""Which tracks are counted as fish: the evidence rules. Pure.

A track is one candidate fish; it is counted only with enough evidence that it is one: enough
detected boxes over enough time, a detector that was confident about them on average, and
movement (a box that never moves is a rock or a mark, on a fixed camera). The rules are
``count`` in the config; every track is kept, and one that is not counted says why.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fishcam.config import CountConfig
from fishcam.types import TrackSummary


def judge(track: TrackSummary, rules: CountConfig) -> TrackSummary:
    """The track with ``counted`` and ``reason`` set by the rules, checked in order."""
    reason = why_not_counted(track, rules)
    return replace(track, counted=reason is None, reason=reason or "")


def why_not_counted(track: TrackSummary, rules: CountConfig) -> str | None:
    if track.detections < rules.min_detections:
        return f"{track.detections} detections, fewer than {rules.min_detections}"
    duration = track.last_time_s - track.first_time_s
    if duration < rules.min_duration_s:
        return f"seen for {duration:.2f} s, under {rules.min_duration_s:g} s"
    confidence = track.mean_confidence
    if len(track.confidences) and confidence < rules.min_confidence:
        return f"mean detection confidence {confidence:.2f}, under {rules.min_confidence:g}"
    motion = movement(track)
    if rules.min_motion > 0 and motion is not None and motion < rules.min_motion:
        return f"static: moved {motion:.0%} of its size"
    return None


def movement(track: TrackSummary) -> float | None:
    """How far the box centre ranged over the track, as a share of the box's median size (its
    diagonal); None without boxes."""
    detected = track.boxes[~track.interpolated] if len(track.interpolated) == len(track.boxes) else track.boxes
    if len(detected) < 2:
        return None
    centres = (detected[:, :2] + detected[:, 2:]) / 2
    extent = float(np.linalg.norm(centres.max(axis=0) - centres.min(axis=0)))
    size = float(np.median(np.linalg.norm(detected[:, 2:] - detected[:, :2], axis=1)))
    return extent / max(size, 1e-6)
