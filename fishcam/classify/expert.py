"""The species expert: a torchvision/timm classifier built from its spec and safe weights."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fishcam.classify.preprocess import to_batch
from fishcam.errors import ModelError
from fishcam.models import hub
from fishcam.models.checkpoint import load_state_dict, match_by_order
from fishcam.models.devices import DTYPES, exports_dir, pick_backend, pick_device, pick_precision
from fishcam.models.expert_spec import ExpertSpec

log = logging.getLogger(__name__)


class ExpertClassifier:
    """Implements the SpeciesModel protocol for one expert spec."""

    def __init__(
        self,
        spec: ExpertSpec,
        device: str = "auto",
        batch_size: int = 16,
        precision: str = "fp32",
        backend: str = "torch",
    ) -> None:
        self.spec = spec
        self.labels = spec.labels
        self.device = pick_device(device)
        self.precision = pick_precision(precision, self.device)
        self.dtype = getattr(torch, DTYPES[self.precision])
        self.batch_size = batch_size
        self.path = hub.resolve(spec.weights, "expert")
        checksum = hub.sha256_file(self.path)
        if spec.sha256 and spec.sha256.lower() != checksum:
            raise ModelError(
                f"expert weights {self.path} have sha256 {checksum[:12]}…, the manifest says "
                f"{spec.sha256[:12]}…: the file is damaged or not the one the manifest describes"
            )
        self.sha256 = checksum
        model = build_architecture(spec)
        state = load_state_dict(self.path)
        load_into(model, state, spec)
        # Channels-last memory and bf16/fp16 autocast are what make the network fast (REFERENCE §4);
        # autocast keeps the sensitive ops in fp32, so decisions stay those of fp32 (tested).
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        self.backend = pick_backend(backend, self.device)
        self._compiled = self._openvino(model) if self.backend == "openvino" else None
        # A compiled model's call reuses one infer request: cameras sharing this expert take turns.
        self._compiled_lock = threading.Lock()
        # The first call prepares kernels and weight layouts (about a second on a CPU): at load
        # time, not on the first fish of a video or a live stream.
        self.predict([np.zeros((*spec.preprocess.size, 3), np.uint8)])

    def _openvino(self, model: torch.nn.Module):
        """The network converted to OpenVINO once (cached by checksum, rebuilt when the weights
        change) and compiled for this CPU: the same runtime as the detector, so one thread pool."""
        import openvino as ov

        height, width = self.spec.preprocess.size
        folder = exports_dir() / f"{self.sha256[:16]}-expert-openvino-{height}x{width}"
        xml = folder / "model.xml"
        if not xml.exists():
            log.info("converting expert %s to OpenVINO (once; cached in %s)", self.path.name, folder)
            folder.mkdir(parents=True, exist_ok=True)
            converted = ov.convert_model(
                model.float().to(memory_format=torch.contiguous_format),
                example_input=torch.zeros(1, 3, height, width),
                input=[ov.PartialShape([-1, 3, height, width])],
            )
            ov.save_model(converted, str(xml.with_suffix(".tmp.xml")), compress_to_fp16=False)
            for suffix in (".xml", ".bin"):
                xml.with_suffix(".tmp" + suffix).replace(xml.with_suffix(suffix))
        hint = {"bf16": "bf16", "fp16": "f16"}.get(self.precision, "f32")
        return ov.Core().compile_model(
            str(xml), "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        )

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
                with torch.autocast(self.device.split(":")[0], dtype=self.dtype, enabled=self.precision != "fp32"):
                    logits = self.model(batch)
            outputs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        if not outputs:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(outputs)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "architecture": self.spec.architecture,
            "weights": self.spec.weights,
            **hub.describe(self.path),
            "labels": len(self.labels),
            "device": self.device,
            "precision": self.precision,
            "backend": self.backend,
        }


def build_architecture(spec: ExpertSpec) -> torch.nn.Module:
    """The network with random weights and a head sized to the spec's labels (no download)."""
    library, _, name = spec.architecture.partition(":")
    n = len(spec.labels)
    if library == "torchvision":
        import torchvision

        builder = getattr(torchvision.models, name, None)
        if builder is None:
            raise ModelError(f"torchvision has no model {name!r}")
        model = builder(weights=None)
        if spec.head:
            parent_path, _, leaf = spec.head.rpartition(".")
            parent = model.get_submodule(parent_path) if parent_path else model
            old = getattr(parent, leaf, None) if not leaf.isdigit() else parent[int(leaf)]
            if not isinstance(old, torch.nn.Linear):
                raise ModelError(f"{spec.architecture}: head {spec.head!r} is not a Linear layer")
            new = torch.nn.Linear(old.in_features, n)
            if leaf.isdigit():
                parent[int(leaf)] = new
            else:
                setattr(parent, leaf, new)
        return model
    import timm

    try:
        return timm.create_model(name, pretrained=False, num_classes=n)
    except RuntimeError as exc:
        raise ModelError(f"timm cannot build {name!r}: {exc}") from exc


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], spec: ExpertSpec) -> None:
    """Load a state dict, with messages that name the keys when it does not fit."""
    target = model.state_dict()
    if spec.key_match == "order":
        state = match_by_order(state, target)
    mismatched = [
        f"{key} {tuple(tensor.shape)} vs {tuple(target[key].shape)}"
        for key, tensor in state.items()
        if key in target and tuple(tensor.shape) != tuple(target[key].shape)
    ]
    if mismatched:
        head = spec.head or "the classifier head"
        raise ModelError(
            f"checkpoint {spec.weights} does not fit {spec.architecture} with {len(spec.labels)} labels: "
            f"{'; '.join(mismatched[:3])} (a wrong head size means the checkpoint has a different "
            f"number of classes than the labels; check {head} and the label list)"
        )
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        raise ModelError(
            f"checkpoint {spec.weights} is not a {spec.architecture} state dict: "
            f"missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''}"
        )
    model.load_state_dict(state, strict=True)
