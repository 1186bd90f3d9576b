"""Outputs of long runs: flushed as tracks close, rotated per period, never half-written."""

import csv
import json
from datetime import datetime

import numpy as np

from fishcam.classify.ledger import LookPolicy, TrackLedger
from fishcam.sinks.run_writer import RotatingWriter, RunWriter
from fishcam.types import Detections, Frame, Origin, TrackSummary


def track(tid, frame, time_s):
    return TrackSummary(tid, "cod", 0.9, Origin.EXPERT, frame, frame, time_s, time_s, 1, 1, 1, (frame,), (time_s,))


def writer(folder):
    return RunWriter(folder, width=64, height=48, fps=10, class_names={0: "fish"}, overlay=None, flush_interval_s=3600)


def rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_tracks_and_counts_are_on_disk_as_soon_as_a_track_closes(tmp_path):
    w = writer(tmp_path)
    assert rows(tmp_path / "tracks.csv") == []  # complete (header only) from the start
    w.on_track_closed(track(1, 5, 0.5))
    assert [r["track_id"] for r in rows(tmp_path / "tracks.csv")] == ["1"]
    assert rows(tmp_path / "species_counts.csv")[0]["unique_tracks"] == "1"
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file and renamed


def test_hourly_rotation_splits_outputs_by_wall_clock(tmp_path):
    rotating = RotatingWriter(tmp_path, "hourly", writer)
    ledger = TrackLedger(LookPolicy())
    image = np.zeros((48, 64, 3), np.uint8)
    before = datetime(2026, 11, 29, 9, 59, 58).timestamp()
    after = datetime(2026, 11, 29, 10, 0, 1).timestamp()
    for i, unix in enumerate([before, before + 1, after]):
        dets = Detections.build([[1, 1, 20, 20]], track_id=[1])
        rotating.on_frame(Frame(image, i, float(i), "cam", captured_unix=unix), dets, True, ledger)
        if i == 1:
            rotating.on_track_closed(track(1, 1, 1.0))
    rotating.on_track_closed(track(2, 2, 2.0))
    summary = rotating.finish({"frames": 3})
    assert summary["periods"][0] == "20261129-09" and len(summary["periods"]) >= 2
    first = rows(tmp_path / "20261129-09" / "detections.csv")
    assert [r["frame"] for r in first] == ["0", "1"]
    assert [r["track_id"] for r in rows(tmp_path / "20261129-09" / "tracks.csv")] == ["1"]
    assert json.loads((tmp_path / "summary.json").read_text())["tracks"] == 2
