"""Soak benchmark: fishcam on a live 25 fps RTSP stream for many minutes.

Starts the test RTSP server (GStreamer, Debian's /usr/bin/python3) looping the dive sample,
runs fishcam's whole pipeline on it (YOLO detector, ConvNeXt-Tiny expert, background fallback,
H.264 overlay video, all logs) and prints: input and processed fps, drop rate, p50/p95
frame-to-output latency, RSS at start and end, and how long a forced drop (the server killed and
restarted) took to recover. A script, not a test: run it on a quiet machine.

    python benchmarks/soak.py --minutes 10 [--detector samples/models/fish_yolov8n.pt]

The models are the test suite's: the small YOLOv8n fish detector, and the real architectures
of the expert and the fallback with random weights (same cost as the published weights).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "live"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--drop-at", type=float, default=0.5, help="when the server dies (fraction of the run; 0: never)"
    )
    parser.add_argument("--detector", default=str(ROOT / "samples/models/fish_yolov8n.pt"))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "soak")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "dive.yaml")
    parser.add_argument(
        "--fallback", choices=["tiny", "ViT-L-14"], default="tiny",
        help="the fallback's architecture: ViT-L-14 is BioCLIP-2's real size (random weights, 1.7 GB)",
    )  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config key=value, as fishcam run")
    args = parser.parse_args()

    import builders
    from conftest import RtspServer

    from fishcam.app.compose import build_components
    from fishcam.app.run import run
    from fishcam.config import load_config
    from fishcam.sources.live import LiveSource

    models = Path(tempfile.mkdtemp(prefix="fishcam-soak-"))
    expert = builders.save_model_card_checkpoint(models / "balik_modeli_final.pth")
    if args.fallback == "tiny":
        clip = builders.save_tiny_open_clip(models / "tiny-bioclip")
    else:
        clip = builders.save_open_clip_architecture(models / "bioclip-size", args.fallback)
    seconds = args.minutes * 60
    config = load_config(
        args.config,
        [
            f"detector.weights={args.detector}", "detector.image_size=320",
            f"classify.expert.weights={expert}", f"classify.fallback.model={clip}",
            f"classify.fallback.species_list={ROOT / 'samples' / 'species.txt'}",
            f"source.duration_s={seconds}", "source.live.health_interval_s=60", *args.overrides,
        ],
    )  # fmt: skip
    components = build_components(config)
    server = RtspServer(ROOT / "samples" / "dive_sample.mp4")
    process = psutil.Process()
    rss = []
    recovery = {}

    def watch(source: LiveSource) -> None:
        start = time.monotonic()
        dropped = False
        while time.monotonic() - start < seconds:
            rss.append((time.monotonic() - start, process.memory_info().rss))
            if args.drop_at > 0 and not dropped and time.monotonic() - start >= seconds * args.drop_at:
                dropped = True
                server.kill()
                time.sleep(3)
                restarted = time.time()
                server.restart()
                before = source.health.reconnects
                while source.health.reconnects == before and time.time() - restarted < 60:
                    time.sleep(0.01)
                first = restarted
                while (source.health.last_frame_unix or 0) <= first and time.time() - restarted < 60:
                    time.sleep(0.01)
                recovery["first_frame_after_restart_s"] = (source.health.last_frame_unix or 0) - restarted
            time.sleep(1)

    source = LiveSource(server.url(), config.source.live)
    watcher = threading.Thread(target=watch, args=(source,), daemon=True)
    watcher.start()
    try:
        code, summary = run(source, config, args.out, components)
    finally:
        server.kill()
    figures = summary.figures
    live = figures.live
    latency = live["latency_ms"]
    back = recovery.get("first_frame_after_restart_s", float("nan"))
    # RSS at start: after models are loaded and the first minute has warmed caches.
    warm = [r for t, r in rss if t >= 60] or [r for _, r in rss]
    table = [
        ("duration", f"{figures.processing_s / 60:.1f} min"),
        ("input fps", f"{live['input_fps']:.1f}"),
        ("processed fps", f"{live['processed_fps']:.1f}"),
        ("drop rate", f"{100 * live['drop_rate']:.1f} %"),
        ("latency p50 / p95 (frame to output)", f"{latency['p50']:.0f} / {latency['p95']:.0f} ms"),
        ("RSS after 1 min / at end", f"{warm[0] / 2**20:.0f} / {rss[-1][1] / 2**20:.0f} MB"),
        ("RSS growth", f"{(rss[-1][1] - warm[0]) / 2**20:+.1f} MB"),
        ("forced drop: first frame after restart", f"{back:.2f} s"),
        ("reconnects / outages", f"{live['reconnects']} / {live['outages']}"),
        ("tracks", str(summary.tracks)),
        (
            "fallback calls (crops sent / refused)",
            f"{figures.calls.get('fallback_crops', 0)} / {figures.calls.get('fallback_refused', 0)}",
        ),
        ("exit code", str(code)),
    ]
    from tables import two_column

    print(two_column(table, ("measure", "value")))


if __name__ == "__main__":
    main()
