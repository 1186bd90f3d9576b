"""The ``train`` extra: packages that only ``fishcam train`` and ``fishcam eval`` use (rembg's
background removal, matplotlib's report figures), so that ``fishcam run`` installs without them."""

from __future__ import annotations

import importlib.util

from fishcam.errors import ConfigError

INSTALL = "pip install 'fishcam[train]'"
REPORTS = ("matplotlib",)  # the confusion matrix and the gallery of mistakes
BACKGROUND_REMOVAL = ("rembg", "onnxruntime")  # rembg[cpu]


def require(command: str, modules: tuple[str, ...]) -> None:
    """Stop before any work, in one line, when a module of the extra is not installed."""
    missing = [name for name in modules if not _installed(name)]
    if missing:
        raise ConfigError(
            f"fishcam {command} needs {', '.join(missing)}, not installed here (the training extra): {INSTALL}"
        )


def _installed(name: str) -> bool:
    """Found without importing it (rembg takes seconds to import)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False
