"""Where fishcam keeps what it can rebuild: one cache folder, read from the environment at call
time (so a test or a service can point it elsewhere after import)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/fishcam`` (default ``~/.cache/fishcam``), or a folder in it: exports
    of converted models, text embeddings of species lists, Ultralytics' private settings. Not
    created here."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().joinpath("fishcam", *parts)


def hf_cache_dir() -> Path:
    """The standard Hugging Face cache, as Hugging Face's own variables say (``HF_HUB_CACHE``,
    then ``HF_HOME``, then huggingface_hub's default), read at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)
