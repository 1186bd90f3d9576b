"""Typed, validated configuration: YAML files in ``configs/`` plus dotted ``--set`` overrides.

An unknown or misspelled key is an error that names its dotted path.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fishcam.errors import ConfigError

EXPERT_DEFAULT = "hf://Heretix/convnext-fish-classifier/balik_modeli_final.pth"
FALLBACK_DEFAULT = "hf-hub:imageomics/bioclip-2"
# The Community Fish Detector (YOLO12x, one class "fish"): a GitHub release asset, pinned by its tag.
DETECTOR_DEFAULT = (
    "https://github.com/filippovarini/community-fish-detector/releases/download/cfd-1.00-yolov12x/cfd-yolov12x-1.00.pt"
)

M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LiveConfig(_Section):
    """Live cameras: RTSP, webcams, HTTP/MJPEG streams."""

    transport: Literal["tcp", "udp"] = Field("tcp", description="tcp or udp (RTSP)")
    open_timeout_s: float = Field(
        5.0, gt=0, description="one attempt to open the stream gives up after this long (the backoff then retries)"
    )
    read_timeout_s: float = Field(5.0, gt=0, description="watchdog: no frame for this long and the stream is reopened")
    reconnect_initial_s: float = Field(
        0.5, gt=0, description="first wait before a reconnect; it doubles after each failure"
    )
    reconnect_max_s: float = Field(30.0, gt=0, description="backoff doubles up to this")
    retries: int | None = Field(
        None, ge=0, description="failed reconnects in a row before giving up; null: never give up"
    )
    health_interval_s: float = Field(60.0, gt=0, description="health line in the log this often")
    flush_interval_s: float = Field(
        10.0,
        gt=0,
        description="tracks.csv and species_counts.csv rewritten this often when a track has closed; logs flushed",
    )
    rotate: Literal["none", "hourly", "daily"] = Field(
        "none", description="none, hourly or daily: a new output folder per period"
    )


class SourceConfig(_Section):
    """Reading the input: video files, folders of images, live cameras."""

    image_fps: float = Field(1.0, gt=0, description="frame rate given to a folder of images")
    max_frames: int | None = Field(None, ge=1, description="stop after this many frames (null: to the end)")
    max_read_failures: int = Field(
        50, ge=1, description="unreadable frames in a row before a damaged file is taken as ended"
    )
    duration_s: float | None = Field(
        None, gt=0, description="stop after this much video time (live: seconds since start)"
    )
    live: LiveConfig = LiveConfig()


class MotionConfig(_Section):
    """The motion detector (OpenCV background subtraction), used when ``detector.kind`` is ``motion``."""

    history: int = Field(
        120,
        ge=2,
        description="frames the background models remember (MOG2 history; the still background learns at 1/history)",
    )
    var_threshold: float = Field(
        24.0, gt=0, description="how far a pixel must differ from the background to be moving (MOG2 varThreshold)"
    )
    min_area_px: int = Field(600, ge=1, description="smallest blob area, in pixels, that is a fish")
    warmup_frames: int = Field(10, ge=0, description="frames that only train the background")
    blur_px: int = Field(5, ge=0, description="Gaussian blur before subtraction, kernel side in pixels (0 or 1: none)")
    dilate_px: int = Field(9, ge=0, description="dilation of the moving mask, kernel side in pixels (0 or 1: none)")
    merge_gap_px: int = Field(8, ge=0, description="small blobs (fins, tails) this close to a big one are part of it")
    fragment_ratio: float = Field(0.3, ge=0, le=1, description='"small": under this share of the big blob\'s area')
    min_travel: float = Field(
        0.25,
        ge=0,
        description="a new blob is a fish once it has moved, as a whole, this share of its box's shorter side: "
        "glints, ripples and swaying weed stay where they are (0: every blob is a fish at once)",
    )
    max_still_s: float = Field(
        60.0,
        ge=0,
        description="seconds a fish that stops stays detected, against the background from before it came; "
        "then the background learns it (0: moving fish only)",
    )
    compensate_light: bool = Field(
        True, description="divide out global brightness changes (sun, cloud, a flickering lamp) before subtraction"
    )


class OnCpuConfig(_Section):
    """The detector's settings where it runs on the CPU (``detector.device`` resolves to cpu): a
    preset sized for a GPU names what a CPU laptop can keep up with (docs/speed.md)."""

    image_size: int | None = Field(None, ge=32, description="image size on the CPU; null: detector.image_size")
    stride: int | None = Field(None, ge=1, description="stride on the CPU; null: detector.stride")


class DetectorConfig(_Section):
    """Finding the fish in a frame."""

    kind: Literal["yolo", "rfdetr", "motion"] = Field(
        "yolo",
        description="yolo (Ultralytics weights), rfdetr (RF-DETR weights, fishcam[rfdetr]) or motion "
        "(fixed cameras, no weights)",
    )
    weights: str = Field(
        DETECTOR_DEFAULT,
        description="fish-trained weights: an Ultralytics .pt, .onnx or OpenVINO folder, or an RF-DETR .pth; "
        "a local path, hf://org/repo[@revision]/file or a pinned https:// URL",
    )
    classes: list[str | int] | None = Field(
        default_factory=lambda: list[str | int](["fish"]),
        description="class names or ids to keep, e.g. [fish]; null keeps every class",
    )
    confidence: float = Field(0.25, ge=0, le=1, description="detections below this confidence are dropped")
    iou: float = Field(0.5, gt=0, le=1, description="overlap (IoU) above which non-maximum suppression merges boxes")
    image_size: int = Field(640, ge=32, description="side, in pixels, that frames are resized to for the detector")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1")
    backend: Literal["auto", "torch", "openvino", "onnx", "tensorrt"] = Field(
        "auto",
        description="auto (OpenVINO on CPU, TensorRT on CUDA, where installed), torch, openvino, onnx, tensorrt",
    )
    stride: int = Field(1, ge=1, description="detect on every k-th frame; the tracker bridges the others")
    on_cpu: OnCpuConfig = OnCpuConfig()
    motion: MotionConfig = MotionConfig()


class OfflineConfig(_Section):
    """The offline pass over a recorded video's tracks before they are counted (files only: a
    live stream's tracks are final when they close)."""

    enabled: bool = Field(
        True, description="false: a recorded video's tracks are counted as tracked, like a live stream's"
    )
    tail_confidence: float = Field(
        0.5,
        ge=0,
        le=1,
        description="a track's first and last boxes below this detection confidence are trimmed (also live): "
        "low-confidence matches that kept a track alive after its fish left",
    )
    link_gap_s: float = Field(
        4.0, ge=0, description="fragments of one fish this far apart in time may be joined (0: never join)"
    )
    link_distance: float = Field(
        1.5,
        gt=0,
        description="a fragment may join another that starts within this many box diagonals of where the "
        "first was heading",
    )
    same_fish_similarity: float = Field(
        0.75,
        ge=0,
        le=1,
        description="appearance similarity (colour, 0-1) two fragments need to be joined as one fish",
    )
    other_fish_similarity: float = Field(
        0.55,
        ge=0,
        le=1,
        description="a track whose views before and after a point are less alike than this, and alike among "
        "themselves, is cut there: it followed two fish",
    )
    interpolate_gap_s: float = Field(
        4.0,
        ge=0,
        description="boxes are filled in over detection stride and gaps up to this long within a track, "
        "marked interpolated (0: only stride frames)",
    )


class TrackerConfig(_Section):
    """Following each fish from frame to frame (ByteTrack)."""

    kind: Literal["bytetrack"] = Field("bytetrack", description="the tracker; ByteTrack is the only one")
    lost_track_s: float = Field(1.0, ge=0, description="a fish unseen this long is a finished track")
    activation_confidence: float = Field(0.3, ge=0, le=1, description="detection confidence that may start a new track")
    high_confidence: float = Field(
        0.5, ge=0, le=1, description="detections above this are matched first, the others in ByteTrack's second pass"
    )
    min_iou: float = Field(0.1, ge=0, le=1, description="least overlap (IoU) of a detection with a track to match it")
    min_consecutive_frames: int = Field(
        2, ge=1, description="frames in a row a new track must be matched before it is confirmed and counted"
    )
    offline: OfflineConfig = OfflineConfig()


class CountConfig(_Section):
    """The evidence a track needs to be counted as a fish. Every track stays in tracks.csv, with
    ``counted`` and, when not counted, the reason; counts and MaxN come from counted tracks only."""

    min_detections: int = Field(4, ge=1, description="detected boxes a track needs (interpolated ones do not count)")
    min_duration_s: float = Field(0.5, ge=0, description="seconds from a track's first box to its last")
    min_confidence: float = Field(
        0.4, ge=0, le=1, description="mean detection confidence over a track's detected boxes"
    )
    min_motion: float = Field(
        0.1,
        ge=0,
        description="a track whose box centre never moves more than this share of its box size is static "
        "(a rock, a mark on the lens) and not counted; 0: static tracks count",
    )


class ExpertConfig(_Section):
    """The species expert (by default the published ConvNeXt-Tiny)."""

    weights: str = Field(
        EXPERT_DEFAULT,
        description="checkpoint, safetensors or a manifest .json/.yaml; a local path or hf://org/repo/file",
    )
    threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="expert calls below this go to the fallback; null: the manifest's recommended threshold "
        "(fishcam train writes one), else 0.6",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32"
    )
    backend: Literal["auto", "torch", "openvino"] = Field(
        "auto", description="auto: torch (bf16 autocast decides as fp32); openvino: faster, bf16 less exact"
    )
    batch_size: int = Field(16, ge=1, description="crops per expert batch, at most")
    open_set: bool | Literal["auto"] = Field(
        "auto",
        description="crops unlike every species of the expert go to the fallback (or unknown): auto = when the "
        "manifest has an open-set calibration; true = refuse an expert without one; false = confidence alone",
    )


class FallbackConfig(_Section):
    """The zero-shot fallback (BioCLIP-2) over your species list, asked when the expert is unsure."""

    model: str = Field(
        FALLBACK_DEFAULT,
        description="an open_clip model: hf-hub:org/repo, or a local folder with open_clip_config.json and "
        "open_clip_model.safetensors",
    )
    species_list: str | None = Field(
        None,
        description="a species list turns the fallback on: plain text (one species a line, 'Pterois volitans; red "
        "lionfish') or CSV (scientific_name, common_name, kingdom … genus); see samples/species.txt; same as --species",
    )
    open_ended: str | None = Field(
        None,
        description="the Tree-of-Life embeddings (a folder with txt_emb_species.npy and .json, or the .npy's pinned "
        "URL for fishcam models fetch; docs/models.md): without a species list, the fallback ranks every species in "
        "them; with one, they fill the list's ranks",
    )
    open_ended_taxa: list[str] = Field(
        [],
        description="open-ended without a list: keep only the species under these taxa, at any rank "
        "(e.g. [Elasmobranchii, Perciformes]), or those of a regional list file (.txt or .csv, the species list "
        "forms: their precomputed embeddings, nothing to encode); empty: the whole Tree of Life",
    )
    threshold: float = Field(0.35, ge=0, le=1, description='fallback calls below this are "unknown"')
    roll_up: bool = Field(
        True,
        description="when no species reaches the threshold, answer the lowest rank that does (genus, then family, "
        "then order), and name a track whose calls split within one genus by that genus; false: species or unknown",
    )
    templates: str | list[str] = Field(
        "openai_imagenet",
        description="prompt templates ({} is the class text): openai_imagenet (the 80 BioCLIP's authors average "
        "over) or a list; the text embeddings are cached",
    )
    prompt_form: Literal["taxonomic_common", "taxonomic", "scientific_common", "scientific", "names"] = Field(
        "taxonomic_common",
        description="the class text: taxonomic_common ('Animalia Chordata … Pterois volitans with common name red "
        "lionfish', as the authors), taxonomic, scientific_common, scientific, or names (each name as listed)",
    )
    resize: Literal["squash", "model"] = Field(
        "squash",
        description="squash: crops squashed to the model's size, no centre crop (as pybioclip); model: open_clip's",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1")
    batch_size: int = Field(8, ge=1, description="crops per fallback batch, at most")
    background: bool | Literal["auto"] = Field(
        "auto",
        description="true: on a thread beside the frame loop; auto: for live sources only (files stay deterministic)",
    )
    queue_size: int = Field(
        16, ge=1, description="crops waiting for the background fallback; more are refused, never waited for"
    )

    @field_validator("templates")
    @classmethod
    def _known_templates(cls, value: str | list[str]) -> str | list[str]:
        from fishcam.classify.templates import TEMPLATE_SETS

        if isinstance(value, str) and value not in TEMPLATE_SETS:
            raise ValueError(f"'{value}' is not a template set ({', '.join(TEMPLATE_SETS)}); or give a list")
        if isinstance(value, list) and (not value or any("{}" not in t for t in value)):
            raise ValueError("each template holds {} where the class text goes")
        return value

    @property
    def enabled(self) -> bool:
        """Whether there is a fallback: a species list or open-ended embeddings."""
        return bool(self.species_list or self.open_ended)


class PolicyConfig(_Section):
    """Which crops of a track get classified: new, still uncertain, and a few good views."""

    min_box_px: int = Field(24, ge=1, description="shorter box side below which no crop is taken")
    min_gap_frames: int = Field(5, ge=0, description="frames between two looks at one track")
    max_crops_per_track: int = Field(
        6, ge=1, description="looks at one track to settle its species; after that, only re-checks (recheck_s)"
    )
    max_crops_per_frame: int = Field(
        4, ge=1, description="a frame's classification budget: new fish first, the rest wait"
    )
    live_max_crops_per_frame: int = Field(
        1, ge=1, description="the budget on live streams: a frame's latency stays low, new fish wait a frame or two"
    )
    settle_votes: int = Field(3, ge=1, description="confident agreeing calls that end the looking")
    better_view_ratio: float = Field(1.5, ge=1, description="area gain that earns a settled track a new look")
    crop_padding: float = Field(
        0.1, ge=0, le=1, description="a crop is the box grown by this share of its size on each side"
    )
    edge_margin_px: int = Field(2, ge=0, description="boxes touching the frame edge wait for a better view")
    max_overlap: float = Field(
        0.3, ge=0, le=1, description="a box this much covered by another fish's box waits for a better view"
    )
    recheck_s: float = Field(
        2.0,
        ge=0,
        description="a settled track is looked at again this often through its life, so a track that changed "
        "fish is noticed (0: never)",
    )
    recheck_similarity: float = Field(
        0.75,
        ge=0,
        le=1,
        description="a re-check is classified only if the track was lost or overlapped since its last look, or "
        "its view's colours are less alike than this to its last looks' (1: always classified)",
    )


class ClassifyConfig(_Section):
    """Naming each track's species."""

    enabled: bool = Field(True, description="false: count fish without naming species (no classifier weights needed)")
    expert: ExpertConfig = ExpertConfig()
    fallback: FallbackConfig = FallbackConfig()
    policy: PolicyConfig = PolicyConfig()


class RenderConfig(_Section):
    """The annotated video."""

    video: bool = Field(True, description="write annotated.mp4, the annotated H.264 MP4")
    crf: int = Field(23, ge=0, le=51, description="x264 quality: lower is better and bigger")
    preset: str = Field("veryfast", description="x264 preset: ultrafast … medium (slower: smaller files)")
    max_width: int | None = Field(
        None, ge=64, description="e.g. 960: a smaller annotated video, much cheaper to encode; null: the input's size"
    )
    thickness: int = Field(2, ge=1, description="box line width, in pixels")
    text_scale: float = Field(0.5, gt=0, description="label text size")


class OutputConfig(_Section):
    """The run's log files."""

    detections_log: bool = Field(True, description="write detections.csv, one row per tracked box per detected frame")
    views: bool = Field(
        True,
        description="write views/: each track's classified crops as JPEGs (best first in views/index.json), "
        "at most classify.policy.max_crops_per_track a track",
    )
    maxn_frames: bool = Field(
        True,
        description="write maxn/: each species' MaxN frame with its counted tracks' boxes (kept as the run "
        "goes; a video file read again for a frame it did not keep)",
    )


class ConfigDocument(_Section):
    """A whole config file: dumps itself as the resolved config written beside outputs."""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


class Config(ConfigDocument):
    """The config of ``fishcam run``, ``classify``, ``batch`` and ``models``."""

    source: SourceConfig = SourceConfig()
    detector: DetectorConfig = DetectorConfig()
    tracker: TrackerConfig = TrackerConfig()
    classify: ClassifyConfig = ClassifyConfig()
    count: CountConfig = CountConfig()
    render: RenderConfig = RenderConfig()
    output: OutputConfig = OutputConfig()

    def on_cpu(self) -> Config:
        """This config as it runs where the detector is on the CPU: ``detector.on_cpu``'s image
        size and stride in place of the detector's own (the same config when it sets neither)."""
        cpu = self.detector.on_cpu
        changes = {k: v for k, v in (("image_size", cpu.image_size), ("stride", cpu.stride)) if v is not None}
        if not changes:
            return self
        detector = self.detector.model_copy(update={**changes, "on_cpu": OnCpuConfig()})
        return self.model_copy(update={"detector": detector})


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, values: dict[str, Any] | None = None
) -> Config:
    """Read a YAML file (or the defaults), apply ``key.path=value`` overrides (YAML values, as
    ``--set`` gives them), then ``values`` (typed, by dotted key: what command-line flags set), validate."""
    return load_validated(Config, path, overrides, values)


def validate_config(data: dict[str, Any], origin: str = "config") -> Config:
    return validate_as(Config, data, origin)


def load_validated(
    model: type[M],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    values: dict[str, Any] | None = None,
) -> M:
    """Any config model (``Config``, ``TrainConfig``): YAML file or defaults, dotted overrides, validation."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path))
    for item in overrides or []:
        _apply_override(data, item)
    for key, value in (values or {}).items():
        _set(data, key, value)
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
    _set(data, key.strip(), value)


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
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
