"""The resume checkpoint: its on-disk format (version 1, a plain dict read as tensors only), the
refusal of other versions, and the epoch bookkeeping that picks the best epoch."""

from __future__ import annotations

import pytest
import torch

from fishcam.errors import TrainingError
from fishcam.train.state import EpochRecord, TrainingState, ValScores, load_checkpoint, save_checkpoint

# The keys fishcam 0.1.0 wrote, in its order: checkpoints of interrupted runs must still resume.
FORMAT_1_KEYS = [
    "format", "config", "initialised", "stage", "stage_epoch", "epoch", "stale", "best_f1", "best_epoch",
    "history", "optimizer", "scheduler", "scaler", "baseline", "model",
]  # fmt: skip
ROW = {
    "epoch": 1, "stage": 1, "stage_epoch": 1, "lr": "0.001", "train_loss": 0.9, "train_accuracy": 0.5,
    "val_loss": 0.8, "val_accuracy": 0.6, "val_macro_f1": 0.55, "train_images_per_s": 10.0,
    "val_images_per_s": 20.0, "best": True,
}  # fmt: skip


def record(f1: float, epoch: int = 1) -> EpochRecord:
    return EpochRecord(**{**ROW, "epoch": epoch, "val_macro_f1": f1, "best": False})


def format_1_payload() -> dict:
    """A checkpoint as fishcam 0.1.0 saved it after stage 1's first epoch, written by hand."""
    return {
        "format": 1, "config": {"seed": 0, "stage1": {"epochs": 2}}, "initialised": "random", "stage": 1,
        "stage_epoch": 1, "epoch": 1, "stale": 0, "best_f1": 0.55, "best_epoch": 1, "history": [dict(ROW)],
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1]}]}, "scheduler": None,
        "scaler": {}, "baseline": {"val_loss": 1.4, "val_accuracy": 0.25, "val_macro_f1": 0.1},
        "model": {"head.weight": torch.zeros(2, 3), "head.bias": torch.ones(2)},
    }  # fmt: skip


def test_a_format_1_checkpoint_resumes(tmp_path):
    path = tmp_path / "last.pt"
    torch.save(format_1_payload(), path)
    state = load_checkpoint(path)
    assert (state.stage, state.stage_epoch, state.epoch, state.best_epoch, state.best_f1) == (1, 1, 1, 1, 0.55)
    assert state.history == [EpochRecord(**ROW)] and state.baseline == ValScores(1.4, 0.25, 0.1)
    assert state.config == {"seed": 0, "stage1": {"epochs": 2}} and state.initialised == "random"
    assert torch.equal(state.model["head.bias"], torch.ones(2)) and state.optimizer["param_groups"][0]["lr"] == 0.001


def test_a_saved_state_is_the_format_1_dict_and_reads_back(tmp_path):
    state = load_checkpoint(_saved(tmp_path, format_1_payload()))
    path = tmp_path / "again.pt"
    save_checkpoint(state, path)
    payload = torch.load(path, weights_only=True)  # plain containers and tensors only
    assert list(payload) == FORMAT_1_KEYS
    expected = format_1_payload()
    assert {k: v for k, v in payload.items() if k != "model"} == {k: v for k, v in expected.items() if k != "model"}
    assert all(torch.equal(payload["model"][k], expected["model"][k]) for k in expected["model"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 2}, r"^\S+ is a training checkpoint of format 2; this fishcam resumes format 1 only: start again"),
        ({"format": None}, r"of format None; this fishcam resumes format 1 only"),
        ({"epochs_done": 3}, r"is a damaged fishcam training checkpoint .*epochs_done.*start again without --resume"),
        ({"history": [{"epoch": 1}]}, r"is a damaged fishcam training checkpoint"),
    ],
)
def test_other_versions_and_damaged_checkpoints_are_refused_in_one_line(tmp_path, change, message):
    with pytest.raises(TrainingError, match=message) as caught:
        load_checkpoint(_saved(tmp_path, {**format_1_payload(), **change}))
    assert "\n" not in str(caught.value)


def test_a_dict_that_is_no_training_checkpoint_is_refused(tmp_path):
    with pytest.raises(TrainingError, match="is not a fishcam training checkpoint; start again without --resume"):
        load_checkpoint(_saved(tmp_path, {"head.weight": torch.zeros(2)}))  # an expert's state dict


def test_epochs_are_counted_and_the_best_one_chosen_by_macro_f1():
    state = TrainingState(config={}, initialised="random")
    assert state.record(record(0.5, epoch=1), min_delta=0.0) is True
    assert state.record(record(0.5, epoch=2), min_delta=0.0) is False  # equal is not better
    assert state.record(record(0.52, epoch=3), min_delta=0.05) is False  # nor within min_delta
    assert (state.epoch, state.stage_epoch, state.best_epoch, state.best_f1, state.stale) == (3, 3, 1, 0.5, 2)
    assert [r.best for r in state.history] == [True, False, False]
    assert state.stage_done(epochs=5, patience=2) and not state.stage_done(epochs=5, patience=None)
    assert state.record(record(0.6, epoch=4), min_delta=0.05) is True
    assert (state.best_epoch, state.stale) == (4, 0) and state.stage_done(epochs=4, patience=None)


def _saved(tmp_path, payload: dict):
    path = tmp_path / "last.pt"
    torch.save(payload, path)
    return path
