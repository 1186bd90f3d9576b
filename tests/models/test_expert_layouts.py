"""The published expert in either key layout: torchvision's convnext_tiny (``features.*``,
``classifier.*``) or timm's (``stem.*``, ``stages.*``, ``head.*``), found from the checkpoint's keys.

The timm checkpoint is the torchvision network's own weights renamed and reshaped here, so the two
files hold one network: a timm-layout and a torchvision-layout expert must give identical calls.
"""

from __future__ import annotations

import csv
import json
import logging

import cv2
import numpy as np
import pytest
import torch
from builders import REAL_FISH, SAMPLES

from fishcam.app.compose import build_species_models
from fishcam.config import load_config
from fishcam.errors import ModelError
from fishcam.models.expert_spec import PUBLISHED_LABELS, published_expert, read_manifest
from fishcam.models.loading import load_expert

pytestmark = pytest.mark.model

ACCEPTED = (  # the two layouts, as the error messages name them
    r"torchvision:convnext_tiny \(features\.\*, classifier\.\*\) or "
    r"timm:convnext_tiny \(stem\.\*, stages\.\*, head\.\*\)"
)


# ---- torchvision's convnext_tiny → timm's, by hand ---------------------------------------
#
# torchvision: features[0] is the stem (0 conv 4x4/4, 1 LayerNorm2d); features[1], [3], [5], [7]
# the four stages' blocks; features[2], [4], [6] the downsamples before stages 1-3 (0 LayerNorm2d,
# 1 conv 2x2/2); a block's ``block`` is (0 dwconv, 1 permute, 2 LayerNorm, 3 Linear, 4 GELU,
# 5 Linear, 6 permute) and its ``layer_scale`` is (C, 1, 1). classifier is (0 LayerNorm2d,
# 1 flatten, 2 Linear). timm: stem (0 conv, 1 norm); stages[i].downsample (0 norm, 1 conv) for
# i > 0 (stage 0 has none); stages[i].blocks[j] with conv_dw, norm, mlp.fc1, mlp.fc2 and ``gamma``
# of shape (C,); head.norm and head.fc.

BLOCK_PARTS = {"block.0": "conv_dw", "block.2": "norm", "block.3": "mlp.fc1", "block.5": "mlp.fc2"}


def timm_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision convnext_tiny state dict renamed to timm's convnext_tiny; every tensor used."""
    renamed: dict[str, tuple[str, torch.Tensor]] = {}  # timm name -> (torchvision name, tensor)

    def take(source: str, target: str) -> None:  # a conv, norm or linear layer: same shapes
        for kind in ("weight", "bias"):
            if f"{source}.{kind}" in state:
                renamed[f"{target}.{kind}"] = (f"{source}.{kind}", state[f"{source}.{kind}"])

    take("features.0.0", "stem.0")
    take("features.0.1", "stem.1")
    for stage in range(4):
        blocks = 2 * stage + 1
        if stage > 0:
            take(f"features.{blocks - 1}.0", f"stages.{stage}.downsample.0")
            take(f"features.{blocks - 1}.1", f"stages.{stage}.downsample.1")
        index = 0
        while f"features.{blocks}.{index}.layer_scale" in state:
            source, target = f"features.{blocks}.{index}", f"stages.{stage}.blocks.{index}"
            for part, name in BLOCK_PARTS.items():
                take(f"{source}.{part}", f"{target}.{name}")
            scale = state[f"{source}.layer_scale"]
            renamed[f"{target}.gamma"] = (f"{source}.layer_scale", scale.reshape(scale.shape[0]))
            index += 1
    take("classifier.0", "head.norm")
    take("classifier.2", "head.fc")
    used = {source for source, _ in renamed.values()}
    assert used == set(state), f"not renamed: {sorted(set(state) - used)[:5]}"
    return {name: tensor.clone() for name, (_, tensor) in renamed.items()}


def torchvision_network(num_classes: int = 40) -> torch.nn.Module:
    """convnext_tiny with seeded random weights that all matter: with its initial layer scales
    (1e-6) the blocks would add almost nothing, and a block renamed wrong could go unseen."""
    import torchvision

    torch.manual_seed(0)
    network = torchvision.models.convnext_tiny(weights=None, num_classes=num_classes)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("layer_scale"):
                parameter.copy_(0.3 + 0.2 * noise.abs())
            elif parameter.ndim == 1 and name.endswith("weight"):  # LayerNorm scales
                parameter.copy_(1 + 0.2 * noise)
            elif name.endswith("bias"):
                parameter.copy_(0.05 * noise)
    return network.eval()


def timm_network(num_classes: int = 40) -> torch.nn.Module:
    import timm

    return timm.create_model("convnext_tiny", pretrained=False, num_classes=num_classes).eval()


@pytest.fixture(scope="module")
def networks():
    """(the torchvision network, its state dict, the same weights in timm's layout)."""
    network = torchvision_network()
    state = {name: tensor.detach().clone() for name, tensor in network.state_dict().items()}
    return network, state, timm_layout(state)


@pytest.fixture(scope="module")
def checkpoints(networks, tmp_path_factory):
    """Plain state-dict files, as torch.save(model.state_dict()) writes them."""
    _, state, timm_state = networks
    folder = tmp_path_factory.mktemp("layouts")
    files = {
        "torchvision": state,
        "timm": timm_state,
        "timm-dataparallel": {f"module.{name}": tensor for name, tensor in timm_state.items()},
    }
    for name, tensors in files.items():
        torch.save(tensors, folder / f"{name}.pth")
    return {name: folder / f"{name}.pth" for name in files}


@pytest.fixture(scope="module")
def crops():
    """Real fish photos and the sample dive's fish in its first frame, cut at their true boxes."""
    images = [cv2.imread(str(REAL_FISH / name)) for name in ("kde_goldfish.png", "goby_lionfish.jpg",
                                                             "gnome_clownfish.jpg")]  # fmt: skip
    capture = cv2.VideoCapture(str(SAMPLES / "dive_sample.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok
    with (SAMPLES / "dive_sample.gt.csv").open() as handle:
        boxes = [row for row in csv.DictReader(handle) if row["frame"] == "0"]
    for row in boxes[:3]:
        x1, y1, x2, y2 = (int(row[key]) for key in ("x1", "y1", "x2", "y2"))
        images.append(frame[y1:y2, x1:x2])
    assert all(image is not None and image.size for image in images)
    return images


def test_the_timm_layout_is_the_same_network(networks):
    """The renaming itself, before fishcam: both libraries' networks give the same logits, and
    the comparison sees a renaming that puts two blocks' weights in each other's place."""
    network, _, timm_state = networks
    timm_model = timm_network()
    timm_model.load_state_dict(timm_state, strict=True)
    batch = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected, got = network(batch), timm_model(batch)
        assert expected.std() > 0.1  # logits that differ by crop: a real comparison
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        swapped = dict(timm_state)
        for kind in ("weight", "bias"):
            first, second = f"stages.2.blocks.0.mlp.fc1.{kind}", f"stages.2.blocks.1.mlp.fc1.{kind}"
            swapped[first], swapped[second] = timm_state[second], timm_state[first]
        timm_model.load_state_dict(swapped, strict=True)
        assert (timm_model(batch) - expected).abs().max() > 1e-2


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def experts(checkpoints):
    """Each file loaded once as the published expert, with the log lines its loading wrote."""
    logger = logging.getLogger("fishcam.models.architectures")
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        loaded = {}
        for name, path in checkpoints.items():
            start = len(handler.lines)
            loaded[name] = load_expert(published_expert(str(path)), device="cpu")
            loaded[name].log_lines = handler.lines[start:]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return loaded


@pytest.mark.parametrize("timm_file", ["timm", "timm-dataparallel"])
def test_a_timm_layout_and_a_torchvision_layout_expert_give_identical_calls(experts, crops, timm_file):
    torchvision_expert, timm_expert = experts["torchvision"], experts[timm_file]
    assert type(torchvision_expert.loaded.network).__module__.startswith("torchvision.")
    assert type(timm_expert.loaded.network).__module__.startswith("timm.")
    assert timm_expert.labels == torchvision_expert.labels == PUBLISHED_LABELS
    expected, got = torchvision_expert.predict(crops), timm_expert.predict(crops)
    assert expected.shape == got.shape == (len(crops), 40)
    assert expected.max(axis=1).min() < 0.99  # not saturated: the scores are compared, not only 0 and 1
    assert list(got.argmax(axis=1)) == list(expected.argmax(axis=1))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_one_log_line_says_which_layout_was_found(experts, checkpoints):
    assert experts["torchvision"].describe()["architecture"] == "torchvision:convnext_tiny"
    assert experts["torchvision"].log_lines == [
        f"expert checkpoint {checkpoints['torchvision']} has the key layout of torchvision:convnext_tiny "
        "(features.*, classifier.*): running torchvision:convnext_tiny"
    ]
    for name in ("timm", "timm-dataparallel"):
        assert experts[name].describe()["architecture"] == "timm:convnext_tiny"
        assert experts[name].log_lines == [
            f"expert checkpoint {checkpoints[name]} has the key layout of timm:convnext_tiny "
            "(stem.*, stages.*, head.*): running timm:convnext_tiny"
        ]


def test_the_run_summary_says_which_architecture_ran(checkpoints):
    """The path ``fishcam run`` takes: the config's expert weights, the summary's description."""
    species, described = build_species_models(load_config(None, [f"classify.expert.weights={checkpoints['timm']}"]))
    assert described["expert"]["architecture"] == species.expert.spec.architecture == "timm:convnext_tiny"
    assert described["expert"]["name"] == "convnext-fish-40" and described["expert"]["labels"] == 40


def test_both_layouts_give_the_open_set_features(experts, crops):
    """The head's input (pooled, normalised) is read from either network, and is the same."""
    pair = [experts["torchvision"], experts["timm"]]
    assert all(expert.loaded.features is not None for expert in pair)
    (probs_tv, features_tv), (probs_timm, features_timm) = (expert.features(crops) for expert in pair)
    assert features_tv.shape == features_timm.shape == (len(crops), 768)
    np.testing.assert_allclose(features_timm, features_tv, rtol=0, atol=1e-3)
    np.testing.assert_allclose(probs_timm, probs_tv, rtol=0, atol=1e-4)


def one_line_error(path, match):
    with pytest.raises(ModelError, match=match) as caught:
        load_expert(published_expert(str(path)), device="cpu")
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("torchvision", r"does not fit torchvision:convnext_tiny with 40 labels: classifier\.2\.weight \(10, 768\) "
                        r"vs \(40, 768\); classifier\.2\.bias \(10,\) vs \(40,\) .*check classifier\.2 and the label"),
        ("timm", r"does not fit timm:convnext_tiny with 40 labels: head\.fc\.weight \(10, 768\) vs \(40, 768\); "
                 r"head\.fc\.bias \(10,\) vs \(40,\) .*check head\.fc and the label list"),
    ],
)  # fmt: skip
def test_a_wrong_head_size_names_the_key_and_both_shapes_in_each_layout(networks, tmp_path, layout, message):
    _, state, timm_state = networks
    head = "classifier.2" if layout == "torchvision" else "head.fc"
    ten = dict(state if layout == "torchvision" else timm_state)
    ten[f"{head}.weight"], ten[f"{head}.bias"] = ten[f"{head}.weight"][:10], ten[f"{head}.bias"][:10]
    torch.save(ten, tmp_path / "ten.pth")
    one_line_error(tmp_path / "ten.pth", rf"^checkpoint {tmp_path / 'ten.pth'} {message}")


def test_another_network_says_which_layouts_are_accepted(networks, tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet.pth")
    one_line_error(
        tmp_path / "resnet.pth",
        rf"^checkpoint {tmp_path / 'resnet.pth'} is in neither key layout the convnext-fish-40 expert accepts, "
        rf"{ACCEPTED}: its keys start with bn1\.\*, conv1\.\*, fc\.\*, layer1\.\*, layer2\.\*, layer3\.\*…$",
    )
    _, state, timm_state = networks
    torch.save({**state, **timm_state}, tmp_path / "both.pth")  # keys of both layouts: neither
    one_line_error(tmp_path / "both.pth", r"is in neither key layout .*: its keys start with classifier\.\*, "
                                          r"features\.\*, head\.\*, stages\.\*, stem\.\*$")  # fmt: skip
    # torchvision's names, another network's shapes (not the head's): not "a wrong head size"
    other = {**state, "features.0.0.weight": torch.zeros(32, 3, 3, 3)}
    torch.save(other, tmp_path / "other.pth")
    one_line_error(tmp_path / "other.pth", rf"is not a torchvision:convnext_tiny state dict: features\.0\.0\.weight "
                                           rf"\(32, 3, 3, 3\) vs \(96, 3, 4, 4\) \(the convnext-fish-40 expert "
                                           rf"accepts {ACCEPTED}\)$")  # fmt: skip
    # timm's names with a stage missing
    partial = {name: tensor for name, tensor in timm_state.items() if not name.startswith("stages.3.")}
    torch.save(partial, tmp_path / "partial.pth")
    one_line_error(
        tmp_path / "partial.pth",
        r"is not a timm:convnext_tiny state dict: missing \['stages\.3\."
        rf".*unexpected \[\] \(the convnext-fish-40 expert accepts {ACCEPTED}\)$",
    )


def write_manifest(folder, architecture, weights):
    path = folder / f"{architecture.replace(':', '-')}.json"
    head = {"head": "classifier.2"} if architecture.startswith("torchvision:") else {}
    path.write_text(json.dumps({"architecture": architecture, "weights": str(weights),
                                "labels": list(PUBLISHED_LABELS), **head}))  # fmt: skip
    return path


def test_a_manifest_names_its_architecture_and_gets_no_layout_detection(experts, checkpoints, crops, tmp_path,
                                                                        caplog):  # fmt: skip
    caplog.set_level(logging.INFO, logger="fishcam.models.architectures")
    timm_manifest = write_manifest(tmp_path, "timm:convnext_tiny", checkpoints["timm"])
    expert = load_expert(read_manifest(timm_manifest), device="cpu")
    assert expert.describe()["architecture"] == "timm:convnext_tiny" and expert.loaded.features is not None
    np.testing.assert_allclose(expert.predict(crops), experts["torchvision"].predict(crops), rtol=0, atol=1e-4)
    assert not [r.getMessage() for r in caplog.records if "key layout" in r.getMessage()]
    # A manifest naming torchvision's architecture for timm's keys is told what they look like.
    wrong = write_manifest(tmp_path, "torchvision:convnext_tiny", checkpoints["timm"])
    with pytest.raises(ModelError, match=r"is not a torchvision:convnext_tiny state dict: missing .* \(its keys look "
                                         r"like timm:convnext_tiny \(stem\.\*, stages\.\*, head\.\*\): name "
                                         r"architecture timm:convnext_tiny in the manifest\)$") as caught:  # fmt: skip
        load_expert(read_manifest(wrong), device="cpu")
    assert "\n" not in str(caught.value)


def test_calibrating_a_timm_layout_file_writes_a_manifest_that_loads_it(checkpoints, tmp_path):
    """The manifest names the architecture the weights were read as: a timm-layout published
    file calibrated gives a manifest of timm's convnext_tiny, which loads the same file again."""
    from fishcam.train.calibrate import calibrate_expert

    data = tmp_path / "crops"
    photos = [cv2.imread(str(REAL_FISH / name)) for name in ("kde_goldfish.png", "goby_lionfish.jpg",
                                                             "gnome_clownfish.jpg")]  # fmt: skip
    for label in PUBLISHED_LABELS[:2]:
        (data / label).mkdir(parents=True)
        for i, photo in enumerate(photos * 2):
            cv2.imwrite(str(data / label / f"{i}.png"), cv2.resize(np.roll(photo, 7 * i, axis=1), (160, 120)))
    result = calibrate_expert(data, str(checkpoints["timm"]), tmp_path / "out", device="cpu", val_fraction=0.5)
    manifest = json.loads(result.manifest.read_text())
    assert (manifest["architecture"], manifest["head"]) == ("timm:convnext_tiny", "head.fc")
    again = load_expert(read_manifest(result.manifest), device="cpu")
    assert again.spec.architecture == "timm:convnext_tiny" and len(again.labels) == 40
