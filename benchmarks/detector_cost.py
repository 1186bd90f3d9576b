"""What the presets' real detector architectures cost on this machine, and what their CPU
settings cost in tracking: ``python benchmarks/speed.py --detector ARCH`` (ARCH: yolo12x, the
Community Fish Detector; yolov8x, FathomNet's; yolov8n, SharkTrack; rfdetr-nano, CFD's RF-DETR).

1. **Detector cost.** The architecture built with random weights (the published weights are not
   reachable here; the cost of a network does not depend on its weights), loaded by fishcam as a
   run loads it, for each back end and image size: median ms per 1080p frame of real footage.
2. **End to end.** ``fishcam run`` on the 25 fps 1080p 5-fish benchmark clip, at the preset's CPU
   settings (``detector.on_cpu``), with the annotated video, the expert (ConvNeXt-Tiny) and every
   log. Random weights find no fish, so the detector of this run is the real architecture's
   forward pass *plus* the small sample detector's, whose boxes are the ones tracked: the real
   cost of the architecture and the real cost of tracking and classifying fish (pessimistic by
   the sample detector's few ms).
3. **Tracking cost of the stride and size** (``--tracking`` in the same table): IDF1 and HOTA of
   whole fishcam runs (offline pass and interpolation included, every frame scored) against exact
   ground truth, with the sample detector, by stride. The sample detector stands in for the real
   one: what a stride costs depends on how fast fish move across the frame, which is the clip's,
   not the detector's.

Each figure of one table comes from one run of this script; the machine is shared, so every
time is a median, and ratios are what to compare.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


@dataclass(frozen=True)
class Arch:
    name: str
    kind: str  # yolo or rfdetr
    classes: tuple[str, ...]
    sizes: tuple[int, ...]
    backends: tuple[str, ...]
    preset: str


ARCHS = {
    "yolo12x": Arch("yolo12x", "yolo", ("fish",), (320, 480, 640, 1024), ("torch", "openvino"), "dive.yaml"),
    "yolov8x": Arch("yolov8x", "yolo", ("corals", "crinoids", "Fish", "sponges"), (320, 640), ("torch", "openvino"),
                    "deep-sea.yaml"),
    "yolov8n": Arch("yolov8n", "yolo", ("elasmobranch",), (320, 640), ("torch", "openvino"), "sharks.yaml"),
    "rfdetr-nano": Arch("rfdetr-nano", "rfdetr", ("fish",), (384, 640), ("torch",), "dive-rfdetr.yaml"),
}  # fmt: skip


def weights(arch: Arch) -> Path:
    """The architecture with random weights in its published file format (cached)."""
    import builders
    from speed import CACHE

    path = CACHE / "arch" / (f"{arch.name}.pt" if arch.kind == "yolo" else f"{arch.name}.pth")
    if not path.exists():
        if arch.kind == "yolo":
            builders.save_ultralytics_architecture(path, arch.name, list(arch.classes))
        else:
            size = arch.name.removeprefix("rfdetr-")
            builders.save_rfdetr_architecture(path, size, list(arch.classes), resolution=max(arch.sizes))
    return path


def frame_1080p():
    import cv2
    from make_sample import read_footage

    return cv2.resize(next(iter(read_footage(0, 1))), (1920, 1080))


def detector_settings(arch: Arch, backend: str, size: int) -> list[str]:
    return [f"detector.kind={arch.kind}", f"detector.weights={weights(arch)}", f"detector.classes=[{arch.classes[0]}]",
            f"detector.image_size={size}", f"detector.backend={backend}", "detector.device=cpu"]  # fmt: skip


def detector_cost(arch: Arch, backend: str, size: int, repeats: int) -> dict[str, Any]:
    """Median ms per 1080p frame: load as a run does, warm up, time ``repeats`` frames."""
    from fishcam.app.compose import build_detector
    from fishcam.config import load_config
    from fishcam.types import Frame

    config = load_config(None, detector_settings(arch, backend, size))
    started = time.perf_counter()
    detector = build_detector(config)
    load_s = time.perf_counter() - started
    image = frame_1080p()
    detector.detect(Frame(image, 0, 0.0, "warm-up"))
    times = []
    for index in range(repeats):
        started = time.perf_counter()
        detector.detect(Frame(image, index, index / 25, "bench"))
        times.append(1000 * (time.perf_counter() - started))
    return {"ms": statistics.median(times), "spread": (min(times), max(times)), "load_s": load_s}


class CostOf:
    """A detector whose cost is the real architecture's and whose boxes are the sample detector's."""

    def __init__(self, boxes: Any, cost: Any) -> None:
        self.boxes, self.cost = boxes, cost
        self.class_names = boxes.class_names

    def detect(self, frame: Any) -> Any:
        self.cost.detect(frame)
        return self.boxes.detect(frame)

    def describe(self) -> dict[str, Any]:
        return {"boxes": self.boxes.describe(), "cost": self.cost.describe()}


def end_to_end(arch: Arch, backend: str, size: int, stride: int, frames: int) -> dict[str, Any]:
    """fps of a whole fishcam run on the 25 fps 1080p 5-fish clip at (size, stride)."""
    from speed import DETECTOR, make_clip, sure_expert_checkpoint

    from fishcam.app.compose import build_components, build_detector
    from fishcam.app.run import run
    from fishcam.config import load_config
    from fishcam.sources import open_source

    clip = make_clip(5, frames)
    common = [
        "detector.device=cpu",
        "classify.expert.device=cpu",
        f"classify.expert.weights={sure_expert_checkpoint()}",
    ]
    config = load_config(
        ROOT / "configs" / arch.preset,
        [*common, f"detector.weights={DETECTOR}", "detector.kind=yolo", "detector.classes=[fish]",
         "detector.image_size=320", f"detector.stride={stride}", "detector.on_cpu.image_size=null",
         "detector.on_cpu.stride=null"],
    )  # fmt: skip
    components = build_components(config)
    cost = build_detector(load_config(None, detector_settings(arch, backend, size)))
    components.detector = CostOf(components.detector, cost)  # type: ignore[assignment]
    out = Path(tempfile.mkdtemp(prefix="fishcam-arch-"))
    source = open_source(str(clip), config.source)
    started = time.perf_counter()
    _, summary = run(source, config, out, components)
    seconds = time.perf_counter() - started
    return {"fps": summary.frames / seconds, "frames": summary.frames, "tracks": summary.tracks}


def tracking(strides: list[int], frames: int) -> list[dict[str, Any]]:
    """IDF1/HOTA of whole runs by stride (sample detector at 320 px): the dive sample and the
    1080p 5-fish clip, every frame scored."""
    from builders import SAMPLES
    from speed import DETECTOR, make_clip, truth_path

    from fishcam.app.compose import build_components
    from fishcam.app.run import run
    from fishcam.config import load_config
    from fishcam.scoring import score
    from fishcam.sources import open_source

    clip = make_clip(5, frames)
    videos = [("dive sample (640×480, 6 fish)", SAMPLES / "dive_sample.mp4", SAMPLES / "dive_sample.gt.csv"),
              ("1080p, 5 fish", clip, truth_path(clip))]  # fmt: skip
    rows = []
    for name, video, gt in videos:
        for stride in strides:
            config = load_config(
                ROOT / "configs" / "dive.yaml",
                [f"detector.weights={DETECTOR}", "detector.image_size=320", f"detector.stride={stride}",
                 "detector.on_cpu.image_size=null", "detector.on_cpu.stride=null", "classify.enabled=false",
                 "render.video=false", "detector.device=cpu"],
            )  # fmt: skip
            out = Path(tempfile.mkdtemp(prefix="fishcam-stride-"))
            run(open_source(str(video), config.source), config, out, build_components(config))
            scored = score(out, gt).to_json()
            t = scored["tracking"]
            rows.append({"video": name, "stride": stride, "idf1": t["idf1"], "hota": t.get("hota", float("nan")),
                         "tracks": scored["run_tracks"], "fish": scored["truth_fish"]})  # fmt: skip
    return rows


def child(argv: list[str]) -> None:
    """One measurement in a process of its own (a clean process per back end and size)."""
    what, name, *rest = argv
    arch = ARCHS[name]
    import fishcam  # noqa: F401  (first, as the command line does)

    if what == "cost":
        backend, size, repeats = rest[0], int(rest[1]), int(rest[2])
        print(json.dumps(detector_cost(arch, backend, size, repeats)))
    elif what == "e2e":
        backend, size, stride, frames = rest[0], int(rest[1]), int(rest[2]), int(rest[3])
        print(json.dumps(end_to_end(arch, backend, size, stride, frames)))


def _in_child(*args: object) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(name: str, repeats: int = 7, frames: int = 300, settings: list[tuple[str, int, int]] | None = None,
         strides: list[int] | None = None) -> None:  # fmt: skip
    arch = ARCHS[name]
    weights(arch)  # built once, before any clock
    print(f"\n{name}: ms per 1080p frame, 2 threads (median of {repeats})\n")
    print("| back end | image size | ms per detected frame | min–max | load s |")
    print("|---|---|---|---|---|")
    costs = {}
    for backend in arch.backends:
        for size in arch.sizes:
            got = _in_child("cost", name, backend, size, repeats)
            if "error" in got:
                print(f"| {backend} | {size} | failed: {got['error']} | | |")
                continue
            costs[(backend, size)] = got["ms"]
            low, high = got["spread"]
            print(f"| {backend} | {size} | {got['ms']:.0f} | {low:.0f}–{high:.0f} | {got['load_s']:.1f} |")
    if settings:
        print(f"\n{name}: whole fishcam runs, 25 fps 1080p, 5 fish, {frames} frames (expert, video, logs)\n")
        print("| back end | image size | stride | fps | × real time (25 fps) |")
        print("|---|---|---|---|---|")
        for backend, size, stride in settings:
            got = _in_child("e2e", name, backend, size, stride, frames)
            if "error" in got:
                print(f"| {backend} | {size} | {stride} | failed: {got['error']} | |")
                continue
            print(f"| {backend} | {size} | {stride} | {got['fps']:.1f} | {got['fps'] / 25:.2f} |")
    if strides:
        print("\nTracking by stride (sample detector at 320 px; whole runs, every frame scored)\n")
        print("| video | stride | IDF1 | HOTA | tracks / fish |")
        print("|---|---|---|---|---|")
        for row in tracking(strides, frames):
            print(f"| {row['video']} | {row['stride']} | {row['idf1']:.3f} | {row['hota']:.3f} | "
                  f"{row['tracks']}/{row['fish']} |")  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
