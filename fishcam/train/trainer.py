"""Two-stage training of an expert: frozen backbone and a fresh head first, then everything with
small learning rates and cosine annealing. A checkpoint after every epoch; a resumed run ends
exactly where an uninterrupted one would; the best epoch by validation macro-F1 is exported."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fishcam import __version__
from fishcam.classify.expert import build_architecture
from fishcam.classify.preprocess import to_batch
from fishcam.errors import DatasetError, TrainingError, UnsafeCheckpointError
from fishcam.models.checkpoint import load_state_dict, torch_load_tensors
from fishcam.models.devices import pick_device
from fishcam.models.expert_spec import Preprocess
from fishcam.train import balance, evaluate
from fishcam.train.config import TrainConfig
from fishcam.train.data import Sample, Splits, load_splits, read_image
from fishcam.train.export import export_expert
from fishcam.train.model import expert_spec, head_module, initialise

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoints/last.pt"
BEST = "checkpoints/best.pth"
# Settings that change how a run executes but not what it learns: a resume may change them.
RESUMABLE_CHANGES = {"device", "num_workers", "eval_batch_size"}


@dataclass
class TrainResult:
    manifest: Path
    best_epoch: int
    best_val_macro_f1: float
    test: dict[str, Any] | None
    fallback: dict[str, Any]
    history: list[dict[str, Any]]
    baseline: dict[str, float]


class _TrainSet(Dataset):
    """The balanced epoch's images: background removed with probability p, augmented, then
    prepared exactly as ``fishcam run`` prepares crops."""

    def __init__(self, samples, labels, pre: Preprocess, cfg: TrainConfig, remover) -> None:
        self.samples, self.pre, self.cfg, self.remover = samples, pre, cfg, remover
        self.index = {label: i for i, label in enumerate(labels)}
        self.order: list[int] = []
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int):
        sample = self.samples[self.order[position]]
        image = read_image(sample.path)
        if image is None:
            raise DatasetError(f"{sample.path} can no longer be read")
        rng = balance.sample_rng(self.cfg.seed, self.epoch, position)
        if self.remover is not None and rng.random() < self.cfg.balance.rembg.probability:
            image = self.remover.remove(sample.path, image)
        image = balance.augment(image, self.cfg.balance.augment, rng)
        return torch.from_numpy(to_batch([image], self.pre)[0]), self.index[sample.label]


class _EvalSet(Dataset):
    def __init__(self, samples: list[Sample], pre: Preprocess) -> None:
        self.samples, self.pre = samples, pre

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        image = read_image(self.samples[i].path)
        if image is None:
            raise DatasetError(f"{self.samples[i].path} can no longer be read")
        return torch.from_numpy(to_batch([image], self.pre)[0])


EpochHook = Callable[[dict[str, Any]], None]


def train(
    data: Path,
    out_dir: Path,
    cfg: TrainConfig,
    resume: bool = False,
    show_progress: bool = True,
    on_epoch_end: EpochHook | None = None,
) -> TrainResult:
    out_dir = Path(out_dir)
    checkpoint_path = out_dir / CHECKPOINT
    saved: dict[str, Any] | None = None
    if resume:
        if not checkpoint_path.is_file():
            raise TrainingError(f"nothing to resume: {checkpoint_path} does not exist")
        saved = load_checkpoint(checkpoint_path)
        _check_same_config(saved["config"], cfg.to_dict())
    elif checkpoint_path.is_file():
        raise TrainingError(f"{out_dir} holds a training run: add --resume to continue it, or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    amp = device.startswith("cuda") and cfg.amp in (True, "auto")

    splits = _prepare_data(data, out_dir, cfg, resumed=saved is not None)
    if not splits.val:
        raise DatasetError("no validation images: set data.val_fraction above 0 or give a val/ split")
    plans = balance.plan(splits.train, splits.labels, cfg.balance)
    balance_report = balance.balance_report(plans)
    _write_json(out_dir / "balance_report.json", balance_report)
    _log_balance(plans)
    remover = balance.BackgroundRemover(cfg.balance.rembg) if cfg.balance.rembg.probability > 0 else None

    pre = cfg.preprocess.spec()
    spec = expert_spec(cfg.model, splits.labels, pre)
    torch.manual_seed(cfg.seed)
    model = build_architecture(spec)
    initialised = initialise(model, spec, cfg.model) if saved is None else saved["initialised"]
    model.to(device)
    run = _Run(model, spec, cfg, device, amp, splits, plans, remover, out_dir, show_progress)
    state = _fresh_state(cfg, initialised) if saved is None else saved
    if saved is not None:
        model.load_state_dict(saved["model"])
        log.info(
            "resuming after stage %d epoch %d (%d epochs done)", saved["stage"], saved["stage_epoch"], saved["epoch"]
        )

    if "baseline" not in state:
        # Where training starts from: what stage 1 must improve on.
        state["baseline"] = run.val_scores(run.predict(run.val_loader, "validation before training"))
        log.info(
            "before training: val acc %.3f, val macro-F1 %.3f", state["baseline"]["val_accuracy"],
            state["baseline"]["val_macro_f1"],
        )  # fmt: skip
    stages = ((1, cfg.stage1.epochs), (2, cfg.stage2.epochs))
    for stage, epochs in stages:
        if stage < state["stage"] or epochs == 0:
            continue
        continuing = stage == state["stage"] and state["stage_epoch"] > 0
        optimizer, scheduler = run.stage_optimizer(stage)
        if continuing:
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            if state["scaler"]:
                run.scaler.load_state_dict(state["scaler"])
        else:
            state.update(stage=stage, stage_epoch=0, stale=0)
        run.set_stage(stage)
        while not _stage_done(state, epochs, cfg):
            record = run.epoch(stage, state, epochs, optimizer)
            if scheduler is not None:
                scheduler.step()
            state["stage_epoch"] += 1
            state["epoch"] += 1
            improved = record["val_macro_f1"] > state["best_f1"] + cfg.early_stopping.min_delta
            if improved:
                state.update(best_f1=record["val_macro_f1"], best_epoch=state["epoch"], stale=0)
                _atomic_save(model.state_dict(), out_dir / BEST)
            else:
                state["stale"] += 1
            record["best"] = improved
            state["history"].append(record)
            _log_epoch(record, epochs)
            _write_history(out_dir, state["history"])
            state.update(
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict() if scheduler is not None else None,
                scaler=run.scaler.state_dict() if amp else {},
            )
            _atomic_save(state, checkpoint_path)
            if on_epoch_end is not None:
                on_epoch_end(record)
        if cfg.early_stopping.patience and state["stale"] >= cfg.early_stopping.patience:
            log.info("stage %d stopped early: no better validation macro-F1 for %d epochs", stage, state["stale"])
        state["stage"] = stage + 1  # a resume after this point starts the next stage
        state["stage_epoch"] = 0
    if state["epoch"] == 0 or not (out_dir / BEST).is_file():
        raise TrainingError("no epoch was trained: set stage1.epochs or stage2.epochs above 0")
    return _finish(run, state, out_dir, balance_report)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch_load_tensors(path)  # a payload is refused as unsafe, naming the file
    except UnsafeCheckpointError:
        raise
    except Exception as exc:  # a damaged file of any kind: say which and what to do
        raise TrainingError(f"{path} cannot be read ({exc}); start again without --resume") from exc
    if not isinstance(state, dict):
        raise TrainingError(f"{path} is not a fishcam training checkpoint; start again without --resume")
    return state


class _Run:
    """What one training run needs per epoch: the model, its stages' optimizers and the data."""

    def __init__(self, model, spec, cfg, device, amp, splits, plans, remover, out_dir, show_progress) -> None:
        self.model, self.spec, self.cfg, self.device, self.amp = model, spec, cfg, device, amp
        self.splits, self.plans, self.out_dir, self.show_progress = splits, plans, out_dir, show_progress
        self.head = head_module(model, spec)
        head_ids = {id(p) for p in self.head.parameters()}
        self.head_params = list(self.head.parameters())
        self.backbone_params = [p for p in model.parameters() if id(p) not in head_ids]
        self.train_set = _TrainSet(splits.train, splits.labels, spec.preprocess, cfg, remover)
        self.val_loader = self._loader(_EvalSet(splits.val, spec.preprocess), cfg.eval_batch_size)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)
        self.stage = 1

    def _loader(self, dataset, batch_size: int) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=False, num_workers=self.cfg.num_workers,
            pin_memory=self.device.startswith("cuda"), persistent_workers=False,
        )  # fmt: skip

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

    def epoch(self, stage: int, state: dict[str, Any], epochs: int, optimizer) -> dict[str, Any]:
        epoch = state["epoch"]
        torch.manual_seed(self.cfg.seed * 100_003 + epoch)  # dropout / stochastic depth, same on resume
        self.train_set.epoch = epoch
        self.train_set.order = balance.epoch_indices(self.splits.train, self.plans, self.cfg.seed, epoch)
        loader = self._loader(self.train_set, self.cfg.batch_size)
        label = f"stage {stage} epoch {state['stage_epoch'] + 1}/{epochs}"
        self._train_mode()
        loss_sum, correct, seen = 0.0, 0, 0
        started = time.perf_counter()
        with _guard_memory(self.cfg), _Bar(self.show_progress, label, len(self.train_set)) as bar:
            for images, targets in loader:
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
                loss_sum += loss.item() * len(targets)
                correct += int((logits.argmax(1) == targets).sum())
                seen += len(targets)
                bar.advance(len(targets), loss=loss_sum / seen)
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        probs = self.predict(self.val_loader, f"{label} validation")
        val_s = time.perf_counter() - started
        return {
            "epoch": epoch + 1,
            "stage": stage,
            "stage_epoch": state["stage_epoch"] + 1,
            "lr": ",".join(f"{g['lr']:.3g}" for g in optimizer.param_groups),
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            **self.val_scores(probs),
            "train_images_per_s": seen / train_s,
            "val_images_per_s": len(self.splits.val) / val_s,
        }

    def val_scores(self, probs: np.ndarray) -> dict[str, float]:
        y_true = evaluate.label_indices(self.splits.val, self.splits.labels)
        metrics = evaluate.classification_metrics(y_true, probs.argmax(1), self.splits.labels)
        loss = float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, None)).mean())
        return {"val_loss": loss, "val_accuracy": metrics["accuracy"], "val_macro_f1": metrics["macro_f1"]}

    @torch.inference_mode()
    def predict(self, loader: DataLoader, label: str) -> np.ndarray:
        self.model.eval()
        outputs = []
        with _guard_memory(self.cfg), _Bar(self.show_progress, label, len(loader.dataset)) as bar:
            for images in loader:
                with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
                    logits = self.model(images.to(self.device, non_blocking=True))
                outputs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
                bar.advance(len(images))
        return np.concatenate(outputs)


def _finish(run: _Run, state: dict[str, Any], out_dir: Path, balance_report: dict[str, Any]) -> TrainResult:
    """Best epoch back in the model, fallback threshold from validation, test report, export."""
    cfg, splits, labels = run.cfg, run.splits, run.splits.labels
    run.model.load_state_dict(load_state_dict(out_dir / BEST))
    val_probs = run.predict(run.val_loader, "best model on validation")
    val_true = evaluate.label_indices(splits.val, labels)
    fallback = evaluate.fallback_threshold(
        val_probs.max(1), val_probs.argmax(1) == val_true, cfg.export.target_accuracy
    )
    if fallback["coverage"]:
        log.info(
            "recommended fallback threshold %.3f: calls at or above it were right %.1f%% of the time on "
            "validation (%.0f%% of calls)",
            fallback["threshold"], 100 * fallback["accuracy_kept"], 100 * fallback["coverage"],
        )  # fmt: skip
    else:
        log.warning(
            "no confidence level reaches export.target_accuracy %.2f on validation: recommended fallback "
            "threshold %.3f (the fallback decides every call)", cfg.export.target_accuracy, fallback["threshold"],
        )  # fmt: skip
    split_name = "test" if splits.test else "val"
    if not splits.test:
        log.warning("no test images: the report below is on the validation split, which chose the best epoch")
    samples = splits.split(split_name)
    if split_name == "val":
        probs = val_probs
    else:
        probs = run.predict(run._loader(_EvalSet(samples, run.spec.preprocess), cfg.eval_batch_size), "test")
    report = evaluate.write_reports(
        out_dir / "eval", samples, probs, labels, f"{cfg.model.name}: {split_name} split",
        extra={"split": split_name, "best_epoch": state["best_epoch"], "fallback_threshold": fallback},
        gallery_max=cfg.export.gallery_max,
    )  # fmt: skip
    summary = {k: report[k] for k in ("images", "accuracy", "macro_precision", "macro_recall", "macro_f1")}
    summary["split"] = split_name
    summary["per_class_f1"] = {row["label"]: round(row["f1"], 4) for row in report["per_class"]}
    training = {
        "fishcam": __version__,
        "data": {k: v for k, v in splits.report().items() if k in ("totals", "splits_given")},
        "balance": balance_report["after"],
        "initialised_from": state["initialised"],
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "best_val_macro_f1": state["best_f1"],
        "config": cfg.to_dict(),
    }
    manifest = export_expert(
        run.model, run.spec, out_dir / "expert", summary, training, fallback_threshold=fallback["threshold"]
    )
    return TrainResult(
        manifest, state["best_epoch"], state["best_f1"], report, fallback, state["history"], state["baseline"]
    )


# ---- helpers -------------------------------------------------------------------------------


def _fresh_state(cfg: TrainConfig, initialised: str) -> dict[str, Any]:
    return {
        "format": 1, "config": cfg.to_dict(), "initialised": initialised, "stage": 1, "stage_epoch": 0,
        "epoch": 0, "stale": 0, "best_f1": -1.0, "best_epoch": 0, "history": [],
        "optimizer": None, "scheduler": None, "scaler": {},
    }  # fmt: skip


def _stage_done(state: dict[str, Any], epochs: int, cfg: TrainConfig) -> bool:
    patience = cfg.early_stopping.patience
    return state["stage_epoch"] >= epochs or bool(patience and state["stale"] >= patience)


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


def _atomic_save(obj: Any, path: Path) -> None:
    """Write then rename: an interruption leaves the previous complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _write_history(out_dir: Path, history: list[dict[str, Any]]) -> None:
    with (out_dir / "history.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def _log_counts(splits: Splits) -> None:
    report = splits.report()
    log.info("%d classes; images train %d, val %d, test %d", len(splits.labels), *report["totals"].values())
    for label, counts in report["counts"].items():
        log.info("  %-30s train %5d  val %4d  test %4d", label, counts["train"], counts["val"], counts["test"])


def _log_balance(plans: list[balance.ClassPlan]) -> None:
    for p in plans:
        if p.action != "kept":
            log.info("  balance: %-30s %5d → %5d per epoch (%s)", p.label, p.available, p.per_epoch, p.action)


def _log_epoch(record: dict[str, Any], epochs: int) -> None:
    log.info(
        "stage %d epoch %d/%d: loss %.4f, train acc %.3f, val acc %.3f, val macro-F1 %.3f%s "
        "(%.1f img/s train, %.1f img/s val)",
        record["stage"], record["stage_epoch"], epochs, record["train_loss"], record["train_accuracy"],
        record["val_accuracy"], record["val_macro_f1"], " best" if record["best"] else "",
        record["train_images_per_s"], record["val_images_per_s"],
    )  # fmt: skip


class _guard_memory:
    """Out of memory becomes a TrainingError with the batch size to try."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            return
        message = str(exc).lower()
        if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in message or "can't allocate" in message:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = max(1, self.cfg.batch_size // 2)
            raise TrainingError(
                f"out of memory at batch_size {self.cfg.batch_size} (eval_batch_size {self.cfg.eval_batch_size}): "
                f"try --set batch_size={half} --set eval_batch_size={max(1, self.cfg.eval_batch_size // 2)}, "
                f"or a smaller preprocess.size"
            ) from exc


class _Bar:
    """A rich progress bar on stderr (images, images/s, running loss); silent when disabled."""

    def __init__(self, enabled: bool, label: str, total: int) -> None:
        self.enabled, self.label, self.total = enabled, label, total
        self._progress = None

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>6.1f} img/s {task.fields[loss]}"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, rate=0.0, loss="")
            self._started = time.perf_counter()
        return self

    def advance(self, n: int, loss: float | None = None) -> None:
        if self._progress is not None:
            rate = self._progress.tasks[0].completed + n
            self._progress.update(
                self._task, advance=n, rate=rate / max(time.perf_counter() - self._started, 1e-9),
                loss="" if loss is None else f"loss {loss:.3f}",
            )  # fmt: skip

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
