"""End-to-end training on real imagery with real ImageNet weights: accuracy, the two stages,
resume, export into fishcam run / classify / eval, the published format."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch
import torchvision
from builders import SAMPLES
from conftest import effnet_config
from fish_dataset import make_dataset

from fishcam.app.cli import main
from fishcam.models.expert_spec import read_manifest
from fishcam.train.trainer import train

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_trains_end_to_end_well_above_chance(trained):
    out, result = trained
    assert result.test["split"] == "test" and result.test["images"] == 20
    assert result.test["accuracy"] >= 0.8  # chance is 0.25
    assert result.test["macro_f1"] >= 0.8
    for name in ("data_report.json", "balance_report.json", "splits.csv", "history.csv", "config.yaml",
                 "eval/metrics.json", "eval/report.md", "eval/confusion.png", "eval/predictions.csv",
                 "expert/fish-expert.pth", "expert/fish-expert.safetensors", "expert/labels.txt"):  # fmt: skip
        assert (out / name).is_file(), name
    balance = json.loads((out / "balance_report.json").read_text())
    assert balance["classes"]["lionfish"] == {"before": 10, "after": 16, "action": "up-sampled"}
    report = (out / "eval" / "report.md").read_text()
    assert "| class | precision | recall | f1-score | support |" in report and "| lionfish |" in report
    spec = read_manifest(result.manifest)
    assert spec.labels == ("bluegroper", "clownfish", "lionfish", "moonwrasse")
    assert spec.preprocess.size == (96, 96) and spec.preprocess.mean == (0.5, 0.5, 0.5)
    assert spec.extra["metrics"]["accuracy"] == result.test["accuracy"]
    assert spec.extra["training"]["config"]["stage1"]["epochs"] == 2
    assert 0 < spec.extra["fallback_threshold"] <= 1
    assert spec.extra["fallback_threshold"] == result.fallback["threshold"]


def test_stage1_and_stage2_each_improve_validation_accuracy(trained):
    """From the real ImageNet EfficientNet-Lite0: the head alone learns, then the whole net more."""
    _, result = trained
    stage1 = [r["val_accuracy"] for r in result.history if r["stage"] == 1]
    stage2 = [r["val_accuracy"] for r in result.history if r["stage"] == 2]
    assert len(stage1) == 2 and len(stage2) == 2
    assert stage1[-1] > result.baseline["val_accuracy"] + 0.2
    assert max(stage2) > stage1[-1]


def test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(
    trained, fish_data, u2net_home, mask_cache, tmp_path
):
    _, reference = trained
    cfg = effnet_config(u2net_home, mask_cache)
    out = tmp_path / "run"

    def interrupt(record):
        if record["stage"] == 2 and record["stage_epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(fish_data, out, cfg, show_progress=False, on_epoch_end=interrupt)
    assert main(["train", str(fish_data), "--out", str(out), "-q"]) == 5  # refuses to overwrite the run
    resumed = train(fish_data, out, cfg, resume=True, show_progress=False)
    columns = ("epoch", "stage", "train_loss", "val_loss", "val_accuracy", "val_macro_f1")
    assert len(resumed.history) == len(reference.history)
    for ours, theirs in zip(resumed.history, reference.history, strict=True):
        assert [ours[c] for c in columns] == pytest.approx([theirs[c] for c in columns], abs=1e-5)
    assert resumed.test["accuracy"] == reference.test["accuracy"]
    ours = torch.load(out / "expert" / "fish-expert.pth", weights_only=True)
    theirs = torch.load(reference.manifest.parent / "fish-expert.pth", weights_only=True)
    assert all(torch.allclose(ours[k].float(), theirs[k].float(), atol=1e-5) for k in theirs)


def test_exported_expert_agrees_with_training_in_eval_classify_and_run(trained, tmp_path, capsys):
    out, result = trained
    # fishcam eval re-reads the test split through the run-time expert path: same numbers.
    assert main(["eval", str(out / "splits.csv"), "--expert", str(result.manifest), "--out", str(tmp_path / "ev"),
                 "--split", "test", "-q"]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(result.test["accuracy"])
    for ours, theirs in zip(metrics["per_class"], result.test["per_class"], strict=True):
        assert ours == pytest.approx(theirs)

    with (out / "splits.csv").open() as handle:
        test_rows = [r for r in csv.DictReader(handle) if r["split"] == "test"][::4]
    capsys.readouterr()
    assert main(["classify", *[r["path"] for r in test_rows], "--format", "json", "-q",
                 "--set", f"classify.expert.weights={result.manifest}"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert sum(row["expert_top"] == t["label"] for row, t in zip(rows, test_rows, strict=True)) >= 3

    run_dir = tmp_path / "run"
    code = main(["run", str(SAMPLES / "fixed_sample.mp4"), "--config", "configs/fixed-camera.yaml", "--out",
                 str(run_dir), "--max-frames", "60", "-q", "--set", f"classify.expert.weights={result.manifest}",
                 "--set", "render.video=false"])  # fmt: skip
    assert code == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert str(result.manifest.parent) in json.dumps(summary)
    with (run_dir / "calls.csv").open() as handle:
        calls = list(csv.DictReader(handle))
    assert calls and {c["candidate"] or c["species"] for c in calls} <= {
        *read_manifest(result.manifest).labels,
        "unknown",
    }


def test_published_format_loads_with_the_model_card_code(tmp_path, u2net_home):
    """The default architecture (torchvision ConvNeXt-Tiny) from random init, tiny and short."""
    data = make_dataset(tmp_path / "data", ["lionfish", "clownfish", "moonwrasse"], per_class=5, size=48, seed=1)
    out = tmp_path / "run"
    code = main(["train", str(data), "--out", str(out), "-q", "--set", "model.pretrained=none",
                 "--set", "preprocess.size=32", "--set", "stage1.epochs=1", "--set", "stage2.epochs=1",
                 "--set", "balance.min_per_class=4", "--set", f"balance.rembg.home={u2net_home}",
                 "--set", "batch_size=8", "--set", "data.test_fraction=0"])  # fmt: skip
    assert code == 0
    manifest = read_manifest(out / "expert" / "fish-expert.json")
    assert manifest.architecture == "torchvision:convnext_tiny" and manifest.head == "classifier.2"

    # The model card's own code.
    model = torchvision.models.convnext_tiny()
    model.classifier[2] = torch.nn.Linear(768, 3)
    model.load_state_dict(torch.load(out / "expert" / "fish-expert.pth", weights_only=True))
    model.eval()

    from fishcam.models.loading import load_expert

    image = cv2.imread(str(next((data / "lionfish").iterdir())))
    expert = load_expert(manifest, device="cpu")
    rgb = torch.from_numpy(cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA)[..., ::-1].copy())
    x = (rgb.permute(2, 0, 1).float() / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor(
        [0.229, 0.224, 0.225]
    )[:, None, None]
    with torch.no_grad():
        card = torch.softmax(model(x[None]), 1).numpy()
    np.testing.assert_allclose(expert.predict([image]), card, atol=1e-5)


def test_eval_runs_the_published_checkpoint_format_on_a_labelled_folder(convnext_checkpoint, tmp_path):
    image = cv2.imread(str(SAMPLES.parent / "tests" / "data" / "real-fish" / "kde_goldfish.png"))
    for label in ("Gold Fish", "Tilapia"):
        (tmp_path / "data" / label).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "data" / label / "a.jpg"), image)
    (tmp_path / "data" / "Tilapia" / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["eval", str(tmp_path / "data"), "--expert", str(convnext_checkpoint),
                 "--out", str(tmp_path / "ev"), "-q", "--device", "cpu"]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["images"] == 2 and metrics["classes_evaluated"] == 2
    assert metrics["skipped"][0]["path"].endswith("broken.jpg")
    assert (tmp_path / "ev" / "confusion.png").is_file()
