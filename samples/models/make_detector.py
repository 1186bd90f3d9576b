"""Train the tiny 1-class "fish" sample detectors: ``fish_yolov8n.pt`` (the sample's and the tests'
detector) and ``fish_yolo12n.pt`` (YOLO12, the Community Fish Detector's architecture family at
its smallest scale: the tests' stand-in for a CFD-like file).

Run from the repo root:  python samples/models/make_detector.py [--arch yolo12n]

Training images are synthetic composites of the real fish cut-outs over frames
200-350 of the diver footage (and their mirror images). The shipped sample clip
uses footage frames 0-199, so the detector never sees the clip it is tested on.
Everything runs offline on the CPU, in temp folders; only the .pt lands here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "samples"))
import make_sample as ms  # noqa: E402

SEED = 20240917
W, H = ms.W, ms.H
CUTOUTS = sorted(p.name for p in ms.CUTOUTS.glob("*.png"))
# stripedfish.png is not in the sample catalogue; render_clip looks every cut-out
# up there for its GT species string, so give it one (the label is unused here).
ms.CATALOG.setdefault("stripedfish.png", ("unknown", "striped fish"))


def offline_ultralytics(tmp: Path):
    """Import ultralytics so that it never touches the network or ~/.config."""
    os.environ["MPLCONFIGDIR"] = str(tmp / "mpl")  # matplotlib's font cache too
    import matplotlib

    cfg = tmp / "yolo_config"
    (cfg / "Ultralytics").mkdir(parents=True)
    font = Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):  # else it downloads these
        shutil.copy(font, cfg / "Ultralytics" / name)
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_CONFIG_DIR=str(cfg))
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})
    return YOLO


def random_scenario(rng: np.random.Generator) -> list[dict]:
    """1-5 fish of any cut-out, 60-150 px wide, anywhere (some partly outside the
    frame, some overlapping), facing left or right; one static frame (t = 0)."""
    fish = []
    for k in range(int(rng.integers(1, 6))):
        fish.append(
            {
                "fish_id": k + 1,
                "cutout": CUTOUTS[rng.integers(len(CUTOUTS))],
                "width": float(rng.uniform(60, 150)),
                "start": 0,
                "x": float(rng.uniform(-0.08, 1.08) * W),
                "y": float(rng.uniform(-0.06, 1.06) * H),
                "vx": float(rng.choice([-1.0, 1.0])),  # sign = swim direction
                "vy": 0.0,
                "bob": 0.0,
                "period": 100,
                "z": k,
            }
        )
    return fish


def make_dataset(root: Path, n_train: int, n_val: int) -> Path:
    """Write a YOLO dataset (JPEG + txt labels) and return its data.yaml."""
    frames = list(ms.read_footage(200, 151))
    # Last 20 footage frames are val-only backgrounds, so val mAP (which picks
    # best.pt) is not measured on backgrounds seen in training.
    split = {"train": frames[:131], "val": frames[131:]}
    rng = np.random.default_rng(SEED)
    for part, n in (("train", n_train), ("val", n_val)):
        (root / part / "images").mkdir(parents=True)
        (root / part / "labels").mkdir(parents=True)
        bgs = split[part]
        for i in range(n):
            bg = bgs[rng.integers(len(bgs))]
            if rng.random() < 0.5:
                bg = bg[:, ::-1]
            # ~5 % fish-free frames teach "bubbles, rock and diver are not fish".
            scen = [] if rng.random() < 0.05 else random_scenario(rng)
            img, gt = next(
                ms.render_clip(
                    [np.ascontiguousarray(bg)],
                    scen,
                    seed=int(rng.integers(2**31)),
                    sensor_noise=float(rng.uniform(0, 3)),
                )
            )
            # JPEG quality varies so the model also sees compression artefacts
            # (the sample clip is H.264 at crf 23).
            q = int(rng.integers(60, 96))
            cv2.imwrite(
                str(root / part / "images" / f"{i:04d}.jpg"),
                img,
                [cv2.IMWRITE_JPEG_QUALITY, q],
            )
            lines = [
                f"0 {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} {(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}"
                for _, _, (x1, y1, x2, y2) in gt
            ]
            (root / part / "labels" / f"{i:04d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: train/images\nval: val/images\nnames:\n  0: fish\n")
    return yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--val", type=int, default=80)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--arch", default="yolov8n", choices=["yolov8n", "yolo12n"], help="Ultralytics architecture yaml")
    ap.add_argument("--keep", help="copy the temp work folder here (debugging)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)  # shared small CI-like box: stay on one core
    with tempfile.TemporaryDirectory(prefix="fishdet_") as tmp:
        tmp = Path(tmp)
        YOLO = offline_ultralytics(tmp)
        t0 = time.time()
        data = make_dataset(tmp / "data", args.train, args.val)
        print(f"dataset: {time.time() - t0:.0f} s", flush=True)

        t0 = time.time()
        model = YOLO(f"{args.arch}.yaml")  # architecture only, random init, no download
        model.train(
            data=str(data),
            epochs=args.epochs,
            imgsz=320,
            batch=16,
            workers=0,
            device="cpu",
            project=str(tmp / "runs"),
            name="fish",
            seed=SEED % 2**16,
            deterministic=True,
            amp=False,
            plots=False,
            cache=True,  # RAM cache: decoding JPEGs again each epoch costs CPU
            close_mosaic=max(1, args.epochs // 4),
            degrees=0.0,
            translate=0.1,
            scale=0.5,
            fliplr=0.5,
            verbose=False,
        )
        print(f"training: {time.time() - t0:.0f} s", flush=True)
        best = tmp / "runs" / "fish" / "weights" / "best.pt"
        out = HERE / f"fish_{args.arch}.pt"
        shutil.copy(best, out)
        if args.keep:
            shutil.copytree(tmp, args.keep, dirs_exist_ok=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
