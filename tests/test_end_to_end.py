"""`fishcam run` on the shipped samples with real model architectures in their real formats:
every output exists, parses, and agrees with the others."""

import csv
import json
from collections import Counter, defaultdict

import av
import pytest
import yaml
from builders import SAMPLES, TEST_DETECTOR, sample_meta

from fishcam.app.cli import main
from fishcam.config import validate_config
from fishcam.models.hub import sha256_file

pytestmark = pytest.mark.slow

OUTPUTS = {
    "annotated.mp4",
    "tracks.csv",
    "detections.csv",
    "calls.csv",
    "species_counts.csv",
    "config.yaml",
    "summary.json",
}


def read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def model_args(convnext_checkpoint, tiny_clip):
    return [
        "--set", f"classify.expert.weights={convnext_checkpoint}",
        "--set", f"classify.fallback.model={tiny_clip}",
        "--species", str(SAMPLES / "species.txt"),
        # Random weights are never confident: low thresholds make both models decide some crops.
        "--set", "classify.expert.threshold=0.05",
        "--set", "classify.fallback.threshold=0.2",
    ]  # fmt: skip


def check_outputs_agree(out, frames):
    assert {p.name for p in out.iterdir()} >= OUTPUTS
    with av.open(str(out / "annotated.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        decoded = sum(1 for _ in container.decode(stream))
    assert decoded == frames
    assert (stream.width, stream.height) == (640, 480)

    summary = json.loads((out / "summary.json").read_text())
    config = validate_config(yaml.safe_load((out / "config.yaml").read_text()))
    assert summary["frames"] == frames and summary["exit_code"] == 0

    tracks = {int(r["track_id"]): r for r in read_csv(out / "tracks.csv")}
    log = read_csv(out / "detections.csv")
    assert tracks and log
    by_track = defaultdict(list)
    for row in log:
        by_track[int(row["track_id"])].append(row)
    assert set(by_track) == set(tracks)
    calls_by_track = defaultdict(list)
    for row in read_csv(out / "calls.csv"):
        calls_by_track[int(row["track_id"])].append(row)
    assert set(calls_by_track) <= set(tracks)
    for tid, rows in by_track.items():
        track = tracks[tid]
        frames_seen = [int(r["frame"]) for r in rows]
        assert (min(frames_seen), max(frames_seen)) == (int(track["first_frame"]), int(track["last_frame"]))
        assert sum(r["interpolated"] == "0" for r in rows) == int(track["detections"])  # the rest filled in
        calls = calls_by_track[tid]
        assert len(calls) == int(track["observations"])
        assert {int(c["frame"]) for c in calls} <= set(frames_seen)  # crops come from detected frames
        if config.classify.enabled:
            assert track["origin"] in {"expert", "fallback", "unknown"}
            winners = [r for r in calls if r["species"] == track["species"]]
            assert len(winners) == int(track["votes"]) > 0
            assert {r["origin"] for r in winners} >= {track["origin"]}

    # Species counts recomputed from the detections log and the tracks' species.
    per_frame = defaultdict(Counter)
    for row in log:
        per_frame[int(row["frame"])][tracks[int(row["track_id"])]["species"]] += 1
    counts = {r["species"]: r for r in read_csv(out / "species_counts.csv")}
    assert set(counts) == {t["species"] for t in tracks.values()}
    for species, row in counts.items():
        assert int(row["unique_tracks"]) == sum(t["species"] == species for t in tracks.values())
        max_n = max(c[species] for c in per_frame.values())
        assert int(row["max_n"]) == max_n
        assert int(row["max_n_frame"]) == min(f for f, c in per_frame.items() if c[species] == max_n)
    assert sum(v["unique"] for v in summary["species"].values()) == len(tracks) == summary["tracks"]
    return summary, tracks


def test_dive_sample_with_yolo_expert_and_fallback(tmp_path, convnext_checkpoint, tiny_clip):
    out = tmp_path / "dive"
    code = main(
        ["run", str(SAMPLES / "dive_sample.mp4"), "--out", str(out), "--quiet",
         "--config", "configs/dive.yaml", "--set", f"detector.weights={TEST_DETECTOR}",
         "--set", "detector.image_size=320", *model_args(convnext_checkpoint, tiny_clip)]
    )  # fmt: skip
    assert code == 0
    summary, tracks = check_outputs_agree(out, frames=200)
    assert len(tracks) == len(sample_meta("dive_sample")["fish"])
    assert summary["models"]["expert"]["sha256"] == sha256_file(convnext_checkpoint)
    assert summary["models"]["detector"]["sha256"] == sha256_file(TEST_DETECTOR)
    assert summary["models"]["fallback"]["species"] == 7
    assert 0 < summary["crops_classified"] < 200 * len(tracks) / 4  # tracks, not frames, are classified


def test_fixed_camera_sample_count_only_needs_no_weights(tmp_path):
    out = tmp_path / "fixed"
    code = main(
        ["run", str(SAMPLES / "fixed_sample.mp4"), "--config", "configs/count-only.yaml", "--out", str(out), "-q"]
    )
    assert code == 0
    summary, tracks = check_outputs_agree(out, frames=200)
    assert {t["species"] for t in tracks.values()} == {"unclassified"}
    assert summary["models"] == {"detector": summary["models"]["detector"]}
    assert summary["models"]["detector"]["kind"] == "motion"


def test_fixed_camera_sample_with_species_models(tmp_path, convnext_checkpoint, tiny_clip):
    out = tmp_path / "fixed-species"
    code = main(["run", str(SAMPLES / "fixed_sample.mp4"), "--config", "configs/fixed-camera.yaml",
                 "--out", str(out), "-q", *model_args(convnext_checkpoint, tiny_clip)])  # fmt: skip
    assert code == 0
    check_outputs_agree(out, frames=200)
