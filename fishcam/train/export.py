"""A trained expert in the files ``fishcam run`` reads: the state dict in the model card's format
(``torch.save(model.state_dict())``), the same tensors as safetensors, and a manifest with labels,
preprocessing, metrics, training config and the recommended fallback threshold."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from fishcam.models import hub
from fishcam.models.expert_spec import ExpertSpec, read_manifest

log = logging.getLogger(__name__)


def export_expert(
    model: torch.nn.Module,
    spec: ExpertSpec,
    out_dir: Path,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    fallback_threshold: float | None = None,
) -> Path:
    """Write ``<name>.pth``, ``<name>.safetensors``, ``labels.txt`` and ``<name>.json``; returns the manifest."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    # clone: safetensors refuses tensors that share memory, and the files must not alias the model.
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    pth = out_dir / f"{spec.name}.pth"
    torch.save(state, pth)
    safetensors = out_dir / f"{spec.name}.safetensors"
    save_file(state, str(safetensors), metadata={"format": "pt", "fishcam": "expert"})
    (out_dir / "labels.txt").write_text("\n".join(spec.labels) + "\n", encoding="utf-8")
    pre = spec.preprocess
    manifest: dict[str, Any] = {
        "name": spec.name,
        "architecture": spec.architecture,
        "weights": safetensors.name,
        "sha256": hub.sha256_file(safetensors),
        "labels": list(spec.labels),
        "head": spec.head,
        "key_match": "name",
        "preprocess": {
            "size": list(pre.size), "mean": list(pre.mean), "std": list(pre.std), "color": pre.color,
            "resize": pre.resize, "crop_pct": pre.crop_pct, "interpolation": pre.interpolation,
        },
    }  # fmt: skip
    if fallback_threshold is not None:
        manifest["fallback_threshold"] = fallback_threshold
    if metrics is not None:
        manifest["metrics"] = metrics
    if training is not None:
        manifest["training"] = training
    path = out_dir / f"{spec.name}.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    read_manifest(path)  # what we write must be what fishcam reads
    log.info("expert exported: %s (manifest), %s (model card format)", path, pth.name)
    return path
