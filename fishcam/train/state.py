"""What a training run carries from epoch to epoch, and the resume checkpoint it is saved as.

The checkpoint is read back with ``torch.load(weights_only=True)`` (tensors and plain containers
only), so the dataclasses here are written as plain dicts: :meth:`TrainingState.to_payload` and
:meth:`TrainingState.from_payload` are the on-disk format, version :data:`CHECKPOINT_FORMAT`."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fishcam.errors import TrainingError, UnsafeCheckpointError
from fishcam.models.checkpoint import torch_load_tensors

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class ValScores:
    """The model's scores on the validation split."""

    val_loss: float
    val_accuracy: float
    val_macro_f1: float

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass
class EpochRecord:
    """One row of ``history.csv``, in its column order."""

    epoch: int  # counted over both stages, from 1
    stage: int
    stage_epoch: int  # counted within the stage, from 1
    lr: str  # each parameter group's learning rate, comma-separated
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    val_macro_f1: float
    train_images_per_s: float
    val_images_per_s: float
    best: bool = False  # the best validation macro-F1 so far

    def row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainingState:
    """Where a run stands after its last finished epoch, with what a resume needs to continue
    exactly as an uninterrupted run would."""

    config: dict[str, Any]  # TrainConfig.to_dict(): a resume must use the same one
    initialised: str  # "random" or the pretrained file the backbone came from
    stage: int = 1
    stage_epoch: int = 0  # epochs done in ``stage``
    epoch: int = 0  # epochs done in all
    stale: int = 0  # epochs of this stage since validation macro-F1 last improved
    best_f1: float = -1.0
    best_epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    baseline: ValScores | None = None  # before any training: what stage 1 must improve on
    model: dict[str, torch.Tensor] | None = None
    optimizer: dict[str, Any] | None = None  # of the stage in progress
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] = field(default_factory=dict)  # empty without mixed precision

    def stage_done(self, epochs: int, patience: int | None) -> bool:
        return self.stage_epoch >= epochs or bool(patience and self.stale >= patience)

    def record(self, record: EpochRecord, min_delta: float) -> bool:
        """Count a finished epoch of the current stage; True when it is the best so far."""
        self.stage_epoch += 1
        self.epoch += 1
        improved = record.val_macro_f1 > self.best_f1 + min_delta
        if improved:
            self.best_f1, self.best_epoch, self.stale = record.val_macro_f1, self.epoch, 0
        else:
            self.stale += 1
        record.best = improved
        self.history.append(record)
        return improved

    def to_payload(self) -> dict[str, Any]:
        """The checkpoint's dict: tensors and plain containers only."""
        return {
            "format": CHECKPOINT_FORMAT, "config": self.config, "initialised": self.initialised,
            "stage": self.stage, "stage_epoch": self.stage_epoch, "epoch": self.epoch, "stale": self.stale,
            "best_f1": self.best_f1, "best_epoch": self.best_epoch, "history": [r.row() for r in self.history],
            "optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler,
            "baseline": self.baseline.as_dict() if self.baseline is not None else None, "model": self.model,
        }  # fmt: skip

    @classmethod
    def from_payload(cls, payload: dict[str, Any], path: Path) -> TrainingState:
        if "format" not in payload:
            raise TrainingError(f"{path} is not a fishcam training checkpoint; start again without --resume")
        if payload["format"] != CHECKPOINT_FORMAT:
            raise TrainingError(
                f"{path} is a training checkpoint of format {payload['format']!r}; this fishcam resumes format "
                f"{CHECKPOINT_FORMAT} only: start again without --resume"
            )
        try:
            state = cls(**{k: v for k, v in payload.items() if k != "format"})
            rows: list[Any] = state.history
            state.history = [EpochRecord(**row) for row in rows]
            baseline: Any = state.baseline
            state.baseline = ValScores(**baseline) if baseline is not None else None
        except (TypeError, AttributeError) as exc:  # a key missing, unknown, or of the wrong kind
            raise TrainingError(
                f"{path} is a damaged fishcam training checkpoint ({exc}); start again without --resume"
            ) from exc
        return state


def load_checkpoint(path: Path) -> TrainingState:
    try:
        payload = torch_load_tensors(path)  # a payload is refused as unsafe, naming the file
    except UnsafeCheckpointError:
        raise
    except Exception as exc:  # a damaged file of any kind: say which and what to do
        raise TrainingError(f"{path} cannot be read ({exc}); start again without --resume") from exc
    if not isinstance(payload, dict):
        raise TrainingError(f"{path} is not a fishcam training checkpoint; start again without --resume")
    return TrainingState.from_payload(payload, path)


def save_checkpoint(state: TrainingState, path: Path) -> None:
    atomic_save(state.to_payload(), path)


def atomic_save(obj: Any, path: Path) -> None:
    """Write then rename: an interruption leaves the previous complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
