"""``fishcam train`` settings: the published expert's recipe (README, "Training your own expert")
as typed defaults. ``configs/train.yaml`` lists every key; ``--set`` overrides any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fishcam.config import ConfigDocument, load_validated
from fishcam.models.expert_spec import IMAGENET_MEAN, IMAGENET_STD, Preprocess


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    val_fraction: float = Field(0.15, ge=0, lt=1, description="share of each class held out for validation")
    test_fraction: float = Field(0.15, ge=0, lt=1, description="share of each class held out for the test report")
    extensions: list[str] = [".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"]


class ModelConfig(_Section):
    name: str = Field("fish-expert", description="file names of the exported expert")
    architecture: str = Field("torchvision:convnext_tiny", description="torchvision:<fn> or timm:<model name>")
    head: str | None = Field(None, description="torchvision: dotted path of the head Linear; null: the last Linear")
    pretrained: str = Field(
        "auto", description="auto: ImageNet weights when present locally; none: random; or a local weights file"
    )
    pretrained_key_match: Literal["name", "order"] = Field(
        "name", description="order: a port of the same net under other tensor names"
    )


class PreprocessConfig(_Section):
    """Written into the manifest: ``fishcam run`` prepares crops exactly like this."""

    size: int = Field(224, ge=16, description="square input side (squash resize, like the model card)")
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"

    def spec(self) -> Preprocess:
        return Preprocess(size=(self.size, self.size), mean=self.mean, std=self.std, interpolation=self.interpolation)


class AugmentConfig(_Section):
    """Safe augmentations: a fish stays the same species and the right way up."""

    hflip: float = Field(0.5, ge=0, le=1, description="probability of a left-right mirror")
    rotate_deg: float = Field(10.0, ge=0, le=45)
    scale: tuple[float, float] = Field((0.8, 1.0), description="random crop keeping this share of each side")
    brightness: float = Field(0.2, ge=0, le=1)
    contrast: float = Field(0.2, ge=0, le=1)
    saturation: float = Field(0.2, ge=0, le=1)


class RembgConfig(_Section):
    probability: float = Field(0.25, ge=0, le=1, description="share of training samples shown without background")
    model: str = Field("u2netp", description="rembg session; its ONNX file is $U2NET_HOME/<model>.onnx")
    home: str | None = Field(None, description="folder with the ONNX file; null: $U2NET_HOME, else ~/.u2net")
    cache_dir: str | None = Field(None, description="mask cache; null: ~/.cache/fishcam/rembg-masks")
    fill: tuple[int, int, int] = Field((0, 0, 0), description="BGR colour put where the background was")


class BalanceConfig(_Section):
    min_per_class: int = Field(250, ge=0, description="smaller classes are up-sampled to this many per epoch")
    max_per_class: int = Field(500, ge=1, description="larger classes are capped to this many per epoch")
    augment: AugmentConfig = AugmentConfig()
    rembg: RembgConfig = RembgConfig()


class Stage1Config(_Section):
    """Frozen backbone, head only."""

    epochs: int = Field(6, ge=0)
    lr: float = Field(1e-3, gt=0)


class Stage2Config(_Section):
    """Everything unfrozen, cosine annealing over the stage."""

    epochs: int = Field(20, ge=0)
    backbone_lr: float = Field(1e-5, gt=0)
    head_lr: float = Field(1e-4, gt=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine ends at this share of each start LR")
    freeze_batchnorm: bool = Field(
        False, description="keep batch-norm statistics fixed (helps small batches; ConvNeXt has none)"
    )


class EarlyStoppingConfig(_Section):
    patience: int | None = Field(5, ge=1, description="epochs without a better val macro-F1 that end a stage")
    min_delta: float = Field(0.0, ge=0)


class ExportConfig(_Section):
    target_accuracy: float = Field(
        0.95, gt=0, le=1, description="fallback threshold: lowest confidence whose accepted calls reach this accuracy"
    )
    gallery_max: int = Field(48, ge=0, description="misclassified images shown in the gallery")


class TrainConfig(ConfigDocument):
    seed: int = 0
    device: str = Field("auto", description="auto, cpu or cuda[:N]")
    amp: bool | Literal["auto"] = Field("auto", description="mixed precision (auto: on CUDA)")
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
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
