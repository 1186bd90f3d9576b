"""HTTP/MJPEG cameras (many cheap IP cameras): a real HTTP server streaming JPEG frames."""

import http.server
import socketserver
import threading
import time

import cv2
import pytest
from builders import SAMPLES

from fishcam.app.compose import Components
from fishcam.app.run import run
from fishcam.config import LiveConfig, load_config
from fishcam.sources import open_source

pytestmark = pytest.mark.live


@pytest.fixture
def mjpeg_url():
    frames = []
    capture = cv2.VideoCapture(str(SAMPLES / "fixed_sample.mp4"))
    while len(frames) < 100:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", image)[1].tobytes())
    stop = threading.Event()

    def stream(connection: int):
        index = 0
        while not stop.is_set():
            yield frames[index % len(frames)], 0.04
            index += 1

    server, url = serve_mjpeg(stream)
    yield url
    stop.set()
    server.shutdown()


def test_mjpeg_over_http_runs_through_the_pipeline(mjpeg_url, tmp_path):
    config = load_config("configs/count-only.yaml", ["source.duration_s=3"])
    source = open_source(mjpeg_url, config.source.model_copy(update={"live": LiveConfig(read_timeout_s=3)}))
    assert (source.width, source.height) == (640, 480)
    code, summary = run(source, config, tmp_path, Components(_motion(config), None))
    assert code == 0 and summary.frames > 30 and summary.figures.live["input_fps"] > 15


def test_a_camera_that_resends_its_last_picture_is_stalled(tmp_path):
    """New JPEGs for a second, then the last one again every second (under the 2 s timeout):
    the watchdog counts the outage and reconnects (a new connection gets new pictures)."""
    capture = cv2.VideoCapture(str(SAMPLES / "fixed_sample.mp4"))
    jpegs = [cv2.imencode(".jpg", capture.read()[1])[1].tobytes() for _ in range(40)]
    connections = []

    def stream(connection: int):
        connections.append(time.monotonic())
        for index in range(200):
            fresh = connection > 0 or index < 25
            yield (jpegs[index % len(jpegs)] if fresh else jpegs[24]), (0.04 if fresh else 1.0)

    server, url = serve_mjpeg(stream)
    try:
        source = open_source(
            url, load_config(None, []).source.model_copy(update={"live": LiveConfig(read_timeout_s=2)})
        )
        segments = set()
        started = time.monotonic()
        for frame in source:
            segments.add(frame.segment)
            if 1 in segments or time.monotonic() - started > 8:
                break
        source.close()
    finally:
        server.shutdown()
    assert source.health.outages == 1 and source.health.stale >= 1 and segments == {0, 1}
    assert len(connections) == 2 and 2.5 < connections[1] - connections[0] < 5


def serve_mjpeg(stream):
    """A real HTTP server on 127.0.0.1 sending ``multipart/x-mixed-replace`` JPEGs: for the n-th
    connection, the (jpeg, pause in seconds) pairs of ``stream(n)``."""
    count = iter(range(1_000_000))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for jpeg, pause in stream(next(count)):
                    header = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    self.wfile.write(header.encode() + jpeg + b"\r\n")
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"


def _motion(config):
    from fishcam.detect.motion import MotionDetector

    return MotionDetector(config.detector.motion)
