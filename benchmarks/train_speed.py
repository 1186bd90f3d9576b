"""Training and evaluation throughput of ``fishcam train`` per stage (images per second).

Builds a small dataset from the real fish cut-outs on real footage, trains a few epochs of each
stage and prints a table from the run's history. Rembg background removal is on (masks are
computed in the first epochs, then read from the cache).

    python benchmarks/train_speed.py                       # ConvNeXt-Tiny at 224 on this machine
    python benchmarks/train_speed.py --device cuda --batch-size 64 --images 64   # a GPU machine
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "train"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--architecture", default="torchvision:convnext_tiny")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=16, help="images per class (4 classes)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per stage")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch
    from fish_dataset import make_dataset

    from fishcam.train.config import load_train_config
    from fishcam.train.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "data", ["bluegroper", "clownfish", "lionfish", "moonwrasse"],
                            per_class=args.images, size=args.size)  # fmt: skip
        cfg = load_train_config(
            None,
            [
                f"model.architecture={args.architecture}", "model.pretrained=none", f"preprocess.size={args.size}",
                f"stage1.epochs={args.epochs}", f"stage2.epochs={args.epochs}", f"batch_size={args.batch_size}",
                f"device={args.device}", f"num_workers={args.workers}", f"balance.min_per_class={args.images}",
                f"balance.rembg.home={ROOT / '.cache' / 'u2net'}", f"balance.rembg.cache_dir={Path(tmp) / 'masks'}",
            ],
        )  # fmt: skip
        started = time.perf_counter()
        result = train(data, Path(tmp) / "run", cfg, show_progress=False)
        total = time.perf_counter() - started
    from fishcam.models.devices import pick_device

    print(f"{args.architecture} at {args.size} px, batch {args.batch_size}, device {pick_device(cfg.device)}, "
          f"torch threads {torch.get_num_threads()}, {4 * args.images} images, total {total:.0f} s")  # fmt: skip
    print("| stage | epoch | train img/s | eval img/s |")
    print("|---|---|---|---|")
    for r in result.history:
        print(f"| {r['stage']} | {r['stage_epoch']} | {r['train_images_per_s']:.1f} | {r['val_images_per_s']:.1f} |")


if __name__ == "__main__":
    main()
