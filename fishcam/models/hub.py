"""Where weights come from: local paths, or Hugging Face references found in the local cache.

Resolution never touches the network. Only :func:`fetch` downloads, and only when the user
asked for it (``fishcam models fetch``).

References:
  ``/path/to/file`` or ``relative/file``   a local file or folder
  ``hf://org/repo/path/in/repo``          one file of a Hugging Face repo (standard HF cache)
  ``hf-hub:org/repo``                     a whole open_clip repo (config + weights)
  ``local-dir:/path/to/folder``           open_clip's form for a local folder (same as the path)
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from fishcam.errors import MissingModelError, ModelError
from fishcam.models.paths import hf_cache_dir

log = logging.getLogger(__name__)

OPEN_CLIP_FILES = ("open_clip_config.json", "open_clip_model.safetensors")
LOCAL_DIR = "local-dir:"  # open_clip's own way to name a local model folder


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    filenames: tuple[str, ...]

    @property
    def display(self) -> str:
        return f"{self.repo_id}/{self.filenames[0]}" if len(self.filenames) == 1 else self.repo_id


def parse_ref(ref: str) -> HubRef | None:
    """The hub repo and files a reference names, or None for a local path."""
    if ref.startswith("hf://"):
        parts = ref[len("hf://") :].split("/")
        if len(parts) < 3 or not all(parts):
            raise ModelError(f"bad model reference {ref!r}: expected hf://org/repo/file")
        return HubRef("/".join(parts[:2]), ("/".join(parts[2:]),))
    if ref.startswith("hf-hub:"):
        repo = ref[len("hf-hub:") :]
        if repo.count("/") != 1:
            raise ModelError(f"bad model reference {ref!r}: expected hf-hub:org/repo")
        return HubRef(repo, OPEN_CLIP_FILES)
    return None


CONFIG_KEYS = {
    "detector": "detector.weights",
    "expert": "classify.expert.weights",
    "fallback": "classify.fallback.model",
}


def resolve(ref: str, role: str) -> Path:
    """The local path of a model reference, or MissingModelError saying how to get it.

    For ``hf-hub:`` references the path is the snapshot folder holding every file.
    """
    hub = parse_ref(ref)
    if hub is None:
        path = Path(ref.removeprefix(LOCAL_DIR)).expanduser()
        if not path.exists():
            raise MissingModelError(
                f"{role} weights not found: {path}. Check the path in your config "
                f"or run `fishcam models list` to see what is installed"
            )
        return path
    from huggingface_hub import try_to_load_from_cache

    found: list[Path] = []
    for filename in hub.filenames:
        cached = try_to_load_from_cache(hub.repo_id, filename, cache_dir=hf_cache_dir())
        if not isinstance(cached, str):
            what = " and ".join(hub.filenames) + (" into one folder" if len(hub.filenames) > 1 else "")
            raise MissingModelError(
                f"{role} model {hub.display} is not on this machine (looked in the Hugging Face "
                f"cache {hf_cache_dir()}). Run `fishcam models fetch` where the hub is reachable, "
                f"or download {what} from https://huggingface.co/{hub.repo_id} and set "
                f"{CONFIG_KEYS.get(role, 'the config')} to its local path"
            )
        found.append(Path(cached))
    return found[0] if len(found) == 1 else found[0].parent


def fetch(ref: str) -> Path:
    """Download a hub reference into the standard Hugging Face cache (explicit step only)."""
    hub = parse_ref(ref)
    if hub is None:
        return resolve(ref, "local")
    from huggingface_hub import hf_hub_download

    paths = [Path(hf_hub_download(hub.repo_id, name, cache_dir=hf_cache_dir())) for name in hub.filenames]
    return paths[0] if len(paths) == 1 else paths[0].parent


def hub_unreachable(timeout_s: float = 5.0) -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None when it can: a quick
    check, so that an offline machine hears so at once instead of after minutes of retries."""
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout_s).close()
    except OSError as exc:
        return f"{url.hostname} is not reachable ({exc.strerror or exc})"
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
