"""The species-model protocol that the expert, the fallback and test models share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

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


@dataclass(frozen=True)
class Scored:
    """An open-set model's answer: probabilities, and each crop's open-set score (higher: more
    like the images the model was calibrated on), or None when it has no calibration."""

    probs: np.ndarray  # (N, len(labels)), rows sum to 1
    open_set: np.ndarray | None  # (N,)


@runtime_checkable
class OpenSetModel(SpeciesModel, Protocol):
    """A species model that can also say how much a crop looks like what it was trained on
    (the expert with a calibrated manifest). ``open_set_threshold`` is the calibrated least
    score of an in-set crop, None when there is no calibration: then it is a plain model."""

    open_set_threshold: float | None

    def predict_scored(self, crops_bgr: Sequence[np.ndarray]) -> Scored:
        """Probabilities as ``predict`` and, same pass, the open-set score of each crop."""
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
