"""An open-set calibration for any expert, from a folder of labelled images: the published
checkpoint (which has no manifest), an expert of your own, or one trained here on other data.

    python -m fishcam.train.calibrate LABELLED_IMAGES/ --expert balik_modeli_final.pth --out calibrated/

``LABELLED_IMAGES/`` is laid out as for ``fishcam train``: ``<label>/*.jpg`` folders named as the
expert's labels (a seeded, stratified share, ``--val-fraction``, is held out for the threshold),
or ``train/`` and ``val/`` folders of them (train: the prototypes; val: the threshold). What is
written: ``<name>.json`` (the expert's manifest with an ``open_set`` section; its weights are
the same file, by its reference), ``<name>.open-set.safetensors`` (the prototypes, tensors only)
and ``open_set_report.json``. Give the manifest as ``classify.expert.weights``.

``--unseen FOLDER`` measures the check on images that are none of the expert's species (how many
it rejects); they never change the calibration.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fishcam.errors import DatasetError, FishcamError
from fishcam.models import open_set
from fishcam.train.data import Sample, load_splits, read_image, read_labelled

log = logging.getLogger(__name__)

REPORT = "open_set_report.json"


@dataclass(frozen=True)
class CalibrationResult:
    manifest: Path
    record: dict[str, Any]  # what open_set_report.json holds


def calibrate_expert(
    data: Path,
    weights: str,
    out_dir: Path,
    *,
    keep: float = 0.95,
    val_fraction: float = 0.3,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 32,
    unseen: Path | None = None,
) -> CalibrationResult:
    """Prototypes from ``data``'s training part, the threshold that keeps ``keep`` of its held-out
    part, a manifest in ``out_dir`` naming the expert's weights and the calibration."""
    from fishcam.models.expert_spec import expert_spec_for
    from fishcam.models.loading import load_expert
    from fishcam.train.config import DataConfig
    from fishcam.train.evaluate import label_indices
    from fishcam.train.export import manifest_fields, write_manifest, write_open_set

    if not 0 < keep < 1:
        raise ValueError("keep must be between 0 and 1")
    spec = expert_spec_for(weights)
    splits = load_splits(Path(data), DataConfig(val_fraction=val_fraction, test_fraction=0.0), seed)
    if not splits.val:
        raise DatasetError(f"{data}: no held-out images to choose the threshold on (val/ or --val-fraction)")
    expert = load_expert(spec, device=device, batch_size=batch_size, backend="torch")
    targets = label_indices(splits.train, expert.labels)  # a class folder that is no label: one clear error
    label_indices(splits.val, expert.labels)
    missing = [label for i, label in enumerate(expert.labels) if i not in set(targets.tolist())]
    if missing:
        log.warning(
            "%d of the expert's %d labels have no calibration images (%s%s): crops it names as them are judged "
            "against the other classes' prototypes, so most go to the fallback; add images of them",
            len(missing), len(expert.labels), ", ".join(missing[:5]), "…" if len(missing) > 5 else "",
        )  # fmt: skip
    log.info("open-set calibration of %s: %d prototype images, %d held out", spec.name, len(splits.train),
             len(splits.val))  # fmt: skip
    train_features = _features(expert, splits.train, batch_size)
    val_features = _features(expert, splits.val, batch_size)
    prototypes, record = open_set.calibrate(train_features, targets, val_features, len(expert.labels), keep)
    record.update(data=str(Path(data).resolve()), split="val" if splits.given else f"{val_fraction:.0%} held out")
    if splits.test:
        record["test_kept"] = _kept(prototypes, _features(expert, splits.test, batch_size), record["threshold"])
        record["test_images"] = len(splits.test)
    if unseen is not None:
        samples, _ = read_labelled(Path(unseen), DataConfig())
        record["unseen_rejected"] = round(
            1 - _kept(prototypes, _features(expert, samples, batch_size), record["threshold"]), 4
        )
        record["unseen_images"] = len(samples)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # expert.spec: the architecture the weights were read as (the published file's key layout found)
    manifest = manifest_fields(expert.spec, _weights_reference(spec.weights), expert.loaded.sha256)
    manifest.update({k: v for k, v in spec.extra.items() if k in ("fallback_threshold", "metrics", "training")})
    manifest["open_set"] = write_open_set(out_dir, spec.name, prototypes, record)
    path = write_manifest(out_dir / f"{spec.name}.json", manifest)
    (out_dir / REPORT).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log.info(
        "open-set threshold %.3f keeps %.1f%% of %d held-out images%s; manifest %s (give it as "
        "classify.expert.weights)", record["threshold"], 100 * record["kept"], record["images"],
        f", rejects {record['unseen_rejected']:.1%} of {record['unseen_images']} unseen" if unseen else "", path,
    )  # fmt: skip
    return CalibrationResult(path, record)


def _features(expert: Any, samples: Sequence[Sample], batch_size: int) -> np.ndarray:
    """The expert's pooled features of every sample, a batch of images in memory at a time."""
    out = []
    for start in range(0, len(samples), batch_size):
        images = []
        for sample in samples[start : start + batch_size]:
            image = read_image(sample.path)
            if image is None:
                raise DatasetError(f"{sample.path} can no longer be read")
            images.append(image)
        out.append(expert.features(images)[1])
    return np.concatenate(out)


def _kept(prototypes: open_set.Prototypes, features: np.ndarray, threshold: float) -> float:
    return round(float((prototypes.scores(features) >= threshold).mean()), 4)


def _weights_reference(ref: str) -> str:
    """A hub reference as it is (resolved on each machine); a local file by its absolute path."""
    return ref if ref.startswith(("hf://", "hf-hub:")) else str(Path(ref).expanduser().resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fishcam.train.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="labelled images: <label>/ folders, or train/ and val/ of them")
    parser.add_argument("--expert", required=True, help="manifest (.json/.yaml) or published-format checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="folder for the manifest and the prototypes")
    parser.add_argument("--keep", type=float, default=0.95, help="share of in-set crops to keep (default 0.95)")
    parser.add_argument("--val-fraction", type=float, default=0.3, help="held out for the threshold (default 0.3)")
    parser.add_argument("--unseen", type=Path, help="images of none of the expert's species: how many are rejected")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="fishcam: %(message)s")
    from fishcam import runtime

    runtime.setup()
    try:
        calibrate_expert(
            args.data, args.expert, args.out, keep=args.keep, val_fraction=args.val_fraction, seed=args.seed,
            device=args.device, batch_size=args.batch_size, unseen=args.unseen,
        )  # fmt: skip
    except FishcamError as exc:
        log.error("%s", exc)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
