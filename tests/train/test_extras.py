"""The ``train`` extra: without rembg or matplotlib, ``fishcam train`` and ``fishcam eval`` stop in
one line naming what to install; ``import fishcam`` and ``fishcam run`` never import them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from builders import ROOT, SAMPLES, TEST_DETECTOR

EXTRA = ("rembg", "matplotlib", "onnxruntime", "pymatting")
INSTALL = "pip install 'fishcam[train]'"


def run_without(hidden: list[str], argv: list[str]) -> subprocess.CompletedProcess:
    """``fishcam ARGV`` in a fresh process where importing each hidden module fails, as if it were
    not installed."""
    code = (
        "import sys\n"
        f"for name in {hidden!r}:\n"
        "    sys.modules[name] = None\n"
        "from fishcam.app.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("hidden", "command", "named"),
    [
        (["rembg"], "train", "rembg"),
        (["matplotlib"], "train", "matplotlib"),
        (["rembg", "onnxruntime", "matplotlib"], "train", "matplotlib, rembg, onnxruntime"),
        (["matplotlib"], "eval", "matplotlib"),
    ],
)
def test_train_and_eval_without_the_extra_say_what_to_install(tmp_path, hidden, command, named):
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    args = {"train": [], "eval": ["--expert", str(tmp_path / "expert.json")]}[command]
    result = run_without(hidden, [command, str(data), "--out", str(tmp_path / "out"), *args])
    assert result.returncode == 2, result.stderr  # a usage error: nothing was tried
    assert result.stderr.strip().splitlines() == [
        f"fishcam: ERROR: fishcam {command} needs {named}, not installed here (the training extra): {INSTALL}"
    ]
    assert not (tmp_path / "out").exists()


def test_training_without_background_removal_needs_no_rembg(tmp_path):
    argv = ["train", str(tmp_path / "missing"), "--out", str(tmp_path / "out"), "--set", "balance.rembg.probability=0",
            "--set", "model.pretrained=none"]  # fmt: skip
    result = run_without(["rembg", "onnxruntime"], argv)
    assert result.returncode == 5 and INSTALL not in result.stderr  # past the check, stopped by the data


@pytest.mark.model
def test_import_fishcam_and_fishcam_run_never_import_the_training_extra(tmp_path, convnext_checkpoint, tiny_clip):
    """A run with every model kind (YOLO detector, expert, fallback) loads no training package."""
    argv = [
        "run", str(SAMPLES / "dive_sample.mp4"), "--out", str(tmp_path / "run"), "-q", "--max-frames", "8",
        "--set", f"detector.weights={TEST_DETECTOR}", "--set", "detector.image_size=320",
        "--set", f"classify.expert.weights={convnext_checkpoint}", "--set", f"classify.fallback.model={tiny_clip}",
        "--species", str(SAMPLES / "species.txt"), "--set", "render.video=false",
    ]  # fmt: skip
    code = (
        "import sys\n"
        "def loaded():\n"
        f"    return sorted(m for m in sys.modules if m.split('.')[0] in {EXTRA!r} or m.startswith('fishcam.train'))\n"
        "import fishcam\n"
        "print(loaded())\n"
        "from fishcam.app.cli import main\n"
        f"code = main({argv!r})\n"
        "print(code, loaded())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.stdout.splitlines() == ["[]", "0 []"], result.stderr
