"""No model file runs code: crafted payloads in every kind of model file fishcam opens, on every
path that loads one. Each payload would create a marker file when unpickled; the marker must
never exist, and the refusal is one line naming the file, with exit code 3."""

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from builders import save_model_card_checkpoint, save_tiny_open_clip

from fishcam import runtime
from fishcam.app.cli import main
from fishcam.errors import ModelError, UnsafeCheckpointError
from fishcam.models.checkpoint import check_ultralytics_checkpoint

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
TEST_DETECTOR = ROOT / "samples" / "models" / "fish_yolov8n.pt"
SAMPLE = ROOT / "samples" / "fixed_sample.mp4"


class Payload:
    """Runs a shell command when unpickled (the classic pickle exploit)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class ExecPayload(Payload):
    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


class ConstructorCall:
    """Builds a real layer by calling its constructor with arguments from the file: not how
    torch.save stores a layer, and a way to make library code run on the file's terms."""

    def __reduce__(self):
        return (torch.nn.Identity, ("from the file",))


def evil_detectors(folder: Path, marker: Path) -> dict[str, Path]:
    """Real Ultralytics checkpoints with a payload hidden in each place one can go."""
    runtime.setup()  # unpickling the real one below imports Ultralytics: its settings in fishcam's folder
    folder.mkdir(parents=True, exist_ok=True)
    real = torch.load(TEST_DETECTOR, map_location="cpu", weights_only=False)
    variants = {
        "in train_args": {**real, "train_args": {**real["train_args"], "project": Payload(marker)}},
        "as the model": {**real, "model": Payload(marker)},
        "exec": {**real, "git": ExecPayload(marker)},
        "constructor": {**real, "ema": ConstructorCall()},
    }
    paths = {}
    for name, checkpoint in variants.items():
        path = folder / f"{name.replace(' ', '-')}.pt"
        torch.save(checkpoint, path)
        paths[name] = path
    legacy = folder / "legacy.pt"  # the pre-1.6 format: a bare pickle, no zip archive
    torch.save({**real, "git": Payload(marker)}, legacy, _use_new_zipfile_serialization=False)
    paths["legacy"] = legacy
    return paths


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a model file ran code"


def _one_line_error(capsys, path: Path) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "ERROR" in line]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    assert str(path) in errors[0]
    return errors[0]


def test_the_real_test_detector_passes_the_check():
    check_ultralytics_checkpoint(TEST_DETECTOR)


def test_every_crafted_detector_is_refused_without_running(tmp_path, marker):
    for name, path in evil_detectors(tmp_path / "evil", marker).items():
        with pytest.raises(UnsafeCheckpointError, match="holds pickled Python objects") as caught:
            check_ultralytics_checkpoint(path)
        assert str(path) in str(caught.value), name
        if name == "constructor":
            assert "constructor" in str(caught.value)


def test_damaged_detector_is_a_model_error(tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(TEST_DETECTOR.read_bytes()[:20000])
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        check_ultralytics_checkpoint(cut)


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_fishcam_run_refuses_a_crafted_detector(tmp_path, marker, capsys, backend):
    """The torch path, and the OpenVINO export (the default on CPU), which loads the .pt too."""
    evil = evil_detectors(tmp_path / "evil", marker)["in train_args"]
    code = main(["run", str(SAMPLE), "--out", str(tmp_path / "out"), "--set", f"detector.weights={evil}",
                 "--set", f"detector.backend={backend}", "--set", "classify.enabled=false"])  # fmt: skip
    assert code == 3
    assert "holds pickled Python objects" in _one_line_error(capsys, evil)
    exports = Path(os.environ["XDG_CACHE_HOME"]) / "fishcam" / "exports"
    assert not exports.exists() or not any(exports.rglob("model.pt")), "the file reached the export cache"


def test_several_cameras_refuse_a_crafted_detector_before_connecting(tmp_path, marker, capsys):
    evil = evil_detectors(tmp_path / "evil", marker)["exec"]
    code = main(["run", "a=rtsp://127.0.0.1:9/a", "b=rtsp://127.0.0.1:9/b", "--out", str(tmp_path / "out"),
                 "--set", f"detector.weights={evil}", "--set", "classify.enabled=false"])  # fmt: skip
    assert code == 3
    _one_line_error(capsys, evil)


def _batch_with(tmp_path: Path, evil: Path, *options: str) -> dict:
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copyfile(SAMPLE, videos / name)
    out = tmp_path / "batch"
    code = main(["batch", str(videos), "--out", str(out), *options,
                 "--set", f"detector.weights={evil}", "--set", "classify.enabled=false"])  # fmt: skip
    assert code != 0
    report = json.loads((out / "batch_report.json").read_text())
    assert len(report["failed"]) == 2 and not report["done"]
    assert all("holds pickled Python objects" in failure["error"] for failure in report["failed"])
    return report


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_batch_workers_refuse_a_crafted_detector(tmp_path, marker, workers):
    """In the batch process itself and in spawned worker processes; each video is reported."""
    _batch_with(tmp_path, evil_detectors(tmp_path / "evil", marker)["as the model"], "--workers", str(workers))


@pytest.mark.slow
def test_ray_actors_refuse_a_crafted_detector(tmp_path, marker, ray_cluster):
    _batch_with(tmp_path, evil_detectors(tmp_path / "evil", marker)["in train_args"], "--ray", ray_cluster)


def test_expert_checkpoints_and_manifests_refuse_payloads(tmp_path, marker, capsys):
    """fishcam classify through a crafted expert file and a manifest naming one."""
    image = ROOT / "tests" / "data" / "real-fish" / "kde_goldfish.png"
    evil = tmp_path / "evil.pth"
    torch.save({"classifier.2.weight": Payload(marker)}, evil)
    assert main(["classify", str(image), "--set", f"classify.expert.weights={evil}"]) == 3
    _one_line_error(capsys, evil)
    manifest = tmp_path / "expert.json"
    labels = [f"species {i}" for i in range(40)]
    manifest.write_text(
        json.dumps({"architecture": "torchvision:convnext_tiny", "weights": "evil.pth", "labels": labels})
    )
    assert main(["classify", str(image), "--set", f"classify.expert.weights={manifest}"]) == 3
    assert "holds pickled Python objects" in _one_line_error(capsys, evil)


def test_fallback_folders_refuse_pickles_and_missing_weights(tmp_path, marker, capsys, convnext_checkpoint):
    image = ROOT / "tests" / "data" / "real-fish" / "kde_goldfish.png"
    species = tmp_path / "species.txt"
    species.write_text("goldfish\nlionfish\n")
    expert = f"classify.expert.weights={convnext_checkpoint}"
    base = ["classify", str(image), "--species", str(species), "--set", expert,
            "--set", "classify.expert.threshold=1.0"]  # fmt: skip

    pickled = save_tiny_open_clip(tmp_path / "pickled")
    (pickled / "open_clip_model.safetensors").unlink()
    weights = pickled / "open_clip_pytorch_model.bin"
    torch.save({"visual.proj": Payload(marker)}, weights)
    assert main([*base, "--set", f"classify.fallback.model={pickled}"]) == 3
    assert "holds pickled Python objects" in _one_line_error(capsys, weights)

    # A config and no weights: open_clip would build a random model and only log a warning.
    empty = save_tiny_open_clip(tmp_path / "no-weights")
    (empty / "open_clip_model.safetensors").unlink()
    assert main([*base, "--set", f"classify.fallback.model={empty}"]) == 3
    assert "no weights" in _one_line_error(capsys, empty)


def test_fallback_local_dir_form_and_its_checksum(tmp_path, capsys, convnext_checkpoint):
    """open_clip's documented ``local-dir:`` form loads, and summary-style description hashes
    the weights' content."""
    import hashlib

    from fishcam.classify.species_list import read_species_list
    from fishcam.models.loading import load_fallback

    folder = save_tiny_open_clip(tmp_path / "tiny")
    species = tmp_path / "species.txt"
    species.write_text("goldfish\nlionfish\n")
    fallback = load_fallback(f"local-dir:{folder}", read_species_list(species), ["a photo of {}."], "cpu")
    described = fallback.describe()
    weights = folder / "open_clip_model.safetensors"
    assert described["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    # The loaded weights are the file's, not a random initialisation.
    from safetensors.torch import load_file

    saved = load_file(str(weights))
    assert torch.equal(fallback.loaded.network.state_dict()["visual.proj"], saved["visual.proj"])


def test_checksums_of_hugging_face_cache_files_come_from_their_content(tmp_path):
    from fishcam.models import hub

    blobs = tmp_path / "models--org--repo" / "blobs"
    blobs.mkdir(parents=True)
    content = b"not what the name says"
    blob = blobs / ("a" * 64)  # a blob named by a hash it does not have (damaged or replaced)
    blob.write_bytes(content)
    link = tmp_path / "best.pt"
    link.symlink_to(blob)
    import hashlib

    assert hub.sha256_file(link) == hashlib.sha256(content).hexdigest()


def test_training_resume_checkpoint_with_a_payload_is_refused(tmp_path, marker, capsys):
    from fishcam.train.trainer import load_checkpoint

    last = tmp_path / "last.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "history": Payload(marker)}, last)
    with pytest.raises(UnsafeCheckpointError, match="holds pickled Python objects"):
        load_checkpoint(last)
    with last.open("wb") as handle:  # a bare pickle, not torch.save's archive
        pickle.dump({"model": Payload(marker)}, handle)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(last)


def test_a_model_card_checkpoint_still_loads(tmp_path):
    """The refusals above do not refuse the published format."""
    from fishcam.models.checkpoint import load_state_dict

    state = load_state_dict(save_model_card_checkpoint(tmp_path / "ok.pth", num_classes=3))
    assert state["classifier.2.weight"].shape == (3, 768)
