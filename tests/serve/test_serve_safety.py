"""What keeps a served folder safe, over plain HTTP against a real server: paths stay inside the
folder, --read-only refuses every POST, the token, the Host and Origin checks, masked passwords."""

import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from fishcam.app.cli import main
from fishcam.errors import ConfigError
from fishcam.serve.app import create_app
from fishcam.serve.safety import inside, parse_address, required_token

TOKEN = "a-long-test-token-0123456789"


def raw_get(base: str, path: str, headers: str = "") -> tuple[int, bytes]:
    """A request with the path exactly as given: no client normalises ``..`` away here."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{parts.port}\r\n{headers}Connection: close\r\n\r\n"
        sock.sendall(request.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture
def outside(tmp_path):
    """A secret file beside the served folder, and a symlink to it inside the run folder."""
    secret = tmp_path / "secret.csv"
    secret.write_text("TOP-SECRET-MARKER\n")
    return secret


def test_no_path_outside_the_served_folder_can_be_reached(runs_root, outside, serve):
    (runs_root / "dive_sample" / "link.csv").symlink_to(outside)
    (runs_root / "dive_sample" / "views").mkdir(exist_ok=True)  # the run saved its best views there
    (runs_root / "dive_sample" / "views" / "out").symlink_to(outside.parent, target_is_directory=True)
    base = serve(create_app(runs_root))
    status, body = raw_get(base, "/files/dive_sample/tracks.csv")
    assert status == 200 and body.startswith(b"track_id,")
    attempts = [
        "/files/../secret.csv",
        "/files/dive_sample/../../secret.csv",
        "/files/%2e%2e/secret.csv",
        "/files/dive_sample/%2e%2e/%2E%2E/secret.csv",
        "/files/..%2fsecret.csv",
        "/files/dive_sample%2f..%2f..%2fsecret.csv",
        "/files/..%5csecret.csv",
        f"/files/{outside}",
        f"/files//{outside}",
        f"/files/%2f{str(outside)[1:].replace('/', '%2f')}",
        "/files/dive_sample/link.csv",
        "/files/dive_sample/views/out/secret.csv",
        "/files/dive_sample/%00.csv",
        "/review/..",
        "/review/%2e%2e%2f",
        "/api/state/..%2f..",
        "/reviewed/..%2fdive_sample/species_counts.csv",
    ]
    for path in attempts:
        status, body = raw_get(base, path)
        assert status in (400, 403, 404), path
        assert b"TOP-SECRET-MARKER" not in body, path
    assert inside(runs_root, "dive_sample/link.csv") is None
    assert inside(runs_root, str(outside)) is None
    assert inside(runs_root, "dive_sample/tracks.csv") == (runs_root / "dive_sample" / "tracks.csv").resolve()


def test_read_only_refuses_every_post(runs_root, serve):
    base = serve(create_app(runs_root, read_only=True))
    page = httpx.get(f"{base}/review/dive_sample")
    assert page.status_code == 200 and "read-only" in page.text and 'data-action="confirm"' not in page.text
    for path in ("/api/correct/dive_sample", "/api/state/dive_sample", "/", "/files/dive_sample/tracks.csv"):
        answer = httpx.post(f"{base}{path}", json={"action": "confirm", "track": 0, "reviewer": "ann"})
        assert answer.status_code == 403, path
    assert not (runs_root / "dive_sample" / "review.jsonl").exists()


def test_a_token_is_required_off_loopback_and_accepted_with_it(runs_root, serve):
    base = serve(create_app(runs_root, token=TOKEN, host="0.0.0.0"), host="0.0.0.0")
    base = base.replace("0.0.0.0", "127.0.0.1")
    for path in ("/", "/review/dive_sample", "/files/dive_sample/tracks.csv", "/static/style.css"):
        assert httpx.get(base + path).status_code == 401, path
    assert httpx.get(base + "/", headers={"Authorization": "Bearer wrong-token-xyz"}).status_code == 401
    assert httpx.get(base + "/?token=wrong-token-xyz").status_code == 401
    assert httpx.post(base + "/api/correct/dive_sample", json={}).status_code == 401
    assert httpx.get(base + "/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    with httpx.Client(base_url=base) as client:  # ?token= once: then an HttpOnly cookie, out of the address
        first = client.get(f"/review/dive_sample?token={TOKEN}")
        assert first.status_code == 303 and first.headers["location"] == "/review/dive_sample"
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert client.get("/review/dive_sample").status_code == 200
        assert client.get("/files/dive_sample/tracks.csv").status_code == 200


def test_without_a_token_a_non_loopback_server_does_not_start(runs_root, monkeypatch):
    monkeypatch.delenv("FISHCAM_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="FISHCAM_TOKEN"):
        required_token("0.0.0.0")
    assert required_token("127.0.0.1") is None and required_token("::1") is None
    assert main(["serve", str(runs_root), "--host", "0.0.0.0", "--port", "0"]) == ConfigError.exit_code == 2
    assert main(["run", "samples/dive_sample.mp4", "--serve", "0.0.0.0:0"]) == 2  # before any model loads
    monkeypatch.setenv("FISHCAM_TOKEN", "short")
    with pytest.raises(ConfigError, match="too short"):
        required_token("0.0.0.0")
    assert parse_address("8765") == ("127.0.0.1", 8765) and parse_address("0.0.0.0:80") == ("0.0.0.0", 80)
    with pytest.raises(ConfigError):
        parse_address("host:port")


def test_other_hosts_and_other_origins_are_refused_on_loopback(runs_root, serve):
    base = serve(create_app(runs_root))
    status, _ = raw_get(base, "/", headers="")
    assert status == 200
    rebinding = httpx.get(base + "/", headers={"Host": "evil.example:8765"})
    assert rebinding.status_code == 403  # a DNS name pointing at 127.0.0.1 gets nothing
    correction = {"action": "confirm", "track": 0, "reviewer": "ann"}
    cross = httpx.post(base + "/api/correct/dive_sample", json=correction, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    form = httpx.post(base + "/api/correct/dive_sample", content=json.dumps(correction),
                      headers={"Content-Type": "text/plain"})  # fmt: skip
    assert form.status_code == 415  # what a page elsewhere could send without asking
    assert not (runs_root / "dive_sample" / "review.jsonl").exists()
    page = httpx.get(base + "/")
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_camera_passwords_never_reach_a_page(runs_root, serve):
    summary_path = runs_root / "dive_sample" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["source"] = summary["source_path"] = "rtsp://diver:s3cretPass@10.0.0.5:554/fish?token=abc123secret"
    summary_path.write_text(json.dumps(summary))
    base = serve(create_app(runs_root))
    for path in ("/", "/review/dive_sample"):
        text = httpx.get(base + path).text
        assert "s3cretPass" not in text and "abc123secret" not in text, path
        assert "diver:***@10.0.0.5" in text, path
