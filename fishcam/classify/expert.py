"""The species expert: a loaded torchvision/timm classifier (``fishcam.models.loading``) run on
crops. Building the network and reading its weights are ``fishcam.models``'; this only predicts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fishcam.classify.preprocess import to_batch
from fishcam.models.architectures import build_architecture, load_into  # noqa: F401  (fishcam.train's import)
from fishcam.models.devices import DTYPES

if TYPE_CHECKING:
    from fishcam.models.loading import LoadedExpert


class ExpertClassifier:
    """Implements the SpeciesModel protocol over a loaded expert.

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
        self._network = model.network
        self._dtype = getattr(torch, DTYPES[model.precision])
        self._compiled = model.compiled
        # A compiled model's call reuses one infer request: cameras sharing this expert take turns.
        self._compiled_lock = threading.Lock()

    def warm_up(self) -> None:
        """The first call prepares kernels and weight layouts (about a second on a CPU): at load
        time, not on the first fish of a video or a live stream."""
        self.predict([np.zeros((*self.spec.preprocess.size, 3), np.uint8)])

    @torch.inference_mode()
    def predict(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        outputs = []
        for start in range(0, len(crops_bgr), self.batch_size):
            array = to_batch(crops_bgr[start : start + self.batch_size], self.spec.preprocess)
            if self._compiled is not None:
                with self._compiled_lock:
                    logits = torch.from_numpy(np.array(self._compiled(array)[0]))
            else:
                batch = torch.from_numpy(array).to(self.device, memory_format=torch.channels_last)
                with torch.autocast(self.device.split(":")[0], dtype=self._dtype, enabled=self.precision != "fp32"):
                    logits = self._network(batch)
            outputs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        if not outputs:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(outputs)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "architecture": self.spec.architecture,
            "weights": self.spec.weights,
            **self.loaded.describe(),
            "labels": len(self.labels),
            "device": self.device,
            "precision": self.precision,
            "backend": self.backend,
        }
