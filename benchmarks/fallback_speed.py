"""Fallback speed: BioCLIP-2's architecture (ViT-L/14, random weights, open_clip's hub layout) on
this machine's CPU, and the cost of the open-ended top-k over the Tree of Life's full size.

    python benchmarks/fallback_speed.py                  # both parts, medians
    python benchmarks/fallback_speed.py --no-model       # only the open-ended matrix part
    python benchmarks/fallback_speed.py --taxa 100000    # a smaller Tree of Life

Part 1 (the model): crops per second through ``ZeroShotFallback.predict`` (cv2 preprocessing,
squashed to 224x224, fp32 torch) at batch 1 and 8 over the sample's species list (CSV), and the
one-off cost of its text embeddings: 7 species x 80 OpenAI ImageNet templates (then cached).
Part 2 (open-ended): a ``txt_emb_species.npy`` of the real shape, float32 (768, N), random unit
columns, with a taxa JSON in the real layout (cached in runs/bench/), memory-mapped as fishcam
reads it; per batch of crops' image embeddings: the matrix product, the softmax over N, the top-5
and the roll-up (summed probabilities per genus, family, order). N defaults to 952,257, the
taxa count of TreeOfLife-200M given by the BioCLIP 2 paper (the species file holds at most
that many). Every figure is a median over repeats measured in one run of this script: on a
shared machine compare ratios, not absolute numbers. Not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
CACHE = ROOT / "runs" / "bench"
FULL_TAXA = 952_257
DIM = 768


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def crops(n: int) -> list[np.ndarray]:
    import cv2

    photos = sorted((ROOT / "tests" / "data" / "real-fish").glob("*.*"))
    images = [cv2.imread(str(p)) for p in photos]
    images = [im for im in images if im is not None]
    return [images[i % len(images)] for i in range(n)]


def model_part(repeats: int) -> list[tuple[str, str]]:
    import torch

    from fishcam.classify.fallback import species_embeddings
    from fishcam.classify.species_list import read_species_list
    from fishcam.classify.templates import OPENAI_IMAGENET
    from fishcam.models.loading import load_clip, load_fallback, with_resize

    folder = CACHE / "vit-l-14-random"
    if not (folder / "open_clip_model.safetensors").is_file():
        from builders import save_open_clip_architecture

        save_open_clip_architecture(folder, "ViT-L-14")
    species = read_species_list(ROOT / "samples" / "species.csv")
    rows = [("torch threads", str(torch.get_num_threads()))]
    clip = with_resize(load_clip(str(folder), "cpu"), "squash")
    cache = CACHE / "text-embeddings"
    for old in cache.glob("*.npy"):
        old.unlink()
    start = time.perf_counter()
    species_embeddings(clip, species, OPENAI_IMAGENET, cache)
    encode_s = time.perf_counter() - start
    rows.append(("text embeddings, 7 species x 80 templates (once, then cached)", f"{encode_s:.1f} s"))
    fallback = load_fallback(str(folder), species, "openai_imagenet", "cpu", batch_size=8, embeddings_dir=cache)
    fallback.predict(crops(1))  # warm-up
    for batch in (1, 8):
        batch_crops = crops(batch)
        seconds = median_s(lambda batch_crops=batch_crops: fallback.predict(batch_crops), repeats)
        rows.append(
            (f"ViT-L/14 fp32, batch {batch}", f"{batch / seconds:.2f} crops/s ({1000 * seconds / batch:.0f} ms a crop)")
        )
    return rows


def tree_files(taxa: int) -> Path:
    """A Tree-of-Life file pair of the real shape and layout (cached)."""
    folder = CACHE / f"tree-of-life-{taxa}"
    npy = folder / "txt_emb_species.npy"
    if npy.is_file() and (folder / "txt_emb_species.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = np.lib.format.open_memmap(npy.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(DIM, taxa))
    step = 50_000
    for start in range(0, taxa, step):
        block = rng.standard_normal((DIM, min(step, taxa - start)), dtype=np.float32)
        out[:, start : start + block.shape[1]] = block / np.linalg.norm(block, axis=0, keepdims=True)
    out.flush()
    del out
    npy.with_suffix(".tmp.npy").rename(npy)
    kingdoms = [("Animalia", "Chordata", ""), ("Animalia", "Arthropoda", "Insecta"), ("Plantae", "Tracheophyta", "")]
    items = [
        [[*kingdoms[i % 3], f"Order{i % 1500}", f"Family{i % 9000}", f"Genus{i % 120_000}", f"epithet{i}"], ""]
        for i in range(taxa)
    ]
    (folder / "txt_emb_species.json").write_text(json.dumps(items))
    return folder


def open_ended_part(taxa: int, repeats: int) -> list[tuple[str, str]]:
    from fishcam.classify.decide import fallback_call
    from fishcam.classify.fallback import OpenEndedFallback
    from fishcam.classify.taxonomy import Taxonomy
    from fishcam.classify.tree_of_life import read_tree_of_life

    folder = tree_files(taxa)
    rows = [("Tree of Life", f"{taxa:,} species x {DIM} float32 = {taxa * DIM * 4 / 1e9:.2f} GB, memory-mapped")]
    start = time.perf_counter()
    tree = read_tree_of_life(folder)
    rows.append(("read the taxa JSON, map the matrix (once)", f"{time.perf_counter() - start:.1f} s"))
    start = time.perf_counter()
    taxonomy = Taxonomy(tree.lineages, ["species"] * len(tree))
    rows.append(("roll-up groups: genus, family, order codes (once)", f"{time.perf_counter() - start:.1f} s"))

    class Scale:  # the matrix part needs only the logit scale of a loaded model
        logit_scale = 100.0

    fallback = OpenEndedFallback.__new__(OpenEndedFallback)
    fallback.loaded, fallback.tree, fallback.labels, fallback.taxonomy = Scale(), tree, tree.labels, taxonomy  # type: ignore[assignment]
    labels = fallback.labels
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    fallback.probabilities(np.ones((1, DIM), np.float32) / DIM**0.5)
    rows.append(("first product (the matrix read from disk or page cache)", f"{time.perf_counter() - start:.2f} s"))
    for batch in (1, 8):
        image = rng.standard_normal((batch, DIM)).astype(np.float32)
        image /= np.linalg.norm(image, axis=1, keepdims=True)
        product = median_s(lambda image=image: fallback.probabilities(image), repeats)
        probs = fallback.probabilities(image)
        top = median_s(lambda probs=probs: fallback.top_k(probs, 5), repeats)
        roll = median_s(lambda probs=probs: [fallback_call(p, labels, 0.35, taxonomy) for p in probs], repeats)
        rows.append(
            (f"batch {batch}: product + softmax", f"{1000 * product:.0f} ms ({1000 * product / batch:.0f} ms a crop)")
        )
        rows.append((f"batch {batch}: top-5", f"{1000 * top:.1f} ms"))
        rows.append((f"batch {batch}: roll-up decision", f"{1000 * roll:.0f} ms ({1000 * roll / batch:.0f} ms a crop)"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--taxa", type=int, default=FULL_TAXA, help="columns of the Tree-of-Life matrix")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-model", action="store_true", help="skip the ViT-L/14 part")
    args = parser.parse_args()
    import os

    from fishcam import runtime

    runtime.setup()
    CACHE.mkdir(parents=True, exist_ok=True)
    rows = [("CPU cores", str(os.cpu_count()))]
    if not args.no_model:
        rows += model_part(args.repeats)
    rows += open_ended_part(args.taxa, args.repeats)
    from tables import two_column

    print(two_column(rows))


if __name__ == "__main__":
    main()
