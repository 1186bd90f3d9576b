"""Training cost of ``fishcam train`` per supported backbone: images per second in each stage,
peak memory (RSS) and CPU time (user vs system: system time near user time means threads
spinning against each other), as medians over repeats and as ratios to EfficientNet-Lite0.

Each measurement is a fresh process (peak RSS is per process) that builds a small dataset from the
real fish cut-outs on real footage and trains with the recipe (rembg on, masks computed before
the first epoch) for a few epochs of each stage:

    python benchmarks/train_speed.py                          # both backbones at 224 px, 3 repeats
    python benchmarks/train_speed.py --repeats 1 --size 160   # quicker
    python benchmarks/train_speed.py --device cuda --batch-size 64 --images 64   # a GPU machine
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "train"))

BACKBONES = {  # the supported backbones, as configs/train.yaml and configs/train-offline.yaml name them
    "EfficientNet-Lite0 (train-offline.yaml)": str(ROOT / "configs" / "train-offline.yaml"),
    "ConvNeXt-Tiny (train.yaml, the recipe)": str(ROOT / "configs" / "train.yaml"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=12, help="images per class (4 classes)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per stage")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-threads", action="store_true", help="no ONNX Runtime + torch thread check")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one config, print JSON
    parser.add_argument("--mix", help=argparse.SUPPRESS)  # internal: one thread-mix measurement
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return
    if args.mix:
        print(json.dumps(thread_mix(args.mix, args)))
        return
    if not args.skip_threads:
        threads_table(args)
    rows = {}
    for name, config in BACKBONES.items():
        runs = []
        for _ in range(args.repeats):
            command = [sys.executable, __file__, "--one", config, *sys.argv[1:]]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"{name}: {done.stderr[-2000:]}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        rows[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], float)}
        rows[name]["threads"] = runs[0]["threads"]
    first = next(iter(rows.values()))
    print(f"{args.size} px, batch {args.batch_size}, {4 * args.images} images (3/4 train), {args.epochs} epochs "
          f"per stage, device {args.device}, {os.cpu_count()} CPUs, medians of {args.repeats} processes")  # fmt: skip
    print("| backbone | stage 1 img/s | stage 2 img/s | eval img/s | rembg masks img/s | peak RSS MB | "
          "CPU system/user | torch threads | stage 2 time vs Lite0 | peak RSS vs Lite0 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['stage1']:.1f} | {r['stage2']:.1f} | {r['eval']:.1f} | {r['masks']:.1f} | "
              f"{r['rss_mb']:.0f} | {r['sys_user']:.2f} | {r['threads']} | {first['stage2'] / r['stage2']:.1f}× | "
              f"{r['rss_mb'] / first['rss_mb']:.1f}× |")  # fmt: skip


MIXES = {
    "torch alone (no rembg)": "none",
    "rembg between steps, ONNX Runtime defaults (before)": "default",
    "rembg between steps, fishcam's session options": "fishcam",
}


def threads_table(args) -> None:
    """What mixing rembg's ONNX Runtime with torch in one process costs: stage-2 training steps of
    EfficientNet-Lite0 (batch 16) with 4 rembg masks between steps (a quarter of the batch, as the
    old lazy masks did), ONNX Runtime with its default options (a spinning thread per core) vs
    fishcam's (torch's thread count, no spinning). fishcam now computes all masks before the first
    epoch, so training runs as torch alone; this shows why."""
    rows = {}
    for name, mix in MIXES.items():
        runs = []
        for _ in range(args.repeats):
            done = subprocess.run([sys.executable, __file__, "--mix", mix, "--size", str(args.size)],
                                  capture_output=True, text=True, check=False)  # fmt: skip
            if done.returncode:
                sys.exit(f"{name}: {done.stderr[-2000:]}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        rows[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    base = rows["torch alone (no rembg)"]["step_s"]
    print(f"ONNX Runtime beside torch: EfficientNet-Lite0 stage-2 steps, batch 16 at {args.size} px, 4 rembg masks "
          f"(u2netp) between steps; medians of {args.repeats} processes")  # fmt: skip
    print("| mix | s per step | vs torch alone | CPU system/user |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['step_s']:.2f} | {r['step_s'] / base:.2f}× | {r['sys_user']:.2f} |")
    print()


def thread_mix(mix: str, args, steps: int = 8) -> dict:
    from fishcam import runtime

    runtime.setup()
    import numpy as np
    import onnxruntime as ort
    import timm
    import torch

    from fishcam.train.balance import session_options

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=8).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(16, 3, args.size, args.size), torch.randint(0, 8, (16,))
    session = None
    if mix != "none":
        options = session_options() if mix == "fishcam" else ort.SessionOptions()
        session = ort.InferenceSession(str(ROOT / ".cache" / "u2net" / "u2netp.onnx"), options,
                                       providers=["CPUExecutionProvider"])  # fmt: skip
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).random((1, 3, 320, 320), np.float32)}

    def step() -> None:
        if session is not None:
            for _ in range(4):
                session.run(None, feed)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    started, cpu = time.perf_counter(), os.times()
    for _ in range(steps):
        step()
    end = os.times()
    return {"step_s": (time.perf_counter() - started) / steps,
            "sys_user": (end.system - cpu.system) / max(end.user - cpu.user, 1e-9)}  # fmt: skip


def measure(config: str, args) -> dict:
    """One training run in this process: medians of its epochs' throughputs, peak RSS, CPU times."""
    logging.basicConfig(level=logging.WARNING)
    from fishcam import runtime

    runtime.setup()  # what the CLI does first: thread and wait policies, offline
    import torch
    from fish_dataset import make_dataset

    from fishcam.train.config import load_train_config
    from fishcam.train.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "data", ["bluegroper", "clownfish", "lionfish", "moonwrasse"],
                            per_class=args.images, size=args.size)  # fmt: skip
        overrides = [
            f"preprocess.size={args.size}", f"stage1.epochs={args.epochs}", f"stage2.epochs={args.epochs}",
            f"batch_size={args.batch_size}", f"device={args.device}", f"num_workers={args.workers}",
            f"balance.min_per_class={args.images}", "data.val_fraction=0.25", "data.test_fraction=0",
            f"balance.rembg.cache_dir={Path(tmp) / 'masks'}", "export.open_set_keep=null",
        ]  # fmt: skip
        if "convnext" in Path(config).read_text():
            overrides.append("model.pretrained=none")  # its ImageNet weights are not on PyPI; same cost
        cfg = load_train_config(config, overrides)
        started, cpu = time.perf_counter(), os.times()
        result = train(data, Path(tmp) / "run", cfg, show_progress=False)
        end = os.times()
        removal = json.loads((Path(tmp) / "run" / "balance_report.json").read_text())["background_removal"]
    history = result.history
    return {
        "stage1": statistics.median(r["train_images_per_s"] for r in history if r["stage"] == 1),
        "stage2": statistics.median(r["train_images_per_s"] for r in history if r["stage"] == 2),
        "eval": statistics.median(r["val_images_per_s"] for r in history),
        "masks": removal["computed"] / max(removal["seconds"], 1e-9),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sys_user": (end.system - cpu.system) / max(end.user - cpu.user, 1e-9),
        "total_s": time.perf_counter() - started,
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    main()
