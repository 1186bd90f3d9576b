"""Outputs of long runs: flushed on an interval, rotated per period, never half-written."""

import csv
import json
import time
from datetime import datetime

import numpy as np

from fishcam.classify.ledger import TrackLedger
from fishcam.config import CountConfig, PolicyConfig
from fishcam.sinks.run_writer import Counting, RotatingWriter, RunWriter
from fishcam.types import Detections, Frame, Origin, RunFigures, TrackSummary


def track(tid, frame, time_s):
    return TrackSummary(tid, "cod", 0.9, Origin.EXPERT, frame, frame, time_s, time_s, 1, 1, 1, (frame,), (time_s,))


EVERY_TRACK = Counting(CountConfig(min_detections=1, min_duration_s=0, min_motion=0))  # one-box tracks count


def writer(folder, flush_interval_s=3600.0):
    return RunWriter(
        folder,
        width=64,
        height=48,
        fps=10,
        class_names={0: "fish"},
        overlay=None,
        flush_interval_s=flush_interval_s,
        counting=EVERY_TRACK,
    )


def rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_tracks_and_counts_are_rewritten_on_the_flush_interval_not_per_closed_track(tmp_path):
    """A long live run closes thousands of tracks: rewriting both files at each would cost
    O(tracks²). They are rewritten at the next flush after a close, and at the end."""
    w = writer(tmp_path, flush_interval_s=0.2)
    ledger = TrackLedger(PolicyConfig())
    image = np.zeros((48, 64, 3), np.uint8)
    assert rows(tmp_path / "tracks.csv") == []  # complete (header only) from the start
    for n in range(1, 4):
        w.on_track_closed(track(n, 5, 0.5))
    assert rows(tmp_path / "tracks.csv") == []  # not yet: the flush interval has not passed
    written = (tmp_path / "tracks.csv").stat().st_mtime_ns
    time.sleep(0.25)
    w.on_frame(Frame(image, 0, 0.0, "cam"), Detections.empty(), True, ledger)
    assert [r["track_id"] for r in rows(tmp_path / "tracks.csv")] == ["1", "2", "3"]  # one rewrite for three
    assert rows(tmp_path / "species_counts.csv")[0]["unique_tracks"] == "3"
    assert (tmp_path / "tracks.csv").stat().st_mtime_ns != written
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file and renamed
    w.on_track_closed(track(4, 5, 0.5))
    w.finish(None)
    assert len(rows(tmp_path / "tracks.csv")) == 4  # the end writes what is left


def test_hourly_rotation_splits_outputs_by_wall_clock(tmp_path):
    rotating = RotatingWriter(tmp_path, "hourly", writer)
    ledger = TrackLedger(PolicyConfig())
    image = np.zeros((48, 64, 3), np.uint8)
    before = datetime(2026, 11, 29, 9, 59, 58).timestamp()
    after = datetime(2026, 11, 29, 10, 0, 1).timestamp()
    for i, unix in enumerate([before, before + 1, after]):
        dets = Detections.build([[1, 1, 20, 20]], track_id=[1])
        rotating.on_frame(Frame(image, i, float(i), "cam", captured_unix=unix), dets, True, ledger)
        if i == 1:
            rotating.on_track_closed(track(1, 1, 1.0))
    rotating.on_track_closed(track(2, 2, 2.0))
    summary = rotating.finish(RunFigures(frames=3))
    assert summary.periods[0] == "20261129-09" and len(summary.periods) >= 2
    first = rows(tmp_path / "20261129-09" / "detections.csv")
    assert [r["frame"] for r in first] == ["0", "1"]
    assert [r["track_id"] for r in rows(tmp_path / "20261129-09" / "tracks.csv")] == ["1"]
    assert json.loads((tmp_path / "summary.json").read_text())["tracks"] == 2
