import os
import shutil

import pytest
from builders import ROOT


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """The dive sample run by the real pipeline (configs/sample.yaml, the sample models), once."""
    from fishcam.app.cli import main

    out = tmp_path_factory.mktemp("review") / "dive_sample"
    before = os.getcwd()
    os.chdir(ROOT)  # configs/sample.yaml names its models relative to the repository root
    try:
        args = ["run", "samples/dive_sample.mp4", "--config", "configs/sample.yaml", "--out", str(out), "-q",
                "--set", "render.video=false"]  # fmt: skip
        assert main(args) == 0
    finally:
        os.chdir(before)
    return out


@pytest.fixture
def run_dir(sample_run, tmp_path):
    """A copy of the sample run to review (the session's run stays as the pipeline wrote it)."""
    return shutil.copytree(sample_run, tmp_path / "dive_sample")
