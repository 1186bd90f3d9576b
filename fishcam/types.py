"""The data types that cross every stage of the pipeline.

Pure: numpy only. Units and conventions live in the names (``xyxy`` pixel corners with
exclusive right/bottom edges, ``image_bgr``, ``time_s``). Model-specific conversions live in
the adapter that owns the model, never here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

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
class TrackSummary:
    """A finished track: one species, how it was decided, and where the fish was seen."""

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
