"""Tracking scored against the samples' exact ground truth with py-motmetrics."""

from collections import defaultdict

import motmetrics as mm
import numpy as np
import pytest
import supervision as sv
from builders import SAMPLES, TEST_DETECTOR, gt_detections, read_ground_truth, sample_meta

from fishcam.config import PolicyConfig, TrackerConfig, load_config
from fishcam.detect.scripted import ScriptedDetector
from fishcam.pipeline import LoopSettings, Pipeline
from fishcam.sources import open_source
from fishcam.track.bytetrack import ByteTracker
from fishcam.types import Detections


class Collect:
    """A sink that keeps every tracked box per detected frame."""

    def __init__(self):
        self.boxes = defaultdict(list)
        self.tracks = []

    def on_calls(self, calls):
        pass

    def on_frame(self, frame, detections, detected, ledger):
        if detected:
            for box, tid in zip(detections.xyxy, detections.track_id, strict=True):
                if tid >= 0:
                    self.boxes[frame.index].append((int(tid), box))

    def on_track_closed(self, track):
        self.tracks.append(track)


def track_sample(name, detector, stride=1, tracker=None):
    return track_video(SAMPLES / f"{name}.mp4", detector, stride, tracker)


def track_video(path, detector, stride=1, tracker=None):
    source = open_source(str(path), load_config().source)
    sink = Collect()
    pipeline = Pipeline(
        detector,
        ByteTracker(tracker or TrackerConfig(), frame_rate=source.fps / stride),
        None,
        PolicyConfig(),
        LoopSettings(stride=stride, lost_track_s=(tracker or TrackerConfig()).lost_track_s),
    )
    pipeline.run(source, source.fps, sink)
    return sink


def mot_scores(name, sink, stride=1):
    return score_tracks(read_ground_truth(name), sample_meta(name)["frames"], sink, stride)


def score_tracks(truth_rows, frames, sink, stride=1):
    """IDF1, MOTA and ID switches on the detected frames, against rows of frame, fish_id, x1..y2."""
    gt = defaultdict(list)
    for row in truth_rows:
        gt[row["frame"]].append((row["fish_id"], [row["x1"], row["y1"], row["x2"], row["y2"]]))
    acc = mm.MOTAccumulator(auto_id=False)
    for frame in range(0, frames, stride):
        truth = gt.get(frame, [])
        hyp = sink.boxes.get(frame, [])
        # motmetrics 1.4's own iou_matrix predates NumPy 2; supervision computes the same IoU.
        iou = sv.box_iou_batch(
            np.array([b for _, b in truth], np.float32).reshape(-1, 4),
            np.array([b for _, b in hyp], np.float32).reshape(-1, 4),
        )
        distances = np.where(iou >= 0.5, 1.0 - iou, np.nan)
        acc.update([i for i, _ in truth], [t for t, _ in hyp], distances, frameid=frame)
    metrics = mm.metrics.create().compute(acc, metrics=["idf1", "mota", "num_switches"], name="tracks")
    return {k: float(metrics[k].iloc[0]) for k in ("idf1", "mota", "num_switches")}


def jittered_truth(name, seed=0, miss_every=7):
    """Ground-truth boxes with a few pixels of noise and regular missed detections."""
    rng = np.random.default_rng(seed)
    script = {}
    for frame, dets in gt_detections(read_ground_truth(name)).items():
        keep = np.array([(frame + i) % miss_every != 0 for i in range(len(dets))])
        noisy = dets.xyxy + rng.normal(0, 2.0, dets.xyxy.shape).astype(np.float32)
        script[frame] = Detections.build(noisy[keep], dets.confidence[keep])
    return ScriptedDetector(script)


def test_ids_survive_missed_detections():
    sink = track_sample("dive_sample", jittered_truth("dive_sample"))
    scores = mot_scores("dive_sample", sink)
    assert len(sink.tracks) == len(sample_meta("dive_sample")["fish"])
    # One detection in seven is missing, so recall, and with it IDF1, is at most about 6/7.
    assert scores["num_switches"] == 0 and scores["idf1"] > 0.9


def test_real_yolo_detector_on_the_dive_sample():
    from fishcam.models.loading import load_detector

    config = load_config(None, [f"detector.weights={TEST_DETECTOR}", "detector.image_size=320"])
    sink = track_sample("dive_sample", load_detector(config.detector))
    scores = mot_scores("dive_sample", sink)
    print("dive_sample YOLO+ByteTrack", scores)
    assert len(sink.tracks) == len(sample_meta("dive_sample")["fish"])
    assert scores["num_switches"] == 0
    assert scores["idf1"] > 0.85 and scores["mota"] > 0.8


def test_motion_detector_on_the_fixed_camera_sample():
    from fishcam.detect.motion import MotionDetector

    config = load_config("configs/fixed-camera.yaml")
    sink = track_sample("fixed_sample", MotionDetector(config.detector.motion), tracker=config.tracker)
    scores = mot_scores("fixed_sample", sink)
    print("fixed_sample motion+ByteTrack", scores)
    assert len(sink.tracks) == len(sample_meta("fixed_sample")["fish"])
    assert scores["num_switches"] == 0 and scores["idf1"] > 0.8


@pytest.mark.parametrize("stride", [2, 3])
def test_detection_stride_is_bridged_by_the_tracker(stride):
    sink = track_sample("dive_sample", jittered_truth("dive_sample", miss_every=1000), stride=stride)
    scores = mot_scores("dive_sample", sink, stride=stride)
    assert len(sink.tracks) == len(sample_meta("dive_sample")["fish"])
    assert scores["num_switches"] == 0 and scores["idf1"] > 0.95
