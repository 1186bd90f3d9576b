"""Batch throughput with 1 and 2 local workers (and, with --ray, a local Ray cluster) on copies
of the dive sample, with the test YOLOv8n detector at 320 px and no species models.

    python benchmarks/batch_speed.py [--videos 6]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from fishcam.app.batch import run_batch
from fishcam.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=6)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fishcam-batch-"))
    for i in range(args.videos):
        shutil.copyfile(ROOT / "samples" / "dive_sample.mp4", folder / f"dive_{i:02d}.mp4")
    config = load_config(
        None,
        [f"detector.weights={ROOT / 'samples/models/fish_yolov8n.pt'}", "detector.image_size=320",
         "classify.enabled=false", "render.video=false"],
    )  # fmt: skip
    print("| workers | videos | seconds | videos per minute | frames per second |\n|---|---|---|---|---|")
    for workers in (1, 2):
        start = time.perf_counter()
        report = run_batch([str(folder)], config, folder / f"out-{workers}", workers=workers)
        seconds = time.perf_counter() - start
        done = len(report["done"])
        print(f"| {workers} | {done} | {seconds:.1f} | {60 * done / seconds:.1f} | {200 * done / seconds:.0f} |")


if __name__ == "__main__":
    main()
