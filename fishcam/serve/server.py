"""uvicorn for the app: in the foreground (``fishcam serve``) or on a background thread of a run
(``fishcam run --serve``). The socket is bound here, first: a port in use is one line before
anything else starts, and port 0 gives a free one whose number is known at once."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from pathlib import Path
from typing import Any

from fishcam.errors import ConfigError
from fishcam.serve.safety import required_token

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


class Server:
    """uvicorn on a bound socket, on a daemon thread: ``start()``, ``url``, ``stop()``."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="fishcam-serve", daemon=True)

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except Exception:  # a server that dies must not take the run with it
            log.exception("the live view server stopped")

    def start(self, wait_s: float = 10.0) -> Server:
        self.thread.start()
        for _ in range(int(wait_s / 0.02)):
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.sock.close()


def serve_folder(folder: Path, host: str, port: int, read_only: bool) -> int:
    """``fishcam serve``: the runs under ``folder`` until Ctrl-C."""
    import uvicorn

    from fishcam.serve.app import create_app

    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: give the folder of your runs (default runs/)")
    token = required_token(host)
    app = create_app(folder, token=token, host=host, read_only=read_only)
    sock = bind(host, port)
    log.info(
        "serving the runs under %s at %s%s%s (Ctrl-C stops)", folder, url_of(sock),
        " (token required)" if token else "", " read-only" if read_only else "",
    )  # fmt: skip
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn passes Ctrl-C on after its shutdown: a normal end
        uvicorn.Server(config).run(sockets=[sock])
    log.info("stopped serving %s", folder)
    return 0


class LiveServing:
    """``fishcam run --serve [HOST:]PORT``: checked and bound at once (before models load),
    started when the run starts, stopped when it ends."""

    def __init__(self, address: str) -> None:
        from fishcam.serve.app import create_app
        from fishcam.serve.live import LiveView
        from fishcam.serve.safety import parse_address

        host, port = parse_address(address)
        token = required_token(host)
        self.view = LiveView()
        self.server = Server(create_app(None, live=self.view, token=token, host=host, read_only=True), host, port)
        self.token = token

    def start(self) -> Any:
        self.server.start()
        log.info("live view at %slive%s", self.server.url, " (token required)" if self.token else "")
        return self.view

    def stop(self) -> None:
        self.view.ended = True
        threading.Event().wait(1.2)  # the pages' next update says the run has ended
        self.server.stop()
