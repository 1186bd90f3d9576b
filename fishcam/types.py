"""The data types that cross every stage of the pipeline.

Pure: numpy only. Units and conventions live in the names (``xyxy`` pixel corners with
exclusive right/bottom edges, ``image_bgr``, ``time_s``). Model-specific conversions live in
the adapter that owns the model, never here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded image from a source, with where and when it came from."""

    image_bgr: np.ndarray
    index: int
    time_s: float
    source: str = ""
    segment: int = 0  # live streams: which connection; a new segment follows an outage
    captured_unix: float | None = None  # live streams: wall-clock capture time

    @property
    def height(self) -> int:
        return int(self.image_bgr.shape[0])

    @property
    def width(self) -> int:
        return int(self.image_bgr.shape[1])


@dataclass(frozen=True, slots=True)
class Detections:
    """Column-wise detections of one frame: row ``i`` of every array is one box.

    ``track_id`` is -1 for a detection the tracker has not (yet) confirmed.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    track_id: np.ndarray

    def __post_init__(self) -> None:
        n = self.xyxy.shape[0] if self.xyxy.ndim == 2 else -1
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        for name in ("confidence", "class_id", "track_id"):
            column = getattr(self, name)
            if column.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {column.shape}")

    @classmethod
    def build(
        cls,
        xyxy: Sequence[Sequence[float]] | np.ndarray,
        confidence: Sequence[float] | np.ndarray | None = None,
        class_id: Sequence[int] | np.ndarray | None = None,
        track_id: Sequence[int] | np.ndarray | None = None,
    ) -> Detections:
        boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        n = boxes.shape[0]
        return cls(
            xyxy=boxes,
            confidence=_column(confidence, n, np.float32, 1.0),
            class_id=_column(class_id, n, np.int64, 0),
            track_id=_column(track_id, n, np.int64, -1),
        )

    @classmethod
    def empty(cls) -> Detections:
        return cls.build(np.zeros((0, 4)))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def filter(self, mask: np.ndarray) -> Detections:
        """Rows where ``mask`` is true (a boolean mask or an index array)."""
        return Detections(
            xyxy=self.xyxy[mask],
            confidence=self.confidence[mask],
            class_id=self.class_id[mask],
            track_id=self.track_id[mask],
        )

    def with_track_ids(self, track_id: np.ndarray) -> Detections:
        return Detections(self.xyxy, self.confidence, self.class_id, np.asarray(track_id, np.int64))

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]


def _column(values, n: int, dtype, default) -> np.ndarray:
    if values is None:
        return np.full(n, default, dtype=dtype)
    return np.asarray(values, dtype=dtype).reshape(-1)


class Origin(str, enum.Enum):
    """Which model decided a species call."""

    EXPERT = "expert"
    FALLBACK = "fallback"
    UNKNOWN = "unknown"
    NONE = "none"  # no species model was run (count-only mode)


UNKNOWN_LABEL = "unknown"
UNCLASSIFIED_LABEL = "unclassified"


@dataclass(frozen=True, slots=True)
class SpeciesCall:
    """One classification of one crop.

    ``label`` is ``"unknown"`` when no model was sure; ``candidate`` then keeps the best
    guess so logs can show what was rejected.
    """

    label: str
    score: float
    origin: Origin
    candidate: str = ""
    # The label's rank (species, genus, family, order; "" when the model's classes are unranked,
    # as the expert's are) and its names from kingdom down to that rank ("" where not known).
    rank: str = ""
    lineage: tuple[str, ...] = ()

    @property
    def is_known(self) -> bool:
        return self.origin is not Origin.UNKNOWN


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A species call for one track's crop, taken on ``frame`` (it may arrive frames later)."""

    frame: int
    time_s: float
    track_id: int
    call: SpeciesCall


@dataclass(frozen=True, slots=True)
class Look:
    """One classified crop of a track: when, how good a view, its appearance, and its call
    (None while the answer is pending)."""

    frame: int
    area: float
    call: SpeciesCall | None = None
    appearance: np.ndarray | None = field(default=None, repr=False)  # a unit-length colour descriptor


@dataclass(frozen=True, slots=True)
class TrackSummary:
    """A finished track: one species, how it was decided, where the fish was seen, and whether
    it is counted (see :mod:`fishcam.evidence`).

    ``frames`` lists every frame the track has a box on, ``boxes`` and ``confidences`` its box
    and detection confidence there; ``interpolated`` marks boxes filled in between detections
    (detection stride, short misses) rather than detected. ``online_ids`` are the tracker's ids
    this track was made of (more than one when the offline pass linked fragments of one fish).
    """

    track_id: int
    species: str
    score: float
    origin: Origin
    first_frame: int
    last_frame: int
    first_time_s: float
    last_time_s: float
    detections: int
    observations: int
    votes: int
    frames: tuple[int, ...] = field(repr=False, default=())
    frame_times_s: tuple[float, ...] = field(repr=False, default=())
    boxes: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 4), np.float32))
    confidences: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))
    interpolated: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))
    looks: tuple[Look, ...] = field(repr=False, default=())
    counted: bool = True
    reason: str = ""  # why a track is not counted
    online_ids: tuple[int, ...] = ()
    rank: str = ""  # the species' rank: species, or genus/family/order when only that was sure

    @property
    def mean_confidence(self) -> float:
        """Mean detection confidence over its detected (not interpolated) boxes."""
        detected = self.confidences[~self.interpolated] if len(self.interpolated) else self.confidences
        return float(detected.mean()) if len(detected) else 0.0


@dataclass(frozen=True, slots=True)
class SpeciesCount:
    """Per-species abundance over a run: unique tracks and MaxN."""

    species: str
    unique: int
    max_n: int
    max_n_frame: int
    max_n_time_s: float
    first_seen_s: float
    last_seen_s: float
    rank: str = ""  # the answer's rank (species, genus, family, order; "" unranked)


# ---- the run summary (summary.json) ------------------------------------------------------------


class RunStatus(str, enum.Enum):
    """Whether a run's outputs are complete: ``running`` until the end (and after a ``kill -9``)."""

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


@dataclass(frozen=True)
class RunInfo:
    """What a run's summary says from its first moment: what is being made, from what, by what."""

    fishcam: str | None = None
    python: str | None = None
    source: str | None = None
    source_path: str | None = None  # a file or folder's absolute path, a camera's masked URL
    recorded_start: str | None = None  # ISO 8601 UTC: the container's tag or a stream's first frame
    started: str | None = None  # when processing began, local time with its offset
    video_fps: float | None = None
    width: int | None = None
    height: int | None = None
    frames_expected: int | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> the model's description


@dataclass(frozen=True)
class RunProgress:
    """How far a running run has got (rewritten at every flush)."""

    frames: int = 0
    last_time_s: float | None = None
    tracks_closed: int = 0


@dataclass(frozen=True)
class RunFigures:
    """What the frame loop measured, known once it has ended."""

    exit_code: int = 0
    frames: int = 0
    detected_frames: int = 0
    frames_expected: int | None = None
    unreadable_frames: int = 0
    input_ended_early: bool = False
    warnings: tuple[str, ...] = ()
    processing_s: float = 0.0
    processing_fps: float = 0.0
    crops_classified: int = 0
    calls: dict[str, int] = field(default_factory=dict)  # expert / fallback / unknown / ... counts
    live: dict[str, Any] | None = None  # a live source's health: fps in and out, drops, reconnects


@dataclass(frozen=True)
class SpeciesTally:
    unique: int
    max_n: int


@dataclass(frozen=True)
class RunSummary:
    """summary.json, typed: every reader (exports, Camtrap DP, batch, cameras, the CLI) goes
    through :meth:`from_json`, every writer through :meth:`to_json`, so a renamed field is one
    edit, not a silent break. The JSON is flat, in the order people read it: status first."""

    status: RunStatus
    info: RunInfo = RunInfo()
    error: str | None = None
    progress: RunProgress | None = None  # while running
    figures: RunFigures | None = None  # once the loop has ended
    period: str | None = None  # one period folder of a rotated live run
    rotated: bool = False  # that period ended because the next one began
    periods: tuple[str, ...] | None = None  # the top folder of a rotated run: its period folders
    tracks: int | None = None
    counted_tracks: int | None = None  # the tracks with the evidence to be counted (fishcam.evidence)
    species: dict[str, SpeciesTally] | None = None
    outputs: tuple[str, ...] | None = None

    @property
    def frames(self) -> int:
        if self.figures is not None:
            return self.figures.frames
        return self.progress.frames if self.progress is not None else 0

    @property
    def exit_code(self) -> int | None:
        return self.figures.exit_code if self.figures is not None else None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status.value}
        if self.status is not RunStatus.RUNNING:
            data["error"] = self.error
        data.update(_fields(self.info))
        if self.progress is not None:
            data["progress"] = _fields(self.progress)
        if self.figures is not None:
            data.update(_fields(self.figures))
            data["warnings"] = list(self.figures.warnings)
        if self.period is not None:
            data["period"] = self.period
        if self.rotated:
            data["rotated"] = True
        if self.periods is not None:
            data["periods"] = list(self.periods)
        if self.tracks is not None:
            data["tracks"] = self.tracks
        if self.counted_tracks is not None:
            data["counted_tracks"] = self.counted_tracks
        if self.species is not None:
            data["species"] = {name: _fields(tally) for name, tally in self.species.items()}
        if self.outputs is not None:
            data["outputs"] = list(self.outputs)
        return data

    @classmethod
    def from_json(cls, data: Any) -> RunSummary:
        """A summary read back; raises ValueError naming the first field that is not of its kind.
        Summaries written before ``status`` existed were only written at the end: finished."""
        if not isinstance(data, dict):
            raise ValueError("not a fishcam summary")
        checked = {name: _checked(name, value) for name, value in data.items()}
        info = RunInfo(**{k: checked[k] for k in _names(RunInfo) if checked.get(k) is not None})
        figures = None
        if "frames" in checked and "progress" not in checked:
            given = {k: checked[k] for k in _names(RunFigures) if checked.get(k) is not None}
            figures = RunFigures(**{**given, "warnings": tuple(given.get("warnings", ()))})
        progress = RunProgress(**checked["progress"]) if checked.get("progress") else None
        species = checked.get("species")
        return cls(
            status=RunStatus(checked.get("status") or RunStatus.FINISHED.value),
            info=info,
            error=checked.get("error"),
            progress=progress,
            figures=figures,
            period=checked.get("period"),
            rotated=bool(checked.get("rotated")),
            periods=tuple(checked["periods"]) if checked.get("periods") is not None else None,
            tracks=checked.get("tracks"),
            counted_tracks=checked.get("counted_tracks"),
            species={k: SpeciesTally(**v) for k, v in species.items()} if species is not None else None,
            outputs=tuple(checked["outputs"]) if checked.get("outputs") is not None else None,
        )


_NUMBERS = {"video_fps", "processing_s", "processing_fps"}
_INTEGERS = {"width", "height", "frames", "frames_expected", "detected_frames", "unreadable_frames",
             "crops_classified", "exit_code", "tracks", "counted_tracks"}  # fmt: skip
_TEXTS = {"fishcam", "python", "source", "source_path", "recorded_start", "started", "error", "period"}
_TABLES = {"models", "calls", "live", "progress", "species"}
_LISTS = {"warnings", "periods", "outputs"}


def _checked(name: str, value: Any) -> Any:
    """``value`` if it is of the kind field ``name`` holds (None stands for any: not known)."""
    if value is None:
        return None
    if name == "status":
        if value not in {s.value for s in RunStatus}:
            raise ValueError(f"status is {value!r}, not one of {', '.join(s.value for s in RunStatus)}")
    elif name in _NUMBERS or name in _INTEGERS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} is {value!r}, not a number")
        if name in _INTEGERS and value != int(value):
            raise ValueError(f"{name} is {value!r}, not a whole number")
        return int(value) if name in _INTEGERS else float(value)
    elif name in _TEXTS and not isinstance(value, str):
        raise ValueError(f"{name} is {value!r}, not text")
    elif name in _TABLES and not isinstance(value, dict):
        raise ValueError(f"{name} is {value!r}, not a table")
    elif name in _LISTS and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"{name} is {value!r}, not a list of texts")
    if name == "models" and not all(isinstance(m, dict) for m in value.values()):
        raise ValueError(f"models is {value!r}, not the models' descriptions")
    if name == "species" and not all(
        isinstance(v, dict) and set(v) == {"unique", "max_n"} and all(type(n) is int for n in v.values())
        for v in value.values()
    ):
        raise ValueError(f"species is {value!r}, not species counts (unique, max_n)")
    if name == "progress" and not set(value) <= set(_names(RunProgress)):
        raise ValueError(f"progress is {value!r}, not a run's progress")
    return value


def _names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(kind))


def _fields(value: Any) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in fields(value)}
