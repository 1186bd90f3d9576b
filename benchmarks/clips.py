"""Failure clips for fishcam's counts (issue #13): short videos with exact ground truth, one per
way the counts were found to fail, and the runs (scenarios) that show each failure.

    python benchmarks/clips.py OUT_DIR [NAME ...]     # build clips (all by default)

``build(name, out_dir)`` renders a clip with ``samples/make_sample.py``'s ``render_clip``: the
real fish cut-outs over the real underwater footage, with a ground-truth row per frame while at
least 40 % of a fish is in view. It writes ``<name>.mp4`` (H.264), ``<name>.gt.csv`` (the
samples' format: ``frame,time_s,fish_id,species,x1,y1,x2,y2``) and ``<name>.json`` (each fish,
and the true unique count and MaxN per species), plus ``<name>.script.json`` for the clips a
scripted detector plays (the truth's boxes with a little jitter, and the injected boxes at set
confidences). Builds are deterministic and cached: a clip whose recipe has not changed is not
rendered again.

``SCENARIOS`` are the runs: which clip, which config and ``--set`` overrides, and whether the
real detector (YOLO or motion) or the scripted one finds the fish.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
sys.path.insert(0, str(SAMPLES))
import make_sample  # noqa: E402  (samples/ is not a package)

RECIPE_VERSION = 1  # bump when a builder changes what it writes
FPS = make_sample.FPS
FIXED_FRAME = make_sample.CALM_FRAME  # the fixed camera's background: a calm frame of the footage

# stripedfish.png is an unidentified species (samples/README.md, Attribution): not one of the
# sample expert's 7. Its truth is this label; a right answer is "unknown" (or a fallback's answer
# outside the 7), never one of the 7.
UNSEEN = "unidentified striped fish"
make_sample.CATALOG.setdefault("stripedfish.png", (UNSEEN, "striped fish (unidentified)"))


@dataclass(frozen=True)
class Injected:
    """Boxes a scripted detector reports that are no fish of the ground truth.

    ``kind="box"``: ``box`` on every frame of ``frames``. ``kind="tail"``: the edge where fish
    ``fish_id`` left the frame, from the frame after its last ground-truth row: the box of the
    part still in view, shrinking to a sliver ``sliver_px`` wide that stays at the edge for
    ``length`` frames in all (the detector keeps firing, unsure, where the fish went out).
    """

    kind: str  # "box" or "tail"
    confidence: tuple[float, float]  # drawn uniformly in this range, per frame
    frames: tuple[int, int] = (0, 0)  # kind="box": first and last frame (inclusive)
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    fish_id: int = 0  # kind="tail"
    length: int = 0
    sliver_px: int = 26
    what: str = ""


@dataclass(frozen=True)
class Clip:
    name: str
    what: str
    fish: tuple[dict, ...]  # a render_clip scenario
    frames: int
    seed: int
    background: str = "dive"  # "dive": the footage from footage_first on; "fixed": one calm frame
    footage_first: int = 0
    size: tuple[int, int] = (640, 480)
    scripted: bool = False  # also write the scripted detector's boxes
    injected: tuple[Injected, ...] = ()
    copy_of: str | None = None  # a shipped sample, copied as it is


@dataclass(frozen=True)
class ClipPaths:
    mp4: Path
    gt: Path
    meta: Path
    script: Path | None = None


@dataclass(frozen=True)
class Scenario:
    """One run of fishcam on a clip, and the failure of issue #13 it shows."""

    name: str
    clip: str
    failure: str
    detector: str  # "yolo", "motion" (the real detectors) or "scripted"
    config: str = "configs/sample.yaml"
    overrides: tuple[str, ...] = ()
    benchmark_only: bool = False  # too slow for the test suite on 2 cores


# ---- fish paths --------------------------------------------------------------------------------


def _params(scenario: list[dict], seed: int) -> dict[int, dict]:
    """The per-fish wobble and bob parameters render_clip draws from ``seed`` (same order and
    calls), so that a fish made of several straight legs can be placed without jumps."""
    rng = np.random.default_rng(seed)
    return {
        f["fish_id"]: {
            "wobble_amp": rng.uniform(1.5, 3.0),
            "wobble_period": rng.uniform(60, 120),
            "wobble_phase": rng.uniform(0, 2 * math.pi),
            "bob_phase": rng.uniform(0, 2 * math.pi),
        }
        for f in scenario
    }


def legs(scenario: list[dict], seed: int) -> list[dict]:
    """Expand fish given with ``legs: [(frames, vx, vy), ...]`` (a fish that swims, stops, swims
    on) into one render_clip entry per leg, each starting where the last one ended."""
    flat, multi = [], set()
    for fish in scenario:
        if "legs" not in fish:
            flat.append(dict(fish))
            continue
        multi.add(fish["fish_id"])
        start = fish["start"]
        for frames, vx, vy in fish["legs"]:
            leg = {k: v for k, v in fish.items() if k != "legs"}
            leg.update(start=start, end=start + frames - 1, vx=vx, vy=vy)
            flat.append(leg)
            start += frames
    params = _params(flat, seed)
    following: dict[int, tuple[float, float, float]] = {}  # fish_id -> x, y, bob phase of its next leg
    for leg in (f for f in flat if f["fish_id"] in multi):
        p = params[leg["fish_id"]]
        if leg["fish_id"] in following:
            leg["x"], leg["y"], leg["phase"] = following[leg["fish_id"]]
        else:
            leg.setdefault("phase", p["bob_phase"])
        n = leg["end"] - leg["start"] + 1

        def wobble(t: float, p: dict = p) -> float:
            return p["wobble_amp"] * math.sin(2 * math.pi * t / p["wobble_period"] + p["wobble_phase"])

        # The next leg starts where this one would be one frame after its end (its wobble at t = 0
        # taken off); the bob goes on through the phase.
        following[leg["fish_id"]] = (
            leg["x"] + leg["vx"] * n + wobble(n) - wobble(0),
            leg["y"] + leg["vy"] * n,
            leg["phase"] + 2 * math.pi * n / leg["period"],
        )
    return flat


# ---- the clips ---------------------------------------------------------------------------------


def _fish(fish_id, cutout, width, start, x, y, vx, vy=0.0, bob=3, period=90, z=None, **extra) -> dict:
    return {"fish_id": fish_id, "cutout": cutout, "width": width, "start": start, "x": x, "y": y, "vx": vx,
            "vy": vy, "bob": bob, "period": period, "z": fish_id if z is None else z, **extra}  # fmt: skip


def _twenty_fish() -> tuple[dict, ...]:
    """20 fish at 1080p: 5 lanes, 4 fish following each other in each (same speed, never
    touching), lanes alternating direction; about 12 in view at once."""
    cutouts = ["lionfish.png", "coraltrout.png", "butterflyfish.png", "bluegroper.png", "moonwrasse.png",
               "clownfish.png", "dolphinfish.png"]  # fmt: skip
    rng = np.random.default_rng(2020)
    fish, n = [], 0
    for lane, y in enumerate((150, 345, 540, 735, 930)):
        right = lane % 2 == 0
        speed = float(rng.uniform(6.5, 9.0))
        lead = float(rng.uniform(1250, 1550)) if right else float(rng.uniform(370, 670))
        for k in range(4):
            n += 1
            cutout = cutouts[(n * 3) % len(cutouts)]
            width = int(rng.uniform(250, 330))
            if cutout in ("lionfish.png", "butterflyfish.png", "clownfish.png"):
                width = int(width * 0.75)  # tall fish: keep them in their lane
            offset = k * float(rng.uniform(600, 700))
            x = lead - offset if right else lead + offset
            fish.append(_fish(n, cutout, width, 0, x, y + float(rng.uniform(-12, 12)), speed if right else -speed,
                              bob=4, period=float(rng.uniform(60, 110))))  # fmt: skip
    return tuple(fish)


CLIPS: dict[str, Clip] = {
    clip.name: clip
    for clip in (
        Clip("dive_sample", "the shipped dive sample (samples/dive_sample.*), copied", (), 200, 0,
             copy_of="dive_sample"),
        Clip(
            "leave_enter",
            "a butterflyfish leaves at the right edge; 0.2 s later a coral trout enters there, in its lane",
            (
                _fish(1, "butterflyfish.png", 95, 0, 470, 200, 3.0, bob=3, period=70),
                _fish(2, "coraltrout.png", 130, 53, 690, 206, -3.0, bob=2, period=90),
                _fish(3, "lionfish.png", 105, 0, 150, 380, 0.6, bob=5, period=90),
            ),
            150, 1301, footage_first=120,
        ),
        Clip(
            "crossing",
            "a butterflyfish and a blue groper cross head-on in one lane, the groper in front (box IoU "
            "up to 0.56)",
            (
                _fish(1, "butterflyfish.png", 100, 0, 100, 240, 2.0, bob=2, period=100),
                _fish(2, "bluegroper.png", 130, 0, 560, 250, -2.0, bob=2, period=100),
            ),
            150, 1302, footage_first=120,
        ),
        Clip(
            "low_conf_tail",
            "a lionfish leaves at the right edge and the detector keeps firing there at 0.25-0.30 for "
            "3 s; a second lionfish swims in from the left after the first has gone (scripted)",
            (
                _fish(1, "lionfish.png", 105, 0, 500, 150, 3.0, bob=4, period=80),
                _fish(2, "lionfish.png", 100, 75, -60, 330, 2.2, bob=4, period=90),
                _fish(3, "moonwrasse.png", 100, 0, 560, 430, -2.0, bob=3, period=50),
            ),
            200, 1303, footage_first=120, scripted=True,
            injected=(Injected("tail", (0.25, 0.30), fish_id=1, length=75, what="low-confidence tail"),),
        ),
        Clip(
            "still_fish",
            "fixed camera: a coral trout swims in, hovers in place for 3 s, swims on and out; a moon "
            "wrasse passes below",
            (
                _fish(1, "coraltrout.png", 130, 15, -70, 200, 0.0, bob=1, period=90,
                      legs=[(55, 5.0, 0.0), (75, 1e-6, 0.0), (100, 5.0, 0.0)]),
                _fish(2, "moonwrasse.png", 100, 30, 700, 400, -3.5, bob=2, period=45),
            ),
            245, 1304, background="fixed",
        ),
        Clip(
            "false_positive",
            "two fish swim across footage frames 60-159, where the detector takes a bright rock in the "
            "top-left corner for a fish for about 6 frames (footage frames 108-113)",
            (
                _fish(1, "moonwrasse.png", 100, 0, 80, 300, 3.0, bob=3, period=50),
                _fish(2, "coraltrout.png", 130, 0, 560, 400, -2.5, bob=2, period=90),
            ),
            100, 1305, footage_first=60,
        ),
        Clip(
            "false_positive_scripted",
            "two fish swim across; the detector reports a rock and a corner for 1, 3, 6 and 10 frames "
            "(scripted)",
            (
                _fish(1, "moonwrasse.png", 100, 0, 80, 120, 3.0, bob=3, period=50),
                _fish(2, "coraltrout.png", 130, 0, 560, 300, -2.5, bob=2, period=90),
            ),
            150, 1305, footage_first=120, scripted=True,
            injected=(
                Injected("box", (0.6, 0.75), (20, 20), (10, 360, 80, 420), what="rock, 1 frame"),
                Injected("box", (0.6, 0.75), (45, 47), (500, 20, 600, 70), what="corner, 3 frames"),
                Injected("box", (0.6, 0.75), (80, 85), (10, 360, 80, 420), what="rock, 6 frames"),
                Injected("box", (0.6, 0.75), (110, 119), (300, 400, 380, 470), what="rock, 10 frames"),
            ),
        ),
        Clip(
            "unseen_species",
            "a striped fish the expert never saw swims across with a butterflyfish",
            (
                _fish(1, "stripedfish.png", 115, 0, 120, 170, 2.2, bob=3, period=80),
                _fish(2, "butterflyfish.png", 95, 0, 540, 360, -2.4, bob=3, period=60),
            ),
            150, 1306,
        ),
        Clip(
            "twenty_fish",
            "20 fish of 7 species in 5 lanes at 1920x1080, about 12 in view at once",
            _twenty_fish(), 250, 1307, size=(1920, 1080),
        ),
    )
}  # fmt: skip

# Every run but the motion one uses configs/sample.yaml (the sample's YOLO detector and expert).
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("dive_sample", "dive_sample", "control: the shipped sample at stride 1", "yolo"),
        Scenario("leave_enter", "leave_enter", "1. leave-and-enter at an edge", "yolo"),
        Scenario("crossing", "crossing", "2. a crossing that risks a swap", "yolo"),
        Scenario("low_conf_tail", "low_conf_tail", "3. a low-confidence tail", "scripted",
                 overrides=("detector.confidence=0.25",)),  # the default config's: YOLO would report them
        Scenario("still_fish_yolo", "still_fish", "4. a still fish, fixed camera, YOLO", "yolo"),
        Scenario("still_fish_motion", "still_fish", "4. a still fish, fixed camera, motion detector", "motion",
                 config="configs/fixed-camera.yaml",
                 overrides=("classify.expert.weights=samples/models/sample-fish-expert.json",)),
        Scenario("false_positive", "false_positive", "5. a short false positive (the real detector's)", "yolo"),
        Scenario("false_positive_scripted", "false_positive_scripted", "5. short false positives of 1-10 frames",
                 "scripted"),
        Scenario("unseen_species", "unseen_species", "6. a species the expert never saw", "yolo"),
        Scenario("stride3", "dive_sample", "7. stride 3, scored on every frame", "yolo",
                 overrides=("detector.stride=3",)),
        Scenario("twenty_fish_1080p", "twenty_fish", "8. 20 fish at 1080p", "yolo", benchmark_only=True),
    )
}  # fmt: skip


# ---- building ----------------------------------------------------------------------------------


def paths(name: str, out_dir: Path) -> ClipPaths:
    clip = CLIPS[name]
    out_dir = Path(out_dir)
    script = out_dir / f"{name}.script.json" if clip.scripted else None
    return ClipPaths(out_dir / f"{name}.mp4", out_dir / f"{name}.gt.csv", out_dir / f"{name}.json", script)


def recipe(name: str) -> str:
    """A digest of everything a clip is made from: a changed recipe is built again."""
    digest = hashlib.sha256(json.dumps([RECIPE_VERSION, asdict(CLIPS[name])], sort_keys=True, default=str).encode())
    digest.update((SAMPLES / "make_sample.py").read_bytes())
    return digest.hexdigest()[:16]


def build(name: str, out_dir: str | Path) -> ClipPaths:
    """The clip ``name`` in ``out_dir`` (built unless it is there with the same recipe)."""
    clip, out = CLIPS[name], paths(name, Path(out_dir))
    out.mp4.parent.mkdir(parents=True, exist_ok=True)
    key = recipe(name)
    if all(p is None or p.exists() for p in (out.mp4, out.gt, out.script)) and out.meta.exists():
        try:
            if json.loads(out.meta.read_text()).get("recipe") == key:
                return out
        except ValueError:
            pass
    if clip.copy_of:
        shutil.copyfile(SAMPLES / f"{clip.copy_of}.mp4", out.mp4)
        shutil.copyfile(SAMPLES / f"{clip.copy_of}.gt.csv", out.gt)
        meta = json.loads((SAMPLES / f"{clip.copy_of}.json").read_text())
        meta.update(video=out.mp4.name, what=clip.what, unseen_species=[], recipe=key)
        out.meta.write_text(json.dumps(meta, indent=2) + "\n")
        return out
    scenario = legs(list(clip.fish), clip.seed)
    rows = _render(clip, scenario, out.mp4)
    with out.gt.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["frame", "time_s", "fish_id", "species", "x1", "y1", "x2", "y2"])
        writer.writerows(sorted(rows, key=lambda r: (r[0], r[2])))
    first_legs = list({f["fish_id"]: f for f in reversed(scenario)}.values())[::-1]
    meta = make_sample.summarize(name, rows, sorted(first_legs, key=lambda f: f["fish_id"]), clip.frames)
    meta.update(width=clip.size[0], height=clip.size[1], what=clip.what, recipe=key,
                unseen_species=sorted({r[3] for r in rows} & {UNSEEN}))  # fmt: skip
    if out.script is not None:
        script = scripted_boxes(clip, rows)
        out.script.write_text(json.dumps({"frames": script, "injected": [asdict(i) for i in clip.injected]}) + "\n")
        meta["scripted"] = {"injected": [i.what for i in clip.injected]}
    out.meta.write_text(json.dumps(meta, indent=2) + "\n")  # last: its recipe marks the build complete
    return out


def _backgrounds(clip: Clip) -> Iterator[np.ndarray]:
    import cv2

    w, h = clip.size
    if clip.background == "fixed":
        still = next(make_sample.read_footage(FIXED_FRAME, 1))
        still = still if (w, h) == (640, 480) else cv2.resize(still, (w, h), interpolation=cv2.INTER_LINEAR)
        return (still for _ in range(clip.frames))
    frames = make_sample.read_footage(clip.footage_first, clip.frames)
    if (w, h) == (640, 480):
        return frames
    return (cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames)


def _render(clip: Clip, scenario: list[dict], mp4: Path) -> list[tuple]:
    """Encode the clip (H.264, yuv420p, crf 23, x264 on 2 threads: reproducible) and return its
    ground-truth rows ``(frame, time_s, fish_id, species, x1, y1, x2, y2)``."""
    import av

    fixed = clip.background == "fixed"
    frames = make_sample.render_clip(
        _backgrounds(clip), scenario, clip.seed, sensor_noise=2.0 if fixed else 0.0, flicker=0.03 if fixed else 0.0
    )
    rows, count = [], 0
    tmp = mp4.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "23", "preset": "veryfast", "threads": "2"})
        stream.width, stream.height, stream.pix_fmt = clip.size[0], clip.size[1], "yuv420p"
        for n, (image, gt) in enumerate(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
            rows += [(n, round(n / FPS, 3), fid, species, *box) for fid, species, box in gt]
            count = n + 1
        container.mux(stream.encode())
    tmp.replace(mp4)
    if count != clip.frames:
        raise RuntimeError(f"{clip.name}: rendered {count} frames, wanted {clip.frames} (footage too short?)")
    return rows


def scripted_boxes(clip: Clip, rows: list[tuple]) -> dict[str, list[list[float]]]:
    """What the scripted detector reports per frame: every ground-truth box, jittered by about a
    pixel at confidence 0.75-0.92, and the injected boxes. ``{frame: [[x1, y1, x2, y2, conf], ...]}``."""
    rng = np.random.default_rng(clip.seed + 1)
    w, h = clip.size
    per_frame: dict[int, list[list[float]]] = {}
    for frame, _, _, _, x1, y1, x2, y2 in sorted(rows, key=lambda r: (r[0], r[2])):
        j = rng.normal(0.0, 0.8, 4)
        box = [max(0.0, x1 + j[0]), max(0.0, y1 + j[1]), min(w, x2 + j[2]), min(h, y2 + j[3])]
        per_frame.setdefault(frame, []).append([round(v, 1) for v in box] + [round(float(rng.uniform(0.75, 0.92)), 3)])
    for item in clip.injected:
        for frame, box in _injected_boxes(clip, item, rows):
            conf = round(float(rng.uniform(*item.confidence)), 3)
            per_frame.setdefault(frame, []).append([round(float(v), 1) for v in box] + [conf])
    return {str(f): per_frame[f] for f in sorted(per_frame) if f < clip.frames}


def _injected_boxes(clip: Clip, item: Injected, rows: list[tuple]) -> Iterator[tuple[int, list[float]]]:
    if item.kind == "box":
        for frame in range(item.frames[0], item.frames[1] + 1):
            yield frame, list(item.box)
        return
    if item.kind != "tail":
        raise ValueError(f"unknown injected kind {item.kind!r}")
    own = sorted((r for r in rows if r[2] == item.fish_id), key=lambda r: r[0])
    last, fish = own[-1], next(f for f in clip.fish if f["fish_id"] == item.fish_id)
    w = clip.size[0]
    _, _, _, _, x1, y1, x2, y2 = last
    vx = fish["vx"] if "legs" not in fish else fish["legs"][-1][1]
    for k in range(1, item.length + 1):
        if vx > 0:  # left at the right edge
            box = [min(x1 + vx * k, w - item.sliver_px), y1, w, y2]
        else:
            box = [0, y1, max(x2 + vx * k, item.sliver_px), y2]
        yield last[0] + k, box


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    out, names = Path(args[0]), args[1:] or list(CLIPS)
    for name in names:
        built = build(name, out)
        print(f"{name}: {built.mp4}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
