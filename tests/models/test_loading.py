"""Loading apart from the adapters: manifests, the cache folder, backends, process settings."""

import json
import subprocess
import sys

import numpy as np
import pytest
from builders import REAL_FISH

from fishcam.errors import ModelError
from fishcam.models.devices import AS_GIVEN, detector_backend, expert_backend
from fishcam.models.expert_spec import PUBLISHED_LABELS, expert_spec_for, expert_weights, read_manifest
from fishcam.models.paths import cache_dir

BASE = {"architecture": "timm:tf_efficientnet_lite0", "weights": "w.pth", "labels": ["a", "b"]}


def manifest(tmp_path, name="expert.json", **changes):
    data = {**BASE, **changes}
    path = tmp_path / name
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not None}))
    return path


def test_manifests_accepted_as_before(tmp_path):
    (tmp_path / "labels.txt").write_text("\ufeffgoby\n\nlionfish\n", encoding="utf-8")
    spec = read_manifest(manifest(
        tmp_path, labels=None, labels_file="labels.txt", key_match="order", fallback_threshold=0.7,
        metrics={"macro_f1": 0.9},
        preprocess={"size": 64, "mean": 0.5, "std": [0.2, 0.2, 0.2], "resize": "center_crop"},
    ))  # fmt: skip
    assert spec.name == "expert" and spec.labels == ("goby", "lionfish") and spec.key_match == "order"
    assert spec.weights == str(tmp_path / "w.pth")
    assert spec.preprocess.size == (64, 64) and spec.preprocess.mean == (0.5, 0.5, 0.5)
    assert spec.extra == {"fallback_threshold": 0.7, "metrics": {"macro_f1": 0.9}}
    yaml_file = tmp_path / "expert.yaml"
    yaml_file.write_text("architecture: torchvision:convnext_tiny\nweights: hf://org/repo/w.pth\nlabels: [1, 2]\n")
    spec = read_manifest(yaml_file)
    assert spec.labels == ("1", "2") and spec.weights == "hf://org/repo/w.pth" and spec.extra == {}
    assert expert_weights(str(yaml_file)) == "hf://org/repo/w.pth" and expert_weights("w.pth") == "w.pth"
    assert expert_spec_for("w.pth").labels == PUBLISHED_LABELS


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lables": ["a"]}, r"unknown key 'lables' \(did you mean 'labels'\?\)"),
        ({"preprocess": {"sise": 3}}, r"unknown key 'preprocess\.sise' \(did you mean 'size'\?\)"),
        ({"architecture": None}, r"missing 'architecture'"),
        ({"architecture": "keras:x"}, r"architecture: must be torchvision:<name> or timm:<name> \(got 'keras:x'\)"),
        ({"preprocess": {"color": "rgb"}}, r"preprocess\.color: Input should be 'RGB' or 'BGR' \(got 'rgb'\)"),
        ({"key_match": "names"}, r"key_match: Input should be 'name' or 'order'"),
        ({"fallback_threshold": 2}, r"fallback_threshold: Input should be less than or equal to 1"),
        ({"labels": []}, r"give 'labels' or 'labels_file'"),
        ({"labels": ["a", "a"]}, r"labels repeated: \['a'\]"),
        ({"labels": None, "labels_file": "none.txt"}, r"labels_file .*none\.txt cannot be read"),
    ],
)
def test_a_bad_manifest_is_one_line_naming_the_file_and_key(tmp_path, changes, message):
    path = manifest(tmp_path, **changes)
    with pytest.raises(ModelError, match=rf"^expert manifest {path}: {message}") as caught:
        read_manifest(path)
    assert "\n" not in str(caught.value)


def test_a_manifest_that_is_no_mapping_or_no_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ModelError, match="must be a mapping"):
        read_manifest(path)
    with pytest.raises(ModelError, match="expert manifest not found"):
        read_manifest(tmp_path / "none.json")


def test_one_cache_folder_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "fishcam" and cache_dir("exports") == tmp_path / "fishcam" / "exports"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty is unset (XDG)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("text-embeddings") == tmp_path / "home" / ".cache" / "fishcam" / "text-embeddings"


def test_each_backend_choice_decides_for_its_own_model():
    assert detector_backend("torch", "cpu", ".pt") == "torch"
    assert detector_backend("auto", "cpu", ".onnx") == detector_backend("openvino", "cpu", "") == AS_GIVEN
    assert detector_backend("auto", "cpu", ".pt") in {"openvino", "torch"}
    assert expert_backend("auto") == "torch" and expert_backend("openvino") == "openvino"


def test_importing_fishcam_changes_nothing_in_the_process():
    script = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import fishcam, fishcam.models.loading, fishcam.runtime, fishcam.app.cli\n"
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())\n"
        "assert 'torch' not in sys.modules\n"
        "fishcam.runtime.setup()\n"
        "assert os.environ['OMP_WAIT_POLICY'] == 'PASSIVE' and os.environ['YOLO_OFFLINE'] == '1'\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.model
def test_an_expert_adapter_only_adapts_the_network_it_is_given(convnext_checkpoint):
    import cv2

    from fishcam.classify.expert import ExpertClassifier
    from fishcam.models.loading import load_expert, load_expert_network

    spec = expert_spec_for(str(convnext_checkpoint))
    crops = [cv2.imread(str(REAL_FISH / "kde_goldfish.png"))]
    loaded = load_expert(spec, device="cpu", batch_size=4)
    network = load_expert_network(spec, "cpu", "fp32", "torch")
    adapted = ExpertClassifier(network, batch_size=4)
    assert adapted.loaded is network and adapted.describe() == loaded.describe()
    assert np.array_equal(adapted.predict(crops), loaded.predict(crops))
