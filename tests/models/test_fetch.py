"""``fishcam models fetch`` over real HTTPS: a TLS server on 127.0.0.1 with a certificate from a
test CA (trustme), trusted through ``SSL_CERT_FILE`` as a user's own CA would be. The server
redirects release downloads to another path, as GitHub does, and can cut a download short."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import ssl
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from builders import SAMPLES, TEST_DETECTOR

from fishcam.app.cli import main
from fishcam.errors import MissingModelError, ModelError
from fishcam.models import download, hub, pins


class _Files(http.server.BaseHTTPRequestHandler):
    root: Path
    truncate: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        if "/releases/download/" in self.path:  # GitHub answers a release asset with a redirect
            self.send_response(302)
            self.send_header("Location", "/objects/" + self.path.rsplit("/", 1)[-1])
            self.end_headers()
            return
        path = self.root / self.path.rsplit("/", 1)[-1]  # every file by its name, whatever the folder
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if path.name in self.truncate else data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    root = tmp_path_factory.mktemp("served")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = root.parent / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    handler = type("Files", (_Files,), {"root": root, "truncate": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"base": f"https://127.0.0.1:{httpd.server_address[1]}", "root": root, "ca": ca_file, "handler": handler}
    httpd.shutdown()


@pytest.fixture
def trusted(server, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(server["ca"]))
    monkeypatch.delenv("FISHCAM_OFFLINE")  # the one server these tests reach is on 127.0.0.1
    return server


def _serve(server, name: str, source: Path = TEST_DETECTOR) -> bytes:
    shutil.copy(source, server["root"] / name)
    return (server["root"] / name).read_bytes()


def _config(tmp_path: Path, weights: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(
        f"detector:\n  weights: {weights}\n  classes: [fish]\n  image_size: 320\n  backend: torch\n"
        "classify:\n  enabled: false\nrender:\n  video: false\n"
    )
    return path


def test_a_release_asset_is_fetched_checked_recorded_and_then_used_offline(trusted, tmp_path, capsys):
    data = _serve(trusted, "fish.pt")
    url = f"{trusted['base']}/org/fish-detector/releases/download/v1.0/fish.pt"
    config = _config(tmp_path, url)
    assert main(["models", "fetch", "--config", str(config)]) == 0
    stored = hub.UrlRef(url).cache_path()
    assert stored.read_bytes() == data and not list(stored.parent.glob("*.part"))
    digest = hashlib.sha256(data).hexdigest()
    assert pins.get(url)["sha256"] == digest and pins.get(url)["bytes"] == len(data)
    assert f"recorded sha256 {digest} of fish.pt" in capsys.readouterr().err  # said: it is the first fetch's
    # The run resolves the URL to the stored file with no network: the server is not asked again.
    out = tmp_path / "run"
    args = ["run", str(SAMPLES / "dive_sample.mp4"), "--config", str(config), "--max-frames", "6", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["detector"]["sha256"] == digest
    # Present now: a second fetch downloads nothing and keeps the record.
    (trusted["root"] / "fish.pt").unlink()
    assert main(["models", "fetch", "--config", str(config)]) == 0


def test_a_stored_file_changed_after_its_fetch_stops_the_run(trusted, tmp_path, capsys):
    _serve(trusted, "fish2.pt")
    url = f"{trusted['base']}/org/fish-detector/releases/download/v1.0/fish2.pt"
    config = _config(tmp_path, url)
    assert main(["models", "fetch", "--config", str(config)]) == 0
    stored = hub.UrlRef(url).cache_path()
    with stored.open("r+b") as handle:  # one byte flipped on disk
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    code = main(["run", str(SAMPLES / "dive_sample.mp4"), "--config", str(config), "--out", str(tmp_path / "o")])
    assert code == 3
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the file was damaged or replaced" in error and "fishcam models fetch" in error


def test_a_download_unlike_its_recorded_checksum_is_not_kept(trusted, tmp_path):
    _serve(trusted, "fish3.pt")
    url = f"{trusted['base']}/org/fish-detector/releases/download/v2/fish3.pt"
    pins.record(url, sha256="0" * 64)  # as if an earlier fetch had got other bytes
    with pytest.raises(ModelError, match=r"its first fetch recorded 000000000000…: it is not the file"):
        download.fetch(url)
    stored = hub.UrlRef(url).cache_path()
    assert not stored.exists() and not list(stored.parent.glob("*"))


def test_a_download_cut_short_leaves_nothing_in_place(trusted, tmp_path):
    _serve(trusted, "cut.pt")
    trusted["handler"].truncate.add("cut.pt")
    url = f"{trusted['base']}/files/cut.pt"
    with pytest.raises(ModelError, match=r"cannot download|stopped after"):
        download.fetch(url, timeout_s=5)
    with pytest.raises(MissingModelError):
        hub.resolve(url, "detector")
    assert pins.get(url) == {}


def test_missing_files_and_untrusted_servers_are_one_line_errors(server, tmp_path, monkeypatch):
    _serve(server, "fish4.pt")
    with pytest.raises(ModelError, match=r"HTTP 404"):
        monkeypatch.setenv("SSL_CERT_FILE", str(server["ca"]))
        download.fetch(f"{server['base']}/files/nothing-here.pt", timeout_s=5)
    monkeypatch.delenv("SSL_CERT_FILE")  # the test CA is no longer trusted: the certificate must not verify
    with pytest.raises(ModelError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        download.fetch(f"{server['base']}/files/fish4.pt", timeout_s=5)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/org/repo/releases/latest/download/fish.pt",
        "https://github.com/org/repo/raw/main/models/fish.pt",
        "https://raw.githubusercontent.com/org/repo/master/models/fish.pt",
        "https://raw.githubusercontent.com/org/repo/refs/heads/main/models/fish.pt",
        "https://huggingface.co/org/repo/resolve/main/fish.pt",
    ],
)
def test_urls_on_a_moving_branch_are_refused(url):
    with pytest.raises(ModelError, match=r"which moves: the file could change under the same name"):
        download.fetch(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/filippovarini/community-fish-detector/releases/download/cfd-1.00-yolov12x/cfd-yolov12x-1.00.pt",
        "https://raw.githubusercontent.com/filippovarini/sharktrack/99f6ce685229db573641da6ecea3d3c506e5f5c7/models/sharktrack.pt",
        "https://huggingface.co/org/repo/resolve/0123456789abcdef0123456789abcdef01234567/fish.pt",
    ],
)
def test_release_tags_and_commits_are_pinned(url):
    assert download.moving_branch(url) is None


def test_plain_http_and_branch_revisions_are_refused_when_read():
    with pytest.raises(ModelError, match="plain http"):
        hub.parse_ref("http://example.org/fish.pt")
    with pytest.raises(ModelError, match="@main is not a commit"):
        hub.parse_ref("hf://FathomNet/megalodon@main/mbari-megalodon-yolov8x.pt")
    ref = hub.parse_ref("hf://FathomNet/megalodon@" + "b" * 40 + "/mbari-megalodon-yolov8x.pt")
    assert isinstance(ref, hub.HubRef) and ref.repo_id == "FathomNet/megalodon" and ref.revision == "b" * 40


def test_a_hub_file_is_found_at_its_pinned_commit(tmp_path, monkeypatch):
    """What a fetch at a commit leaves in the Hugging Face cache: a snapshot of that commit, and
    no refs/main. Found through the reference's @COMMIT, or through the pin the fetch recorded."""
    cache = tmp_path / "hf"
    commit = "c" * 40
    snapshot = cache / "models--FathomNet--megalodon" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "mbari-megalodon-yolov8x.pt").write_bytes(b"weights")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    plain = "hf://FathomNet/megalodon/mbari-megalodon-yolov8x.pt"
    with pytest.raises(MissingModelError):
        hub.resolve(plain, "detector")
    pinned = f"hf://FathomNet/megalodon@{commit}/mbari-megalodon-yolov8x.pt"
    assert hub.resolve(pinned, "detector") == snapshot / "mbari-megalodon-yolov8x.pt"
    pins.record(plain, revision=commit)
    assert hub.resolve(plain, "detector") == snapshot / "mbari-megalodon-yolov8x.pt"


def test_git_blob_ids_are_gits_own(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 100)
    git = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert download._git_blob(path, path.stat().st_size) == git.stdout.strip()


def test_a_file_unlike_the_git_blob_of_its_commit_is_not_kept(trusted, tmp_path, monkeypatch):
    from fishcam.models import catalog

    _serve(trusted, "blob.pt")
    url = f"{trusted['base']}/org/repo/{'d' * 40}/blob.pt"
    entry = catalog.Published(
        key="t", role="detector", ref=url, name="t", architecture="t", classes=("fish",), licence="MIT",
        source="t", trained_on="t", git_blob="e" * 40,
    )  # fmt: skip
    monkeypatch.setattr(catalog, "CATALOG", (*catalog.CATALOG, entry))
    with pytest.raises(ModelError, match="is not the file of git blob eeeeeeeeeeee"):
        download.fetch(url)
    assert not hub.UrlRef(url).cache_path().exists()


def test_the_tree_of_life_embeddings_are_fetched_as_a_pinned_pair_and_read_offline(trusted, tmp_path, tiny_clip):
    from builders import TOL_FISH, save_tree_of_life

    from fishcam.classify.tree_of_life import read_tree_of_life

    made = save_tree_of_life(tmp_path / "tol", TOL_FISH, dim=768, filler=20) / "embeddings"
    for name in ("txt_emb_species.npy", "txt_emb_species.json"):
        _serve(trusted, name, made / name)
    url = f"{trusted['base']}/datasets/imageomics/TreeOfLife-200M/resolve/{'a' * 40}/embeddings/txt_emb_species.npy"
    with pytest.raises(MissingModelError, match=r"txt_emb_species\.npy is not on this machine.*fishcam models fetch"):
        read_tree_of_life(url)  # never downloaded by a run
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"detector:\n  weights: {TEST_DETECTOR}\nclassify:\n  expert:\n    weights: {tmp_path / 'expert.pt'}\n"
        f"  fallback:\n    model: {tiny_clip}\n    open_ended: {url}\n"
    )
    assert main(["models", "fetch", "--config", str(config)]) == 0
    tree = read_tree_of_life(url)
    assert tree.features.shape == (768, len(TOL_FISH) + 20) and tree.labels[0] == "Pterois volitans"
    assert pins.get(url)["sha256"] == hashlib.sha256((made / "txt_emb_species.npy").read_bytes()).hexdigest()
