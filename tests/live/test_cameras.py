"""Several live cameras in one `fishcam run`: real RTSP servers, each camera its own folder,
tracks and counts; SIGTERM finishes every camera; an unreachable camera fails alone. The source
list checks and the shared species models need no server (not marked live)."""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time

import av
import cv2
import numpy as np
import pytest
from builders import SAMPLES, TEST_DETECTOR, ColourModel

from fishcam.app.cli import main
from fishcam.app.compose import Components, build_components, components_sharing_models
from fishcam.app.run import run
from fishcam.classify.service import ServiceSettings, SpeciesModels, SpeciesService
from fishcam.config import load_config
from fishcam.detect.scripted import ScriptedDetector
from fishcam.errors import ConfigError, Terminated
from fishcam.pipeline import Stop
from fishcam.sources.base import SourceStatus
from fishcam.sources.cameras import camera_name, parse_cameras
from fishcam.types import Frame

OUTPUTS = {"annotated.mp4", "tracks.csv", "species_counts.csv", "detections.csv", "calls.csv", "summary.json"}
COUNT_ONLY = ["--config", "configs/count-only.yaml", "--set", "source.live.flush_interval_s=0.5"]


def start_cli(sources, out, *extra, env=None):
    command = [sys.executable, "-m", "fishcam", "run", *sources, "--out", str(out), *COUNT_ONLY, *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def check_camera(folder, url, exit_code):
    """A camera's folder holds a complete run of its own stream."""
    assert {p.name for p in folder.iterdir()} >= OUTPUTS
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["source"] == url and summary["exit_code"] == exit_code and summary["frames"] > 0
    assert len(rows(folder / "tracks.csv")) == summary["tracks"] > 0
    counts = rows(folder / "species_counts.csv")
    # Counted tracks only (fishcam.evidence): the motion detector on the moving dive camera also
    # makes short and static tracks, kept in tracks.csv but not counted.
    assert sum(int(r["unique_tracks"]) for r in counts) == summary["counted_tracks"]
    assert sum(r["counted"] == "1" for r in rows(folder / "tracks.csv")) == summary["counted_tracks"]
    for name in ("detections.csv", "calls.csv"):
        with (folder / name).open() as handle:
            table = list(csv.reader(handle))
        assert table and all(len(row) == len(table[0]) for row in table), name
    with av.open(str(folder / "annotated.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == summary["frames"]
    # MaxN evidence kept while the stream ran (it cannot be read back): the frame of each
    # species' most fish at once, drawn with the counted tracks on it. No species models, no views.
    assert not (folder / "views").exists()
    if summary["counted_tracks"]:
        detected = {(int(r["track_id"]), int(r["frame"])) for r in rows(folder / "detections.csv")}
        counted = {int(r["track_id"]) for r in rows(folder / "tracks.csv") if r["counted"] == "1"}
        by_species = {r["species"]: r for r in counts}
        entries = json.loads((folder / "maxn" / "index.json").read_text())["species"]
        assert entries and {e["species"] for e in entries} <= set(by_species)
        for entry in entries:
            assert 1 <= entry["boxes_on_frame"] == len(entry["track_ids"]) <= entry["max_n"]
            assert entry["exact"] == (entry["frame"] == int(by_species[entry["species"]]["max_n_frame"])
                                      and entry["boxes_on_frame"] == entry["max_n"])  # fmt: skip
            assert all(t in counted and (t, entry["frame"]) in detected for t in entry["track_ids"])
            image = cv2.imread(str(folder / "maxn" / entry["file"]))
            assert image is not None and image.shape[:2] == (summary["height"], summary["width"])
    return summary


@pytest.mark.live
def test_two_cameras_each_with_its_own_folder_tracks_and_counts(rtsp_server, tmp_path):
    dive = rtsp_server(SAMPLES / "dive_sample.mp4")
    fixed = rtsp_server(SAMPLES / "fixed_sample.mp4", user="diver", password="s3cret")
    secret_url = fixed.url(credentials="diver:${CAM_PASSWORD}@")  # plain: named from its host, port, path
    env = {**os.environ, "CAM_PASSWORD": "s3cret"}
    proc = start_cli([f"reef={dive.url()}", secret_url], tmp_path, "--duration", "4", env=env)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    fixed_name = f"127.0.0.1-{fixed.port}-fish"
    reef = check_camera(tmp_path / "reef", dive.url(), 0)
    still = check_camera(tmp_path / fixed_name, fixed.url(credentials="diver:***@"), 0)
    # --duration for each: no frame captured 4 s or more after the camera's first. (Frames, not
    # counted: a stream that catches up after a hiccup delivers a few frames in a burst.)
    for folder in (tmp_path / "reef", tmp_path / fixed_name):
        assert max(float(r["time_s"]) for r in rows(folder / "detections.csv")) < 4.0
    assert still["frames"] >= 2.5 * 25 and reef["frames"] > 0
    # Their own tracks: the two streams differ, so do their detections.
    assert rows(tmp_path / "reef" / "detections.csv") != rows(tmp_path / fixed_name / "detections.csv")

    report = json.loads((tmp_path / "cameras.json").read_text())
    assert report["exit_code"] == 0
    assert [(c["name"], c["source"], c["exit_code"], c["error"]) for c in report["cameras"]] == [
        ("reef", dive.url(), 0, None),
        (fixed_name, fixed.url(credentials="diver:***@"), 0, None),
    ]
    for camera, summary in zip(report["cameras"], (reef, still), strict=True):
        assert camera["tracks"] == summary["tracks"] and camera["species"] == summary["species"]
        assert camera["folder"] == str(tmp_path / camera["name"])
    # Health lines say which camera they are about; the password is nowhere.
    assert "health [reef]" in err or "camera reef: exit 0" in err
    assert f"camera {fixed_name}: exit 0" in err
    written = "".join(p.read_text() for p in tmp_path.rglob("*") if p.suffix in {".json", ".csv", ".yaml"})
    assert "s3cret" not in err + out + written


def wait_for_tracking(proc, folders, timeout_s=40):
    """Until every camera has logged tracked boxes (detections.csv holds only those)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        logs = [f / "detections.csv" for f in folders]
        if all(log.exists() and len(log.read_text().splitlines()) > 30 for log in logs):
            return
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"not every camera tracked something; fishcam said: {proc.communicate()[1]}")


@pytest.mark.live
def test_sigterm_stops_every_camera_with_complete_outputs(rtsp_server, tmp_path):
    servers = {"dive": rtsp_server(SAMPLES / "dive_sample.mp4"), "fixed": rtsp_server(SAMPLES / "fixed_sample.mp4")}
    proc = start_cli([f"{name}={server.url()}" for name, server in servers.items()], tmp_path)
    wait_for_tracking(proc, [tmp_path / name for name in servers])
    time.sleep(1)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert time.monotonic() - sent < 15  # every camera stopped promptly and finished its files
    for name, server in servers.items():
        summary = check_camera(tmp_path / name, server.url(), 143)
        assert summary["error"] == "terminated (SIGTERM)"
    report = json.loads((tmp_path / "cameras.json").read_text())
    assert report["exit_code"] == 143 and [c["exit_code"] for c in report["cameras"]] == [143, 143]


@pytest.mark.live
def test_an_unreachable_camera_fails_alone(rtsp_server, tmp_path):
    good = rtsp_server(SAMPLES / "fixed_sample.mp4")
    bad = "rtsp://127.0.0.1:1/fish"  # nobody listens on port 1
    gives_up = ["--set", "source.live.retries=1", "--set", "source.live.open_timeout_s=1",
                "--set", "source.live.reconnect_initial_s=0.2"]  # fmt: skip
    proc = start_cli([f"gone={bad}", f"good={good.url()}"], tmp_path, "--duration", "3", *gives_up)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err  # SourceError's exit code
    check_camera(tmp_path / "good", good.url(), 0)
    assert not (tmp_path / "gone").exists()
    report = json.loads((tmp_path / "cameras.json").read_text())
    assert report["exit_code"] == 3
    gone, fine = report["cameras"]
    assert (gone["name"], gone["exit_code"], gone["folder"], gone["tracks"]) == ("gone", 3, None, 0)
    assert gone["error"].startswith(f"cannot open live source {bad}")
    assert (fine["name"], fine["exit_code"], fine["error"]) == ("good", 0, None) and fine["tracks"] > 0
    assert "camera gone: cannot open live source" in err


# ---- no server needed ----------------------------------------------------------------------


def last_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_a_recorded_video_among_several_sources_points_to_batch(tmp_path, capsys):
    code = main(["run", "rtsp://127.0.0.1:1/fish", str(SAMPLES / "fixed_sample.mp4"), "--out", str(tmp_path / "o")])
    assert code == 2
    message = last_error(capsys)
    assert "fixed_sample.mp4' is not a live camera" in message and "fishcam batch" in message
    assert not (tmp_path / "o").exists()  # stopped before models or cameras


def test_duplicate_camera_names_exit_2_saying_how_to_name_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CAM_PASSWORD", "hunter2")
    same = "rtsp://cam:${CAM_PASSWORD}@10.0.0.5:554/stream1"
    assert main(["run", same, same.replace("cam:", "other:"), "--out", str(tmp_path / "o")]) == 2
    message = last_error(capsys)
    assert "two cameras are named '10.0.0.5-554-stream1'" in message and "NAME=URL" in message
    assert "cam:***@" in message and "hunter2" not in message
    assert main(["run", "a=rtsp://10.0.0.5/1", "A=rtsp://10.0.0.6/2", "--out", str(tmp_path / "o")]) == 2
    assert "two cameras are named 'A'" in last_error(capsys)
    assert not (tmp_path / "o").exists()


def test_one_camera_may_be_named_too(tmp_path, capsys):
    fails_at_once = ["--set", "source.live.retries=0", "--set", "source.live.open_timeout_s=1"]
    code = main(["run", "cam=rtsp://127.0.0.1:1/fish", "--config", "configs/count-only.yaml", *fails_at_once])
    assert code == 3 and "cannot open live source rtsp://127.0.0.1:1/fish" in last_error(capsys)


def test_camera_names_and_source_lists(monkeypatch):
    monkeypatch.setenv("CAM_PASSWORD", "hunter2")
    cameras = parse_cameras(
        ["north=rtsp://admin:${CAM_PASSWORD}@10.0.0.5:554/live/ch1", "http://10.0.0.7/video?action=stream", "0"]
    )
    assert [c.name for c in cameras] == ["north", "10.0.0.7-video-action-stream", "webcam-0"]
    assert cameras[0].masked == "rtsp://admin:***@10.0.0.5:554/live/ch1"
    assert camera_name("rtsp://user:pw@127.0.0.1:8554/fish") == "127.0.0.1-8554-fish"
    monkeypatch.delenv("CAM_PASSWORD")
    with pytest.raises(ConfigError, match="CAM_PASSWORD is not set"):
        parse_cameras(["rtsp://admin:${CAM_PASSWORD}@10.0.0.5/1", "rtsp://10.0.0.6/1"])
    with pytest.raises(ConfigError, match="reserved"):
        parse_cameras(["..=rtsp://10.0.0.5/1", "rtsp://10.0.0.6/1"])


def test_cameras_share_the_species_models_but_not_detectors_or_species_services():
    config = load_config(None, [f"detector.weights={TEST_DETECTOR}", "detector.image_size=320"])
    first = build_components(load_config(None, [f"detector.weights={TEST_DETECTOR}", "classify.enabled=false"]))
    expert = ColourModel(["cod", "hake"], {(0, 0, 255): [0.9, 0.1]})
    fallback = ColourModel(["Gadus morhua"], {(0, 0, 255): [1.0]})
    first.species = SpeciesModels(expert, fallback, expert_threshold=0.7, fallback_threshold=0.3)
    second = components_sharing_models(first, config)
    assert type(second.detector) is type(first.detector) and second.detector is not first.detector
    assert second.detector._model is not first.detector._model  # Ultralytics models are not thread-safe
    assert second.species is first.species  # loaded once; immutable
    # Per-run state (counts, threads, the background fallback's queue) is each run's own service.
    red = np.zeros((8, 8, 3), np.uint8)
    red[:] = (0, 0, 255)
    one = SpeciesService(first.species, ServiceSettings(background_fallback=True))
    other = SpeciesService(second.species)
    one.ask(0, [red, red], ["a", "b"])
    assert [key for key, _ in one.answers(0)] == ["a", "b"] and other.finish() == []
    one.finish()
    assert one.counts["expert"] == 2 and other.counts["expert"] == 0
    assert components_sharing_models(Components(first.detector, None), config).species is None


@pytest.mark.model
def test_real_species_models_load_once_for_every_camera(convnext_checkpoint, tiny_clip):
    config = load_config(
        None,
        [f"detector.weights={TEST_DETECTOR}", f"classify.expert.weights={convnext_checkpoint}",
         f"classify.fallback.model={tiny_clip}", f"classify.fallback.species_list={SAMPLES / 'species.txt'}"],
    )  # fmt: skip
    first = build_components(config)
    others = [components_sharing_models(first, config) for _ in range(2)]
    for other in others:
        assert other.detector is not first.detector and other.species is first.species
        assert other.described["expert"] == first.described["expert"]
    assert others[0].detector is not others[1].detector


class EndlessSource:
    """Frames forever, like a camera (without its reader thread)."""

    name, fps, width, height = "endless", 25.0, 64, 48
    live, location, recorded_start_unix, health = True, "endless", None, None

    def __init__(self):
        self.status = SourceStatus()
        self.flowing = threading.Event()

    def __iter__(self):
        index = 0
        while True:
            time.sleep(0.01)
            yield Frame(np.zeros((48, 64, 3), np.uint8), index, index / 25.0, self.name)
            index += 1
            if index == 20:
                self.flowing.set()

    def close(self):
        pass


def test_a_stop_from_another_thread_ends_a_run_as_sigterm_would(tmp_path):
    config = load_config(None, ["classify.enabled=false", "render.video=false"])
    stop, source = Stop(), EndlessSource()

    def stop_once_frames_flow():
        source.flowing.wait(30)
        stop.request(Terminated)

    threading.Thread(target=stop_once_frames_flow, daemon=True).start()
    code, summary = run(source, config, tmp_path, Components(ScriptedDetector({}), None), stop=stop)
    assert code == 143 and summary.error == "terminated (SIGTERM)" and summary.frames > 0
    assert json.loads((tmp_path / "summary.json").read_text())["exit_code"] == 143
