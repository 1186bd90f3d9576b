"""A real RTSP server on 127.0.0.1 (GStreamer's, from Debian packages; installed by scripts/setup-system)."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"


class RtspServer:
    def __init__(self, clip: Path, user: str | None = None, password: str | None = None) -> None:
        self.clip, self.user, self.password = clip, user, password
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.frame0: float | None = None
        self.start()

    def start(self) -> None:
        command = [SYSTEM_PYTHON, str(SERVER), "--clip", str(self.clip), "--port", str(self.port)]
        if self.user:
            command += ["--user", self.user, "--password", self.password or ""]
        self.frame0 = None
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            pytest.fail(
                "the GStreamer RTSP test server did not start; install python3-gi, gir1.2-gst-rtsp-server-1.0 "
                "and the GStreamer plugins (scripts/setup-system installs them)"
            )
        self.port = int(line.split()[1])
        threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True).start()

    def _read_stdout(self, proc) -> None:
        for line in proc.stdout:
            if line.startswith("FRAME0 "):
                self.frame0 = float(line.split()[1])

    def url(self, path: str = "/fish", credentials: str = "") -> str:
        return f"rtsp://{credentials}127.0.0.1:{self.port}{path}"

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        # The port was just released; the server binds it again.
        for _ in range(50):
            try:
                self.start()
                return
            except Exception:
                time.sleep(0.1)

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture
def rtsp_server():
    from builders import SAMPLES

    servers = []

    def make(clip: Path = SAMPLES / "dive_sample.mp4", **kwargs) -> RtspServer:
        server = RtspServer(clip, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.proc and server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.kill()
