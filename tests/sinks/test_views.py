"""The evidence a run saves for review (fishcam.sinks.views): each track's best views, the crops
the species models classified, best first; each species' MaxN frame with its counted boxes.
Checked on the dive sample against its ground truth and the run's own tables, and on crafted
runs for the cases the sample does not reach (a live stream's frame, a video read back)."""

import csv
import json

import cv2
import numpy as np
import pytest
import supervision as sv
from builders import ROOT, read_ground_truth

from fishcam.app.cli import main
from fishcam.classify.crops import padded_boxes
from fishcam.config import load_config
from fishcam.counts import species_counts
from fishcam.sinks.views import Evidence, reread_video
from fishcam.sources.file import VideoFileSource
from fishcam.types import Detections, Frame, Origin, TrackSummary

VIDEO = ROOT / "samples" / "dive_sample.mp4"


def rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("views") / "dive_sample"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)  # configs/sample.yaml names its models from the repository root
        code = main(["run", str(VIDEO), "--config", "configs/sample.yaml", "--out", str(out), "-q"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def frames():
    return {frame.index: frame.image_bgr for frame in VideoFileSource(VIDEO)}


def read_image(path):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not an image"
    return image


@pytest.mark.slow
def test_each_track_keeps_the_crops_it_was_classified_on_best_first(sample_run, frames):
    config = load_config(sample_run / "config.yaml")
    policy = config.classify.policy
    index = json.loads((sample_run / "views" / "index.json").read_text())
    tracks = {int(r["track_id"]): r for r in rows(sample_run / "tracks.csv")}
    calls = {(int(r["track_id"]), int(r["frame"])): r for r in rows(sample_run / "calls.csv")}
    assert index["final"] is True and set(map(int, index["tracks"])) == set(tracks)
    assert {p.name for p in (sample_run / "views").iterdir()} == {"index.json", *map(str, tracks)}

    truth: dict[int, list[tuple[int, list[float]]]] = {}
    for r in read_ground_truth("dive_sample"):
        truth.setdefault(r["frame"], []).append((r["fish_id"], [r["x1"], r["y1"], r["x2"], r["y2"]]))
    fish_of_track = {}
    for tid, entry in index["tracks"].items():
        tid = int(tid)
        row = tracks[tid]
        assert (entry["species"], entry["rank"], entry["counted"]) == (
            row["species"],
            row["rank"],
            row["counted"] == "1",
        )
        views = entry["views"]
        assert 1 <= len(views) <= policy.max_crops_per_track
        listed = {v["file"] for v in views}
        assert {f"{tid}/{p.name}" for p in (sample_run / "views" / str(tid)).iterdir()} == listed
        # Best first: agreeing with the track's species, then the call's score, then the area.
        keys = [(v["agrees"], round(v["score"], 2), v["area_px"]) for v in views]
        assert keys == sorted(keys, reverse=True)
        assert views[0]["agrees"] and views[0]["species"] == row["species"]
        fish = set()
        for view in views:
            call = calls[(tid, view["frame"])]  # every view is a classified crop, under the final id
            assert (view["species"], view["origin"]) == (call["species"], call["origin"])
            assert view["score"] == pytest.approx(float(call["score"]), abs=1e-3)
            # The crop the models saw: the padded box cut from that very frame.
            x1, y1, x2, y2 = view["crop_px"]
            grown = padded_boxes(np.array([view["box"]]), policy.crop_padding, 640, 480)[0]
            assert np.abs(grown - view["crop_px"]).max() <= 1  # the box is rounded to 0.1 px in the index
            expected = frames[view["frame"]][y1:y2, x1:x2]
            saved = read_image(sample_run / "views" / view["file"])
            assert saved.shape == expected.shape
            assert np.abs(saved.astype(int) - expected.astype(int)).mean() < 4  # JPEG's loss only
            on_frame = truth[view["frame"]]
            iou = sv.box_iou_batch(np.array([view["box"]]), np.array([b for _, b in on_frame]))[0]
            assert iou.max() >= 0.5
            fish.add(on_frame[int(iou.argmax())][0])
        assert len(fish) == 1, f"track {tid}'s views show fish {fish}"
        fish_of_track[tid] = fish.pop()
    assert len(set(fish_of_track.values())) == len(fish_of_track) == 6  # six fish, six tracks


@pytest.mark.slow
def test_each_species_maxn_frame_is_saved_with_its_counted_boxes(sample_run, frames):
    counts = {r["species"]: r for r in rows(sample_run / "species_counts.csv")}
    detections = rows(sample_run / "detections.csv")
    tracks = {int(r["track_id"]): r for r in rows(sample_run / "tracks.csv")}
    index = json.loads((sample_run / "maxn" / "index.json").read_text())
    assert {e["species"] for e in index["species"]} == set(counts)
    for entry in index["species"]:
        count = counts[entry["species"]]
        assert entry["exact"] is True
        assert (entry["frame"], entry["max_n"], entry["rank"]) == (
            int(count["max_n_frame"]),
            int(count["max_n"]),
            count["rank"],
        )
        assert entry["time_s"] == pytest.approx(float(count["max_n_time_s"]), abs=1e-3)
        assert len(entry["track_ids"]) == entry["boxes_on_frame"] == entry["max_n"]
        boxes = {}
        for tid in entry["track_ids"]:
            assert tracks[tid]["species"] == entry["species"] and tracks[tid]["counted"] == "1"
            (box,) = [r for r in detections if int(r["track_id"]) == tid and int(r["frame"]) == entry["frame"]]
            boxes[tid] = [float(box[k]) for k in ("x1", "y1", "x2", "y2")]
        image = read_image(sample_run / "maxn" / entry["file"])
        source = frames[entry["frame"]]
        assert image.shape == source.shape
        # The frame itself away from the boxes and their labels; the boxes drawn on it.
        far = np.ones(source.shape[:2], bool)
        for x1, y1, x2, y2 in boxes.values():
            far[max(0, int(y1) - 30) : int(y2) + 6, max(0, int(x1) - 6) : int(x2) + 200] = False
        assert np.abs(image.astype(int) - source.astype(int))[far].mean() < 4
        for _, y1, x2, y2 in boxes.values():
            span, column = slice(int(y1) + 1, int(y2) - 1), min(int(x2), source.shape[1] - 1)
            assert np.abs(image[span, column].astype(int) - source[span, column]).mean() > 20  # the box's edge


@pytest.mark.slow
def test_views_and_maxn_frames_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    code = main(["run", str(VIDEO), "--config", "configs/sample.yaml", "--out", str(out), "-q", "--max-frames", "40",
                 "--set", "output.views=false", "--set", "output.maxn_frames=false"])  # fmt: skip
    assert code == 0
    assert (out / "tracks.csv").exists() and not (out / "views").exists() and not (out / "maxn").exists()


# ---- crafted runs -----------------------------------------------------------------------------


class Votes:
    """The ledger as Evidence sees it: the open tracks' vote of the moment, and no looks."""

    def __init__(self, labels):
        self.labels = labels

    def label(self, tid):
        return (self.labels[tid], 0.9, "expert") if tid in self.labels else None

    def looked_on(self, frame_index):
        return set()


def picture(index):
    image = np.full((120, 160, 3), 40, np.uint8)
    cv2.putText(image, str(index), (60, 110), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
    return image


BOX_A, BOX_B = [10.0, 10.0, 50.0, 40.0], [90.0, 10.0, 140.0, 50.0]


def track(tid, frames, box, counted=True):
    return TrackSummary(
        tid, "Chromis viridis", 0.9, Origin.EXPERT, frames[0], frames[-1], frames[0] / 25, frames[-1] / 25,
        len(frames), 1, 1, frames=tuple(frames), frame_times_s=tuple(f / 25 for f in frames),
        boxes=np.array([box] * len(frames), np.float32), confidences=np.full(len(frames), 0.9, np.float32),
        interpolated=np.zeros(len(frames), bool), counted=counted, online_ids=(tid,),
    )  # fmt: skip


def feed(evidence, votes):
    """Frames 0-9: tracks 1 and 2 (both voted Chromis) together on frames 2-4 only."""
    for i in range(10):
        boxes, ids = [BOX_A], [1]
        if 2 <= i <= 4:
            boxes, ids = [BOX_A, BOX_B], [1, 2]
        evidence.on_frame(Frame(picture(i), i, i / 25, "crafted"), Detections.build(boxes, track_id=ids), True, votes)


def test_a_live_streams_kept_frame_is_marked_inexact_when_the_counts_moved_its_maxn(tmp_path):
    evidence = Evidence(tmp_path, views=False)
    feed(evidence, Votes({1: "Chromis viridis", 2: "Chromis viridis"}))
    # Track 2 turned out not to count: MaxN is 1, on frame 0; the stream kept frame 2.
    tracks = [track(1, list(range(10)), BOX_A), track(2, [2, 3, 4], BOX_B, counted=False)]
    evidence.finish(tracks, None, species_counts(tracks))
    (entry,) = json.loads((tmp_path / "maxn" / "index.json").read_text())["species"]
    assert (entry["max_n"], entry["frame"], entry["exact"], entry["track_ids"]) == (1, 2, False, [1])
    image = read_image(tmp_path / "maxn" / "Chromis_viridis.jpg")
    assert np.abs(image[60:, 40:120].astype(int) - picture(2)[60:, 40:120]).mean() < 4  # frame 2's number


def test_a_video_is_read_back_for_a_maxn_frame_it_did_not_keep(tmp_path):
    asked = []

    def reread(wanted):
        asked.append(set(wanted))
        return {i: picture(i) for i in wanted}

    evidence = Evidence(tmp_path, views=False, reread=reread)
    feed(evidence, Votes({1: "Chromis viridis", 2: "Chromis viridis"}))
    tracks = [track(1, list(range(10)), BOX_A), track(2, [2, 3, 4], BOX_B, counted=False)]
    evidence.finish(tracks, None, species_counts(tracks))
    (entry,) = json.loads((tmp_path / "maxn" / "index.json").read_text())["species"]
    assert asked == [{0}] and (entry["frame"], entry["exact"], entry["track_ids"]) == (0, True, [1])


def test_the_kept_frame_is_used_when_it_is_the_counts_maxn_frame(tmp_path):
    def reread(wanted):
        raise AssertionError(f"read back {wanted}: the kept frame was the MaxN frame")

    evidence = Evidence(tmp_path, views=False, reread=reread)
    feed(evidence, Votes({1: "Chromis viridis", 2: "Chromis viridis"}))
    tracks = [track(1, list(range(10)), BOX_A), track(2, [2, 3, 4], BOX_B)]
    evidence.finish(tracks, None, species_counts(tracks))
    (entry,) = json.loads((tmp_path / "maxn" / "index.json").read_text())["species"]
    assert (entry["max_n"], entry["frame"], entry["exact"], entry["track_ids"]) == (2, 2, True, [1, 2])


def test_reread_numbers_frames_as_the_run_did():
    read = reread_video(VIDEO)
    wanted = {0, 57, 124}
    got = read(wanted)
    source = {f.index: f.image_bgr for f in VideoFileSource(VIDEO) if f.index in wanted}
    assert set(got) == wanted and all(np.array_equal(got[i], source[i]) for i in wanted)
