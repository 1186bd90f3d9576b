"""Exports of a real run, read back by readers that are not fishcam's own where they exist."""

import configparser
import csv
import json

import motmetrics as mm
import pytest
from builders import SAMPLES, TEST_DETECTOR

from fishcam.app.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = ["run", str(SAMPLES / "dive_sample.mp4"), "--out", str(out), "-q", "--set", "render.video=false",
            "--set", f"detector.weights={TEST_DETECTOR}", "--set", "detector.image_size=320",
            "--set", "classify.enabled=false"]  # fmt: skip
    assert main(args) == 0
    return out


def tracks_and_boxes(run_dir):
    with (run_dir / "tracks.csv").open() as handle:
        tracks = {int(r["track_id"]): r for r in csv.DictReader(handle)}
    with (run_dir / "detections.csv").open() as handle:
        boxes = list(csv.DictReader(handle))
    return tracks, boxes


def test_mot_read_back_by_motmetrics_matches_the_run(run_dir, tmp_path):
    assert main(["export", str(run_dir), "--format", "mot", "--out", str(tmp_path), "-q"]) == 0
    frame = mm.io.loadtxt(str(tmp_path / "dive_sample.txt"), fmt="mot15-2D")
    tracks, boxes = tracks_and_boxes(run_dir)
    assert len(frame) == len(boxes)
    assert sorted(frame.index.get_level_values("Id").unique()) == sorted(t + 1 for t in tracks)
    first = boxes[0]
    row = frame.loc[(int(first["frame"]) + 1, int(first["track_id"]) + 1)]
    assert row["X"] == pytest.approx(float(first["x1"]), abs=0.1)
    assert row["Width"] == pytest.approx(float(first["x2"]) - float(first["x1"]), abs=0.2)
    info = configparser.ConfigParser()
    info.read(tmp_path / "seqinfo.ini")
    assert dict(info["Sequence"]) == {
        "name": "dive_sample", "imdir": "img1", "framerate": "25.0", "seqlength": "200",
        "imwidth": "640", "imheight": "480", "imext": ".jpg",
    }  # fmt: skip


def test_viame_rows_carry_every_box_and_the_track_species(run_dir, tmp_path):
    assert main(["export", str(run_dir), "--format", "viame", "--out", str(tmp_path), "-q"]) == 0
    lines = (tmp_path / "dive_sample.viame.csv").read_text().splitlines()
    assert lines[0].startswith("# 1: Detection or Track-id") and lines[1].startswith("# metadata")
    rows = list(csv.reader(lines[2:]))
    tracks, boxes = tracks_and_boxes(run_dir)
    assert len(rows) == len(boxes)
    for row in rows:
        track = tracks[int(row[0])]
        assert row[1] == "dive_sample" and row[8] == "-1" and row[9:] == [track["species"], track["score"]]
    last = {int(r[0]): int(r[2]) for r in rows}  # the last row of a track is its last frame
    assert last == {tid: int(t["last_frame"]) for tid, t in tracks.items()}


def test_coco_has_track_ids_categories_and_images(run_dir, tmp_path):
    assert main(["export", str(run_dir), "--format", "coco", "--out", str(tmp_path), "-q"]) == 0
    data = json.loads((tmp_path / "dive_sample.coco.json").read_text())
    tracks, boxes = tracks_and_boxes(run_dir)
    assert len(data["annotations"]) == len(boxes)
    assert {a["track_id"] for a in data["annotations"]} == set(tracks)
    image_ids = {image["id"] for image in data["images"]}
    assert all(a["image_id"] in image_ids and a["bbox"][2] > 0 for a in data["annotations"])
    assert [c["name"] for c in data["categories"]] == ["unclassified"]
    # Read back by the COCO reference API: indexes build, every box belongs to an image of its frame.
    from pycocotools.coco import COCO

    coco = COCO(str(tmp_path / "dive_sample.coco.json"))
    assert len(coco.getAnnIds()) == len(boxes) and len(coco.getImgIds()) == len({b["frame"] for b in boxes})
    first = boxes[0]
    (image,) = [i for i in coco.loadImgs(coco.getImgIds()) if i["frame_index"] == int(first["frame"])]
    mine = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])) if a["track_id"] == int(first["track_id"])]
    assert mine[0]["bbox"][0] == pytest.approx(float(first["x1"]), abs=0.1)


def test_export_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "mot"]) == 3
    assert "not a finished fishcam run" in capsys.readouterr().err
