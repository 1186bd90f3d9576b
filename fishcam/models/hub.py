"""Where weights come from: local paths, Hugging Face references found in the local cache, and
pinned HTTPS downloads in fishcam's own model cache.

Resolution never touches the network. Only :mod:`fishcam.models.download` downloads, and only when
the user asked for it (``fishcam models fetch``).

References:
  ``/path/to/file`` or ``relative/file``   a local file or folder
  ``hf://org/repo/path/in/repo``          one file of a Hugging Face repo (standard HF cache);
  ``hf://org/repo@COMMIT/path``           ... at a pinned commit
  ``hf-hub:org/repo`` (``@COMMIT``)       a whole open_clip repo (config + weights)
  ``local-dir:/path/to/folder``           open_clip's form for a local folder (same as the path)
  ``https://host/path/file``              a file on a web server (a GitHub release asset), kept in
                                          ``~/.cache/fishcam/models/HOST/PATH``; pinned: a release
                                          tag or a commit in the URL, never a moving branch
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from fishcam.errors import MissingModelError, ModelError
from fishcam.models import pins
from fishcam.models.paths import cache_dir, hf_cache_dir

log = logging.getLogger(__name__)

OPEN_CLIP_FILES = ("open_clip_config.json", "open_clip_model.safetensors")
LOCAL_DIR = "local-dir:"  # open_clip's own way to name a local model folder
COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    filenames: tuple[str, ...]
    revision: str | None = None  # a commit, when the reference pins one

    @property
    def display(self) -> str:
        at = f"@{self.revision[:7]}" if self.revision else ""
        return f"{self.repo_id}{at}/{self.filenames[0]}" if len(self.filenames) == 1 else f"{self.repo_id}{at}"


@dataclass(frozen=True)
class UrlRef:
    url: str

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or ""

    @property
    def filename(self) -> str:
        return unquote(urlparse(self.url).path.rstrip("/").rsplit("/", 1)[-1])

    @property
    def display(self) -> str:
        return self.url

    def cache_path(self) -> Path:
        """Where the download lives: the URL's host and path under the model cache, so two
        releases of one file never share a name."""
        parts = [unquote(p) for p in urlparse(self.url).path.split("/") if p]
        if not parts or any(p in {".", ".."} or "\\" in p for p in parts):
            raise ModelError(f"bad model URL {self.url!r}: it must name a file")
        return models_dir().joinpath(self.host, *parts)


def models_dir() -> Path:
    """fishcam's cache of downloaded model files (``~/.cache/fishcam/models``)."""
    return cache_dir("models")


def parse_ref(ref: str) -> HubRef | UrlRef | None:
    """The hub repo and files, or the URL, a reference names; None for a local path."""
    if ref.startswith("hf://"):
        parts = ref[len("hf://") :].split("/")
        if len(parts) < 3 or not all(parts):
            raise ModelError(f"bad model reference {ref!r}: expected hf://org/repo/file or hf://org/repo@COMMIT/file")
        name, revision = _revision(parts[1], ref)
        return HubRef(f"{parts[0]}/{name}", ("/".join(parts[2:]),), revision)
    if ref.startswith("hf-hub:"):
        repo = ref[len("hf-hub:") :]
        if repo.count("/") != 1:
            raise ModelError(f"bad model reference {ref!r}: expected hf-hub:org/repo")
        org, name = repo.split("/")
        name, revision = _revision(name, ref)
        return HubRef(f"{org}/{name}", OPEN_CLIP_FILES, revision)
    if ref.startswith("http://"):
        raise ModelError(
            f"model URL {ref} is plain http: fishcam downloads weights over https only (a file that anyone on "
            f"the way can replace is not one to publish counts with)"
        )
    if ref.startswith("https://"):
        url = UrlRef(ref)
        url.cache_path()  # a URL that names no file is refused now, not at fetch time
        return url
    return None


def _revision(name: str, ref: str) -> tuple[str, str | None]:
    """``repo@COMMIT``: a hub reference pins a commit, never a branch that moves."""
    if "@" not in name:
        return name, None
    name, _, revision = name.partition("@")
    if not COMMIT.fullmatch(revision):
        raise ModelError(
            f"bad model reference {ref!r}: @{revision} is not a commit. Pin a hub repo by its 40-hex commit id "
            f"(the repo's History page), not a branch such as main that moves"
        )
    return name, revision


CONFIG_KEYS = {
    "detector": "detector.weights",
    "expert": "classify.expert.weights",
    "fallback": "classify.fallback.model",
    "open_ended": "classify.fallback.open_ended",
}


def resolve(ref: str, role: str) -> Path:
    """The local path of a model reference, or MissingModelError saying how to get it.

    For ``hf-hub:`` references the path is the snapshot folder holding every file. A file that
    ``fishcam models fetch`` recorded a checksum for is checked against it.
    """
    parsed = parse_ref(ref)
    key = CONFIG_KEYS.get(role, "the config")
    if parsed is None:
        path = Path(ref.removeprefix(LOCAL_DIR)).expanduser()
        if not path.exists():
            from fishcam.models import catalog

            entry = catalog.published(ref)
            if entry is not None and entry.get:  # a published file a preset expects downloaded by hand
                raise MissingModelError(
                    f"{role} weights not found: {path}, the {entry.name} ({entry.source}): {entry.get}, "
                    f"or save it as {path}"
                )
            raise MissingModelError(
                f"{role} weights not found: {path}. Check the path in your config "
                f"or run `fishcam models list` to see what is installed"
            )
        return path
    if isinstance(parsed, UrlRef):
        path = parsed.cache_path()
        if not path.is_file():
            raise MissingModelError(
                f"{role} model {parsed.filename} is not on this machine (looked for {path}). Run `fishcam models "
                f"fetch` where {parsed.host} is reachable, or download {parsed.url} and set {key} to its local path"
            )
        pins.check(ref, path, sha256_file)
        return path
    from huggingface_hub import try_to_load_from_cache

    revision = parsed.revision or pins.revision(ref)
    found: list[Path] = []
    for filename in parsed.filenames:
        cached = try_to_load_from_cache(parsed.repo_id, filename, cache_dir=hf_cache_dir(), revision=revision)
        if not isinstance(cached, str):
            what = " and ".join(parsed.filenames) + (" into one folder" if len(parsed.filenames) > 1 else "")
            raise MissingModelError(
                f"{role} model {parsed.display} is not on this machine (looked in the Hugging Face "
                f"cache {hf_cache_dir()}). Run `fishcam models fetch` where the hub is reachable, "
                f"or download {what} from https://huggingface.co/{parsed.repo_id} and set {key} to its local path"
            )
        found.append(Path(cached))
    return found[0] if len(found) == 1 else found[0].parent


def hub_unreachable(timeout_s: float = 5.0) -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None when it can: a quick
    check, so that an offline machine hears so at once instead of after minutes of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return "HF_HUB_OFFLINE is set"
    return unreachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"), timeout_s)


def unreachable(url: str, timeout_s: float = 5.0) -> str | None:
    """Why the server of ``url`` cannot be reached from here (a TCP connection), or None.
    ``FISHCAM_OFFLINE`` set: none is tried (as ``HF_HUB_OFFLINE`` does for the hub)."""
    if os.environ.get("FISHCAM_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return "FISHCAM_OFFLINE is set"
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout_s).close()
    except OSError as exc:
        return f"{parsed.hostname} is not reachable ({exc.strerror or exc})"
    return None


def sha256_file(path: Path, _cache: dict[tuple[str, float, int], str] = {}) -> str:  # noqa: B006
    """SHA-256 of a file, remembered per (path, mtime, size) within the process."""
    # Always the content: a Hugging Face cache names blobs by their hash, but a damaged or replaced
    # blob keeps its name, and summary.json must say what was really used.
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime, stat.st_size)
    if key not in _cache:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _cache[key] = digest.hexdigest()
    return _cache[key]


def describe(path: Path) -> dict[str, object]:
    """Path, size and checksum of a model file, or of the weights inside a model folder."""
    path = Path(path)
    if path.is_dir():
        weights = sorted(p for p in path.iterdir() if p.suffix in {".safetensors", ".bin", ".pt", ".pth"})
        if not weights:
            return {"path": str(path)}
        path = weights[0]
    return {"path": str(path), "bytes": os.path.getsize(path), "sha256": sha256_file(path)}
