"""Typed, validated configuration: YAML files in ``configs/`` plus dotted ``--set`` overrides.

An unknown or misspelled key is an error that names its dotted path.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fishcam.errors import ConfigError

EXPERT_DEFAULT = "hf://Heretix/convnext-fish-classifier/balik_modeli_final.pth"
FALLBACK_DEFAULT = "hf-hub:imageomics/bioclip-2"
DETECTOR_DEFAULT = "hf://FathomNet/vulnerable-marine-ecosystems/best.pt"

M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LiveConfig(_Section):
    """Live cameras: RTSP, webcams, HTTP/MJPEG streams."""

    transport: Literal["tcp", "udp"] = "tcp"
    open_timeout_s: float = Field(5.0, gt=0, description="give up opening a stream after this long")
    read_timeout_s: float = Field(5.0, gt=0, description="watchdog: no frame for this long means the stream is dead")
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0, description="cap of the exponential backoff")
    retries: int | None = Field(None, ge=0, description="reconnect attempts in a row before giving up; null: forever")
    health_interval_s: float = Field(60.0, gt=0, description="how often health is logged")
    flush_interval_s: float = Field(10.0, gt=0, description="how often track log and counts are rewritten")
    rotate: Literal["none", "hourly", "daily"] = "none"


class SourceConfig(_Section):
    image_fps: float = Field(1.0, gt=0, description="frame rate given to a folder of images")
    max_frames: int | None = Field(None, ge=1, description="stop after this many frames")
    max_read_failures: int = Field(
        50, ge=1, description="consecutive unreadable frames before a file is taken as ended"
    )
    duration_s: float | None = Field(None, gt=0, description="stop after this much video (or live) time")
    live: LiveConfig = LiveConfig()


class MotionConfig(_Section):
    history: int = Field(120, ge=2)
    var_threshold: float = Field(24.0, gt=0)
    min_area_px: int = Field(600, ge=1)
    warmup_frames: int = Field(10, ge=0, description="frames that only train the background")
    blur_px: int = Field(5, ge=0)
    dilate_px: int = Field(9, ge=0)
    merge_gap_px: int = Field(8, ge=0, description="small blobs this close to a big one are part of it")
    fragment_ratio: float = Field(0.3, ge=0, le=1, description="a blob under this share of its neighbour is a fragment")


class DetectorConfig(_Section):
    kind: Literal["yolo", "motion"] = "yolo"
    weights: str = DETECTOR_DEFAULT
    classes: list[str | int] | None = Field(None, description="class names or ids to keep; null keeps every class")
    confidence: float = Field(0.25, ge=0, le=1)
    iou: float = Field(0.5, gt=0, le=1)
    image_size: int = Field(640, ge=32)
    device: str = "auto"
    backend: Literal["auto", "torch", "openvino", "onnx", "tensorrt"] = Field(
        "auto", description="inference runtime for .pt weights; auto: OpenVINO on CPU, TensorRT on CUDA if installed"
    )
    stride: int = Field(1, ge=1, description="detect on every k-th frame; the tracker bridges")
    motion: MotionConfig = MotionConfig()


class TrackerConfig(_Section):
    kind: Literal["bytetrack"] = "bytetrack"
    lost_track_s: float = Field(1.0, ge=0, description="how long a track survives without a match")
    activation_confidence: float = Field(0.3, ge=0, le=1)
    high_confidence: float = Field(0.5, ge=0, le=1)
    min_iou: float = Field(0.1, ge=0, le=1)
    min_consecutive_frames: int = Field(2, ge=1)


class ExpertConfig(_Section):
    weights: str = Field(EXPERT_DEFAULT, description="checkpoint, safetensors or manifest")
    threshold: float | None = Field(
        None, ge=0, le=1, description="below this the fallback is asked; null: the manifest's recommendation, else 0.6"
    )
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: fp16 on CUDA, bf16 on CPUs that have it, else fp32"
    )
    backend: Literal["auto", "torch", "openvino"] = Field(
        "auto", description="auto: torch (bf16 autocast keeps fp32's decisions); openvino: faster, bf16 less exact"
    )
    batch_size: int = Field(16, ge=1)


class FallbackConfig(_Section):
    model: str = FALLBACK_DEFAULT
    species_list: str | None = Field(None, description="species list file; null turns it off")
    threshold: float = Field(0.35, ge=0, le=1, description="below this the answer is unknown")
    templates: list[str] = [
        "a photo of {}.",
        "an underwater photo of {}.",
        "a photo of the fish {}.",
    ]
    device: str = "auto"
    batch_size: int = Field(8, ge=1)
    background: bool | Literal["auto"] = Field(
        "auto", description="run beside the frame loop (auto: for live sources; files stay deterministic)"
    )
    queue_size: int = Field(16, ge=1, description="crops waiting for the background fallback; more are refused")


class PolicyConfig(_Section):
    """Which crops of a track get classified: new, still uncertain, and a few good views."""

    min_box_px: int = Field(24, ge=1, description="shorter box side below which no crop is taken")
    min_gap_frames: int = Field(5, ge=0, description="frames between two looks at one track")
    max_crops_per_track: int = Field(6, ge=1)
    max_crops_per_frame: int = Field(4, ge=1, description="classification budget of one frame; the rest wait")
    live_max_crops_per_frame: int = Field(
        1, ge=1, description="the budget on live streams: a frame's latency stays low, new fish wait a frame or two"
    )
    settle_votes: int = Field(3, ge=1, description="confident agreeing calls that end the looking")
    better_view_ratio: float = Field(1.5, ge=1, description="area gain that earns a settled track a new look")
    crop_padding: float = Field(0.1, ge=0, le=1)
    edge_margin_px: int = Field(2, ge=0, description="boxes touching the frame edge wait for a better view")


class ClassifyConfig(_Section):
    enabled: bool = True
    expert: ExpertConfig = ExpertConfig()
    fallback: FallbackConfig = FallbackConfig()
    policy: PolicyConfig = PolicyConfig()


class RenderConfig(_Section):
    video: bool = True
    crf: int = Field(23, ge=0, le=51)
    preset: str = "veryfast"
    max_width: int | None = Field(None, ge=64, description="scale the annotated video down to this width")
    thickness: int = Field(2, ge=1)
    text_scale: float = Field(0.5, gt=0)


class OutputConfig(_Section):
    detections_log: bool = True


class ConfigDocument(_Section):
    """A whole config file: dumps itself as the resolved config written beside outputs."""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


class Config(ConfigDocument):
    source: SourceConfig = SourceConfig()
    detector: DetectorConfig = DetectorConfig()
    tracker: TrackerConfig = TrackerConfig()
    classify: ClassifyConfig = ClassifyConfig()
    render: RenderConfig = RenderConfig()
    output: OutputConfig = OutputConfig()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML file (or the defaults), apply ``key.path=value`` overrides, validate."""
    return load_validated(Config, path, overrides)


def validate_config(data: dict[str, Any], origin: str = "config") -> Config:
    return validate_as(Config, data, origin)


def load_validated(model: type[M], path: str | Path | None = None, overrides: list[str] | None = None) -> M:
    """Any config model (``Config``, ``TrainConfig``): YAML file or defaults, dotted overrides, validation."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path))
    for item in overrides or []:
        _apply_override(data, item)
    return validate_as(model, data, origin=str(path) if path else "defaults")


def validate_as(model: type[M], data: dict[str, Any], origin: str = "config") -> M:
    """Validate into ``model``; errors name the dotted key and suggest the nearest valid one."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, model)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    return data


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set needs key.path=value, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _describe(exc: ValidationError, origin: str, root: type[BaseModel]) -> str:
    messages = []
    for error in exc.errors():
        dotted = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            messages.append(f"unknown key '{dotted}'{_suggest(error['loc'], root)}")
        else:
            messages.append(f"{dotted}: {error['msg']} (got {error.get('input')!r})")
    return f"invalid config ({origin}): " + "; ".join(messages)


def _suggest(loc: tuple, root: type[BaseModel]) -> str:
    model = root
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return ""
        model = field.annotation
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
