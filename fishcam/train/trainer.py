"""Two-stage training of an expert: frozen backbone and a fresh head first, then everything with
small learning rates and cosine annealing. A checkpoint after every epoch; a resumed run ends
exactly where an uninterrupted one would; the best epoch by validation macro-F1 is exported."""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fishcam import __version__
from fishcam.classify.expert import build_architecture
from fishcam.errors import DatasetError, TrainingError
from fishcam.models import open_set
from fishcam.models.architectures import with_features
from fishcam.models.checkpoint import load_state_dict
from fishcam.models.devices import pick_device
from fishcam.models.expert_spec import ExpertSpec
from fishcam.train import balance, evaluate, extras
from fishcam.train.config import TrainConfig
from fishcam.train.data import Sample, Splits, load_splits
from fishcam.train.export import OpenSetResult, export_expert
from fishcam.train.loop import Bar, EvalSet, TrainSet, guard_memory, one_thread_each
from fishcam.train.model import expert_spec, head_module, initial_weights, initialise
from fishcam.train.state import EpochRecord, TrainingState, ValScores, atomic_save, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoints/last.pt"
BEST = "checkpoints/best.pth"
# Settings that change how a run executes but not what it learns: a resume may change them.
RESUMABLE_CHANGES = {"device", "num_workers", "eval_batch_size"}

__all__ = ["BEST", "CHECKPOINT", "TrainResult", "load_checkpoint", "train"]


@dataclass
class TrainResult:
    manifest: Path
    best_epoch: int
    best_val_macro_f1: float
    test: dict[str, Any] | None
    fallback: dict[str, Any]
    history: list[dict[str, Any]]  # the rows of history.csv
    baseline: dict[str, float]  # validation scores before training
    open_set: dict[str, Any] | None = None  # the open-set calibration record (None: not calibrated)


EpochHook = Callable[[dict[str, Any]], None]  # called with each finished epoch's history row


def train(
    data: Path,
    out_dir: Path,
    cfg: TrainConfig,
    resume: bool = False,
    show_progress: bool = True,
    on_epoch_end: EpochHook | None = None,
) -> TrainResult:
    """Train an expert on ``data`` into ``out_dir`` (reports, checkpoints, the exported expert);
    ``resume`` continues the interrupted run there. ``on_epoch_end`` gets each history row."""
    removes_background = cfg.balance.rembg.probability > 0
    extras.require("train", extras.REPORTS + (extras.BACKGROUND_REMOVAL if removes_background else ()))
    out_dir = Path(out_dir)
    saved = _previous_run(out_dir, cfg, resume)
    if saved is None:
        initial_weights(cfg.model)  # no weights for the backbone: stop before any work
    out_dir.mkdir(parents=True, exist_ok=True)
    run, balance_report, initialised = _set_up(data, out_dir, cfg, saved, show_progress)
    state = saved if saved is not None else TrainingState(cfg.to_dict(), initialised)
    if state.baseline is None:
        state.baseline = run.baseline()
    for stage, epochs in ((1, cfg.stage1.epochs), (2, cfg.stage2.epochs)):
        if stage >= state.stage and epochs > 0:
            _run_stage(run, state, stage, epochs, on_epoch_end)
    if state.epoch == 0 or not (out_dir / BEST).is_file():
        raise TrainingError("no epoch was trained: set stage1.epochs or stage2.epochs above 0")
    return _finish(run, state, balance_report)


# ---- the steps of a run --------------------------------------------------------------------


def _previous_run(out_dir: Path, cfg: TrainConfig, resume: bool) -> TrainingState | None:
    """The interrupted run to continue (``--resume``), checked against ``cfg``; None for a new run."""
    checkpoint_path = out_dir / CHECKPOINT
    if not resume:
        if checkpoint_path.is_file():
            raise TrainingError(f"{out_dir} holds a training run: add --resume to continue it, or choose another --out")
        return None
    if not checkpoint_path.is_file():
        raise TrainingError(f"nothing to resume: {checkpoint_path} does not exist")
    saved = load_checkpoint(checkpoint_path)
    _check_same_config(saved.config, cfg.to_dict())
    return saved


def _set_up(
    data: Path, out_dir: Path, cfg: TrainConfig, saved: TrainingState | None, show_progress: bool
) -> tuple[_Run, dict[str, Any], str]:
    """Data, class balance, background removal and the model: everything an epoch needs."""
    device = pick_device(cfg.device)
    amp = device.startswith("cuda") and cfg.amp in (True, "auto")
    splits = _prepare_data(data, out_dir, cfg, resumed=saved is not None)
    if not splits.val:
        raise DatasetError("no validation images: set data.val_fraction above 0 or give a val/ split")
    plans = balance.plan(splits.train, splits.labels, cfg.balance)
    balance_report = balance.balance_report(plans)
    _log_balance(plans)
    remover = None
    if cfg.balance.rembg.probability > 0:
        remover = balance.BackgroundRemover(cfg.balance.rembg)
        with Bar(show_progress, "background removal masks", len(splits.train)) as bar:
            balance_report["background_removal"] = remover.prepare(splits.train, bar.advance)
    _write_json(out_dir / "balance_report.json", balance_report)
    model, spec, initialised = _build_model(cfg, splits.labels, saved)
    model.to(device)
    run = _Run(model, spec, cfg, device, amp, splits, plans, remover, out_dir, show_progress)
    return run, balance_report, initialised


def _build_model(
    cfg: TrainConfig, labels: tuple[str, ...], saved: TrainingState | None
) -> tuple[torch.nn.Module, ExpertSpec, str]:
    """The architecture with ImageNet weights (a new run) or the interrupted run's weights."""
    spec = expert_spec(cfg.model, labels, cfg.preprocess.spec())
    torch.manual_seed(cfg.seed)
    model = build_architecture(spec)
    if saved is None:
        return model, spec, initialise(model, spec, cfg.model)
    model.load_state_dict(saved.model or {})
    log.info("resuming after stage %d epoch %d (%d epochs done)", saved.stage, saved.stage_epoch, saved.epoch)
    return model, spec, saved.initialised


def _run_stage(run: _Run, state: TrainingState, stage: int, epochs: int, on_epoch_end: EpochHook | None) -> None:
    """The stage's epochs from where ``state`` stands, until done or stopped early."""
    optimizer, scheduler = run.stage_optimizer(stage)
    if stage == state.stage and state.stage_epoch > 0:
        _restore_optimizers(run, state, optimizer, scheduler)
    else:
        state.stage, state.stage_epoch, state.stale = stage, 0, 0
    run.set_stage(stage)
    patience = run.cfg.early_stopping.patience
    while not state.stage_done(epochs, patience):
        record = run.epoch(stage, state, epochs, optimizer)
        if scheduler is not None:
            scheduler.step()
        _choose_best(run, state, record, epochs)
        _checkpoint(run, state, optimizer, scheduler)
        if on_epoch_end is not None:
            on_epoch_end(record.row())
    if patience and state.stale >= patience:
        log.info("stage %d stopped early: no better validation macro-F1 for %d epochs", stage, state.stale)
    state.stage, state.stage_epoch = stage + 1, 0  # a resume after this point starts the next stage


def _restore_optimizers(run: _Run, state: TrainingState, optimizer, scheduler) -> None:
    """Continue an interrupted stage: its optimizer, LR schedule and loss scaler as they were."""
    optimizer.load_state_dict(state.optimizer)
    if scheduler is not None:
        scheduler.load_state_dict(state.scheduler)
    if state.scaler:
        run.scaler.load_state_dict(state.scaler)


def _choose_best(run: _Run, state: TrainingState, record: EpochRecord, epochs: int) -> None:
    """Count the epoch; the best by validation macro-F1 so far is saved as the one to export."""
    if state.record(record, run.cfg.early_stopping.min_delta):
        atomic_save(run.model.state_dict(), run.out_dir / BEST)
    _log_epoch(record, epochs)
    _write_history(run.out_dir, state.history)


def _checkpoint(run: _Run, state: TrainingState, optimizer, scheduler) -> None:
    """Everything a resume needs, after every epoch."""
    state.model = run.model.state_dict()
    state.optimizer = optimizer.state_dict()
    state.scheduler = scheduler.state_dict() if scheduler is not None else None
    state.scaler = run.scaler.state_dict() if run.amp else {}
    save_checkpoint(state, run.out_dir / CHECKPOINT)


class _Run:
    """What one training run needs per epoch: the model, its stages' optimizers and the data."""

    def __init__(
        self, model: torch.nn.Module, spec: ExpertSpec, cfg: TrainConfig, device: str, amp: bool, splits: Splits,
        plans: list[balance.ClassPlan], remover: balance.BackgroundRemover | None, out_dir: Path, show_progress: bool,
    ) -> None:  # fmt: skip
        self.model, self.spec, self.cfg, self.device, self.amp = model, spec, cfg, device, amp
        self.splits, self.plans, self.out_dir, self.show_progress = splits, plans, out_dir, show_progress
        self.head = head_module(model, spec)
        head_ids = {id(p) for p in self.head.parameters()}
        self.head_params = list(self.head.parameters())
        self.backbone_params = [p for p in model.parameters() if id(p) not in head_ids]
        self.train_set = TrainSet(splits.train, splits.labels, spec.preprocess, cfg, remover)
        self.val_loader = self.eval_loader(splits.val)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)
        self.stage = 1

    def _loader(self, dataset: Dataset, batch_size: int) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=False, num_workers=self.cfg.num_workers,
            pin_memory=self.device.startswith("cuda"), persistent_workers=False,
            worker_init_fn=one_thread_each if self.cfg.num_workers else None,
        )  # fmt: skip

    def eval_loader(self, samples: list[Sample]) -> DataLoader:
        return self._loader(EvalSet(samples, self.spec.preprocess), self.cfg.eval_batch_size)

    def stage_optimizer(self, stage: int):
        if stage == 1:
            return torch.optim.Adam(self.head_params, lr=self.cfg.stage1.lr), None
        s2 = self.cfg.stage2
        optimizer = torch.optim.Adam(
            [{"params": self.backbone_params, "lr": s2.backbone_lr}, {"params": self.head_params, "lr": s2.head_lr}]
        )
        floor = s2.min_lr_ratio

        def cosine(epoch: int) -> float:
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(epoch, s2.epochs) / s2.epochs))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)

    def set_stage(self, stage: int) -> None:
        self.stage = stage
        for p in self.backbone_params:
            p.requires_grad_(stage == 2)

    def _train_mode(self) -> None:
        if self.stage == 1:
            # A frozen backbone keeps its batch-norm statistics too: only the head learns.
            self.model.eval()
            self.head.train()
        else:
            self.model.train()
            if self.cfg.stage2.freeze_batchnorm:
                for module in self.model.modules():
                    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                        module.eval()

    def baseline(self) -> ValScores:
        """Where training starts from: what stage 1 must improve on."""
        scores = self.val_scores(self.predict(self.val_loader, "validation before training"))
        log.info("before training: val acc %.3f, val macro-F1 %.3f", scores.val_accuracy, scores.val_macro_f1)
        return scores

    def epoch(self, stage: int, state: TrainingState, epochs: int, optimizer) -> EpochRecord:
        """The epoch after ``state``'s last: a balanced, augmented pass over train, then validation."""
        epoch = state.epoch
        torch.manual_seed(self.cfg.seed * 100_003 + epoch)  # dropout / stochastic depth, same on resume
        self.train_set.epoch = epoch
        self.train_set.order = balance.epoch_indices(self.splits.train, self.plans, self.cfg.seed, epoch)
        label = f"stage {stage} epoch {state.stage_epoch + 1}/{epochs}"
        started = time.perf_counter()
        train_loss, train_accuracy, seen = self._fit(optimizer, label)
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        scores = self.val_scores(self.predict(self.val_loader, f"{label} validation"))
        val_s = time.perf_counter() - started
        return EpochRecord(
            epoch=epoch + 1, stage=stage, stage_epoch=state.stage_epoch + 1,
            lr=",".join(f"{g['lr']:.3g}" for g in optimizer.param_groups),
            train_loss=train_loss, train_accuracy=train_accuracy, val_loss=scores.val_loss,
            val_accuracy=scores.val_accuracy, val_macro_f1=scores.val_macro_f1,
            train_images_per_s=seen / train_s, val_images_per_s=len(self.splits.val) / val_s,
        )  # fmt: skip

    def _fit(self, optimizer, label: str) -> tuple[float, float, int]:
        """One pass over the epoch's training images: mean loss, accuracy, images seen."""
        loader = self._loader(self.train_set, self.cfg.batch_size)
        self._train_mode()
        loss_sum, correct, seen = 0.0, 0, 0
        with guard_memory(self.cfg), Bar(self.show_progress, label, len(self.train_set)) as bar:
            for images, targets in loader:
                loss, right = self._step(images, targets, optimizer, label)
                loss_sum += loss * len(targets)
                correct += right
                seen += len(targets)
                bar.advance(len(targets), loss=loss_sum / seen)
        return loss_sum / max(seen, 1), correct / max(seen, 1), seen

    def _step(self, images: torch.Tensor, targets: torch.Tensor, optimizer, label: str) -> tuple[float, int]:
        """One optimiser step on a batch: its loss and how many it got right."""
        images, targets = images.to(self.device, non_blocking=True), targets.to(self.device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            logits = self.model(images)
            loss = torch.nn.functional.cross_entropy(logits.float(), targets)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss.item()} in {label}: training diverged; lower the learning rates "
                f"(stage1.lr, stage2.*_lr) or check the images"
            )
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
        return loss.item(), int((logits.argmax(1) == targets).sum())

    def val_scores(self, probs: np.ndarray) -> ValScores:
        y_true = evaluate.label_indices(self.splits.val, self.splits.labels)
        metrics = evaluate.classification_metrics(y_true, probs.argmax(1), self.splits.labels)
        loss = float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, None)).mean())
        return ValScores(val_loss=loss, val_accuracy=metrics["accuracy"], val_macro_f1=metrics["macro_f1"])

    def predict(self, loader: DataLoader, label: str) -> np.ndarray:
        return self.predict_features(loader, label, None)[0]

    @torch.inference_mode()
    def predict_features(
        self, loader: DataLoader, label: str, features: torch.nn.Module | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and, given ``features`` (a ``with_features`` of the model), the pooled
        penultimate features of the same pass."""
        self.model.eval()
        outputs, pooled = [], []
        with guard_memory(self.cfg), Bar(self.show_progress, label, len(loader.dataset)) as bar:  # type: ignore[arg-type]
            for images in loader:
                with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
                    batch = images.to(self.device, non_blocking=True)
                    if features is None:
                        logits = self.model(batch)
                    else:
                        logits, feats = features(batch)
                        pooled.append(feats.float().cpu().numpy())
                outputs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
                bar.advance(len(images))
        return np.concatenate(outputs), (np.concatenate(pooled) if features is not None else None)


# ---- the end of a run: best epoch, fallback threshold, report, export ----------------------


def _finish(run: _Run, state: TrainingState, balance_report: dict[str, Any]) -> TrainResult:
    """Best epoch back in the model, fallback and open-set thresholds from validation, test
    report, export."""
    run.model.load_state_dict(load_state_dict(run.out_dir / BEST))
    run.model.eval()
    features = with_features(run.model, run.spec) if run.cfg.export.open_set_keep is not None else None
    val_probs, val_features = run.predict_features(run.val_loader, "best model on validation", features)
    fallback = _fallback_threshold(run, val_probs)
    calibrated = _open_set(run, features, val_features)
    report = _held_out_report(run, state, val_probs, fallback, features, calibrated)
    manifest = export_expert(
        run.model, run.spec, run.out_dir / "expert", _metrics_summary(report),
        {**_training_summary(run, state, balance_report), "selection": report["selection"]},
        fallback_threshold=fallback["threshold"],
        open_set=calibrated,
    )  # fmt: skip
    assert state.baseline is not None  # measured before the first epoch
    history = [record.row() for record in state.history]
    return TrainResult(
        manifest, state.best_epoch, state.best_f1, report, fallback, history, state.baseline.as_dict(),
        open_set=calibrated[1] if calibrated is not None else None,
    )  # fmt: skip


def _open_set(run: _Run, features: torch.nn.Module | None, val_features: np.ndarray | None) -> OpenSetResult | None:
    """Prototypes from the training images (as the run sees them: no augmentation), the threshold
    that keeps ``export.open_set_keep`` of the validation images (fishcam.models.open_set)."""
    keep = run.cfg.export.open_set_keep
    if keep is None or features is None or val_features is None:
        if keep is not None:
            log.warning("no open-set calibration: the input of %s's head cannot be read", run.spec.architecture)
        return None
    _, train_features = run.predict_features(run.eval_loader(run.splits.train), "open-set prototypes", features)
    assert train_features is not None
    targets = evaluate.label_indices(run.splits.train, run.splits.labels)
    prototypes, record = open_set.calibrate(train_features, targets, val_features, len(run.splits.labels), keep)
    record["split"] = "val"
    log.info(
        "open-set threshold %.3f: keeps %.1f%% of validation images (target %.0f%%%s); prototypes from %d "
        "training images", record["threshold"], 100 * record["kept"], 100 * keep,
        "" if record["guaranteed"] else ", too few validation images to guarantee it", record["prototype_images"],
    )  # fmt: skip
    return prototypes, record


def _fallback_threshold(run: _Run, val_probs: np.ndarray) -> dict[str, Any]:
    """The confidence below which the fallback should decide, chosen on validation for the
    precision of the expert's calls (evaluate.fallback_threshold)."""
    cfg, splits = run.cfg, run.splits
    val_true = evaluate.label_indices(splits.val, splits.labels)
    target = cfg.export.target_precision
    fallback = evaluate.fallback_threshold(val_probs.max(1), val_probs.argmax(1) == val_true, target)
    if fallback["coverage"]:
        low, high = fallback["precision_ci95"]
        log.info(
            "recommended fallback threshold %.3f: expert calls at or above it were right %.1f%% of the time on "
            "validation (95%% interval %.1f–%.1f%%, target %.0f%%), %.0f%% of calls; below it the fallback decides",
            fallback["threshold"], 100 * fallback["precision_kept"], 100 * low, 100 * high, 100 * target,
            100 * fallback["coverage"],
        )  # fmt: skip
    else:
        log.warning(
            "no confidence level reaches export.target_precision %.2f on validation: recommended fallback "
            "threshold %.3f (the fallback decides every call)", target, fallback["threshold"],
        )  # fmt: skip
    return fallback


def _held_out_report(
    run: _Run, state: TrainingState, val_probs: np.ndarray, fallback: dict[str, Any],
    features: torch.nn.Module | None, calibrated: OpenSetResult | None,
) -> dict[str, Any]:  # fmt: skip
    """The best epoch's report on the test split (on validation when there is no test split),
    with the share of its images that the open-set check keeps."""
    cfg, splits = run.cfg, run.splits
    split_name = "test" if splits.test else "val"
    if not splits.test:
        log.warning("no test images: the report below is on the validation split, which chose the best epoch")
    samples = splits.split(split_name)
    selection = evaluate.epoch_selection([r.row() for r in state.history], state.best_epoch, len(splits.val))
    for note in selection["notes"]:
        log.warning("epoch selection: %s", note)
    extra: dict[str, Any] = {
        "split": split_name, "best_epoch": state.best_epoch, "selection": selection, "fallback_threshold": fallback,
    }  # fmt: skip
    if split_name == "val":
        probs = val_probs
    elif calibrated is not None and features is not None:
        probs, test_features = run.predict_features(run.eval_loader(samples), "test", features)
        assert test_features is not None
        prototypes, record = calibrated
        kept = prototypes.scores(test_features) >= record["threshold"]
        record["test_kept"] = round(float(kept.mean()), 4)
        record["test_images"] = len(samples)
        log.info("open-set check on the test split: %.1f%% of %d images kept", 100 * kept.mean(), len(samples))
    else:
        probs = run.predict(run.eval_loader(samples), "test")
    if calibrated is not None:
        extra["open_set"] = calibrated[1]
    return evaluate.write_reports(
        run.out_dir / "eval", samples, probs, splits.labels, f"{cfg.model.name}: {split_name} split",
        extra=extra, gallery_max=cfg.export.gallery_max,
    )  # fmt: skip


def _metrics_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``metrics``."""
    summary = {k: report[k] for k in ("images", "accuracy", "accuracy_ci95", "macro_precision", "macro_recall",
                                      "macro_f1")}  # fmt: skip
    summary["split"] = report["split"]
    summary["per_class_f1"] = {row["label"]: round(row["f1"], 4) for row in report["per_class"]}
    return summary


def _training_summary(run: _Run, state: TrainingState, balance_report: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``training``: how this expert was made."""
    return {
        "fishcam": __version__,
        "data": {k: v for k, v in run.splits.report().items() if k in ("totals", "splits_given")},
        "balance": balance_report["after"],
        "initialised_from": state.initialised,
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_macro_f1": state.best_f1,
        "config": run.cfg.to_dict(),
    }


# ---- helpers -------------------------------------------------------------------------------


def _prepare_data(data: Path, out_dir: Path, cfg: TrainConfig, resumed: bool) -> Splits:
    splits_csv = out_dir / "splits.csv"
    if resumed and splits_csv.is_file():
        # The same images in the same splits as before the interruption, even if the folder changed.
        splits = load_splits(splits_csv, cfg.data, cfg.seed)
        if splits.skipped:
            raise DatasetError(f"{len(splits.skipped)} image(s) of the interrupted run are gone or damaged")
        return splits
    splits = load_splits(Path(data), cfg.data, cfg.seed)
    _write_json(out_dir / "data_report.json", splits.report())
    (out_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    with splits_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows({**row, "path": str(Path(row["path"]).resolve())} for row in splits.to_rows())
    _log_counts(splits)
    return splits


def _check_same_config(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> None:
    changed = _diff(saved, current, prefix)
    changed = [k for k in changed if k.split(".")[0] not in RESUMABLE_CHANGES]
    if changed:
        raise TrainingError(
            f"the config differs from the interrupted run's ({', '.join(changed[:5])}); resume with the same "
            f"config, or start a new run in another --out"
        )


def _diff(a: Any, b: Any, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b)) for d in _diff(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _write_history(out_dir: Path, history: Sequence[EpochRecord]) -> None:
    rows = [record.row() for record in history]
    with (out_dir / "history.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _log_counts(splits: Splits) -> None:
    report = splits.report()
    log.info("%d classes; images train %d, val %d, test %d", len(splits.labels), *report["totals"].values())
    for label, counts in report["counts"].items():
        log.info("  %-30s train %5d  val %4d  test %4d", label, counts["train"], counts["val"], counts["test"])


def _log_balance(plans: list[balance.ClassPlan]) -> None:
    for p in plans:
        if p.action != "kept":
            log.info("  balance: %-30s %5d → %5d per epoch (%s)", p.label, p.available, p.per_epoch, p.action)


def _log_epoch(record: EpochRecord, epochs: int) -> None:
    log.info(
        "stage %d epoch %d/%d: loss %.4f, train acc %.3f, val acc %.3f, val macro-F1 %.3f%s "
        "(%.1f img/s train, %.1f img/s val)",
        record.stage, record.stage_epoch, epochs, record.train_loss, record.train_accuracy,
        record.val_accuracy, record.val_macro_f1, " best" if record.best else "",
        record.train_images_per_s, record.val_images_per_s,
    )  # fmt: skip
