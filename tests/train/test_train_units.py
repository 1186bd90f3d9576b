"""Data discovery, splits, balancing, metrics, threshold, rembg and bad input: fast tests."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from builders import SAMPLES
from fish_dataset import backgrounds, composite

from fishcam.app.cli import main
from fishcam.errors import ConfigError, DatasetError, MissingModelError, TrainingError
from fishcam.train import balance
from fishcam.train.config import DataConfig, RembgConfig, TrainConfig, load_train_config
from fishcam.train.data import Sample, load_splits
from fishcam.train.evaluate import classification_metrics, fallback_threshold


def _folder(root, counts: dict[str, int], size=16):
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / label / f"{i}.png"), np.full((size, size, 3), 40 * i % 255, np.uint8))
    return root


def test_configs_train_yaml_is_the_recipe_and_typos_are_named():
    cfg = load_train_config("configs/train.yaml")
    assert cfg == TrainConfig()
    assert (cfg.stage1.epochs, cfg.stage1.lr, cfg.stage2.backbone_lr, cfg.stage2.head_lr) == (6, 1e-3, 1e-5, 1e-4)
    assert (cfg.balance.min_per_class, cfg.balance.max_per_class, cfg.balance.rembg.probability) == (250, 500, 0.25)
    assert load_train_config(None, ["stage2.epochs=3"]).stage2.epochs == 3
    with pytest.raises(ConfigError, match=r"unknown key 'stage1.lrr' \(did you mean 'lr'\?\)"):
        load_train_config(None, ["stage1.lrr=0.1"])


def test_stratified_split_is_seeded_and_reports_bad_input(tmp_path):
    root = _folder(tmp_path / "d", {"a": 20, "b": 10, "one": 1})
    (root / "empty").mkdir()
    (root / "a" / "corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    splits = load_splits(root, DataConfig(), seed=3)
    assert splits.labels == ("a", "b", "one")
    report = splits.report()
    assert report["counts"]["a"] == {"train": 14, "val": 3, "test": 3}
    assert report["counts"]["b"] == {"train": 6, "val": 2, "test": 2}  # stratified: every class in every split
    assert report["counts"]["one"] == {"train": 1, "val": 0, "test": 0}
    assert [s["reason"] for s in report["skipped"]] == ["unreadable"]
    assert report["empty_classes"] == ["empty"]
    assert any("'one' has 1 image" in w for w in report["warnings"])
    again = load_splits(root, DataConfig(), seed=3)
    assert again.val == splits.val and load_splits(root, DataConfig(), seed=4).val != splits.val


def test_csv_and_given_splits_and_disagreeing_label_sets(tmp_path):
    _folder(tmp_path / "imgs", {"a": 3, "b": 3})
    rows = ["path,label,split"] + [
        f"imgs/{c}/{i}.png,{c},{s}" for c in "ab" for i, s in enumerate(["train", "val", "test"])
    ]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    splits = load_splits(tmp_path / "data.csv", DataConfig(), seed=0)
    assert splits.given and [len(splits.split(n)) for n in ("train", "val", "test")] == [2, 2, 2]

    _folder(tmp_path / "given" / "train", {"a": 2, "b": 2})
    _folder(tmp_path / "given" / "val", {"a": 1, "c": 1})
    with pytest.raises(DatasetError, match="label sets disagree: val has classes that train lacks: c"):
        load_splits(tmp_path / "given", DataConfig(), seed=0)
    with pytest.raises(DatasetError, match="at least two classes"):
        load_splits(_folder(tmp_path / "single", {"a": 5}), DataConfig(), seed=0)


def test_balance_upsamples_small_classes_and_caps_large_ones():
    train = [Sample(f"a{i}", "a") for i in range(3)] + [Sample(f"b{i}", "b") for i in range(40)]
    cfg = TrainConfig(balance={"min_per_class": 10, "max_per_class": 25}).balance
    plans = balance.plan(train, ("a", "b"), cfg)
    assert [(p.per_epoch, p.action) for p in plans] == [(10, "up-sampled"), (25, "capped")]
    report = balance.balance_report(plans)
    assert report["before"]["imbalance"] == pytest.approx(40 / 3) and report["after"]["imbalance"] == 2.5
    epoch0 = balance.epoch_indices(train, plans, seed=0, epoch=0)
    labels = [train[i].label for i in epoch0]
    assert labels.count("a") == 10 and labels.count("b") == 25
    assert set(range(3)) <= set(epoch0)  # every image of a small class, then repeats
    assert epoch0 == balance.epoch_indices(train, plans, seed=0, epoch=0)
    assert epoch0 != balance.epoch_indices(train, plans, seed=0, epoch=1)  # a capped class is re-drawn


def test_augment_keeps_a_valid_image():
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    out = balance.augment(image, TrainConfig().balance.augment, np.random.default_rng(1))
    assert out.dtype == np.uint8 and out.ndim == 3 and min(out.shape[:2]) >= 32


def test_metrics_from_literal_predictions():
    m = classification_metrics(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0]), ["x", "y", "z", "w"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    rows = {r["label"]: r for r in m["per_class"]}
    assert rows["y"]["precision"] == pytest.approx(2 / 3) and rows["y"]["recall"] == 1.0
    assert rows["z"]["f1"] == pytest.approx(2 / 3) and "w" not in rows  # never true, never predicted
    assert m["macro_recall"] == pytest.approx((0.5 + 1 + 0.5) / 3) and m["classes_evaluated"] == 3
    assert m["confusion"][0] == [1, 1, 0, 0]


def test_fallback_threshold_is_where_accepted_calls_reach_the_target():
    scores = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    correct = np.array([1, 1, 1, 1, 1, 0, 1, 0], bool)
    result = fallback_threshold(scores, correct, target_accuracy=0.85)
    assert result["threshold"] == 0.5 and result["coverage"] == 7 / 8  # 6/7 = 0.857 kept right
    assert fallback_threshold(scores, correct, 1.0)["threshold"] == 0.7
    assert fallback_threshold(scores, ~correct, 0.9)["coverage"] == 0.0


def test_rembg_masks_a_real_fish_once_and_caches_it(u2net_home, tmp_path):
    cutout = cv2.imread(str(SAMPLES / "assets" / "fish-cutouts" / "lionfish.png"), cv2.IMREAD_UNCHANGED)
    rng = np.random.default_rng(0)
    scene = backgrounds(count=2)[0]
    image = composite(cutout, scene, 160, rng)
    path = tmp_path / "fish.png"
    cv2.imwrite(str(path), image)
    remover = balance.BackgroundRemover(RembgConfig(home=str(u2net_home), cache_dir=str(tmp_path / "masks")))
    mask = remover.mask(path, image)
    assert mask.shape == image.shape[:2] and remover.computed == 1
    # The fish is foreground; the image corner (open water or rock) is background.
    assert (mask > 128).sum() > 200 and mask[:8, :8].mean() < 64
    again = balance.BackgroundRemover(RembgConfig(home=str(u2net_home), cache_dir=str(tmp_path / "masks")))
    np.testing.assert_array_equal(again.mask(path, image), mask)
    assert again.computed == 0  # read from the cache, not recomputed
    removed = again.remove(path, image)
    assert removed[mask == 0].max(initial=0) == 0


def test_missing_rembg_model_names_the_setup_command(tmp_path):
    with pytest.raises(MissingModelError, match="scripts/setup --test"):
        balance.BackgroundRemover(RembgConfig(home=str(tmp_path)))


def test_out_of_memory_becomes_batch_size_advice():
    from fishcam.train.loop import guard_memory

    with pytest.raises(TrainingError, match="try --set batch_size=16"), guard_memory(TrainConfig()):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_failing_training_exits_non_zero(tmp_path):
    data = _folder(tmp_path / "d", {"only": 4})
    assert main(["train", str(data), "--out", str(tmp_path / "o"), "-q"]) == 5
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "-q"]) == 5
    assert main(["train", str(data), "--out", str(tmp_path / "o"), "-q", "--set", "stage1.lrr=1"]) == 2
    assert main(["train", str(data), "--out", str(tmp_path / "o2"), "-q", "--resume"]) == 5
