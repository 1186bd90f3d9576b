"""``fishcam run RTSP_URL --serve``: the live page, in headless Chromium, shows the annotated view
(MJPEG) changing and the counts of closed tracks updating, from the real RTSP test server; the
camera's password is on no page."""

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from builders import ROOT, interruptible

pytestmark = pytest.mark.live

PASSWORD = "s3cretDive"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer in {seconds} s")


def test_the_live_page_shows_the_stream_and_the_counts_as_they_grow(rtsp_server, page, tmp_path):
    server = rtsp_server(user="diver", password=PASSWORD)
    port = free_port()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("FISHCAM_TOKEN", None)
    command = [sys.executable, "-m", "fishcam", "run", server.url(credentials=f"diver:{PASSWORD}@"), "--config",
               "configs/sample.yaml", "--out", str(tmp_path / "live"), "--serve", f"127.0.0.1:{port}",
               "--duration", "60", "-q"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/live/state", 90, proc)
        page.goto(base + "/")  # the run's server opens on its live page
        assert page.url.endswith("/live")
        page.wait_for_function("() => document.getElementById('stream').naturalWidth > 0", timeout=30000)
        assert page.evaluate("document.getElementById('stream').naturalWidth") == 640
        first = page.locator("#stream").screenshot()
        page.wait_for_timeout(700)
        assert page.locator("#stream").screenshot() != first  # the view moves
        page.wait_for_function("() => document.querySelectorAll('#health tbody tr').length > 3", timeout=10000)
        # Tracks close as fish leave (the wrasse at 1.6 s, the butterflyfish at 2.8 s): counts appear.
        page.wait_for_function("() => document.querySelectorAll('#live-counts tbody tr').length >= 1", timeout=30000)
        counted = page.locator("#live-counts tbody tr").count()
        assert "processed fps" in page.locator("#health").inner_text()
        state = httpx.get(base + "/live/state").json()
        assert state["health"]["frames"] > 0 and state["health"]["input_fps"] > 0 and state["counts"]
        closed = state["closed_tracks"]
        page.wait_for_function(
            "n => [...document.querySelectorAll('#health tr')].some(r => r.cells[0].textContent === 'closed tracks'"
            " && Number(r.cells[1].textContent) > n)",
            arg=closed,
            timeout=40000,
        )  # more closed tracks: the counts keep updating
        assert page.locator("#live-counts tbody tr").count() >= counted
        for text in (page.content(), httpx.get(base + "/live/state").text, httpx.get(base + "/live").text):
            at = text.find(PASSWORD)
            assert at < 0, text[max(0, at - 300) : at + 50]
            assert "diver:***@" in text
        assert httpx.post(base + "/api/correct/x", json={}).status_code == 403  # the live server takes no posts
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 130, err[-3000:]
    assert PASSWORD not in err
    assert (tmp_path / "live" / "summary.json").is_file()
