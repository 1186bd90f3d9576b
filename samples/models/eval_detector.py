"""Score fish_yolov8n.pt on samples/dive_sample.mp4 against its exact GT.

python samples/models/eval_detector.py [weights.pt] [--imgsz 320 640]

Per frame, detections (conf >= 0.25) are greedily matched to GT boxes at IoU >= 0.5,
highest confidence first. Prints precision, recall, false positives per frame and CPU
speed. Runs offline, on one CPU thread.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from make_detector import offline_ultralytics  # noqa: E402


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights", nargs="?", default=str(HERE / "fish_yolov8n.pt"))
    ap.add_argument("--imgsz", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--clip", default=str(REPO / "samples/dive_sample.mp4"))
    args = ap.parse_args()

    import av
    import torch

    torch.set_num_threads(1)
    gt = defaultdict(list)
    with open(Path(args.clip).with_suffix(".gt.csv")) as fh:
        for r in csv.DictReader(fh):
            gt[int(r["frame"])].append([float(r[k]) for k in ("x1", "y1", "x2", "y2")])
    with av.open(args.clip) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]

    with tempfile.TemporaryDirectory() as tmp:
        YOLO = offline_ultralytics(Path(tmp))
        model = YOLO(str(Path(args.weights).resolve()), task="detect")
        print("names:", model.names)
        for imgsz in args.imgsz:
            model.predict(frames[0], imgsz=imgsz, device="cpu", verbose=False)  # warm-up
            tp = fp = n_gt = 0
            fp_frames, t0 = defaultdict(int), time.perf_counter()
            for n, img in enumerate(frames):
                r = model.predict(img, imgsz=imgsz, conf=0.25, device="cpu", verbose=False)[0]
                boxes = r.boxes.xyxy.numpy()[np.argsort(-r.boxes.conf.numpy())]
                free = list(gt.get(n, []))
                n_gt += len(free)
                for b in boxes:
                    scores = [iou(b, g) for g in free]
                    if scores and max(scores) >= 0.5:
                        free.pop(int(np.argmax(scores)))
                        tp += 1
                    else:
                        fp += 1
                        fp_frames[n] += 1
            ms_per = (time.perf_counter() - t0) / len(frames) * 1000
            prec = tp / max(1, tp + fp)
            print(
                f"imgsz {imgsz}: precision {prec:.3f} recall {tp / n_gt:.3f} "
                f"(TP {tp}, FP {fp}, GT {n_gt}), FP/frame {fp / len(frames):.3f} "
                f"(in {len(fp_frames)} frames), {ms_per:.1f} ms/frame"
            )


if __name__ == "__main__":
    main()
