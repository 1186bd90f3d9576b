"""``fishcam train`` settings: the published expert's recipe (docs/training.md) as typed
defaults. ``configs/train.yaml`` lists every key; ``--set`` overrides any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fishcam.config import ConfigDocument, load_validated
from fishcam.models.expert_spec import IMAGENET_MEAN, IMAGENET_STD, Preprocess


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """The labelled images and their split."""

    val_fraction: float = Field(
        0.15, ge=0, lt=1, description="share of each class held out for validation, when the data has no given splits"
    )
    test_fraction: float = Field(
        0.15,
        ge=0,
        lt=1,
        description="share of each class held out for the test report, when the data has no given splits",
    )
    extensions: list[str] = Field(
        [".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"], description="file endings read as images"
    )


class ModelConfig(_Section):
    """The network to train."""

    name: str = Field("fish-expert", description="file names of the exported expert")
    architecture: str = Field("torchvision:convnext_tiny", description="torchvision:<fn> or timm:<name>")
    head: str | None = Field(None, description="torchvision: dotted path of the head Linear (null: the last Linear)")
    pretrained: str = Field(
        "auto", description="auto: ImageNet weights if already on this machine; none: random; or a local weights file"
    )
    pretrained_key_match: Literal["name", "order"] = Field(
        "name", description="name, or order: a port of the same network under other tensor names"
    )


class PreprocessConfig(_Section):
    """Written into the manifest: ``fishcam run`` prepares crops exactly like this."""

    size: int = Field(224, ge=16, description="squash-resize to size × size, RGB (like the model card)")
    mean: tuple[float, float, float] = Field(IMAGENET_MEAN, description="per-channel mean, RGB, 0–1 (ImageNet's)")
    std: tuple[float, float, float] = Field(
        IMAGENET_STD, description="per-channel standard deviation, RGB (ImageNet's)"
    )
    interpolation: Literal["bilinear", "bicubic"] = Field("bilinear", description="resize interpolation")

    def spec(self) -> Preprocess:
        return Preprocess(size=(self.size, self.size), mean=self.mean, std=self.std, interpolation=self.interpolation)


class AugmentConfig(_Section):
    """Safe augmentations, on every training image: a fish stays the same species and the right way up."""

    hflip: float = Field(0.5, ge=0, le=1, description="probability of a left-right mirror")
    rotate_deg: float = Field(10.0, ge=0, le=45, description="largest tilt, in degrees, either way")
    scale: tuple[float, float] = Field((0.8, 1.0), description="random crop keeping this share of each side")
    brightness: float = Field(0.2, ge=0, le=1, description="largest brightness change, as a share, up or down")
    contrast: float = Field(0.2, ge=0, le=1, description="largest contrast change, as a share, up or down")
    saturation: float = Field(0.2, ge=0, le=1, description="largest saturation change, as a share, up or down")


class RembgConfig(_Section):
    """Background removal (rembg) on a share of the training images."""

    probability: float = Field(
        0.25, ge=0, le=1, description="share of training images shown with the background removed"
    )
    model: str = Field(
        "u2netp", description="rembg session; its file is <home>/<model>.onnx (u2net for rembg's full model)"
    )
    home: str | None = Field(None, description="folder with the ONNX file; null: $U2NET_HOME, else ~/.u2net")
    cache_dir: str | None = Field(None, description="masks, once per image: null = ~/.cache/fishcam/rembg-masks")
    fill: tuple[int, int, int] = Field((0, 0, 0), description="BGR colour where the background was")
    min_area: float = Field(
        0.05, ge=0, le=1, description="a mask keeping less of the image than this share is bad: image shown whole"
    )
    max_area: float = Field(
        0.97, gt=0, le=1, description="a mask keeping more than this share removed no background: shown whole"
    )
    min_centre: float = Field(
        0.05, ge=0, le=1, description="a mask keeping less of the image's centre (middle half of each side) is bad"
    )


class BalanceConfig(_Section):
    """Class balancing per epoch, augmentations and background removal."""

    min_per_class: int = Field(
        250, ge=0, description="smaller classes are up-sampled (augmented repeats) to this per epoch"
    )
    max_per_class: int = Field(500, ge=1, description="larger classes: a fresh random subset of this many per epoch")
    augment: AugmentConfig = AugmentConfig()
    rembg: RembgConfig = RembgConfig()


class Stage1Config(_Section):
    """Frozen backbone, head only, Adam."""

    epochs: int = Field(6, ge=0, description="epochs of stage 1 (0: skip it)")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate of the head")


class Stage2Config(_Section):
    """Everything unfrozen, Adam, cosine annealing over the stage."""

    epochs: int = Field(20, ge=0, description="epochs of stage 2 (0: skip it)")
    backbone_lr: float = Field(1e-5, gt=0, description="Adam learning rate of the backbone at the stage's start")
    head_lr: float = Field(1e-4, gt=0, description="Adam learning rate of the head at the stage's start")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine ends at this share of each start LR")
    freeze_batchnorm: bool = Field(
        True,
        description="keep batch-norm statistics as stage 1 had them (false: re-estimated on the augmented "
        "training batches, which made stage 2 lose accuracy, docs/training.md; ConvNeXt has no batch norm)",
    )


class EarlyStoppingConfig(_Section):
    """Ending a stage early when validation macro-F1 stops improving."""

    patience: int | None = Field(
        5, ge=1, description="epochs without a better validation macro-F1 that end a stage (null: never)"
    )
    min_delta: float = Field(0.0, ge=0, description="smallest gain in validation macro-F1 that counts as better")


class ExportConfig(_Section):
    """The exported expert and its evaluation report."""

    target_precision: float = Field(
        0.95,
        gt=0,
        le=1,
        description="fallback threshold: expert calls at or above it, and those just above it, are right this "
        "share of the time on val (docs/training.md)",
    )
    open_set_keep: float | None = Field(
        0.95,
        gt=0,
        lt=1,
        description="open-set threshold: the prototype similarity that keeps this share of in-set crops "
        "(split-conformal on val); null: no open-set calibration",
    )
    gallery_max: int = Field(48, ge=0, description="misclassified images in eval/misclassified.png")


class TrainConfig(ConfigDocument):
    """The config of ``fishcam train``."""

    seed: int = Field(0, description="splits, balancing draws, augmentations and initialisation")
    device: str = Field("auto", description="auto (cuda:0 if usable, else cpu), cpu or cuda[:N]")
    amp: bool | Literal["auto"] = Field("auto", description="mixed precision: auto = on CUDA only")
    batch_size: int = Field(32, ge=1, description='training batch; on "out of memory", halve it')
    eval_batch_size: int = Field(64, ge=1, description="batch for validation and test evaluation")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0: load in the main process)")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    balance: BalanceConfig = BalanceConfig()
    stage1: Stage1Config = Stage1Config()
    stage2: Stage2Config = Stage2Config()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    export: ExportConfig = ExportConfig()


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    return load_validated(TrainConfig, path, overrides)
