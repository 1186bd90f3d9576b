import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Tests never reach the network: make every hub client fail at once instead of trying.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["FISHCAM_OFFLINE"] = "1"  # no release server is ever tried (models fetch)
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "false"

import builders


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def convnext_checkpoint(model_dir) -> Path:
    """The published expert's format: a model-card state dict of convnext_tiny with 40 outputs."""
    return builders.save_model_card_checkpoint(model_dir / "balik_modeli_final.pth")


@pytest.fixture(scope="session")
def tiny_clip(model_dir) -> Path:
    return builders.save_tiny_open_clip(model_dir / "tiny-bioclip")


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """Each test gets its own fishcam cache and an empty Hugging Face cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture
def ray_cluster():
    """A real local Ray cluster with 2 CPUs, started the way an operator would."""
    import shutil
    import subprocess

    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray, "ray is a test dependency (pip install -e .[test])"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([ray, "stop", "--force"], capture_output=True, env=env)  # one left by an aborted run
    started = subprocess.run([ray, "start", "--head", "--num-cpus", "2", "--include-dashboard", "false",
                              "--temp-dir", "/tmp/fishcam-ray"], capture_output=True, text=True, env=env)  # fmt: skip
    assert started.returncode == 0, f"ray start failed: {started.stderr[-2000:]}"
    yield "auto"
    subprocess.run([ray, "stop", "--force"], capture_output=True, env=env)


@pytest.fixture
def videos(tmp_path) -> Path:
    """A folder of three copies of the fixed-camera sample, for batches."""
    import shutil

    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        shutil.copyfile(builders.SAMPLES / "fixed_sample.mp4", folder / name)
    return folder
