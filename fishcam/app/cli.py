"""Command line: ``fishcam run|classify|models|train|eval``. Heavy imports happen after parsing so ``--help``
is instant; ``main(argv)`` returns the exit code (see README, "Exit codes")."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fishcam import __version__
from fishcam.errors import ConfigError, FishcamError, OutputError, SourceError, Terminated, exit_code_for
from fishcam.sinks import EXPORT_FORMATS

if TYPE_CHECKING:
    from fishcam.types import RunSummary

log = logging.getLogger("fishcam")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fishcam", description="Which fish are in underwater video.")
    parser.add_argument("--version", action="version", version=f"fishcam {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="YAML config (default: built-in defaults, see configs/)")
    common.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set detector.confidence=0.4 (repeatable)",
    )
    common.add_argument(
        "--species", type=Path, help="species list for the fallback (sets classify.fallback.species_list)"
    )
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    common.add_argument("--log-json", action="store_true", help="log one JSON object per line (for services)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="process a video file, a folder of images or live cameras")
    run.add_argument(
        "source",
        nargs="+",
        metavar="SOURCE",
        help="video file (mp4, mov, avi, mkv), folder of images (name order), or camera URL or webcam index; "
        "several cameras, each NAME=URL or URL, run at once into OUT/<name>/",
    )
    run.add_argument("--out", type=Path, help="output folder (default: runs/<source name>, cameras: runs/live-<time>)")
    run.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this much video (live: wall) time")
    run.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    run.add_argument(
        "--serve", metavar="[HOST:]PORT", help="serve a live page of the run (host default 127.0.0.1; docs/serve.md)"
    )

    classify = sub.add_parser("classify", parents=[common], help="name the fish in whole images")
    classify.add_argument("images", nargs="+", type=Path)
    classify.add_argument("--format", choices=["table", "csv", "json"], default="table")

    models = sub.add_parser("models", help="fetch or list the models a config uses")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("fetch", parents=[common], help="download the config's models into the standard caches")
    models_sub.add_parser("list", parents=[common], help="show which models are present on this machine")

    logging_opts = argparse.ArgumentParser(add_help=False)
    logging_opts.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    logging_opts.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    train = sub.add_parser("train", parents=[logging_opts], help="train a species expert on your own images")
    train.add_argument("data", type=Path, help="folder of species folders, {train,val,test}/ folders, or a CSV")
    train.add_argument("--out", type=Path, required=True, help="output folder (checkpoints, reports, expert)")
    train.add_argument("--config", type=Path, help="training config (default: the recipe, see configs/train.yaml)")
    train.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a training config value, e.g. --set stage2.epochs=10 (repeatable)",
    )  # fmt: skip
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")

    evaluate = sub.add_parser("eval", parents=[logging_opts], help="measure an expert on labelled images")
    evaluate.add_argument("data", type=Path, help="folder of species folders (names = the expert's labels) or a CSV")
    evaluate.add_argument("--expert", required=True, help="manifest (.json/.yaml) or published-format checkpoint")
    evaluate.add_argument("--out", type=Path, required=True, help="report folder")
    evaluate.add_argument("--split", help="with train/val/test folders or a split column: which split (default test)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    evaluate.add_argument("--batch-size", type=int, default=32)

    batch = sub.add_parser("batch", parents=[common], help="many videos, resumable, local worker processes")
    batch.add_argument("inputs", nargs="+", help="video files, globs, folders, or a CSV manifest (path,site,date,...)")
    batch.add_argument("--out", type=Path, required=True, help="output folder: one run folder per video + reports")
    batch.add_argument("--workers", type=int, default=1, help="worker processes (each loads the models once)")
    batch.add_argument(
        "--ray", metavar="auto|ADDRESS", help="run on a Ray cluster: auto (the running one) or its address"
    )

    server = sub.add_parser("serve", parents=[logging_opts], help="see and correct runs in a browser")
    server.add_argument("folder", type=Path, nargs="?", default=Path("runs"), help="runs or batches (default runs/)")
    server.add_argument("--host", default="127.0.0.1", help="address to bind (another needs FISHCAM_TOKEN)")
    server.add_argument("--port", type=int, default=8765)
    server.add_argument("--read-only", action="store_true", help="no corrections: every POST is refused")

    scorer = sub.add_parser(
        "score", parents=[logging_opts], help="measure a run against ground truth (MOTChallenge, VIAME or sample CSV)"
    )
    scorer.add_argument("run_dir", type=Path, help="the --out folder of a finished fishcam run")
    scorer.add_argument("truth", type=Path, help="ground truth: MOTChallenge gt.txt, VIAME CSV or fishcam's sample CSV")
    scorer.add_argument(
        "--iou", type=float, default=0.5, help="least IoU for a box to match the truth (default 0.5; not for HOTA)"
    )
    scorer.add_argument("--json", type=Path, help="also write the scores to this JSON file")

    exporter = sub.add_parser(
        "export", parents=[logging_opts], help="a finished run or batch in MOT, VIAME, COCO or Camtrap DP format"
    )
    exporter.add_argument("run_dir", type=Path, help="the --out folder of a fishcam run or fishcam batch")
    exporter.add_argument("--format", dest="formats", action="append", default=[], choices=list(EXPORT_FORMATS))
    exporter.add_argument("--out", type=Path, help="where to write (default: RUN_DIR/exports, RUN_DIR/reviewed)")
    exporter.add_argument(
        "--reviewed", action="store_true", help="apply each run's review file first, and write its reviewed "
        "tracks.csv, detections.csv and species_counts.csv too (docs/review.md)",
    )  # fmt: skip
    camtrap = exporter.add_argument_group("Camtrap DP (defaults for videos whose batch manifest lacks them)")
    camtrap.add_argument("--latitude", help="WGS84 decimal degrees of the camera")
    camtrap.add_argument("--longitude", help="WGS84 decimal degrees of the camera")
    camtrap.add_argument("--start", help="when recording began, ISO 8601 with a zone (default: the video's own tag)")
    camtrap.add_argument("--site", help="location name")
    camtrap.add_argument("--depth", help="camera depth in metres")
    camtrap.add_argument("--title", default="fishcam species observations", help="project and package title")
    camtrap.add_argument("--contributor", default="", help="contact person or organisation (default: your user)")
    camtrap.add_argument("--sampling-design", default="opportunistic", help="Camtrap DP samplingDesign")
    camtrap.add_argument("--capture-method", default="timeLapse", help="activityDetection or timeLapse")
    camtrap.add_argument("--bait", choices=["yes", "no"], help="were the cameras baited (BRUV)")
    camtrap.add_argument(
        "--taxa", type=Path, help="species list mapping labels to scientific names (default: the run's fallback list)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.quiet, args.log_json)
    from fishcam import runtime  # before any library is imported: telemetry off, hub offline

    runtime.setup(hub=getattr(args, "models_command", None) == "fetch")
    try:
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "eval":
            return _cmd_eval(args)
        if args.command == "export":
            return _cmd_export(args)
        if args.command == "score":
            return _cmd_score(args)
        if args.command == "serve":
            from fishcam.serve.server import serve_folder

            return serve_folder(args.folder, args.host, args.port, args.read_only)
        from fishcam.config import load_config

        flags = {  # typed values from flags, applied after --set: a flag says what it means
            "classify.fallback.species_list": str(args.species) if args.species is not None else None,
            "source.duration_s": getattr(args, "duration", None),
            "source.max_frames": getattr(args, "max_frames", None),
        }
        config = load_config(args.config, args.overrides, {k: v for k, v in flags.items() if v is not None})
        if args.command == "run":
            return _cmd_run(args, config)
        if args.command == "classify":
            return _cmd_classify(args, config)
        if args.command == "batch":
            return _cmd_batch(args, config)
        return _cmd_models(args, config)
    except FishcamError as exc:
        log.error("%s", exc)
        return exit_code_for(exc)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated) outside a run's loop
        log.error("%s", "terminated" if isinstance(exc, Terminated) else "interrupted")
        return exit_code_for(exc)


def _setup_logging(quiet: bool, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("fishcam: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    for noisy in ("httpx", "huggingface_hub", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": record.created,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def _cmd_run(args: argparse.Namespace, config) -> int:
    if len(args.source) > 1:
        if args.serve:
            raise ConfigError("--serve shows one source's run: give one SOURCE (several cameras are not served yet)")
        return _cmd_run_cameras(args, config)
    from fishcam.app.compose import build_components
    from fishcam.app.run import run
    from fishcam.progress import RunProgress
    from fishcam.sinks.files import prepare_output_dir
    from fishcam.sources import open_source
    from fishcam.sources.cameras import split_name
    from fishcam.sources.live import is_live

    serving = _live_server(args.serve) if args.serve else None  # a missing token stops before model loading
    name, spec = split_name(args.source[0])  # one camera may be named too: NAME=URL
    out_dir = args.out or Path("runs") / (name or _default_name(spec))
    prepare_output_dir(out_dir, keep=False)  # an unwritable --out is reported before anything is loaded
    if is_live(spec):  # load the models before connecting: a camera does not wait
        components = build_components(config)
        source = open_source(spec, config.source)
    else:  # a wrong path is reported before seconds of model loading
        source = open_source(spec, config.source)
        components = build_components(config)
    log.info("processing %s (%dx%d, %.2f fps) into %s", source.name, source.width, source.height, source.fps, out_dir)
    _terminate_on_sigterm()
    view = serving.start() if serving is not None else None
    try:
        with RunProgress(source.status.frames_expected, enabled=not args.quiet and not args.log_json) as progress:
            code, summary = run(source, config, out_dir, components, progress.update, tee=view and view.attach)
    finally:
        if serving is not None:
            serving.stop()
    _print_run_result(out_dir, summary, quiet=args.quiet)
    return code


def _live_server(address: str):
    from fishcam.serve.server import LiveServing

    return LiveServing(address)


def _cmd_run_cameras(args: argparse.Namespace, config) -> int:
    """Several live cameras at once, one thread each, into OUT/<name>/ (see fishcam.app.cameras)."""
    from fishcam.app.cameras import run_cameras
    from fishcam.app.compose import build_components
    from fishcam.sinks.files import prepare_output_dir
    from fishcam.sources.cameras import parse_cameras

    cameras = parse_cameras(args.source)  # a wrong source list is reported before model loading
    out_dir = args.out or Path("runs") / ("live-" + time.strftime("%Y%m%d-%H%M%S"))
    prepare_output_dir(out_dir, keep=False)
    components = build_components(config)  # the models load once, before any camera connects
    log.info("%d cameras into %s: %s", len(cameras), out_dir, ", ".join(f"{c.name}={c.masked}" for c in cameras))
    _terminate_on_sigterm()
    return run_cameras(cameras, config, out_dir, components)


def _cmd_batch(args: argparse.Namespace, config) -> int:
    from fishcam.app.batch import run_batch

    _terminate_on_sigterm()  # SIGTERM stops a batch as Ctrl-C does: the report is written
    report = run_batch(args.inputs, config, args.out, workers=args.workers, ray_address=args.ray)
    log.info(
        "%d videos: %d done, %d skipped (already done), %d failed, %d bad manifest rows; report in %s",
        report["videos"], len(report["done"]), len(report["skipped"]), len(report["failed"]), len(report["bad_rows"]),
        args.out / "batch_report.json",
    )  # fmt: skip
    # The rest finished; the report lists what failed and which manifest rows were skipped.
    return exit_code_for(None, damaged=bool(report["failed"] or report["bad_rows"]))


def _cmd_score(args: argparse.Namespace) -> int:
    from fishcam.app.score_report import render
    from fishcam.scoring import score
    from fishcam.sinks.files import output_problem, write_json

    if not 0 < args.iou <= 1:
        raise ConfigError(f"--iou {args.iou}: give a number above 0 and at most 1")
    result = score(args.run_dir, args.truth, args.iou)
    if args.json is not None:
        try:
            write_json(args.json, result.to_json())
        except OSError as exc:
            raise OutputError(output_problem(exc, args.json)) from exc
    print(render(result), end="")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from fishcam.sinks.exports import export_all, read_runs
    from fishcam.sinks.files import output_problem

    if not args.formats and not args.reviewed:
        raise ConfigError("give at least one --format (mot, viame, coco, camtrap-dp), or --reviewed")
    runs = read_runs(args.run_dir)
    camtrap = {}
    if "camtrap-dp" in args.formats:
        camtrap = _camtrap_options(args, runs)
    out = args.out or args.run_dir / ("reviewed" if args.reviewed else "exports")
    if args.reviewed:  # the runs as reviewed, their own tables written first (fishcam.review)
        from fishcam.review import reviewed_outputs

        runs = reviewed_outputs(runs, out)
    for fmt in args.formats:
        try:
            written = export_all(runs, fmt, out, **(camtrap if fmt == "camtrap-dp" else {}))
        except OSError as exc:  # a full disk or storage gone read-only part-way: each file is whole or absent
            raise OutputError(output_problem(exc, out)) from exc
        for path in written:
            log.info("%s: %s", fmt, path)
    return 0


def _camtrap_options(args: argparse.Namespace, runs: list) -> dict:
    from fishcam.classify.species_list import read_species_list
    from fishcam.config import load_config, validate_as
    from fishcam.sinks.camtrap import PackageInfo
    from fishcam.sinks.run_writer import CONFIG_NAME

    if args.start and len(runs) > 1:
        raise ConfigError("--start is one video's start: for a batch give a 'start' column in its manifest")
    taxa_path = args.taxa
    config_file = runs[0].folder / CONFIG_NAME
    if taxa_path is None and config_file.is_file():  # the run's fallback list names species scientifically
        try:
            listed = load_config(config_file).classify.fallback.species_list
        except (OSError, UnicodeDecodeError, ConfigError) as exc:
            raise SourceError(
                f"{config_file} is damaged ({str(exc).splitlines()[0]}): give the species list with --taxa"
            ) from exc
        taxa_path = Path(listed) if listed and Path(listed).is_file() else None
    defaults = {"latitude": args.latitude, "longitude": args.longitude, "start": args.start, "site": args.site,
                "depth": args.depth}  # fmt: skip
    info = validate_as(
        PackageInfo,
        {"title": args.title, "contributor": args.contributor, "sampling_design": args.sampling_design,
         "capture_method": args.capture_method, "bait_use": None if args.bait is None else args.bait == "yes"},
        origin="command line",
    )  # fmt: skip
    return {"defaults": defaults, "info": info, "taxa": read_species_list(taxa_path) if taxa_path else ()}


def _default_name(source: str) -> str:
    from fishcam.sources.live import is_live

    if is_live(source):
        return "live-" + time.strftime("%Y%m%d-%H%M%S")
    return Path(source).stem


def _terminate_on_sigterm() -> None:
    """SIGTERM (systemd, docker, kill) ends a run like Ctrl-C: tracks closed, files complete."""
    from fishcam.errors import Terminated

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the flush short
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


def _print_run_result(out_dir: Path, summary: RunSummary, quiet: bool) -> None:
    from fishcam.types import RunFigures

    figures = summary.figures or RunFigures()
    log.info(
        "%d frames in %.1f s (%.1f fps), %d tracks (%d counted); outputs in %s",
        figures.frames,
        figures.processing_s,
        figures.processing_fps,
        summary.tracks or 0,
        summary.counted_tracks if summary.counted_tracks is not None else summary.tracks or 0,
        out_dir,
    )
    if quiet:
        return
    from fishcam.sinks.run_writer import COUNTS_NAME

    folder = out_dir / summary.periods[-1] if summary.periods else out_dir
    print((folder / COUNTS_NAME).read_text(encoding="utf-8"), end="")


def _cmd_classify(args: argparse.Namespace, config) -> int:
    from fishcam.app.classify_images import classify_images, render

    rows = classify_images(args.images, config)
    print(render(rows, args.format), end="")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from fishcam.train.config import load_train_config
    from fishcam.train.trainer import CHECKPOINT, train

    config = load_train_config(args.config, args.overrides)
    _terminate_on_sigterm()
    try:
        result = train(args.data, args.out, config, resume=args.resume, show_progress=not (args.quiet or args.log_json))
    except KeyboardInterrupt:
        if (args.out / CHECKPOINT).is_file():
            log.error("training interrupted: the last finished epoch is saved; continue with --resume")
        else:  # nothing to resume: --resume would only say so
            log.error("training interrupted before its first epoch ended: nothing was saved; start it again")
        raise
    log.info(
        "best epoch %d (validation macro-F1 %.4f); expert manifest for fishcam run: %s",
        result.best_epoch,
        result.best_val_macro_f1,
        result.manifest,
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from fishcam.train.evaluate import evaluate_expert

    evaluate_expert(args.data, args.expert, args.out, args.split, args.device, args.batch_size)
    return 0


def _cmd_models(args: argparse.Namespace, config) -> int:
    from fishcam.models.inventory import fetch_models, list_models

    if args.models_command == "fetch":
        return fetch_models(config)
    return list_models(config)
