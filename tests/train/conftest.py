"""Training tests: a small real-imagery dataset and one trained EfficientNet-Lite0 expert shared
by the tests that only read its outputs (training is the slow part)."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import ROOT, efficientnet_lite0_weights
from fish_dataset import make_dataset

from fishcam.train.config import TrainConfig, load_train_config

U2NET_HOME = ROOT / ".cache" / "u2net"
SPECIES = ["bluegroper", "clownfish", "lionfish", "moonwrasse"]


@pytest.fixture(scope="session")
def u2net_home() -> Path:
    if not (U2NET_HOME / "u2netp.onnx").is_file():
        pytest.fail(f"{U2NET_HOME / 'u2netp.onnx'} is missing: run scripts/setup --test (it extracts it, once)")
    return U2NET_HOME


@pytest.fixture(scope="session")
def fish_data(tmp_path_factory) -> Path:
    """4 species x 20 real cut-outs on real footage, 80x80 (10 train / 5 val / 5 test each)."""
    return make_dataset(tmp_path_factory.mktemp("fish-data"), SPECIES, per_class=20, size=80)


def effnet_config(u2net_home: Path, mask_cache: Path, *overrides: str) -> TrainConfig:
    """The real ImageNet EfficientNet-Lite0 fine-tuned at 96 px for a few epochs (seconds on CPU)."""
    return load_train_config(
        None,
        [
            "model.architecture=timm:tf_efficientnet_lite0",
            f"model.pretrained={efficientnet_lite0_weights()}",
            "model.pretrained_key_match=order",
            "preprocess.size=96",
            "preprocess.mean=[0.5,0.5,0.5]",
            "preprocess.std=[0.5,0.5,0.5]",
            "balance.min_per_class=16",
            f"balance.rembg.home={u2net_home}",
            f"balance.rembg.cache_dir={mask_cache}",
            "data.val_fraction=0.25",
            "data.test_fraction=0.25",
            "batch_size=16",
            "stage1.epochs=2",
            "stage2.epochs=2",
            "stage2.backbone_lr=1e-4",
            "stage2.head_lr=1e-3",
            "stage2.freeze_batchnorm=true",
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def mask_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rembg-masks")


@pytest.fixture(scope="session")
def trained(fish_data, u2net_home, mask_cache, tmp_path_factory):
    from fishcam.train.trainer import train

    out = tmp_path_factory.mktemp("trained")
    result = train(fish_data, out, effnet_config(u2net_home, mask_cache), show_progress=False)
    return out, result
