"""The species expert: a loaded torchvision/timm classifier (``fishcam.models.loading``) run on
crops. Building the network and reading its weights are ``fishcam.models``'; this only predicts.

With an open-set calibration in its manifest, one forward pass gives both the probabilities and
each crop's similarity to the nearest class prototype (:mod:`fishcam.models.open_set`):
:meth:`ExpertClassifier.predict_scored`. Whether that similarity is enough is
:func:`fishcam.classify.decide.route`'s to say."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fishcam.classify.base import Scored
from fishcam.classify.preprocess import to_batch
from fishcam.models.architectures import build_architecture, load_into  # noqa: F401  (fishcam.train's import)
from fishcam.models.devices import DTYPES

if TYPE_CHECKING:
    from fishcam.models.loading import LoadedExpert


class ExpertClassifier:
    """Implements the SpeciesModel protocol (and OpenSetModel) over a loaded expert.

    ``ExpertClassifier(load_expert_network(spec, ...), batch_size=16)`` adapts a loaded network;
    ``load_expert(spec, ...)`` does that and warms it up.
    """

    def __init__(self, model: LoadedExpert, *, batch_size: int = 16) -> None:
        self.loaded = model
        self.spec = model.spec
        self.labels = model.spec.labels
        self.device = model.device
        self.precision = model.precision
        self.backend = model.backend
        self.batch_size = batch_size
        self.calibration = model.calibration
        # The threshold its open-set score is judged by: the calibrated one, None without one.
        self.open_set_threshold = None if model.calibration is None else model.calibration.threshold
        self._network = model.network
        self._features = model.features
        self._dtype = getattr(torch, DTYPES[model.precision])
        self._compiled = model.compiled
        # A compiled model's call reuses one infer request: cameras sharing this expert take turns.
        self._compiled_lock = threading.Lock()

    def warm_up(self) -> None:
        """The first call prepares kernels and weight layouts (about a second on a CPU): at load
        time, not on the first fish of a video or a live stream."""
        blank = [np.zeros((*self.spec.preprocess.size, 3), np.uint8)]
        if self.calibration is not None:
            self.predict_scored(blank)
        else:
            self.predict(blank)

    def predict(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        return self._run(crops_bgr, features=False)[0]

    def predict_scored(self, crops_bgr: Sequence[np.ndarray]) -> Scored:
        """Probabilities and, with a calibration, each crop's open-set score (same pass)."""
        if self.calibration is None:
            return Scored(self.predict(crops_bgr), None)
        probs, features = self._run(crops_bgr, features=True)
        assert features is not None
        return Scored(probs, self.calibration.prototypes.scores(features))

    def features(self, crops_bgr: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, pooled penultimate features) of the torch network: what an open-set
        calibration is computed from (``fishcam.train.calibrate``)."""
        if self._features is None:
            from fishcam.errors import ModelError

            raise ModelError(f"{self.spec.architecture}: the input of its classifier head cannot be read")
        probs, features = self._run(crops_bgr, features=True, torch_only=True)
        assert features is not None
        return probs, features

    @torch.inference_mode()
    def _run(
        self, crops_bgr: Sequence[np.ndarray], features: bool, torch_only: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        probs, pooled = [], []
        compiled = None if torch_only or (features and not self.loaded.compiled_features) else self._compiled
        for start in range(0, len(crops_bgr), self.batch_size):
            array = to_batch(crops_bgr[start : start + self.batch_size], self.spec.preprocess)
            feats = None
            if compiled is not None:
                with self._compiled_lock:
                    result = compiled(array)
                    logits = torch.from_numpy(np.array(result[0]))
                    if features:
                        feats = torch.from_numpy(np.array(result[1]))
            else:
                batch = torch.from_numpy(array).to(self.device, memory_format=torch.channels_last)
                with torch.autocast(self.device.split(":")[0], dtype=self._dtype, enabled=self.precision != "fp32"):
                    if features:
                        assert self._features is not None
                        logits, feats = self._features(batch)
                    else:
                        logits = self._network(batch)
            probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
            if feats is not None:
                pooled.append(feats.float().cpu().numpy())
        if not probs:
            dim = self.calibration.prototypes.dim if self.calibration is not None else 0
            empty = np.zeros((0, dim), np.float32) if features else None
            return np.zeros((0, len(self.labels)), dtype=np.float32), empty
        return np.concatenate(probs), (np.concatenate(pooled) if features else None)

    def describe(self) -> dict[str, Any]:
        described = {
            "name": self.spec.name,
            "architecture": self.spec.architecture,
            "weights": self.spec.weights,
            **self.loaded.describe(),
            "labels": len(self.labels),
            "device": self.device,
            "precision": self.precision,
            "backend": self.backend,
        }
        if self.calibration is not None:
            described["open_set_calibration"] = {
                "method": "prototype_cosine",
                "threshold": self.calibration.threshold,
                "keep": self.calibration.keep,
                "prototypes": self.calibration.source,
            }
        return described
