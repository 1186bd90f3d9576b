"""Speed benchmark: fishcam against the naive loop and against pure decoding, on the same clips.

    python benchmarks/speed.py                 # 1080p, 5 and 20 fish, CPU
    python benchmarks/speed.py --device cuda   # the same on a GPU machine
    python benchmarks/speed.py --detector yolo12x [--settings torch:640:8,openvino:320:4] [--strides 1,4,8]
                                               # a preset's real detector architecture (detector_cost.py)

The naive loop is what the model card's code does for video: detect on every frame at 640 px,
then classify every crop of every frame with torch fp32 and PIL preprocessing, one by one. Every
mode loads and warms up its models before its clock starts.
fishcam runs its whole pipeline with its fast settings (``configs/fast.yaml``), annotated video
and every log included; "sure expert" is the same with an expert that is confident of every crop
(random weights are never sure, so "fishcam" is the worst case: every track gets all its looks);
"tracks-only" is without species models and video (decode, detect and track: the floor). Each
mode runs in its own process (peak RSS is per mode); every figure of a table comes from one run
of this script, so compare ratios, not absolute numbers.

The models are the test suite's (the small YOLOv8n fish detector, ConvNeXt-Tiny with random
weights: the same cost as the published checkpoint). Clips are the real fish cut-outs over the
real underwater footage, scaled to 1080p, cached in runs/bench/.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "samples"))
sys.path.insert(0, str(ROOT / "tests"))
CACHE = ROOT / "runs" / "bench"
DETECTOR = ROOT / "samples" / "models" / "fish_yolov8n.pt"
CUTOUTS = ["lionfish.png", "bluegroper.png", "butterflyfish.png", "moonwrasse.png", "coraltrout.png"]


def make_clip(n_fish: int, frames: int, width: int = 1920, height: int = 1080) -> Path:
    """Fish swimming across real footage at 1080p (cached), with its exact ground truth beside
    it (``<clip>.gt.csv``: frame, fish_id, x1, y1, x2, y2)."""
    path = CACHE / f"clip_{n_fish}fish_{height}p_{frames}f.mp4"
    if path.exists() and truth_path(path).exists():
        return path
    import av
    import cv2
    from make_sample import read_footage, render_clip

    rng = np.random.default_rng(n_fish)
    lanes = np.linspace(90, height - 90, n_fish) if n_fish > 1 else [height / 2]
    scenario = [
        {
            "fish_id": i + 1, "cutout": CUTOUTS[i % len(CUTOUTS)], "width": int(rng.uniform(220, 380)),
            "start": 0, "x": float(rng.uniform(250, width - 250)), "y": float(lane),
            "vx": float(rng.choice([-1, 1]) * rng.uniform(0.8, 2.0)), "vy": 0.0, "bob": 4, "period": 80, "z": i,
        }
        for i, lane in enumerate(lanes)
    ]  # fmt: skip
    backgrounds = (cv2.resize(f, (width, height)) for f in read_footage(0, frames))
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    truth = []
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for index, (image, boxes) in enumerate(render_clip(backgrounds, scenario, seed=n_fish)):
            truth += [(index, fish_id, *box) for fish_id, _, box in boxes]
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with truth_path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "fish_id", "x1", "y1", "x2", "y2"])
        writer.writerows(truth)
    tmp.rename(path)
    return path


def truth_path(clip: Path) -> Path:
    return clip.with_suffix(".gt.csv")


def read_truth(clip: Path) -> list[dict]:
    with truth_path(clip).open() as handle:
        return [{k: int(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def expert_checkpoint() -> Path:
    import builders

    path = CACHE / "balik_modeli_final.pth"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        builders.save_model_card_checkpoint(path)
    return path


# ---- one mode per process -----------------------------------------------------------------


def run_decode(clip: Path, _: argparse.Namespace) -> dict:
    import cv2

    cap = cv2.VideoCapture(str(clip))
    frames, start = 0, time.perf_counter()
    while cap.read()[0]:
        frames += 1
    return {"frames": frames, "seconds": time.perf_counter() - start}


def run_naive(clip: Path, args: argparse.Namespace) -> dict:
    import cv2
    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms

    from fishcam import runtime

    runtime.setup()  # offline and no telemetry, as fishcam's own modes
    from ultralytics import YOLO

    detector = YOLO(str(DETECTOR), task="detect")
    model = torchvision.models.convnext_tiny(weights=None)
    model.classifier[2] = torch.nn.Linear(768, 40)
    model.load_state_dict(torch.load(expert_checkpoint(), weights_only=True))
    model = model.eval().to(args.device)
    prep = transforms.Compose(
        [
            transforms.Resize((224, 224)),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    cap = cv2.VideoCapture(str(clip))
    with torch.inference_mode():  # warm-up, untimed, as fishcam warms up when it loads its models
        detector.predict(np.zeros((640, 640, 3), np.uint8), imgsz=640, device=args.device, verbose=False)
        model(prep(Image.new("RGB", (64, 64))).unsqueeze(0).to(args.device))
    frames, crops, start = 0, 0, time.perf_counter()
    with torch.inference_mode():
        while frames < args.naive_frames:
            ok, image = cap.read()
            if not ok:
                break
            result = detector.predict(image, imgsz=640, conf=0.25, device=args.device, verbose=False)[0]
            rgb = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            for x1, y1, x2, y2 in result.boxes.xyxy.cpu().numpy().astype(int):
                tensor = prep(rgb.crop((x1, y1, x2, y2))).unsqueeze(0).to(args.device)
                torch.softmax(model(tensor), dim=1)
                crops += 1
            frames += 1
    return {"frames": frames, "seconds": time.perf_counter() - start, "crops": crops}


def run_fishcam(clip: Path, args: argparse.Namespace, extra: tuple[str, ...] = ()) -> dict:
    import tempfile

    from fishcam.app.compose import build_components
    from fishcam.app.run import run
    from fishcam.config import load_config
    from fishcam.sources import open_source

    config = load_config(
        ROOT / "configs" / "fast.yaml",
        [f"detector.weights={DETECTOR}", f"classify.expert.weights={expert_checkpoint()}",
         f"detector.device={args.device}", f"classify.expert.device={args.device}", *extra],
    )  # fmt: skip
    components = build_components(config)
    source = open_source(str(clip), config.source)
    out = Path(tempfile.mkdtemp(prefix="fishcam-bench-"))
    start = time.perf_counter()
    stages: dict = {}
    _, summary = run(source, config, out, components, lambda stats: stages.update(stats.stage_s))
    return {
        "frames": summary.frames,
        "seconds": time.perf_counter() - start,
        "crops": summary.figures.crops_classified,
        "stages": stages,
        "tracks": summary.tracks,
    }


def sure_expert_checkpoint() -> Path:
    """The same network with one output's bias raised: every look is confident, as a good expert
    is on the species it knows, so tracks settle after ``settle_votes`` looks (the typical case)."""
    import torch

    path = CACHE / "sure_expert.pth"
    if not path.exists():
        state = torch.load(expert_checkpoint(), weights_only=True)
        state["classifier.2.bias"] = state["classifier.2.bias"].clone()
        state["classifier.2.bias"][3] = 30.0
        torch.save(state, path)
    return path


def run_fishcam_sure_expert(clip: Path, args: argparse.Namespace) -> dict:
    return run_fishcam(clip, args, (f"classify.expert.weights={sure_expert_checkpoint()}",))


def run_fishcam_tracks_only(clip: Path, args: argparse.Namespace) -> dict:
    """The floor under fishcam's cost: decode, detect and track, no species and no video."""
    return run_fishcam(clip, args, ("classify.enabled=false", "render.video=false"))


MODES = {
    "decode": run_decode,
    "naive": run_naive,
    "fishcam": run_fishcam,
    "fishcam, sure expert": run_fishcam_sure_expert,
    "tracks-only": run_fishcam_tracks_only,
}


def tracking_quality(frames: int) -> list[tuple[str, int, int, dict]]:
    """IDF1, MOTA and count error of the detector + tracker against exact ground truth, for each
    detection size and stride (what the fast settings trade): on the dive sample (640x480, 6
    fish) and on the 1080p 20-fish benchmark clip."""
    from builders import SAMPLES, read_ground_truth, sample_meta
    from test_tracking import score_tracks, track_video

    from fishcam.config import load_config
    from fishcam.models.loading import load_detector

    clip = make_clip(20, frames)
    videos = [
        ("dive sample, 6 fish", SAMPLES / "dive_sample.mp4", read_ground_truth("dive_sample"),
         sample_meta("dive_sample")["frames"], (640, 320)),
        ("1080p, 20 fish", clip, read_truth(clip), frames, (320,)),
    ]  # fmt: skip
    rows = []
    for name, path, truth, length, sizes in videos:
        fish = len({row["fish_id"] for row in truth})
        for size in sizes:
            detector = load_detector(
                load_config(None, [f"detector.weights={DETECTOR}", f"detector.image_size={size}"]).detector
            )
            for stride in (1, 2, 3):
                sink = track_video(path, detector, stride=stride)
                scores = score_tracks(truth, length, sink, stride=stride)
                rows.append((name, size, stride, {**scores, "count_error": len(sink.tracks) - fish}))
    return rows


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). getrusage's ru_maxrss survives exec on Linux, so a
    child would report the benchmark's own peak (rendering the clips) when larger."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    if args.mode != "naive":
        import fishcam  # noqa: F401  (first, as its command line does: it sets up OpenMP before torch loads)
    result = MODES[args.mode](Path(args.clip), args)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=list(MODES))
    parser.add_argument("--clip")
    parser.add_argument("--fish", default="5,20")
    parser.add_argument("--frames", type=int, default=300, help="frames per clip (12 s: fish stay in view)")
    parser.add_argument("--naive-frames", type=int, default=20, help="the naive loop is slow: time this many")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.mode:
        child(args)
        return
    rows = []
    for n in (int(x) for x in args.fish.split(",")):
        clip = make_clip(n, args.frames)
        results = {}
        for mode in MODES:
            command = [sys.executable, __file__, "--mode", mode, "--clip", str(clip), "--device", args.device,
                       "--naive-frames", str(args.naive_frames)]  # fmt: skip
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[mode] = json.loads(output.strip().splitlines()[-1])
        fps = {m: r["frames"] / r["seconds"] for m, r in results.items()}
        stages = results["fishcam"]["stages"]  # the whole pipeline's
        per_frame = {k: 1000 * v / results["fishcam"]["frames"] for k, v in stages.items()}
        rows.append((n, fps, per_frame, results))
    print(f"\n1080p clips, {args.frames} frames, device {args.device}\n")
    print("| fish | mode | fps | × naive | × decode | crops classified | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for n, fps, _, results in rows:
        for mode in MODES:
            crops, rss = results[mode].get("crops", ""), results[mode]["peak_rss_mb"]
            ratios = f"{fps[mode] / fps['naive']:.1f} | {fps[mode] / fps['decode']:.2f}"
            print(f"| {n} | {mode} | {fps[mode]:.1f} | {ratios} | {crops} | {rss:.0f} MB |")
    print("\nfishcam, ms per frame by stage:\n")
    print("| fish | read (decode) | detect | track | classify | output (overlay + H.264 + logs) |")
    print("|---|---|---|---|---|---|")
    for n, _, per_frame, _ in rows:
        print(
            f"| {n} | "
            + " | ".join(f"{per_frame[k]:.1f}" for k in ("read", "detect", "track", "classify", "output"))
            + " |"
        )


def print_tracking_quality(frames: int) -> None:
    print("\nTracking against exact ground truth, by detection size and stride:\n")
    print("| video | image size | stride | IDF1 | MOTA | ID switches | tracks − fish |")
    print("|---|---|---|---|---|---|---|")
    for name, size, stride, s in tracking_quality(frames):
        scores = f"{s['idf1']:.3f} | {s['mota']:.3f} | {s['num_switches']:.0f} | {s['count_error']:+d}"
        print(f"| {name} | {size} | {stride} | {scores} |")


def detector_main(argv: list[str]) -> None:
    """``--detector ARCH``: the architecture's cost by back end and size, whole runs at the given
    (back end, size, stride) settings, and tracking by stride (benchmarks/detector_cost.py)."""
    import detector_cost

    parser = argparse.ArgumentParser()
    parser.add_argument("--detector", required=True, choices=list(detector_cost.ARCHS))
    parser.add_argument("--settings", default="", help="BACKEND:SIZE:STRIDE,... for whole runs")
    parser.add_argument("--strides", default="", help="strides for the tracking table, e.g. 1,4,8")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args(argv)
    settings = [(b, int(s), int(k)) for b, s, k in (item.split(":") for item in args.settings.split(",") if item)]
    strides = [int(k) for k in args.strides.split(",") if k]
    detector_cost.main(args.detector, args.repeats, args.frames, settings, strides)


if __name__ == "__main__":
    if "--detector" in sys.argv:
        detector_main(sys.argv[1:])
    elif "--tracking" in sys.argv:
        print_tracking_quality(300)
    else:
        main()
