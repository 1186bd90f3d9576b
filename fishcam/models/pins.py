"""What ``fishcam models fetch`` recorded of each file it downloaded: the hub commit it pinned
and the file's SHA-256, in ``~/.cache/fishcam/models/pins.json``.

A reference that names no commit (``hf://org/repo/file``) is fetched at the commit the repo is at
then, and that commit is used from then on; a file whose checksum nobody published is checked
against what its first fetch recorded. So a run uses the bytes that were fetched, and a file
replaced on the server or damaged on disk is found out, not silently used.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fishcam.errors import ModelError
from fishcam.models.paths import cache_dir


def pins_file() -> Path:
    return cache_dir("models", "pins.json")


def read() -> dict[str, dict[str, Any]]:
    path = pins_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model pins {path}: {exc}; delete it and run `fishcam models fetch`") from exc
    return data if isinstance(data, dict) else {}


def get(ref: str) -> dict[str, Any]:
    return read().get(ref, {})


def revision(ref: str) -> str | None:
    value = get(ref).get("revision")
    return str(value) if value else None


def record(ref: str, **fields: Any) -> None:
    """Add or replace what is recorded of ``ref`` (written whole, by rename: never half a file)."""
    data = read()
    data[ref] = {**fields, "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = pins_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pins-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def check(ref: str, path: Path, sha256: Callable[[Path], str]) -> None:
    """A downloaded file is the one its fetch recorded, or ModelError saying what to do."""
    expected = get(ref).get("sha256")
    if not expected:
        return
    actual = sha256(path)
    if actual != expected:
        raise ModelError(
            f"{path} has sha256 {actual[:12]}…, but `fishcam models fetch` recorded {str(expected)[:12]}… when it "
            f"downloaded it: the file was damaged or replaced. Delete it and run `fishcam models fetch` again"
        )
