"""The species-model protocol that the expert, the fallback and test models share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


class SpeciesModel(Protocol):
    """Maps crops (BGR uint8 arrays) to class probabilities over ``labels``."""

    labels: tuple[str, ...]
    device: str  # "cpu" or "cuda[:N]": where it runs (how the app spreads threads over it)

    def predict(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities of shape ``(len(crops_bgr), len(labels))``; rows sum to 1."""
        ...

    def describe(self) -> dict[str, Any]:
        """What this model is, for the run summary."""
        ...


class ConstantModel:
    """A species model that gives the same, scripted answer for every crop (for tests and dry runs)."""

    device = "cpu"

    def __init__(self, labels: Sequence[str], probabilities: Sequence[float]) -> None:
        self.labels = tuple(labels)
        probs = np.asarray(probabilities, dtype=np.float32)
        if probs.shape != (len(self.labels),):
            raise ValueError("one probability per label")
        self._probs = probs

    def predict(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        return np.tile(self._probs, (len(crops_bgr), 1))

    def describe(self) -> dict[str, Any]:
        return {"kind": "constant", "labels": len(self.labels)}
