"""Labelled images: discovery (class folders or a CSV), seeded stratified splits, class counts,
and unreadable files skipped and listed instead of crashing a long run."""

from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fishcam.errors import DatasetError
from fishcam.train.config import DataConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str


@dataclass
class Splits:
    labels: tuple[str, ...]  # the classes in output order (sorted names)
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    given: bool = False  # the user gave the splits (folders or a split column)
    skipped: list[dict[str, str]] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def report(self) -> dict[str, Any]:
        counts = {
            label: {name: sum(s.label == label for s in self.split(name)) for name in SPLITS} for label in self.labels
        }
        return {
            "classes": len(self.labels),
            "splits_given": self.given,
            "totals": {name: len(self.split(name)) for name in SPLITS},
            "counts": counts,
            "empty_classes": self.empty_classes,
            "skipped": self.skipped,
            "warnings": self.warnings,
        }

    def to_rows(self) -> list[dict[str, str]]:
        return [{"path": str(s.path), "label": s.label, "split": n} for n in SPLITS for s in self.split(n)]


def read_image(path: Path) -> np.ndarray | None:
    """BGR uint8 image, or None when the file is missing, damaged or not an image."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None


def load_splits(source: Path, cfg: DataConfig, seed: int) -> Splits:
    """Class folders (``DATA/<species>/*.jpg``), given splits (``DATA/{train,val,test}/<species>/``)
    or a CSV (``path,label[,split]``); without given splits a seeded stratified split is made."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"training data not found: {source}")
    skipped: list[dict[str, str]] = []
    empty: list[str] = []
    if source.is_file():
        rows = _read_csv(source)
        given = any(r.get("split") for r in rows)
        by_split: dict[str, list] = {name: [] for name in SPLITS} if given else {"all": []}
        for row in rows:
            key = row.get("split") or "train" if given else "all"
            if key not in by_split:
                raise DatasetError(f"{source}: split must be one of {', '.join(SPLITS)}, got {key!r}")
            by_split[key].append(Sample(_relative(source, row["path"]), row["label"]))
    elif (source / "train").is_dir():
        given = True
        by_split = {
            name: _scan_classes(source / name, cfg, empty) if (source / name).is_dir() else [] for name in SPLITS
        }
    else:
        given = False
        by_split = {"all": _scan_classes(source, cfg, empty)}
    by_split = {name: _readable(samples, skipped) for name, samples in by_split.items()}
    splits = _check_given(by_split, source) if given else _stratified(by_split["all"], cfg, seed)
    splits.skipped, splits.empty_classes = skipped, sorted(set(empty))
    for label in splits.empty_classes:
        splits.warnings.append(f"class folder {label!r} has no readable images: it is not a class")
    if skipped:
        splits.warnings.append(f"{len(skipped)} file(s) skipped (unreadable or missing), listed in data_report.json")
    for message in splits.warnings:
        log.warning("%s", message)
    return splits


def read_labelled(source: Path, cfg: DataConfig, split: str | None = None) -> tuple[list[Sample], list[dict[str, str]]]:
    """Every readable sample of a labelled folder or CSV (for ``fishcam eval``), with the skipped files.
    Given splits: only ``split`` (default test)."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"evaluation data not found: {source}")
    skipped: list[dict[str, str]] = []
    if source.is_file():
        rows = _read_csv(source)
        if split and any(r.get("split") for r in rows):
            rows = [r for r in rows if r.get("split") == split]
        samples = [Sample(_relative(source, r["path"]), r["label"]) for r in rows]
    else:
        if (source / "train").is_dir() or (source / (split or "test")).is_dir():
            source = source / (split or "test")
            if not source.is_dir():
                raise DatasetError(f"no {source.name}/ folder in the evaluation data")
        samples = _scan_classes(source, cfg, [])
    samples = _readable(samples, skipped)
    if not samples:
        raise DatasetError(f"no readable labelled images in {source}")
    return samples, skipped


def _scan_classes(root: Path, cfg: DataConfig, empty: list[str]) -> list[Sample]:
    extensions = {e.lower() for e in cfg.extensions}
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        if not files:
            empty.append(folder.name)
        samples += [Sample(p, folder.name) for p in files]
    return samples


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DatasetError(f"{path}: a CSV needs the columns path,label (and optionally split)")
        rows = [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]
    rows = [r for r in rows if r["path"] and r["label"]]
    if not rows:
        raise DatasetError(f"{path}: no rows with a path and a label")
    return rows


def _relative(csv_path: Path, ref: str) -> Path:
    path = Path(ref)
    return path if path.is_absolute() else csv_path.parent / path


def _readable(samples: list[Sample], skipped: list[dict[str, str]]) -> list[Sample]:
    # Decoding once up front costs a pass over the data, but a damaged file found in epoch 12
    # would cost the run.
    good = []
    for sample in samples:
        if read_image(sample.path) is None:
            reason = "missing" if not sample.path.exists() else "unreadable"
            skipped.append({"path": str(sample.path), "label": sample.label, "reason": reason})
            log.warning("skipping %s (%s)", sample.path, reason)
        else:
            good.append(sample)
    return good


def _labels(samples: list[Sample]) -> list[str]:
    return sorted({s.label for s in samples})


def _stratified(samples: list[Sample], cfg: DataConfig, seed: int) -> Splits:
    labels = _labels(samples)
    _need_two_classes(labels)
    rng = random.Random(seed)
    splits = Splits(tuple(labels), [], [], [])
    for label in labels:
        items = [s for s in samples if s.label == label]
        rng.shuffle(items)
        n = len(items)
        n_val = max(1, round(n * cfg.val_fraction)) if cfg.val_fraction > 0 and n >= 2 else 0
        n_test = max(1, round(n * cfg.test_fraction)) if cfg.test_fraction > 0 and n >= 3 else 0
        while n - n_val - n_test < 1:  # the training split always keeps one
            if n_test >= n_val and n_test:
                n_test -= 1
            else:
                n_val -= 1
        splits.val += items[:n_val]
        splits.test += items[n_val : n_val + n_test]
        splits.train += items[n_val + n_test :]
        if n < 3:
            splits.warnings.append(
                f"class {label!r} has {n} image(s): too few for validation and test, it is trained on only"
            )
    return splits


def _check_given(by_split: dict[str, list[Sample]], source: Path) -> Splits:
    train_labels = _labels(by_split["train"])
    _need_two_classes(train_labels)
    splits = Splits(tuple(train_labels), by_split["train"], by_split["val"], by_split["test"], given=True)
    for name in ("val", "test"):
        extra = sorted(set(_labels(by_split[name])) - set(train_labels))
        if extra:
            raise DatasetError(
                f"label sets disagree: {name} has classes that train lacks: {', '.join(extra)} "
                f"({source}); the expert can only learn classes it is trained on"
            )
        missing = sorted(set(train_labels) - set(_labels(by_split[name])))
        if missing and by_split[name]:
            splits.warnings.append(f"{name} split has no images of: {', '.join(missing)}")
    if not splits.val:
        raise DatasetError(f"{source}: the given splits have no validation images (val/)")
    return splits


def _need_two_classes(labels: list[str]) -> None:
    if len(labels) < 2:
        found = f"only {labels[0]!r}" if labels else "none"
        raise DatasetError(f"a classifier needs at least two classes with readable images, found {found}")
