"""The RF-DETR detector (detector.kind rfdetr) on RF-DETR nano files in the rfdetr package's own
checkpoint formats, random weights (there is no model hub here): the same boxes as the package's
own predict, classes, image size, device, a whole run with a stride, and files that are refused."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import builders
import cv2
import numpy as np
import pytest
import torch
from builders import SAMPLES, TEST_DETECTOR

from fishcam.config import load_config
from fishcam.errors import ConfigError, ModelError, UnsafeCheckpointError
from fishcam.types import Frame

pytest.importorskip("rfdetr")
pytestmark = pytest.mark.model

TRAINED_AT = 320  # the files' training resolution: small, so that each forward pass is quick
SAMPLE = SAMPLES / "dive_sample.mp4"


# ---- files in the package's formats ------------------------------------------------------


def build_nano(num_classes: int, seed: int):
    return builders.build_rfdetr("nano", num_classes, TRAINED_AT, seed)


def save_rfdetr_checkpoint(path: Path, class_names: list[str], seed: int = 0, fish_boost: float = 0.0) -> Path:
    return builders.save_rfdetr_architecture(path, "nano", class_names, TRAINED_AT, seed, fish_boost)


def save_legacy_checkpoint(path: Path, class_names: list[str], seed: int = 1) -> Path:
    """A file of rfdetr 1.4's training loop (main.py): ``{"model", "optimizer", "lr_scheduler",
    "epoch", "args"}`` with ``args`` the ``argparse.Namespace`` of every setting, cut to ``model``
    and ``args`` by 1.4's ``strip_checkpoint`` (util/misc.py). On a Roboflow COCO export 1.4 made
    ``num_classes = len(class_names) + 1``, the names being class ids 1… (``{i + 1: name}``)."""
    model = build_nano(len(class_names) + 1, seed)
    args = argparse.Namespace(**vars(model.model.args))
    args.class_names = list(class_names)
    args.pretrain_weights = "rf-detr-nano.pth"
    torch.save({"model": model.model.model.state_dict(), "optimizer": {}, "lr_scheduler": {}, "epoch": 3,
                "args": args}, path)  # fmt: skip
    full = torch.load(path, map_location="cpu", weights_only=False)  # our own file: 1.4's strip did so
    torch.save({"model": full["model"], "args": full["args"]}, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = tmp_path_factory.mktemp("rfdetr")
    return {
        "fish": save_rfdetr_checkpoint(folder / "cfd-rf-detr-nano-test.pth", ["fish"]),
        "two": save_rfdetr_checkpoint(folder / "fish-and-divers.pth", ["fish", "diver"], seed=2),
        "legacy": save_legacy_checkpoint(folder / "legacy-1.4.pth", ["fish"]),
        "confident": save_rfdetr_checkpoint(folder / "confident.pth", ["fish"], fish_boost=4.0),
    }


def frames(*indices: int) -> list[np.ndarray]:
    """Frames of the dive sample, BGR as cv2 reads them."""
    capture = cv2.VideoCapture(str(SAMPLE))
    found, index = [], 0
    while len(found) < len(indices):
        ok, image = capture.read()
        assert ok, f"the sample has no frame {index}"
        if index in indices:
            found.append(image)
        index += 1
    return found


def detector(weights: Path, *overrides: str):
    from fishcam.models.rfdetr import load_rfdetr_detector

    settings = ["detector.kind=rfdetr", f"detector.weights={weights}", f"detector.image_size={TRAINED_AT}",
                "detector.confidence=0.005", "detector.classes=null", "detector.device=cpu", *overrides]  # fmt: skip
    return load_rfdetr_detector(load_config(None, settings).detector)


# ---- the same boxes as the package ----------------------------------------------------------


def same_as_package(ours, package, image: np.ndarray, num_classes: int) -> int:
    found = ours.detect(Frame(image, 0, 0.0))
    theirs = package.predict(image[:, :, ::-1].copy(), threshold=0.005)  # the package takes RGB
    real = theirs.class_id < num_classes  # the package also reports the no-object slot ("__background__")
    assert len(found) == int(real.sum())
    np.testing.assert_allclose(found.xyxy, theirs.xyxy[real], atol=1e-3)
    np.testing.assert_allclose(found.confidence, theirs.confidence[real], atol=1e-6)
    assert np.array_equal(found.class_id, theirs.class_id[real])
    return len(found)


@pytest.mark.slow
def test_same_boxes_as_the_packages_own_predict(files):
    """The package loads the same file its own way (here only: it would unpickle a file it
    cannot read safely): at the training resolution, and at another one, where both resize the
    position embeddings; rfdetr 1.11's format and 1.4's."""
    from rfdetr import RFDETR, RFDETRNano

    images = frames(0, 120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        package = RFDETR.from_checkpoint(str(files["fish"]), device="cpu", resolution=TRAINED_AT)
        legacy_package = RFDETRNano(pretrain_weights=str(files["legacy"]), resolution=384, device="cpu")
    assert package.class_names == ["fish"]
    compared = sum(same_as_package(detector(files["fish"]), package, image, 1) for image in images)
    legacy = detector(files["legacy"], "detector.image_size=384")
    compared_legacy = sum(same_as_package(legacy, legacy_package, image, 2) for image in images)
    assert compared >= 10 and compared_legacy >= 10, "too few boxes to compare"


def test_reads_size_classes_and_resolution_from_the_file(files):
    fish = detector(files["fish"])
    described = fish.describe()
    assert fish.class_names == {0: "fish"}
    assert described["kind"] == "rfdetr" and described["architecture"] == "RF-DETR nano"
    assert described["size_from"] == "model_name 'RFDETRNano'" and described["trained_image_size"] == TRAINED_AT
    assert described["sha256"] and described["device"] == "cpu" and described["backend"] == "torch"
    legacy = detector(files["legacy"])
    assert legacy.class_names == {0: "0", 1: "fish"}  # rfdetr 1.4: names from id 1, id 0 the export's root
    assert legacy.describe()["size_from"] == "args.pretrain_weights 'rf-detr-nano.pth'"


def test_the_file_is_read_by_its_tensors_when_it_names_no_size(tmp_path, files):
    """The Community Fish Detector's conversion script writes args of resolution, model_type and
    class_names only; a file with neither names no size: the decoder's depth says it."""
    checkpoint = torch.load(files["fish"], map_location="cpu", weights_only=True)
    cfd = tmp_path / "cfd.pth"
    torch.save({"model": checkpoint["model"], "args": {"resolution": 320, "model_type": "nano",
                                                        "class_names": ["fish"]}}, cfd)  # fmt: skip
    assert detector(cfd).describe()["size_from"] == "args.model_type 'nano'"
    bare = tmp_path / "bare.pth"
    torch.save({"model": checkpoint["model"]}, bare)
    unnamed = detector(bare, "detector.classes=[0]")
    assert unnamed.describe()["size_from"] == "its 2-layer decoder" and unnamed.class_names == {0: "0"}
    small = tmp_path / "small.pth"
    torch.save({"model": checkpoint["model"], "args": {"model_type": "small"}}, small)
    with pytest.raises(ModelError, match=r"says it is RF-DETR small \(args.model_type 'small'\), whose decoder has 3"):
        detector(small)


# ---- classes, image size, device ---------------------------------------------------------


def test_class_filter_by_name_or_id(files):
    (image,) = frames(60)
    every = detector(files["two"]).detect(Frame(image, 0, 0.0))
    assert every.class_id.tolist().count(0) > 0 and every.class_id.tolist().count(1) > 0
    fish = detector(files["two"], "detector.classes=[fish]")
    assert fish.class_names == {0: "fish", 1: "diver"}
    kept = fish.detect(Frame(image, 0, 0.0))
    assert len(kept) == int((every.class_id == 0).sum()) and set(kept.class_id.tolist()) == {0}
    np.testing.assert_allclose(kept.xyxy, every.xyxy[every.class_id == 0], atol=1e-3)
    divers = detector(files["two"], "detector.classes=[1]").detect(Frame(image, 0, 0.0))
    assert set(divers.class_id.tolist()) == {1}
    with pytest.raises(
        ConfigError, match=r"detector.classes: 'shark' is not a class of fish-and-divers.pth; its classes are "
        r"\['diver', 'fish'\]"
    ):  # fmt: skip
        detector(files["two"], "detector.classes=[shark]")


def test_image_size_sets_the_resolution_and_a_size_that_does_not_fit_is_refused(files):
    resized = detector(files["fish"], "detector.image_size=352")
    assert resized.describe()["image_size"] == 352 and resized.loaded.model.model.resolution == 352
    (image,) = frames(0)
    assert len(resized.detect(Frame(image, 0, 0.0))) > 0
    with pytest.raises(
        ConfigError, match=r"^detector.image_size 330 does not fit RF-DETR nano: it takes multiples of 32 "
        r"\(patch size 16 x 2 windows\), e.g. 320 or 352$"
    ):  # fmt: skip
        detector(files["fish"], "detector.image_size=330")


def test_device_and_backend(files):
    fish = detector(files["fish"])
    assert fish.device == "cpu"
    assert all(p.device.type == "cpu" for p in fish.loaded.model.model.model.parameters())
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU is usable here"):
            detector(files["fish"], "detector.device=cuda")
    with pytest.raises(ConfigError, match="fishcam runs an RF-DETR detector on torch only"):
        detector(files["fish"], "detector.backend=openvino")


def test_torch_threads_are_left_as_they_were(files):
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        detector(files["fish"]).detect(Frame(frames(0)[0], 0, 0.0))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


# ---- a whole run -------------------------------------------------------------------------


@pytest.mark.slow
def test_fishcam_run_with_an_rfdetr_detector_and_a_stride(tmp_path, files, capsys, monkeypatch):
    import csv

    from fishcam.app.cli import main
    from fishcam.detect.rfdetr import RFDETRDetector

    seen: list[tuple[int, int]] = []
    detect = RFDETRDetector.detect

    def recording(self, frame):
        found = detect(self, frame)
        if frame.source != "warm-up":
            seen.append((frame.index, len(found)))
        return found

    monkeypatch.setattr(RFDETRDetector, "detect", recording)
    out = tmp_path / "run"
    code = main(["run", str(SAMPLE), "--out", str(out), "-q",
                 "--set", "detector.kind=rfdetr", "--set", f"detector.weights={files['confident']}",
                 "--set", "detector.confidence=0.45", "--set", f"detector.image_size={TRAINED_AT}",
                 "--set", "detector.stride=2", "--set", "source.max_frames=40",
                 "--set", "classify.enabled=false"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "] rf-detr - " not in captured.out + captured.err  # the package's own log lines stay out of fishcam's
    assert [index for index, _ in seen] == list(range(0, 40, 2))  # stride 2: every other frame detected
    assert sum(boxes for _, boxes in seen) > 0
    summary = json.loads((out / "summary.json").read_text())
    described = summary["models"]["detector"]
    assert described["kind"] == "rfdetr" and described["architecture"] == "RF-DETR nano"
    assert summary["frames"] == 40 and summary["exit_code"] == 0
    with (out / "detections.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    with (out / "tracks.csv").open() as handle:
        tracks = list(csv.DictReader(handle))
    assert tracks, "random weights still make a few short tracks of the confident file's boxes"
    assert {r["track_id"] for r in tracks} == {r["track_id"] for r in rows}
    assert all(int(r["frame"]) % 2 == 0 for r in rows if r["interpolated"] == "0")


@pytest.mark.slow
def test_no_network_while_loading_and_detecting(tmp_path, files):
    """Every socket refused: building the network fetches no DINOv2 weights, nothing phones home."""
    weights = files["fish"]
    script = f"""
import socket
def refuse(*args, **kwargs):
    raise OSError("network refused by test")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
import numpy as np
from fishcam.config import load_config
from fishcam.models.rfdetr import load_rfdetr_detector
from fishcam.types import Frame
config = load_config(None, ["detector.kind=rfdetr", "detector.weights={weights}", "detector.image_size=320"])
load_rfdetr_detector(config.detector).detect(Frame(np.zeros((480, 640, 3), np.uint8), 0, 0.0))
print("ok")
"""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
    assert not (tmp_path / ".roboflow").exists() and not (tmp_path / ".cache" / "huggingface").exists()


# ---- refusals ----------------------------------------------------------------------------


class Payload:
    """Runs a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a model file ran code"


def test_a_pickled_callable_is_refused_and_never_runs(tmp_path, marker, files, capsys):
    from fishcam.app.cli import main
    from fishcam.models.checkpoint import read_rfdetr_checkpoint

    head = {"class_embed.bias": torch.zeros(2)}
    in_args = tmp_path / "evil-args.pth"
    torch.save({"model": head, "args": {"class_names": ["fish"], "notes": Payload(marker)}}, in_args)
    in_namespace = tmp_path / "evil-namespace.pth"  # an allowed Namespace cannot carry one either
    torch.save({"model": head, "args": argparse.Namespace(class_names=Payload(marker))}, in_namespace)
    refused = r"holds pickled Python objects, not just tensors \(posix.system\)"
    for path in (in_args, in_namespace):
        with pytest.raises(UnsafeCheckpointError, match=refused):
            read_rfdetr_checkpoint(path)
    code = main(["run", str(SAMPLE), "--out", str(tmp_path / "out"), "--set", "detector.kind=rfdetr",
                 "--set", f"detector.weights={in_args}", "--set", "classify.enabled=false"])  # fmt: skip
    assert code == 3
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "Traceback" not in err and str(in_args) in errors[0], err
    assert "posix.system" in errors[0] and "fishcam refuses to run code from a model file" in errors[0]


def test_a_file_that_is_not_rfdetr_is_one_clear_line(tmp_path, convnext_checkpoint):
    with pytest.raises(ModelError, match=r"is not an RF-DETR detector checkpoint \(no 'model' weights"):
        detector(convnext_checkpoint)  # a state dict of tensors, but a ConvNeXt's
    with pytest.raises(ModelError, match=r"is an Ultralytics YOLO model \(it pickles ultralytics\.nn\.tasks\."
                       r"DetectionModel\), not an RF-DETR checkpoint: run it with detector.kind yolo"):
        detector(TEST_DETECTOR)  # an Ultralytics .pt pickles its layers: read, never unpickled
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ModelError, match="is not a readable PyTorch checkpoint"):
        detector(text)


def test_a_missing_package_says_what_to_install(tmp_path, monkeypatch, files, capsys):
    from fishcam.app.cli import main

    monkeypatch.setitem(sys.modules, "rfdetr", None)  # as if not installed: import and find_spec fail
    code = main(["run", str(SAMPLE), "--out", str(tmp_path / "out"), "--set", "detector.kind=rfdetr",
                 "--set", f"detector.weights={files['fish']}", "--set", "classify.enabled=false"])  # fmt: skip
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "ERROR" in line]
    assert errors == [
        "fishcam: ERROR: detector.kind rfdetr needs the rfdetr package, which is not installed here: "
        'pip install "fishcam[rfdetr]"'
    ]
