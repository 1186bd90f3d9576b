"""The motion detector on fixed-camera scenes with exact truth, run through the real ByteTrack.

Each scene is composited in memory the way samples/make_sample.py makes the fixed sample: real
fish cut-outs (premultiplied alpha, sub-pixel placement) over a real still frame of the sample
footage, with sensor noise; boxes are the tight box of each fish's own alpha > 0.5, listed when
at least 40 % of the fish is inside the frame. Scenes are 320x240 at 25 fps, a few hundred
frames: a fish that stops for seconds and swims on, one that stops and leaves, two fish passing
close, a shimmering ripple and a flickering light, a fish resting in view from the first frame.

Tracks are scored against the truth: every track is given the fish its boxes overlap most
(IoU >= 0.3 on most of its frames); a track with no such fish is a false track (a ripple, a
ghost left where a fish was).
"""

from __future__ import annotations

import itertools
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np
import pytest
from builders import ROOT

from fishcam.config import MotionConfig, TrackerConfig, load_config
from fishcam.detect.motion import MotionDetector
from fishcam.track.bytetrack import ByteTracker
from fishcam.types import Detections, Frame

sys.path.insert(0, str(ROOT / "samples"))
from make_sample import CALM_FRAME, _load_cutout, read_footage

FPS, W, H = 25, 320, 240
PRESET = ROOT / "configs" / "fixed-camera.yaml"


@dataclass
class Fish:
    fish_id: int
    cutout: str
    width: int  # rendered width, px
    path: list[tuple[int, float, float]]  # keyframes (frame, cx, cy): straight swims between them
    hover: float = 0.0  # while stopped: px of slow bob, and as many % of body flex (fin and tail beat)


@dataclass
class Ripple:
    """A patch of shimmering light (a caustic, a ripple on a sandy spot): brightness waves
    drifting through a soft ellipse, on from ``start`` to ``end``."""

    cx: float
    cy: float
    rx: float
    ry: float
    amplitude: float = 0.35
    start: int = 0
    end: int = 10**9
    pulse: tuple[int, int] | None = None  # (on, off) frames: a glint that comes and goes with the waves

    def on(self, n: int) -> bool:
        if not self.start <= n < self.end:
            return False
        return self.pulse is None or (n - self.start) % sum(self.pulse) < self.pulse[0]


@dataclass
class Scene:
    frames: int
    fish: list[Fish] = field(default_factory=list)
    ripples: list[Ripple] = field(default_factory=list)
    flicker: float = 0.0  # relative amplitude of a global brightness flicker (a lamp, sunlight)
    flicker_period: float = 20.0  # frames
    light: list[tuple[int, int, float]] = field(default_factory=list)  # (from, to, gain): the light changes
    noise: float = 2.0  # sensor noise, grey levels


@cache
def background() -> np.ndarray:
    """The fixed sample's still scene: a frame of the real footage, at 320x240."""
    still = next(read_footage(CALM_FRAME, 1))
    return cv2.resize(still, (W, H), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


@cache
def sprite(cutout: str, width: int) -> np.ndarray:
    image = _load_cutout(cutout)
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _place(fish: Fish, n: int) -> tuple[float, float, int, float] | None:
    """(cx, cy, heading, flex) of the fish at frame n, None when it is not in the scene."""
    keys = fish.path
    if n < keys[0][0] or n > keys[-1][0]:
        return None
    legs = list(itertools.pairwise(keys))
    i = next(i for i, ((f0, *_), (f1, *_)) in enumerate(legs) if f0 <= n <= f1)
    (f0, x0, y0), (f1, x1, y1) = legs[i]
    t = (n - f0) / max(1, f1 - f0)
    cx, cy = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
    # Facing the way it swims; while stopped, the way it came (or, first, the way it will go).
    swims = [b[1] - a[1] for a, b in legs[i::-1] + legs[i + 1 :] if b[1] != a[1]]
    heading = 1 if not swims or swims[0] > 0 else -1
    flex = 0.0
    if x0 == x1 and y0 == y1 and fish.hover:
        cy += fish.hover * math.sin(2 * math.pi * n / 40)
        flex = fish.hover / 100 * math.sin(2 * math.pi * n / 9)
    return cx, cy, heading, flex


def render(scene: Scene, seed: int = 0) -> Iterator[tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]]:
    """(frame BGR uint8, [(fish_id, (x1, y1, x2, y2))]) for every frame of the scene."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    for n in range(scene.frames):
        out = background().copy()
        truth = []
        for fish in scene.fish:
            placed = _place(fish, n)
            if placed is None:
                continue
            cx, cy, heading, flex = placed
            img = sprite(fish.cutout, fish.width)
            if heading < 0:
                img = img[:, ::-1]
            ph, pw = img.shape[:2]
            if flex:  # a tail beat: the body flexes lengthwise about its centre
                pw = max(1, round(pw * (1 + flex)))
                img = cv2.resize(img, (pw, ph), interpolation=cv2.INTER_LINEAR)
            fx, fy = cx - pw / 2, cy - ph / 2
            x0, y0 = math.floor(fx), math.floor(fy)
            shift = np.float32([[1, 0, fx - x0], [0, 1, fy - y0]])
            patch = cv2.warpAffine(np.ascontiguousarray(img), shift, (pw + 1, ph + 1), flags=cv2.INTER_LINEAR)
            ys, xs = np.nonzero(patch[..., 3] > 0.5)
            inside = ((xs + x0 >= 0) & (xs + x0 < W) & (ys + y0 >= 0) & (ys + y0 < H)).mean()
            if inside >= 0.4:
                box = (max(0, x0 + int(xs.min())), max(0, y0 + int(ys.min())),
                       min(W, x0 + int(xs.max()) + 1), min(H, y0 + int(ys.max()) + 1))  # fmt: skip
                truth.append((fish.fish_id, box))
            ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(W, x0 + pw + 1), min(H, y0 + ph + 1)
            if ax0 < ax1 and ay0 < ay1:
                p = patch[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
                dst = out[ay0:ay1, ax0:ax1]
                dst[:] = p[..., :3] + dst * (1.0 - p[..., 3:])
        for r in scene.ripples:
            if r.on(n):
                envelope = np.exp(-(((xx - r.cx) / r.rx) ** 2 + ((yy - r.cy) / r.ry) ** 2) * 2)
                waves = np.sin(0.9 * xx + 0.5 * yy - 0.8 * n) * np.sin(0.6 * xx - 0.8 * yy + 0.55 * n)
                out *= (1.0 + r.amplitude * envelope * np.maximum(waves, 0) * 2)[..., None]
        if scene.flicker:
            out *= 1.0 + scene.flicker * math.sin(2 * math.pi * n / scene.flicker_period)
        for first, last, gain in scene.light:
            if first <= n < last:  # within two frames, as a cloud's edge or a lamp
                out *= 1.0 + (gain - 1.0) * min(1.0, (n - first + 1) / 2, (last - n) / 2)
        if scene.noise:
            out += rng.normal(0.0, scene.noise / 255.0, out.shape).astype(np.float32)
        yield np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8), sorted(truth)


@dataclass
class Result:
    truth: dict[int, dict[int, tuple]]  # frame -> fish id -> box
    tracks: dict[int, dict[int, np.ndarray]]  # track id -> frame -> box
    owner: dict[int, int | None]  # track id -> the fish it follows (None: a false track)
    detected: dict[int, np.ndarray]  # frame -> the detector's boxes

    @property
    def fish(self) -> set[int]:
        return {f for boxes in self.truth.values() for f in boxes}

    def tracks_of(self, fish_id: int) -> list[int]:
        return [t for t, f in self.owner.items() if f == fish_id]

    @property
    def false_tracks(self) -> list[int]:
        return [t for t, f in self.owner.items() if f is None]

    def summary(self) -> str:
        per_fish = {f: len(self.tracks_of(f)) for f in sorted(self.fish)}
        false = len(self.false_tracks)
        return f"{len(self.tracks)} tracks for {len(self.fish)} fish, per fish {per_fish}, false {false}"


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def preset_config() -> tuple[MotionConfig, TrackerConfig]:
    config = load_config(str(PRESET))
    return config.detector.motion, config.tracker


def run_scene(
    scene: Scene, motion: MotionConfig | None = None, tracker: TrackerConfig | None = None, seed: int = 0
) -> Result:
    """The motion detector and fishcam's ByteTrack (the fixed-camera preset's settings) on a scene."""
    preset_motion, preset_tracker = preset_config()
    detector = MotionDetector(motion or preset_motion)
    bytetrack = ByteTracker(tracker or preset_tracker, frame_rate=FPS)
    truth: dict[int, dict[int, tuple]] = {}
    tracks: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    detected: dict[int, np.ndarray] = {}
    for n, (image, boxes) in enumerate(render(scene, seed)):
        truth[n] = dict(boxes)
        detected[n] = detector.detect(Frame(image, n, n / FPS)).xyxy
        found = bytetrack.update(Detections.build(detected[n]), n / FPS)
        for box, tid in zip(found.xyxy, found.track_id, strict=True):
            if tid >= 0:
                tracks[int(tid)][n] = box
    owner: dict[int, int | None] = {}
    for tid, boxes in tracks.items():
        votes = Counter()
        for n, box in boxes.items():
            best = max(truth[n].items(), key=lambda kv: _iou(box, kv[1]), default=None)
            if best is not None and _iou(box, best[1]) >= 0.3:
                votes[best[0]] += 1
        fish, hits = votes.most_common(1)[0] if votes else (None, 0)
        owner[tid] = fish if hits >= len(boxes) / 2 else None
    return Result(truth, dict(tracks), owner, detected)


# ---- the scenes -----------------------------------------------------------------------------


# Swims in from the left at 2.5 px a frame, stops mid-frame for `stop` frames, swims on and out.
def stopping_fish(stop: int, hover: float = 0.0) -> Scene:
    x_stop = 150.0
    arrive = 20 + round((x_stop + 40) / 2.5)
    leave = arrive + stop
    out = leave + round((W + 40 - x_stop) / 2.5)
    path = [(20, -40.0, 110.0), (arrive, x_stop, 110.0), (leave, x_stop, 110.0), (out, W + 40.0, 110.0)]
    return Scene(out + 20, [Fish(1, "coraltrout.png", 70, path, hover)])


# Stops for `stop` frames, then turns back and swims out the way it came: the place it rested
# must be empty at once (no ghost of it held there).
def fish_that_leaves(stop: int) -> Scene:
    path = [(15, W + 40.0, 150.0), (80, 180.0, 150.0), (80 + stop, 180.0, 150.0), (80 + stop + 60, -40.0, 150.0)]
    return Scene(80 + stop + 60 + 60, [Fish(1, "bluegroper.png", 64, path)])


def passing_close() -> Scene:
    """Two fish swimming opposite ways in lanes whose bodies pass 10-12 px apart."""
    a = Fish(1, "lionfish.png", 60, [(10, -40.0, 95.0), (170, W + 40.0, 95.0)])
    b = Fish(2, "butterflyfish.png", 56, [(10, W + 40.0, 153.0), (170, -40.0, 153.0)])
    return Scene(190, [a, b])


def ripple_and_flicker(with_fish: bool) -> Scene:
    """A glint shimmering on the rock, on for half a second in every 1.6 s, and the light of the
    whole scene changing: a slow flicker of 5 %, and twice a sudden change of a fifth for a
    second or two (a cloud, the sun through a swell); optionally a fish swimming through the open
    water meanwhile."""
    fish = [Fish(1, "moonwrasse.png", 60, [(60, W + 40.0, 190.0), (200, -40.0, 190.0)])] if with_fish else []
    glint = Ripple(60, 150, 18, 12, amplitude=0.6, start=30, pulse=(12, 28))
    return Scene(260, fish, [glint], flicker=0.05, light=[(90, 130, 0.8), (170, 220, 1.2)])


def resting_from_the_start() -> Scene:
    """A fish already resting in view when recording starts (the background learns it), then it
    swims away: the place it leaves must not become a fish."""
    path = [(0, 200.0, 120.0), (120, 200.0, 120.0), (190, W + 40.0, 120.0)]
    return Scene(260, [Fish(1, "lionfish.png", 62, path, hover=0.5)])


def station() -> Scene:
    """A station camera's 16 s, all at once: five fish, two of them resting for 2.4 s and 4 s with
    their tails beating, two passing 11-14 px apart by the one resting, a glint on the rock, the
    light flickering and changing."""
    fish = [
        Fish(1, "coraltrout.png", 66, [(10, -40.0, 60.0), (70, 110.0, 60.0), (130, 110.0, 60.0), (210, W + 40.0, 60.0)],
             2.0),
        Fish(2, "bluegroper.png", 60, [(40, W + 40.0, 206.0), (100, 220.0, 206.0), (200, 220.0, 206.0),
                                       (260, W + 40.0, 206.0)], 2.0),
        Fish(3, "lionfish.png", 56, [(150, -40.0, 100.0), (310, W + 40.0, 100.0)]),
        Fish(4, "butterflyfish.png", 52, [(150, W + 40.0, 158.0), (310, -40.0, 158.0)]),
        Fish(5, "moonwrasse.png", 56, [(250, W + 40.0, 30.0), (380, -40.0, 30.0)]),
    ]  # fmt: skip
    glint = Ripple(50, 226, 18, 12, amplitude=0.6, start=30, pulse=(12, 28))
    return Scene(400, fish, [glint], flicker=0.03, light=[(120, 150, 0.85), (300, 340, 1.15)])


# ---- the tests ------------------------------------------------------------------------------


def _one_track_each(result: Result) -> None:
    assert result.false_tracks == [], result.summary()
    assert all(len(result.tracks_of(f)) == 1 for f in result.fish), result.summary()


@pytest.mark.parametrize(("stop", "hover"), [(60, 0.0), (100, 4.0)], ids=["dead-still", "tail-beating"])
def test_a_fish_that_stops_for_seconds_stays_one_track(stop, hover):
    scene = stopping_fish(stop, hover)
    result = run_scene(scene)
    _one_track_each(result)
    # Through the stop it is detected, at its outline, on every frame.
    (arrive, _, _), (leave, _, _) = scene.fish[0].path[1:3]
    (track,) = result.tracks_of(1)
    ious = [_iou(result.tracks[track].get(n, (0, 0, 0, 0)), result.truth[n][1]) for n in range(arrive, leave + 1)]
    assert min(ious) > 0.5


def test_a_fish_that_stops_longer_than_max_still_s_is_given_up():
    result = run_scene(stopping_fish(100), preset_config()[0].model_copy(update={"max_still_s": 1.0}))
    assert len(result.tracks_of(1)) == 2 and result.false_tracks == [], result.summary()


def test_a_fish_that_rests_and_leaves_leaves_no_ghost():
    scene = fish_that_leaves(75)
    result = run_scene(scene)
    _one_track_each(result)
    rest = result.truth[scene.fish[0].path[1][0] + 10][1]
    away = scene.fish[0].path[2][0] + 30  # the fish has swum off the place it rested
    assert not any(_iou(box, rest) > 0 for n in range(away, scene.frames) for box in result.detected[n])
    gone = scene.fish[0].path[-1][0]  # and out of the frame
    assert all(len(result.detected[n]) == 0 for n in range(gone, scene.frames))


def test_two_fish_passing_close_stay_two():
    result = run_scene(passing_close())
    _one_track_each(result)
    side_by_side = [n for n, fish in result.truth.items() if len(fish) == 2]
    assert sum(len(result.detected[n]) == 2 for n in side_by_side) >= 0.95 * len(side_by_side)


def test_glints_and_changing_light_are_not_fish():
    result = run_scene(ripple_and_flicker(with_fish=False))
    assert result.tracks == {} and not any(len(boxes) for boxes in result.detected.values())
    _one_track_each(run_scene(ripple_and_flicker(with_fish=True)))


@pytest.mark.parametrize("min_travel", [0.25, 0.0])
def test_a_fish_resting_when_the_video_starts_leaves_no_ghost(min_travel):
    """With min_travel 0 the place it left is a fish at once: the ghost check must drop it."""
    result = run_scene(resting_from_the_start(), preset_config()[0].model_copy(update={"min_travel": min_travel}))
    _one_track_each(result)


def test_a_station_camera_counts_each_fish_once():
    result = run_scene(station())
    print("station", result.summary())
    assert abs(len(result.tracks) - len(result.fish)) <= 1 and result.false_tracks == [], result.summary()
    assert all(result.tracks_of(f) for f in result.fish), result.summary()
