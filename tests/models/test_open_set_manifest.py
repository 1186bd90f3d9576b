"""An expert's open-set calibration in its manifest: written and read back, its side file read as
tensors only (anything else refused in one line), and one log line at load saying whether the
check is on and, when it is off for want of a calibration, what to run."""

from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pytest
import torch
from builders import SAMPLES

from fishcam.app.compose import build_species_models, open_set_check
from fishcam.config import load_config
from fishcam.errors import ModelError
from fishcam.models import open_set
from fishcam.models.expert_spec import read_manifest
from fishcam.models.loading import load_expert
from fishcam.train.export import write_manifest, write_open_set

SAMPLE = SAMPLES / "models" / "sample-fish-expert.json"
FEATURES = 1280  # EfficientNet-Lite0's pooled features


def calibrated_sample(folder, threshold=0.4):
    """The sample expert's manifest with a calibration of random prototypes, in ``folder``."""
    raw = {k: v for k, v in json.loads(SAMPLE.read_text()).items() if k != "open_set"}
    raw["weights"] = str(SAMPLE.parent / raw["weights"])
    rng = np.random.default_rng(0)
    protos = open_set.build_prototypes(rng.normal(size=(14, FEATURES)), np.arange(14) % 7, classes=7)
    record = {"threshold": threshold, "keep": 0.95, "images": 20, "kept": 0.95, "guaranteed": True}
    raw["open_set"] = write_open_set(folder, "calibrated", protos, record)
    return write_manifest(folder / "calibrated.json", raw), protos


def test_a_calibration_round_trips_through_the_manifest_and_its_side_file(tmp_path):
    path, protos = calibrated_sample(tmp_path)
    raw = json.loads(path.read_text())
    assert raw["open_set"]["prototypes"] == "calibrated.open-set.safetensors"  # relative: the folder can move
    spec = read_manifest(path)
    assert spec.open_set.threshold == 0.4 and spec.open_set.keep == 0.95
    assert spec.open_set.prototypes == str(tmp_path / "calibrated.open-set.safetensors")
    back = open_set.read_prototypes(tmp_path / "calibrated.open-set.safetensors", 7, spec.open_set.sha256)
    np.testing.assert_array_equal(back.prototypes, protos.prototypes)
    expert = load_expert(spec, device="cpu")
    assert expert.open_set_threshold == 0.4 and expert.describe()["open_set_calibration"]["threshold"] == 0.4
    crop = np.zeros((60, 90, 3), np.uint8)
    scored = expert.predict_scored([crop, crop[:, ::-1]])
    np.testing.assert_allclose(scored.probs, expert.predict([crop, crop[:, ::-1]]), atol=1e-6)
    _, features = expert.features([crop])
    np.testing.assert_allclose(scored.open_set[:1], protos.scores(features), atol=1e-5)


def test_a_side_file_that_is_not_just_tensors_is_refused(tmp_path):
    path, _ = calibrated_sample(tmp_path)
    raw = json.loads(path.read_text())

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"prototypes": Payload()}, tmp_path / "evil.pth")
    (tmp_path / "fake.safetensors").write_bytes(pickle.dumps(Payload()))
    for name, message in [
        ("evil.pth", r"must be a \.safetensors file \(tensors only"),
        ("fake.safetensors", "not a readable safetensors file"),
    ]:
        bad = {**raw, "open_set": {**raw["open_set"], "prototypes": name, "sha256": None}}
        with pytest.raises(ModelError, match=message):
            load_expert(read_manifest(write_manifest(tmp_path / "bad.json", bad)), device="cpu")
    wrong = {**raw, "open_set": {**raw["open_set"], "sha256": "0" * 64}}
    with pytest.raises(ModelError, match="do not match the manifest's sha256"):
        load_expert(read_manifest(write_manifest(tmp_path / "bad.json", wrong)), device="cpu")
    with pytest.raises(ModelError, match="do not fit an expert with 6 labels"):  # another expert's prototypes
        open_set.read_prototypes(tmp_path / "calibrated.open-set.safetensors", 6)
    typo = {**raw, "open_set": {**raw["open_set"], "treshold": 0.3}}
    (tmp_path / "typo.json").write_text(json.dumps(typo))
    with pytest.raises(ModelError, match=r"unknown key 'open_set\.treshold' \(did you mean 'threshold'\?\)"):
        read_manifest(tmp_path / "typo.json")


def test_one_log_line_says_whether_the_check_is_on(tmp_path, convnext_checkpoint, caplog):
    caplog.set_level(logging.INFO, logger="fishcam.app.compose")
    species, described = build_species_models(load_config(None, [f"classify.expert.weights={convnext_checkpoint}"]))
    assert species.open_set_threshold is None and described["expert"]["open_set"]["check"] == "off"
    lines = [r.getMessage() for r in caplog.records if "open-set" in r.getMessage()]
    assert lines == [
        "open-set check off: no calibration in the manifest (balik_modeli_final.pth has no manifest); run "
        f"`{open_set.CALIBRATE_COMMAND}` to calibrate"
    ]
    with pytest.raises(ModelError, match=r"classify\.expert\.open_set=true, but no calibration in the manifest"):
        open_set_check(species.expert, True, str(convnext_checkpoint))

    path, _ = calibrated_sample(tmp_path, threshold=0.25)
    caplog.clear()
    species, described = build_species_models(load_config(None, [f"classify.expert.weights={path}"]))
    assert species.open_set_threshold == 0.25 and described["expert"]["open_set"] == {
        "check": "on", "threshold": 0.25, "keep": 0.95,
    }  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if "open-set" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("open-set check on")
    species, described = build_species_models(
        load_config(None, [f"classify.expert.weights={path}", "classify.expert.open_set=false"])
    )
    assert species.open_set_threshold is None and described["expert"]["open_set"]["check"] == "off"
