"""The Ultralytics detector path with a real (small, test-trained) YOLOv8n fish detector."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from builders import SAMPLES, TEST_DETECTOR

from fishcam.config import load_config
from fishcam.errors import ConfigError, MissingModelError
from fishcam.sources import open_source
from fishcam.types import Frame

pytestmark = pytest.mark.model


def sample_frames(indices):
    wanted = set(indices)
    return [f for f in open_source(str(SAMPLES / "dive_sample.mp4"), load_config().source) if f.index in wanted]


def detector(weights=TEST_DETECTOR, *overrides):
    from fishcam.models.loading import load_detector

    return load_detector(
        load_config(None, [f"detector.weights={weights}", "detector.image_size=320", *overrides]).detector
    )


def test_finds_the_fish_of_a_sample_frame_and_filters_classes():
    (frame,) = sample_frames([150])
    found = detector().detect(frame)
    assert 3 <= len(found) <= 5 and found.confidence.min() >= 0.25
    assert detector(TEST_DETECTOR, "detector.classes=[fish]").class_names == {0: "fish"}
    with pytest.raises(ConfigError, match=r"'shark' is not a class of fish_yolov8n\.pt; its classes are \['fish'\]"):
        detector(TEST_DETECTOR, "detector.classes=[shark]")
    assert len(detector(TEST_DETECTOR, "detector.confidence=0.99").detect(frame)) < len(found)


def test_missing_weights_name_the_config_key(tmp_path):
    with pytest.raises(MissingModelError, match="detector weights not found"):
        detector(tmp_path / "none.pt")


def test_no_network_while_loading_and_detecting(tmp_path):
    """Every socket refused: ultralytics must not try to download fonts, check versions or sync."""
    script = f"""
import socket
def refuse(*args, **kwargs):
    raise OSError("network refused by test")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
import numpy as np
from fishcam.config import load_config
from fishcam.models.loading import load_detector
from fishcam.types import Frame
det = load_detector(load_config(None, ["detector.weights={TEST_DETECTOR}", "detector.image_size=320"]).detector)
det.detect(Frame(np.zeros((480, 640, 3), np.uint8), 0, 0.0))
print("ok")
"""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


@pytest.fixture(scope="module")
def onnx_detector(tmp_path_factory):
    import shutil

    folder = tmp_path_factory.mktemp("onnx")
    weights = folder / "fish_yolov8n.pt"
    shutil.copyfile(TEST_DETECTOR, weights)
    from fishcam import runtime

    runtime.setup()  # as the CLI does, before ultralytics is imported
    from ultralytics import YOLO

    exported = YOLO(str(weights), task="detect").export(format="onnx", imgsz=320, simplify=False, verbose=False)
    return exported


def same_boxes(a, b):
    assert len(a) == len(b)
    order_a, order_b = np.argsort(a.xyxy[:, 0]), np.argsort(b.xyxy[:, 0])
    assert np.allclose(a.xyxy[order_a], b.xyxy[order_b], atol=2.0)


def test_every_runtime_backend_finds_the_same_boxes_as_torch(onnx_detector):
    torch_detector = detector(TEST_DETECTOR, "detector.backend=torch")
    openvino = detector(TEST_DETECTOR, "detector.backend=openvino")
    assert (torch_detector.backend, openvino.backend) == ("torch", "openvino")
    onnx = detector(onnx_detector)
    for frame in sample_frames([20, 150]):
        reference = torch_detector.detect(frame)
        same_boxes(reference, openvino.detect(frame))
        same_boxes(reference, onnx.detect(frame))
    # The OpenVINO export takes any shape: a 16:9 frame is letterboxed to 320x192 as torch does,
    # not padded to 320x320 (the cost of detection at 1080p).
    assert openvino._model.predictor.model.dynamic
    (frame,) = sample_frames([150])
    wide = Frame(cv2.resize(frame.image_bgr[60:420], (1280, 720)), 0, 0.0)
    found = torch_detector.detect(wide)
    assert len(found) >= 3
    same_boxes(found, openvino.detect(wide))


def test_exports_are_cached_by_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = detector(TEST_DETECTOR, "detector.backend=openvino")
    again = detector(TEST_DETECTOR, "detector.backend=openvino")
    assert first.loaded.model_path == again.loaded.model_path and first.loaded.model_path.is_relative_to(tmp_path)
    assert len(list((tmp_path / "fishcam" / "exports").iterdir())) == 1


def test_black_frame_has_no_fish():
    assert len(detector().detect(Frame(np.zeros((480, 640, 3), np.uint8), 0, 0.0))) == 0


def test_ultralytics_does_not_change_torchs_thread_count():
    """Its device setup sets torch to cores - 1 threads for the whole process; that halved the
    expert's speed on 2 cores."""
    import torch
    from ultralytics.utils import NUM_THREADS

    before, wanted = torch.get_num_threads(), NUM_THREADS + 1  # anything but what Ultralytics sets
    torch.set_num_threads(wanted)
    try:
        (frame,) = sample_frames([0])
        found = detector(TEST_DETECTOR, "detector.backend=torch")
        found.detect(frame)
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)


def test_with_openvino_torch_runs_the_detectors_small_ops_on_one_thread():
    """The inference is OpenVINO's; torch's pre- and post-processing of a small tensor on more
    threads only left OpenMP threads spinning against the expert, decoder and encoder."""
    import torch

    openvino = detector(TEST_DETECTOR, "detector.backend=openvino")
    seen = []
    predict = openvino._model.predict
    openvino._model.predict = lambda *a, **k: seen.append(torch.get_num_threads()) or predict(*a, **k)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        (frame,) = sample_frames([150])
        assert len(openvino.detect(frame)) >= 3
        assert seen == [1] and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("cache", ["writable", "not writable"])
def test_ultralytics_settings_stay_in_fishcams_own_folder(tmp_path, cache):
    """Ultralytics writes settings.json into its config folder when imported (by default the
    user's ~/.config/Ultralytics); the safety check imports it before any model is loaded."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cache_home = tmp_path / "cache" if cache == "writable" else blocker / "cache"
    script = f"""
from fishcam.models.checkpoint import check_ultralytics_checkpoint
check_ultralytics_checkpoint({str(TEST_DETECTOR)!r})
import ultralytics.utils
print(ultralytics.utils.SETTINGS_FILE)
"""
    (tmp_path / "tmp").mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(cache_home),
           "TMPDIR": str(tmp_path / "tmp")}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    settings = Path(result.stdout.strip().splitlines()[-1])
    assert settings.is_file() and not (tmp_path / "home" / ".config").exists()
    if cache == "writable":
        assert settings == cache_home / "fishcam" / "ultralytics" / "Ultralytics" / "settings.json"
    else:
        assert settings.is_relative_to(tmp_path / "tmp")
