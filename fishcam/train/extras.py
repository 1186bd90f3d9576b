"""The ``train`` extra: packages that only ``fishcam train`` and ``fishcam eval`` use (rembg's
background removal, matplotlib's report figures), so that ``fishcam run`` installs without them."""

from __future__ import annotations

REPORTS = ("matplotlib",)  # the confusion matrix and the gallery of mistakes
BACKGROUND_REMOVAL = ("rembg", "onnxruntime")  # rembg[cpu]


def require(command: str, modules: tuple[str, ...]) -> None:
    """Stop before any work, in one line, when a module of the extra is not installed."""
    from fishcam import extras

    extras.require(command, modules, "train")
