"""The screenshots of docs/serve.md, taken from the real pages with headless Chromium:

    python tests/serve/screenshots.py        # writes docs/img/serve-review.png and docs/img/serve-live.png

The review page: the dive sample's run (configs/sample.yaml) with two corrections; the live page:
``fishcam run rtsp://… --serve`` on the test suite's RTSP server playing the dive sample. Each PNG is reduced to 256
colours to stay small. The best views and MaxN frames on the review page are the ones the run saved."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMG = ROOT / "docs" / "img"


def shrink(path: Path) -> None:
    from PIL import Image

    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    from playwright.sync_api import sync_playwright

    from fishcam.review import Correction, append_correction
    from fishcam.serve.app import create_app
    from fishcam.serve.server import Server

    IMG.mkdir(parents=True, exist_ok=True)
    env = {**os.environ}
    env.pop("FISHCAM_TOKEN", None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        run = root / "dive_sample"
        subprocess.run([sys.executable, "-m", "fishcam", "run", "samples/dive_sample.mp4", "--config",
                        "configs/sample.yaml", "--out", str(run), "-q"], cwd=ROOT, check=True, env=env)  # fmt: skip
        append_correction(run, Correction("confirm", 2, "Ann Diver"))
        append_correction(run, Correction("species", 4, "Ann Diver", species="Pterois volitans"))
        server = Server(create_app(root), "127.0.0.1", 0).start()
        port = free_port()
        rtsp = [str(ROOT / "tests" / "live" / "rtsp_server.py"), "--clip", str(ROOT / "samples" / "dive_sample.mp4")]
        camera = subprocess.Popen(["/usr/bin/python3", *rtsp], stdout=subprocess.PIPE, text=True)
        assert camera.stdout is not None
        camera_port = int(camera.stdout.readline().split()[1])  # "PORT n": the test suite's RTSP server
        url = f"rtsp://station:not-shown@127.0.0.1:{camera_port}/fish"  # the page masks the password
        command = ["run", url, "--config", "configs/sample.yaml", "--out", str(Path(tmp) / "live"), "--serve",
                   f"127.0.0.1:{port}", "-q"]  # fmt: skip
        live = subprocess.Popen([sys.executable, "-m", "fishcam", *command], cwd=ROOT, env=env)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1200, "height": 1000})
                page.goto(server.url + "review/dive_sample")
                page.fill("#reviewer", "Ann Diver")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(IMG / "serve-review.png"), full_page=False)
                for _ in range(300):
                    try:
                        page.goto(f"http://127.0.0.1:{port}/live")
                        break
                    except Exception:
                        time.sleep(0.2)
                page.wait_for_function("() => document.getElementById('stream').naturalWidth > 0", timeout=60000)
                for table in ("live-counts", "open-tracks"):  # some tracks closed, others open
                    rows = f"document.querySelectorAll('#{table} tbody tr').length > 1"
                    page.wait_for_function(f"() => {rows}", timeout=60000)
                page.set_viewport_size({"width": 1200, "height": 900})
                page.screenshot(path=str(IMG / "serve-live.png"))
                browser.close()
        finally:
            live.terminate()
            live.wait()
            camera.kill()
            camera.wait()
            server.stop()
    for name in ("serve-review.png", "serve-live.png"):
        shrink(IMG / name)
        print(IMG / name, (IMG / name).stat().st_size // 1024, "KiB")


if __name__ == "__main__":
    main()
