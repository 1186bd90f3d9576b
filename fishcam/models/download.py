"""Downloading a model file: the only network access fishcam has, run by ``fishcam models fetch``.

Two kinds of source (:mod:`fishcam.models.hub` names them):

- a Hugging Face file or repo, fetched at a commit: the reference's ``@COMMIT``, else the one
  recorded at an earlier fetch, else the commit the repo is at now, which is then recorded
  (:mod:`fishcam.models.pins`) and used from then on;
- a plain HTTPS URL (a GitHub release asset): refused when it names a branch that moves
  (``main``, ``releases/latest``); streamed to a ``.part`` file, checked against the SHA-256 (and
  a git blob id) the catalogue publishes, else against what the first fetch recorded, and only
  then renamed into place. A failed or interrupted download leaves nothing half-written in place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from fishcam.errors import ModelError
from fishcam.models import catalog, hub, pins
from fishcam.models.paths import hf_cache_dir

log = logging.getLogger(__name__)

# Branch names that move: a URL naming one gives different bytes tomorrow.
MOVING = {"main", "master", "head", "latest", "dev", "develop", "trunk", "gh-pages"}
CHUNK = 1 << 20


@dataclass
class Fetched:
    path: Path
    notes: list[str] = field(default_factory=list)  # what the user must hear: pins recorded


def fetch(ref: str, timeout_s: float = 60.0) -> Fetched:
    """Download a model reference (explicit step only) and say what was pinned or recorded."""
    parsed = hub.parse_ref(ref)
    if parsed is None:
        return Fetched(hub.resolve(ref, "local"))
    if isinstance(parsed, hub.UrlRef):
        return _fetch_url(ref, parsed, timeout_s)
    return _fetch_hub(ref, parsed)


def moving_branch(url: str) -> str | None:
    """The moving branch a URL downloads from (GitHub, Hugging Face), or None when it is pinned."""
    parsed = urlparse(url)
    parts = [unquote(p) for p in parsed.path.split("/") if p]
    host = (parsed.hostname or "").lower()
    named: str | None = None
    if host == "raw.githubusercontent.com" and len(parts) > 2:
        # org/repo/REF/path, or org/repo/refs/heads/BRANCH/path (refs/tags/TAG: a tag)
        named = parts[4] if parts[2] == "refs" and len(parts) > 4 else parts[2]
    elif host == "github.com":
        for marker in ("raw", "blob"):
            if marker in parts[2:-1]:
                named = parts[parts.index(marker, 2) + 1]
        if "releases" in parts and parts[parts.index("releases") + 1 :][:1] == ["latest"]:
            named = "latest"
    elif host.endswith("huggingface.co") and "resolve" in parts[:-1]:
        named = parts[parts.index("resolve") + 1]
    return named if named is not None and named.lower() in MOVING else None


def _fetch_url(ref: str, url: hub.UrlRef, timeout_s: float) -> Fetched:
    branch = moving_branch(url.url)
    if branch:
        raise ModelError(
            f"model URL {url.url} downloads from {branch!r}, which moves: the file could change under the same "
            f"name. Use a release tag or a commit in the URL (a GitHub release asset, or a raw file at a commit)"
        )
    entry = catalog.published(ref)
    published = entry.sha256 if entry else None
    recorded = pins.get(ref).get("sha256")
    dest = url.cache_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        digest, size = _download(url.url, part, timeout_s)
        expected = published or recorded
        if expected and digest != expected:
            said = "the catalogue publishes" if published else "its first fetch recorded"
            raise ModelError(
                f"downloaded {url.filename} has sha256 {digest[:12]}…, but {said} "
                f"{expected[:12]}…: it is not the file fishcam expects, and was not kept. If the publisher replaced it "
                f"on purpose, delete the entry for it in {pins.pins_file()} and fetch again"
            )
        if entry and entry.git_blob and _git_blob(part, size) != entry.git_blob:
            raise ModelError(
                f"downloaded {url.filename} is not the file of git blob {entry.git_blob[:12]}… that the URL's commit "
                f"holds (a Git LFS pointer or an error page?); it was not kept"
            )
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    pins.record(ref, url=url.url, sha256=digest, bytes=size)
    notes = []
    if not published and not recorded:
        checked = " (its git blob id matched the repository's)" if entry and entry.git_blob else ""
        notes.append(
            f"recorded sha256 {digest} of {url.filename}{checked}: no checksum is published for it, so the first "
            f"fetch's is the reference; runs and later fetches are checked against it ({pins.pins_file()})"
        )
    return Fetched(dest, notes)


def _download(url: str, part: Path, timeout_s: float) -> tuple[str, int]:
    """Stream ``url`` into ``part``: its SHA-256 and size. Network and disk faults: one line."""
    import ssl
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "fishcam (models fetch)"})
    digest = hashlib.sha256()
    size = 0
    try:
        # The system's CA store (SSL_CERT_FILE too): a server whose certificate does not verify is refused.
        with urllib.request.urlopen(request, timeout=timeout_s, context=ssl.create_default_context()) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with part.open("wb") as out, _progress(part.name.removesuffix(".part"), total) as advance:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    advance(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            if total is not None and size != total:
                raise ModelError(f"download of {url} stopped after {size} of {total} bytes; run the fetch again")
    except urllib.error.HTTPError as exc:
        raise ModelError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise ModelError(f"cannot download {url}: {exc.reason}") from exc
    except (TimeoutError, ConnectionError) as exc:
        raise ModelError(f"cannot download {url}: {exc}") from exc
    except OSError as exc:
        raise ModelError(f"cannot write {part}: {exc.strerror or exc}; nothing was kept") from exc
    return digest.hexdigest(), size


def _git_blob(path: Path, size: int) -> str:
    """The id git gives a file's content: SHA-1 of ``blob <size>\\0`` and the bytes."""
    digest = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _progress:
    """A progress bar on a terminal; nothing on a log file (one line before, one after, from the caller)."""

    def __init__(self, name: str, total: int | None) -> None:
        self.name, self.total = name, total
        self._bar = None

    def __enter__(self):
        if sys.stderr.isatty():
            from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

            self._bar = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
            self._bar.start()
            task = self._bar.add_task(self.name, total=self.total)
            return lambda n: self._bar.advance(task, n)  # type: ignore[union-attr]
        return lambda n: None

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _fetch_hub(ref: str, parsed: hub.HubRef) -> Fetched:
    from huggingface_hub import HfApi, hf_hub_download

    notes = []
    revision = parsed.revision or pins.revision(ref)
    if revision is None:
        revision = HfApi().model_info(parsed.repo_id).sha
        if not revision:
            raise ModelError(f"the hub gave no commit for {parsed.repo_id}; pin one with @COMMIT in the reference")
        notes.append(
            f"pinned {parsed.repo_id} at commit {revision} (where its main branch is today); recorded in "
            f"{pins.pins_file()}, and runs use that commit. To fix it in the config, write the reference with "
            f"@{revision} after the repo name"
        )
    paths = [
        Path(hf_hub_download(parsed.repo_id, name, revision=revision, cache_dir=hf_cache_dir()))
        for name in parsed.filenames
    ]
    weights = paths[-1]  # the one file, or an open_clip repo's weights (after its config)
    pins.record(ref, revision=revision, sha256=hub.sha256_file(weights), bytes=weights.stat().st_size)
    return Fetched(paths[0] if len(paths) == 1 else paths[0].parent, notes)
