"""fishcam: which fish are in underwater video, tracked and counted per species.

Importing fishcam changes nothing in the process; process settings (threads, environment,
telemetry off) are ``fishcam.runtime.setup()``'s, which the commands, the model loaders and the
functions below call. The public API (docs/api.md) is loaded on first use, so ``import fishcam``
stays instant and imports no model library.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "process_video": "fishcam.api",
    "load_models": "fishcam.api",
    "load_config": "fishcam.api",
    "Config": "fishcam.config",
    "RunSummary": "fishcam.types",
    "SpeciesTally": "fishcam.types",
    "FishcamError": "fishcam.errors",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'fishcam' has no attribute {name!r}")
