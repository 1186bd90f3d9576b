"""A trained expert in the files ``fishcam run`` reads: the state dict in the model card's format
(``torch.save(model.state_dict())``), the same tensors as safetensors, and a manifest with labels,
preprocessing, metrics, training config, the recommended fallback threshold and the open-set
calibration (its prototypes in a side file of tensors, ``<name>.open-set.safetensors``)."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import torch

from fishcam.models import hub
from fishcam.models.expert_spec import ExpertSpec, read_manifest
from fishcam.models.open_set import METHOD, SUFFIX, Prototypes, write_prototypes

log = logging.getLogger(__name__)

OpenSetResult = tuple[Prototypes, dict[str, Any]]  # the prototypes and the calibration record


def export_expert(
    model: torch.nn.Module,
    spec: ExpertSpec,
    out_dir: Path,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    fallback_threshold: float | None = None,
    open_set: OpenSetResult | None = None,
) -> Path:
    """Write ``<name>.pth``, ``<name>.safetensors``, ``labels.txt``, ``<name>.json`` and, with a
    calibration, ``<name>.open-set.safetensors``; returns the manifest."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    # clone: safetensors refuses tensors that share memory, and the files must not alias the model.
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    pth = out_dir / f"{spec.name}.pth"
    torch.save(state, pth)
    safetensors = out_dir / f"{spec.name}.safetensors"
    save_file(state, str(safetensors), metadata={"format": "pt", "fishcam": "expert"})
    same_mode_as(pth, safetensors)
    (out_dir / "labels.txt").write_text("\n".join(spec.labels) + "\n", encoding="utf-8")
    manifest = manifest_fields(spec, safetensors.name, hub.sha256_file(safetensors))
    if fallback_threshold is not None:
        manifest["fallback_threshold"] = fallback_threshold
    if open_set is not None:
        manifest["open_set"] = write_open_set(out_dir, spec.name, *open_set)
        same_mode_as(pth, out_dir / manifest["open_set"]["prototypes"])
    if metrics is not None:
        manifest["metrics"] = metrics
    if training is not None:
        manifest["training"] = training
    path = write_manifest(out_dir / f"{spec.name}.json", manifest)
    log.info("expert exported: %s (manifest), %s (model card format)", path, pth.name)
    return path


def same_mode_as(reference: Path, path: Path) -> None:
    """safetensors writes its files 0600 whatever the umask; give them the mode of the files
    beside them (written as the umask says), so whoever may read the expert may read all of it."""
    os.chmod(path, stat.S_IMODE(reference.stat().st_mode))


def manifest_fields(spec: ExpertSpec, weights: str, sha256: str) -> dict[str, Any]:
    """The manifest keys that say what the expert is: architecture, weights, labels, preprocessing."""
    pre = spec.preprocess
    return {
        "name": spec.name,
        "architecture": spec.architecture,
        "weights": weights,
        "sha256": sha256,
        "labels": list(spec.labels),
        "head": spec.head,
        "key_match": spec.key_match,
        "preprocess": {
            "size": list(pre.size), "mean": list(pre.mean), "std": list(pre.std), "color": pre.color,
            "resize": pre.resize, "crop_pct": pre.crop_pct, "interpolation": pre.interpolation,
        },
    }  # fmt: skip


def write_open_set(out_dir: Path, name: str, prototypes: Prototypes, record: dict[str, Any]) -> dict[str, Any]:
    """The prototypes' side file and the manifest's ``open_set`` section that names it."""
    path = out_dir / f"{name}{SUFFIX}"
    write_prototypes(path, prototypes)
    return {
        "method": METHOD,
        "prototypes": path.name,
        "sha256": hub.sha256_file(path),
        "threshold": record["threshold"],
        "keep": record["keep"],
        "calibration": {k: v for k, v in record.items() if k not in ("threshold", "keep")},
    }


def write_manifest(path: Path, manifest: dict[str, Any]) -> Path:
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    read_manifest(path)  # what we write must be what fishcam reads
    return path
