"""The published checkpoint's format, DataParallel prefixes, wrong heads and unsafe pickles."""

import pickle

import numpy as np
import pytest
import torch
from builders import REAL_FISH, save_model_card_checkpoint

from fishcam.errors import ModelError, UnsafeCheckpointError
from fishcam.models.checkpoint import load_state_dict
from fishcam.models.expert_spec import PUBLISHED_LABELS, expert_spec_for
from fishcam.models.loading import load_expert

pytestmark = pytest.mark.model


def test_model_card_checkpoint_loads_and_classifies_a_batch(convnext_checkpoint):
    import cv2

    expert = load_expert(expert_spec_for(str(convnext_checkpoint)), device="cpu")
    assert expert.labels == PUBLISHED_LABELS and len(expert.labels) == 40
    assert expert.labels[15] == "Hourse Mackerel" and expert.labels[20] == "KnifeFish"
    crops = [cv2.imread(str(REAL_FISH / "kde_goldfish.png")), cv2.imread(str(REAL_FISH / "goby_lionfish.jpg"))]
    probs = expert.predict([*crops, crops[0][:50, :80]])
    assert probs.shape == (3, 40)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # The weights in the file are the weights in the model.
    saved = torch.load(convnext_checkpoint, weights_only=True)
    assert torch.equal(expert.loaded.network.state_dict()["classifier.2.weight"], saved["classifier.2.weight"])


def test_dataparallel_prefix_is_accepted(tmp_path, convnext_checkpoint):
    path = save_model_card_checkpoint(tmp_path / "dp.pth", prefix="module.")
    state = load_state_dict(path)
    assert "classifier.2.bias" in state and not any(k.startswith("module.") for k in state)
    load_expert(expert_spec_for(str(path)), device="cpu")


def test_wrong_head_size_names_the_keys(tmp_path):
    path = save_model_card_checkpoint(tmp_path / "ten.pth", num_classes=10)
    with pytest.raises(ModelError, match=r"classifier\.2\.weight \(10, 768\) vs \(40, 768\)"):
        load_expert(expert_spec_for(str(path)), device="cpu")


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Payload.marker}",))


def test_pickled_objects_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    _Payload.marker = marker
    path = tmp_path / "evil.pth"
    with path.open("wb") as handle:
        pickle.dump({"classifier.2.weight": _Payload()}, handle)
    torch.save({"model": _Payload()}, tmp_path / "evil2.pth")
    for bad in (path, tmp_path / "evil2.pth"):
        with pytest.raises(UnsafeCheckpointError, match="pickled Python objects"):
            load_state_dict(bad)
    assert not marker.exists()


def test_not_a_checkpoint_and_not_a_state_dict(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        load_state_dict(junk)
    lone = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), lone)
    with pytest.raises(ModelError, match="does not hold a state dict"):
        load_state_dict(lone)


def test_safetensors_and_checksum(tmp_path, convnext_checkpoint):
    import json

    from safetensors.torch import save_file

    state = torch.load(convnext_checkpoint, weights_only=True)
    st = tmp_path / "expert.safetensors"
    save_file(state, str(st))
    manifest = tmp_path / "expert.json"
    manifest.write_text(json.dumps({
        "architecture": "torchvision:convnext_tiny", "head": "classifier.2", "weights": st.name,
        "labels": list(PUBLISHED_LABELS), "sha256": "0" * 64,
    }))  # fmt: skip
    with pytest.raises(ModelError, match="sha256"):
        load_expert(expert_spec_for(str(manifest)), device="cpu")
