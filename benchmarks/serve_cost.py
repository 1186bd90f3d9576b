"""What serving a run costs its frame loop: ``fishcam run --serve`` against the same run without.

    python benchmarks/serve_cost.py              # the dive sample looped to 600 frames, 3 runs each
    python benchmarks/serve_cost.py --repeat 5 --loops 4

Three modes, the same clip, config (configs/sample.yaml: the sample detector and species expert)
and process (the models are built once): without --serve; with --serve and nobody watching; with
--serve and a client streaming the MJPEG view and the server-sent events for the whole run (a
separate process, as a browser is). The figure is the frame loop's fps (frames over the loop's
time: decode, detect, track, classify, write), and the process's CPU time per frame over the run
(the server's threads included: drawing and encoding the view happen there); each mode's median of
``--repeat`` runs, the modes interleaved so that a drift of the machine touches them alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "dive_sample.mp4"
CONFIG = ROOT / "configs" / "sample.yaml"

CLIENT = r"""
import sys, threading, httpx
base = sys.argv[1]
def pull(path):
    while True:
        try:
            with httpx.stream("GET", base + path, timeout=None) as answer:
                for _ in answer.iter_bytes():
                    pass
        except httpx.HTTPError:
            pass
threading.Thread(target=pull, args=("/live/events",), daemon=True).start()
pull("/live/stream.mjpg")
"""


def looped_clip(loops: int, folder: Path) -> Path:
    """The dive sample played ``loops`` times in a row (a longer clip, the same footage)."""
    if loops <= 1:
        return SAMPLE
    import cv2

    path = folder / f"dive_x{loops}.mp4"
    reader = cv2.VideoCapture(str(SAMPLE))
    fps = reader.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, image = reader.read()
        if not ok:
            break
        frames.append(image)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for _ in range(loops):
        for image in frames:
            writer.write(image)
    writer.release()
    return path


def one_run(mode: str, clip: Path, config, components, out: Path) -> tuple[float, float]:
    """The loop's fps, and the process's CPU milliseconds per frame (server threads included)."""
    from fishcam.app.run import run
    from fishcam.serve.app import create_app
    from fishcam.serve.live import LiveView
    from fishcam.serve.server import Server
    from fishcam.sources import open_source

    view, server, client = None, None, None
    if mode != "without --serve":
        view = LiveView()
        server = Server(create_app(None, live=view, read_only=True), "127.0.0.1", 0).start()
    if mode == "--serve, a client watching":
        assert server is not None and view is not None
        client = subprocess.Popen([sys.executable, "-c", CLIENT, server.url.rstrip("/")])
        deadline = time.monotonic() + 20
        while view.watchers < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert view.watchers >= 2, "the client did not connect"
    try:
        source = open_source(str(clip), config.source)
        before = resource.getrusage(resource.RUSAGE_SELF)
        _, summary = run(source, config, out, components, tee=view.attach if view is not None else None)
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        if client is not None:
            client.kill()
            client.wait()
        if server is not None:
            server.stop()
    assert summary.figures is not None
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return summary.figures.processing_fps, 1000 * cpu_s / max(summary.figures.frames, 1)


def direct_costs(clip: Path, run_folder: Path) -> tuple[float, float, float]:
    """The serving work timed on its own, on the clip's frames and the run's own boxes: the frame
    loop's part per frame (nobody watching, and watched), and one frame's overlay and JPEG on the
    server's side, in milliseconds."""
    import csv

    import cv2

    from fishcam.classify.ledger import TrackLedger
    from fishcam.config import PolicyConfig
    from fishcam.serve.live import LiveView
    from fishcam.types import Detections, Frame

    boxes: dict[int, list[dict[str, str]]] = {}
    with (run_folder / "detections.csv").open() as handle:
        for row in csv.DictReader(handle):
            boxes.setdefault(int(row["frame"]), []).append(row)
    reader = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < 200:
        ok, image = reader.read()
        if not ok:
            break
        index = len(frames)
        rows = boxes.get(index, [])
        detections = Detections.build([[float(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in rows],
                                      track_id=[int(r["track_id"]) for r in rows])  # fmt: skip
        frames.append((Frame(image, index, index / 25.0), detections))
    ledger = TrackLedger(PolicyConfig())
    view = LiveView()
    start = time.perf_counter()
    for _ in range(10):
        for frame, detections in frames:
            view.on_frame(frame, detections, ledger)
    idle_ms = 1000 * (time.perf_counter() - start) / (10 * len(frames))
    with view.watch():
        start = time.perf_counter()
        for _ in range(10):
            for frame, detections in frames:
                view._labels_at = 0.0  # every frame takes the calls (the loop does it at most 4 times a second)
                view.on_frame(frame, detections, ledger)
        watched_ms = 1000 * (time.perf_counter() - start) / (10 * len(frames))
        start = time.perf_counter()
        for frame, detections in frames:
            view.on_frame(frame, detections, ledger)
            view.jpeg()
        encode_ms = 1000 * (time.perf_counter() - start) / len(frames)
    return idle_ms, watched_ms, encode_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loops", type=int, default=3, help="times the sample is played in a row")
    args = parser.parse_args()
    os.chdir(ROOT)  # the config names its models relative to the repository root
    from fishcam import runtime

    runtime.setup()
    import logging

    logging.basicConfig(level=logging.WARNING)
    from fishcam.app.compose import build_components
    from fishcam.config import load_config

    config = load_config(CONFIG)
    components = build_components(config)
    modes = ["without --serve", "--serve, nobody watching", "--serve, a client watching"]
    fps: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        clip = looped_clip(args.loops, Path(tmp))
        one_run(modes[0], clip, config, components, Path(tmp) / "warm")  # caches, first-call costs
        for i in range(args.repeat):
            for mode in modes:
                rate, cost = one_run(mode, clip, config, components, Path(tmp) / f"run{i}")
                fps[mode].append(rate)
                cpu[mode].append(cost)
                print(f"  {mode}: {rate:.1f} fps, {cost:.1f} CPU ms/frame", file=sys.stderr)
        idle_ms, watched_ms, encode_ms = direct_costs(clip, Path(tmp) / "run0")
    frames = 200 * max(args.loops, 1)
    base = statistics.median(fps[modes[0]])
    base_cpu = statistics.median(cpu[modes[0]])
    print(f"frame loop fps, {frames}-frame clip (dive sample x{max(args.loops, 1)}), configs/sample.yaml, "
          f"{os.cpu_count()} CPUs, median of {args.repeat} runs")  # fmt: skip
    print()
    print("| mode | loop fps (median) | runs | fps vs without | CPU ms per frame (median) | CPU vs without |")
    print("|---|---:|---|---:|---:|---:|")
    for mode in modes:
        median, cost = statistics.median(fps[mode]), statistics.median(cpu[mode])
        runs = ", ".join(f"{v:.1f}" for v in fps[mode])
        print(f"| {mode} | {median:.1f} | {runs} | {median / base:.3f} | {cost:.1f} | {cost / base_cpu:.3f} |")

    loop_ms = 1000 / statistics.median(fps[modes[0]])
    print()
    print(f"timed on their own (the loop's frame: {loop_ms:.1f} ms):")
    print()
    print("| serving work | where | ms | share |")
    print("|---|---|---:|---:|")
    print(f"| hand over a frame, nobody watching | frame loop, every frame | {idle_ms:.4f} | "
          f"{100 * idle_ms / loop_ms:.3f} % of a frame |")  # fmt: skip
    print(f"| hand over a frame and the open tracks' calls, watched | frame loop, at most 4 per s | {watched_ms:.4f} | "
          f"{100 * watched_ms / loop_ms:.3f} % of a frame |")  # fmt: skip
    print(f"| overlay + JPEG of one frame | server thread, at most 8 per s, once for all clients | {encode_ms:.2f} | "
          f"{100 * 8 * encode_ms / 1000:.1f} % of one core at 8 fps |")  # fmt: skip


if __name__ == "__main__":
    main()
