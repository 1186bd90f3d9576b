"""A real run folder (the sample pipeline on samples/dive_sample.mp4), real uvicorn servers on
127.0.0.1, and headless Chromium through Playwright (Debian's chromium, no browser download)."""

import os
import shutil
from pathlib import Path

import pytest
from builders import ROOT
from live.conftest import rtsp_server  # noqa: F401  (the real RTSP server fixture, for the live page)

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory) -> Path:
    """``fishcam run samples/dive_sample.mp4 --config configs/sample.yaml``, once per session."""
    from fishcam.app.cli import main

    out = tmp_path_factory.mktemp("sample-run") / "dive_sample"
    cache = tmp_path_factory.mktemp("cache")
    before, cwd = dict(os.environ), Path.cwd()
    os.environ["XDG_CACHE_HOME"] = str(cache)
    os.chdir(ROOT)  # the config names its models relative to the repository root
    try:
        code = main(["run", "samples/dive_sample.mp4", "--config", "configs/sample.yaml", "--out", str(out), "-q"])
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(before)
    assert code == 0 and (out / "tracks.csv").is_file()
    return out


@pytest.fixture
def runs_root(sample_run, tmp_path) -> Path:
    """A served folder of its own for each test: ``runs/dive_sample`` (a copy of the sample run)."""
    root = tmp_path / "runs"
    shutil.copytree(sample_run, root / "dive_sample", ignore=shutil.ignore_patterns("annotated.mp4"))
    return root


@pytest.fixture
def serve():
    """Start the app on a free port of 127.0.0.1; returns its base URL (no trailing slash)."""
    from fishcam.serve.server import Server

    servers = []

    def start(app, host: str = "127.0.0.1") -> str:
        server = Server(app, host, 0).start()
        servers.append(server)
        return server.url.rstrip("/")

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip("no /usr/bin/chromium (scripts/setup-system installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e .[test])")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()
