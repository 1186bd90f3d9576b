"""What keeps a served folder safe: where the server may bind, the token, paths that stay inside
the folder, and camera passwords that never reach a page.

- The server binds 127.0.0.1 unless told otherwise; any other address needs ``FISHCAM_TOKEN``
  (it refuses to start without one, exit code 2), and a set token is asked of every request:
  ``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` once, after which an HttpOnly cookie
  carries it.
- Every file path a request names is resolved (symlinks followed) and must lie inside the
  served folder; anything else is "not found".
- On a loopback address the ``Host`` header must be a loopback name (a web page elsewhere cannot
  reach the server through a DNS name that points at 127.0.0.1), and a POST must be JSON from the
  same origin (a page elsewhere cannot post a correction with the reviewer's browser).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from fishcam.errors import ConfigError
from fishcam.sources.live import mask_url

TOKEN_ENV = "FISHCAM_TOKEN"
COOKIE = "fishcam_token"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(text: str, default_host: str = DEFAULT_HOST) -> tuple[str, int]:
    """``[HOST:]PORT`` → (host, port); a one-line ConfigError for anything else."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = default_host, text
    host = host.strip("[]") or default_host
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--serve {text}: give [HOST:]PORT, e.g. 8765 or 0.0.0.0:8765") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--serve {text}: the port must be 0 to 65535")
    return host, port


def required_token(host: str, environ: dict[str, str] | None = None) -> str | None:
    """The token every request must carry: FISHCAM_TOKEN when set; on an address other than
    loopback it must be set (a ConfigError, exit code 2, before anything starts)."""
    token = (os.environ if environ is None else environ).get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"serving on {host} (not this machine only) needs a token: set {TOKEN_ENV} to a long random value "
            f"(e.g. export {TOKEN_ENV}=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))'))"
        )
    if token is not None and len(token) < 8:
        raise ConfigError(f"{TOKEN_ENV} is too short to guard anything: give at least 8 characters (better 24)")
    return token


def inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` resolved, or None when it is not inside ``root`` (``..``, an absolute
    path, a symlink pointing out, a NUL byte)."""
    if "\x00" in relative or relative.startswith(("/", "\\")) or "\\" in relative:
        return None
    base = root.resolve()
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if target != base and base not in target.parents:
        return None
    return target


def masked(text: str | None) -> str:
    """A source as a page may show it: credentials and secret parameters as ``***``."""
    if not text:
        return ""
    return mask_url(text) if "://" in text or text.isdigit() else text


def _tokens_equal(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class Guard:
    """ASGI middleware: the token, the Host check on loopback, and same-origin JSON POSTs."""

    def __init__(self, app, *, token: str | None, loopback: bool, read_only: bool = False) -> None:
        self.app, self.token, self.loopback, self.read_only = app, token, loopback, read_only

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if self.loopback and _host_name(host) not in _LOOPBACK_NAMES:
            await _plain(send, 403, "forbidden: this server answers to localhost only")
            return
        if self.token is not None:
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            given = dict(query).get("token")
            if given is not None and scope["method"] == "GET":
                if not _tokens_equal(given, self.token):
                    await _plain(send, 401, "unauthorized: wrong token")
                    return
                # Once: the token goes into an HttpOnly cookie and out of the address bar.
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                location = scope.get("root_path", "") + scope["path"] + ("?" + rest if rest else "")
                cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                await _plain(send, 303, "see other", [("location", location), ("set-cookie", cookie)])
                return
            bearer = headers.get("authorization", "")
            from_header = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
            if not (_tokens_equal(from_header, self.token) or _tokens_equal(_cookie(headers), self.token)):
                await _plain(
                    send, 401, "unauthorized: give the token (Authorization: Bearer …, or ?token=… once)",
                    [("www-authenticate", "Bearer")],
                )  # fmt: skip
                return
        if scope["method"] not in ("GET", "HEAD"):
            if self.read_only:
                await _plain(send, 403, "forbidden: this server is read-only (--read-only)")
                return
            origin = headers.get("origin")
            if origin is not None and origin.split("://", 1)[-1] != host:
                await _plain(send, 403, "forbidden: a correction must come from this server's own pages")
                return
            if not headers.get("content-type", "").startswith("application/json"):
                await _plain(send, 415, "unsupported media type: send JSON")
                return
        await self.app(scope, receive, _with_headers(send))


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cookie(headers: dict[str, str]) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
]


def _with_headers(send):
    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *_SECURITY_HEADERS]}
        await send(message)

    return wrapped


async def _plain(send, status: int, text: str, extra: list[tuple[str, str]] | None = None) -> None:
    body = (text + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra or []]
    await send({"type": "http.response.start", "status": status, "headers": headers + _SECURITY_HEADERS})
    await send({"type": "http.response.body", "body": body})
