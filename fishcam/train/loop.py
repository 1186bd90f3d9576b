"""What an epoch is made of besides the model: the torch datasets of training and evaluation
images, out-of-memory advice, and the progress bar."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import torch
from torch.utils.data import Dataset

from fishcam.classify.preprocess import to_batch
from fishcam.errors import DatasetError, TrainingError
from fishcam.models.expert_spec import Preprocess
from fishcam.train import balance
from fishcam.train.config import TrainConfig
from fishcam.train.data import Sample, read_image

log = logging.getLogger(__name__)


class TrainSet(Dataset):
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


class EvalSet(Dataset):
    def __init__(self, samples: list[Sample], pre: Preprocess) -> None:
        self.samples, self.pre = samples, pre

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        image = read_image(self.samples[i].path)
        if image is None:
            raise DatasetError(f"{self.samples[i].path} can no longer be read")
        return torch.from_numpy(to_batch([image], self.pre)[0])


def one_thread_each(_worker: int) -> None:
    """A DataLoader worker decodes and augments one image at a time: one thread for torch and one
    for OpenCV, instead of a pool per library per worker, all competing with the training
    process's own torch threads for the same cores."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


class guard_memory:
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


class Bar:
    """Progress on stderr (images, images/s, running loss): a rich bar on a terminal; elsewhere (a
    log file, a pipe, a service) a plain log line every ``LOG_EVERY_S`` seconds, so that a log
    holds no bar frames or blank lines; silent when disabled."""

    LOG_EVERY_S = 30.0

    def __init__(self, enabled: bool, label: str, total: int, interactive: bool | None = None) -> None:
        self.enabled, self.label, self.total = enabled, label, total
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self._progress: Any = None  # rich's Progress while enabled on a terminal
        self._done = 0

    def __enter__(self) -> Bar:
        self._started = self._logged = time.perf_counter()
        if self.enabled and self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>6.1f} img/s {task.fields[loss]}"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, rate=0.0, loss="")
        return self

    def advance(self, n: int, loss: float | None = None) -> None:
        self._done += n
        now = time.perf_counter()
        rate = self._done / max(now - self._started, 1e-9)
        if self._progress is not None:
            self._progress.update(
                self._task, advance=n, rate=rate, loss="" if loss is None else f"loss {loss:.3f}"
            )  # fmt: skip
        elif self.enabled and now - self._logged >= self.LOG_EVERY_S and self._done < self.total:
            self._logged = now
            log.info(
                "%s: %d/%d images, %.1f img/s%s", self.label, self._done, self.total, rate,
                "" if loss is None else f", loss {loss:.3f}",
            )  # fmt: skip

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
