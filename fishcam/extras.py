"""Optional parts of fishcam and the packages they need: a command whose extra is not installed
stops before any work, in one line that says what to install."""

from __future__ import annotations

import importlib.util

from fishcam.errors import ConfigError

WHAT = {"train": "the training extra", "score": "the scoring extra"}


def require(command: str, modules: tuple[str, ...], extra: str) -> None:
    missing = [name for name in modules if not installed(name)]
    if missing:
        raise ConfigError(
            f"fishcam {command} needs {', '.join(missing)}, not installed here ({WHAT.get(extra, extra)}): "
            f"pip install 'fishcam[{extra}]'"
        )


def installed(name: str) -> bool:
    """Found without importing it (some take seconds to import)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False
