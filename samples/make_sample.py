"""Generate the shipped sample clips and their exact ground truth.

Run ``python samples/make_sample.py``: it rewrites dive_sample.* and fixed_sample.*
(mp4, .gt.csv, .json) and species.txt next to this file. Output is deterministic.

``render_clip`` is importable so other scripts can composite other scenarios
(e.g. training data) over other backgrounds.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
CUTOUTS = HERE / "assets" / "fish-cutouts"
FOOTAGE = HERE / "assets" / "video" / "underwater_diver.mov"
FPS, W, H, N_FRAMES = 25, 640, 480, 200
SEED = 20240601
CALM_FRAME = 115  # rock on the left, open water on the right, few bubbles
MIN_VISIBLE = 0.4  # a GT row needs >= 40% of the fish's mask inside the frame

# cutout -> (scientific name, common name). All used cut-outs face right except
# clownfish.png, which faces left (see FACES_LEFT).
CATALOG = {
    "lionfish.png": ("Pterois volitans", "red lionfish"),
    "bluegroper.png": ("Achoerodus viridis", "eastern blue groper"),
    "butterflyfish.png": ("Chelmon rostratus", "copperband butterflyfish"),
    "moonwrasse.png": ("Thalassoma lunare", "moon wrasse"),
    "coraltrout.png": ("Plectropomus leopardus", "leopard coral trout"),
    "clownfish.png": ("Dascyllus aruanus", "humbug damselfish"),
    "dolphinfish.png": ("Coryphaena hippurus", "common dolphinfish"),
}
FACES_LEFT = {"clownfish.png"}

# One dict per fish. Position of the fish centre at t = frame - start:
#   cx = x + vx*t + wobble(t),  cy = y + vy*t + bob*sin(2*pi*t/period + phase)
# width: rendered width in px at start; grow: relative size change over 200 frames;
# optional end: last frame the fish exists; optional phase: bob phase (else seeded);
# z: draw order, higher is in front. Fish 4 (coral trout) swims in front of and
# across fish 3 (blue groper) in frames ~111-154 (box IoU peaks ~0.3 at frame 132):
# the ID-switch test. Never more than 4 fish on screen at once.
# fmt: off
SCENARIO = [
    {"fish_id": 1, "cutout": "lionfish.png", "width": 110, "start": 0, "x": 120, "y": 130,
         "vx": 0.8, "vy": 0.1, "bob": 6, "period": 90, "z": 1},
    {"fish_id": 2, "cutout": "butterflyfish.png", "width": 90, "start": 0, "x": 470, "y": 105,
         "vx": 2.4, "vy": 0.0, "bob": 5, "period": 60, "z": 2},
    {"fish_id": 3, "cutout": "bluegroper.png", "width": 125, "start": 0, "x": 80, "y": 350,
         "vx": 2.6, "vy": -0.05, "bob": 3, "period": 120, "grow": 0.1, "z": 3},
    {"fish_id": 4, "cutout": "coraltrout.png", "width": 135, "start": 50, "x": 712, "y": 314,
         "vx": -3.5, "vy": 0.0, "bob": 3, "period": 100, "z": 4},
    {"fish_id": 5, "cutout": "moonwrasse.png", "width": 100, "start": 0, "x": 150, "y": 435,
         "vx": -4.2, "vy": 0.0, "bob": 4, "period": 40, "z": 5},
    {"fish_id": 6, "cutout": "lionfish.png", "width": 100, "start": 92, "x": 690, "y": 200,
         "vx": -2.0, "vy": -0.1, "bob": 6, "period": 80, "grow": 0.1, "z": 6},
]
# fmt: on


# The fixed camera: the station sees an empty scene first (so a background model can learn it),
# then fish swim through in their own lanes without touching, two lionfish one behind the other.
FIXED_SCENARIO = [
    {"fish_id": 1, "cutout": "lionfish.png", "width": 110, "start": 15, "x": -60, "y": 80,
         "vx": 2.2, "vy": 0.0, "bob": 3, "period": 90, "z": 1},
    {"fish_id": 2, "cutout": "coraltrout.png", "width": 135, "start": 40, "x": 720, "y": 178,
         "vx": -3.0, "vy": 0.0, "bob": 2, "period": 100, "z": 2},
    {"fish_id": 3, "cutout": "butterflyfish.png", "width": 90, "start": 20, "x": 700, "y": 258,
         "vx": -2.6, "vy": 0.0, "bob": 3, "period": 60, "z": 3},
    {"fish_id": 4, "cutout": "bluegroper.png", "width": 120, "start": 30, "x": -70, "y": 350,
         "vx": 2.8, "vy": 0.0, "bob": 2, "period": 120, "z": 4},
    {"fish_id": 5, "cutout": "moonwrasse.png", "width": 100, "start": 15, "x": 700, "y": 440,
         "vx": -4.5, "vy": 0.0, "bob": 2, "period": 40, "z": 5},
    {"fish_id": 6, "cutout": "lionfish.png", "width": 100, "start": 80, "x": -60, "y": 80,
         "vx": 2.2, "vy": 0.0, "bob": 3, "period": 80, "z": 6},
]  # fmt: skip


def _load_cutout(name: str) -> np.ndarray:
    """Premultiplied float32 BGRA (alpha in 0..1): resampling premultiplied colour
    keeps the cut-out's background colour from bleeding into the edges."""
    bgra = cv2.imread(str(CUTOUTS / name), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255.0
    bgra[..., :3] *= bgra[..., 3:]
    return bgra[:, ::-1].copy() if name in FACES_LEFT else bgra  # now all face right


def _fish_patch(fish: dict, sprite: np.ndarray, t: int, rng_params: dict):
    """Return (premultiplied BGRA patch, x0, y0): the fish rendered at frame-offset t,
    with (x0, y0) the integer frame position of the patch's top-left pixel."""
    scale = fish["width"] / sprite.shape[1] * (1 + fish.get("grow", 0.0) * t / N_FRAMES)
    pw = max(1, round(sprite.shape[1] * scale))
    ph = max(1, round(sprite.shape[0] * scale))
    img = cv2.resize(sprite, (pw, ph), interpolation=cv2.INTER_AREA)
    if fish["vx"] < 0:  # swimming left: mirror the right-facing cut-out
        img = img[:, ::-1]
    # A small seeded speed wobble keeps the swim "constant-ish" rather than robotic.
    wobble = rng_params["wobble_amp"] * math.sin(
        2 * math.pi * t / rng_params["wobble_period"] + rng_params["wobble_phase"]
    )
    bob_phase = fish.get("phase", rng_params["bob_phase"])
    bob = fish["bob"] * math.sin(2 * math.pi * t / fish["period"] + bob_phase)
    cx = fish["x"] + fish["vx"] * t + wobble
    cy = fish["y"] + fish["vy"] * t + bob
    fx, fy = cx - pw / 2, cy - ph / 2
    x0, y0 = math.floor(fx), math.floor(fy)
    # Sub-pixel shift so slow fish glide instead of stepping a whole pixel at a time.
    m = np.float32([[1, 0, fx - x0], [0, 1, fy - y0]])
    patch = cv2.warpAffine(
        np.ascontiguousarray(img),
        m,
        (pw + 1, ph + 1),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return patch, x0, y0


def render_clip(
    background_frames_iter: Iterable[np.ndarray],
    scenario: list[dict],
    seed: int,
    sensor_noise: float = 0.0,
    flicker: float = 0.0,
    min_visible: float = MIN_VISIBLE,
) -> Iterator[tuple[np.ndarray, list[tuple[int, str, tuple[int, int, int, int]]]]]:
    """Composite the scenario's fish over each background frame (BGR uint8, any size).

    Yields (frame_bgr uint8, [(fish_id, species, (x1, y1, x2, y2)), ...]). Boxes are the
    amodal tight box of the fish's own alpha > 0.5, clipped to the frame, x2/y2 exclusive;
    a fish is listed only if >= min_visible of its mask is inside the frame (it is still
    drawn otherwise). ``seed`` drives the per-fish speed wobble and bob phase, and the
    optional sensor noise (Gaussian sigma, in grey levels) and slow global brightness
    flicker (relative amplitude), both applied to the whole composite as a camera would.
    """
    rng = np.random.default_rng(seed)
    sprites = {f["cutout"]: _load_cutout(f["cutout"]) for f in scenario}
    params = {
        f["fish_id"]: {
            "wobble_amp": rng.uniform(1.5, 3.0),
            "wobble_period": rng.uniform(60, 120),
            "wobble_phase": rng.uniform(0, 2 * math.pi),
            "bob_phase": rng.uniform(0, 2 * math.pi),
        }
        for f in scenario
    }
    flicker_period, flicker_phase = rng.uniform(120, 180), rng.uniform(0, 2 * math.pi)
    for n, bg in enumerate(background_frames_iter):
        hh, ww = bg.shape[:2]
        out = bg.astype(np.float32) / 255.0
        gt = []
        for fish in sorted(scenario, key=lambda f: f["z"]):  # back to front
            t = n - fish["start"]
            if t < 0 or t > fish.get("end", 10**9) - fish["start"]:
                continue
            patch, x0, y0 = _fish_patch(fish, sprites[fish["cutout"]], t, params[fish["fish_id"]])
            ph, pw = patch.shape[:2]
            # Ground truth from this fish's own mask, before any occlusion (amodal).
            ys, xs = np.nonzero(patch[..., 3] > 0.5)
            if len(xs):
                inside = ((xs + x0 >= 0) & (xs + x0 < ww) & (ys + y0 >= 0) & (ys + y0 < hh)).mean()
                if inside >= min_visible:
                    box = (
                        max(0, x0 + int(xs.min())),
                        max(0, y0 + int(ys.min())),
                        min(ww, x0 + int(xs.max()) + 1),
                        min(hh, y0 + int(ys.max()) + 1),
                    )
                    gt.append((fish["fish_id"], CATALOG[fish["cutout"]][0], box))
            # "Over" composite of the visible part of the patch.
            ax0, ay0 = max(0, x0), max(0, y0)
            ax1, ay1 = min(ww, x0 + pw), min(hh, y0 + ph)
            if ax0 >= ax1 or ay0 >= ay1:
                continue
            p = patch[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
            dst = out[ay0:ay1, ax0:ax1]
            dst[:] = p[..., :3] + dst * (1.0 - p[..., 3:])
        if flicker:
            out *= 1.0 + flicker * math.sin(2 * math.pi * n / flicker_period + flicker_phase)
        if sensor_noise:
            out += rng.normal(0.0, sensor_noise / 255.0, out.shape).astype(np.float32)
        frame = np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
        yield frame, sorted(gt)


def read_footage(first: int, count: int) -> Iterator[np.ndarray]:
    """Frames first..first+count-1 of the diver footage as BGR uint8."""
    import av  # only needed when reading footage; keeps render_clip import-light

    with av.open(str(FOOTAGE)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= first + count:
                break
            if i >= first:
                yield frame.to_ndarray(format="bgr24")


def write_clip(name: str, frames: Iterator, scenario: list[dict], crf: int = 23) -> list[tuple]:
    """Encode frames to <name>.mp4 (H.264, yuv420p) and write <name>.gt.csv / <name>.json."""
    import av

    rows, n_frames = [], 0
    # Fixed thread count: x264 output depends on it, so this keeps the mp4 reproducible.
    with av.open(str(HERE / f"{name}.mp4"), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream(
            "libx264",
            rate=FPS,
            options={"crf": str(crf), "preset": "medium", "threads": "2"},
        )
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for n, (img, gt) in enumerate(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
            rows += [(n, round(n / FPS, 3), fid, sp, *box) for fid, sp, box in gt]
            n_frames = n + 1
        out.mux(stream.encode())
    with open(HERE / f"{name}.gt.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["frame", "time_s", "fish_id", "species", "x1", "y1", "x2", "y2"])
        w.writerows(sorted(rows, key=lambda r: (r[0], r[2])))
    (HERE / f"{name}.json").write_text(json.dumps(summarize(name, rows, scenario, n_frames), indent=2) + "\n")
    return rows


def summarize(name: str, rows: list[tuple], scenario: list[dict], frames: int) -> dict:
    """Per-fish first/last frame and per-species unique count / MaxN, from the GT rows."""
    fish = []
    for f in sorted(scenario, key=lambda f: f["fish_id"]):
        seen = [r[0] for r in rows if r[2] == f["fish_id"]]
        sci, common = CATALOG[f["cutout"]]
        fish.append(
            {
                "fish_id": f["fish_id"],
                "species": sci,
                "common_name": common,
                "cutout": f["cutout"],
                "first_frame": min(seen) if seen else None,
                "last_frame": max(seen) if seen else None,
            }
        )
    counts = {}
    for sp in dict.fromkeys(f["species"] for f in fish):  # scenario order
        per_frame = [sum(1 for r in rows if r[0] == n and r[3] == sp) for n in range(frames)]
        max_n = max(per_frame)
        counts[sp] = {
            "unique": len({r[2] for r in rows if r[3] == sp}),
            "max_n": max_n,
            "max_n_frame": per_frame.index(max_n),
        }
    return {
        "video": f"{name}.mp4",
        "fps": FPS,
        "width": W,
        "height": H,
        "frames": frames,
        "fish": fish,
        "species_counts": counts,
    }


def write_species_list() -> None:
    """species.txt: the 5 species in the clips plus 2 distractors the user might expect."""
    lines = ["# Species for the zero-shot classifier, one per line: Scientific name; common name"]
    lines += [f"{sci}; {common}" for sci, common in dict(CATALOG.values()).items()]
    (HERE / "species.txt").write_text("\n".join(lines) + "\n")


def main() -> None:
    write_clip("dive_sample", render_clip(read_footage(0, N_FRAMES), SCENARIO, SEED), SCENARIO)
    still = next(read_footage(CALM_FRAME, 1))
    fixed = render_clip((still for _ in range(N_FRAMES)), FIXED_SCENARIO, SEED, sensor_noise=2.0, flicker=0.03)
    write_clip("fixed_sample", fixed, FIXED_SCENARIO)
    write_species_list()


if __name__ == "__main__":
    main()
