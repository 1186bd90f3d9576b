"""One run: build the models a config asks for, read a source, write every output.

Models are checked before any frame is read, so an offline machine missing a model stops at
once with a message naming every missing file.
"""

from __future__ import annotations

import copy
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fishcam import __version__
from fishcam.classify.caller import SpeciesCaller
from fishcam.classify.ledger import LookPolicy
from fishcam.config import Config
from fishcam.detect.base import Detector, reset_detector
from fishcam.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL_INPUT,
    EXIT_TERMINATED,
    FishcamError,
    MissingModelError,
    OutputError,
    SourceError,
    Terminated,
)
from fishcam.health import HealthLog
from fishcam.models import hub
from fishcam.pipeline import LoopSettings, LoopStats, Pipeline, Stop
from fishcam.render.overlay import Overlay
from fishcam.sinks.files import output_problem, prepare_output_dir, write_atomic
from fishcam.sinks.run_writer import CONFIG_NAME, FAILED, FINISHED, INTERRUPTED, RotatingWriter, RunWriter
from fishcam.sources.base import Source
from fishcam.sources.prefetch import prefetch
from fishcam.track.bytetrack import ByteTracker

log = logging.getLogger(__name__)

DEFAULT_EXPERT_THRESHOLD = 0.6


@dataclass
class Components:
    """The models of a run, built once (and reusable across runs in one process)."""

    detector: Detector
    caller: SpeciesCaller | None
    described: dict[str, Any] = field(default_factory=dict)


def check_models(config: Config) -> None:
    """Raise one MissingModelError naming every model the config needs and this machine lacks."""
    if config.classify.enabled and config.classify.fallback.species_list:
        from fishcam.classify.species_list import read_species_list

        read_species_list(config.classify.fallback.species_list)  # a bad list is a config error, first
    wanted = []
    if config.detector.kind == "yolo":
        wanted.append(("detector", config.detector.weights))
    if config.classify.enabled:
        wanted.append(("expert", config.classify.expert.weights))
        if config.classify.fallback.species_list:
            wanted.append(("fallback", config.classify.fallback.model))
    missing = []
    for role, ref in wanted:
        if role == "expert" and ref.lower().endswith((".json", ".yaml", ".yml")):
            from fishcam.models.expert_spec import read_manifest

            ref = read_manifest(Path(ref)).weights
        try:
            hub.resolve(ref, role)
        except MissingModelError as exc:
            missing.append(str(exc))
    if missing:
        detail = " | ".join(missing)
        raise MissingModelError(
            f"{len(missing)} model(s) missing: {detail}. To run without species models, use "
            f"--config configs/count-only.yaml (motion detector, no classifier)"
        )


def build_components(config: Config) -> Components:
    check_models(config)
    described: dict[str, Any] = {}
    detector = build_detector(config)
    described["detector"] = detector.describe()
    caller = None
    if config.classify.enabled:
        caller, models = build_caller(config)
        described.update(models)
    else:
        log.info("species classification is off (classify.enabled=false): tracks are counted, not named")
    # The tracking and drawing libraries take most of a second to import: now, with the models,
    # not at the first video's first frame.
    import supervision  # noqa: F401
    import trackers  # noqa: F401

    return Components(detector, caller, described)


def build_detector(config: Config) -> Detector:
    if config.detector.kind == "motion":
        from fishcam.detect.motion import MotionDetector

        return MotionDetector(config.detector.motion)
    from fishcam.detect.yolo import YoloDetector

    return YoloDetector(config.detector)


def components_sharing_models(components: Components, config: Config) -> Components:
    """Components for one more source processed at the same time as ``components``' (several
    cameras, one process): a detector of its own (detectors keep state and are not thread-safe)
    and a caller of its own (counts, background worker, waiting answers are per run) over the
    same species models, loaded once."""
    detector = build_detector(config)
    described = copy.deepcopy(components.described)
    described["detector"] = detector.describe()
    caller = components.caller
    if caller is not None:
        caller = SpeciesCaller(caller.expert, caller.fallback, caller.expert_threshold, caller.fallback_threshold)
    return Components(detector, caller, described)


def build_caller(config: Config) -> tuple[SpeciesCaller, dict[str, Any]]:
    from fishcam.classify.expert import ExpertClassifier
    from fishcam.models.expert_spec import expert_spec_for

    cfg = config.classify
    expert = ExpertClassifier(
        expert_spec_for(cfg.expert.weights),
        cfg.expert.device,
        cfg.expert.batch_size,
        cfg.expert.precision,
        cfg.expert.backend,
    )
    described: dict[str, Any] = {"expert": expert.describe()}
    fallback = None
    if cfg.fallback.species_list:
        from fishcam.classify.fallback import ZeroShotFallback
        from fishcam.classify.species_list import read_species_list

        species = read_species_list(cfg.fallback.species_list)
        fallback = ZeroShotFallback(
            cfg.fallback.model, species, cfg.fallback.templates, cfg.fallback.device, cfg.fallback.batch_size
        )
        described["fallback"] = fallback.describe()
    else:
        log.info("no fallback: classify.fallback.species_list is not set, so unsure expert calls become 'unknown'")
    threshold = cfg.expert.threshold
    if threshold is None:  # the threshold `fishcam train` measured on its validation split, if any
        threshold = float(expert.spec.extra.get("fallback_threshold", DEFAULT_EXPERT_THRESHOLD))
    described["expert"]["threshold"] = threshold
    return SpeciesCaller(expert, fallback, threshold, cfg.fallback.threshold), described


def run(
    source: Source,
    config: Config,
    out_dir: Path,
    components: Components,
    on_progress: Callable[[LoopStats], None] | None = None,
    stop: Stop | None = None,
    label: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Process ``source`` into ``out_dir``; returns (exit code, summary). ``stop``, set from
    another thread, ends the run as Ctrl-C or SIGTERM would; ``label`` names the source in
    health lines (several cameras in one process). An error is raised after every output has
    been completed as far as it can be, with summary.json saying ``failed`` and why."""
    prepare_output_dir(out_dir)
    try:
        write_atomic(out_dir / CONFIG_NAME, config.to_yaml())
    except OSError as exc:
        raise OutputError(output_problem(exc, out_dir)) from exc
    reset_detector(components.detector)  # components are reused across videos (batch)
    policy = config.classify.policy
    live = hasattr(source, "health")
    looks = policy.model_dump(exclude={"crop_padding", "live_max_crops_per_frame"})
    if live:  # each expert crop costs tens of ms on a CPU: few per frame keep live latency low
        looks["max_crops_per_frame"] = min(policy.max_crops_per_frame, policy.live_max_crops_per_frame)
    pipeline = Pipeline(
        components.detector,
        ByteTracker(config.tracker, frame_rate=source.fps / config.detector.stride),
        components.caller,
        LookPolicy(**looks),
        LoopSettings(
            stride=config.detector.stride,
            lost_track_s=config.tracker.lost_track_s,
            crop_padding=policy.crop_padding,
            max_frames=config.source.max_frames,
            max_duration_s=config.source.duration_s,
            **species_threads(components.caller),
        ),
    )
    fallback = config.classify.fallback
    if components.caller is not None and (fallback.background is True or (fallback.background == "auto" and live)):
        components.caller.run_fallback_in_background(fallback.queue_size, fallback.batch_size)
    overlay = Overlay(config.render.thickness, config.render.text_scale) if config.render.video else None
    started = time.time()
    info = {  # what summary.json says from the first moment: a reader knows what is being made
        "fishcam": __version__,
        "python": platform.python_version(),
        "source": source.name,
        "source_path": _source_path(source),
        # When the recording began (container tag, or a live stream's first frame): exports
        # place observations in real time with it.
        "recorded_start": _iso(getattr(source, "recorded_start_unix", None)),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "video_fps": source.fps,
        "width": source.width,
        "height": source.height,
        "frames_expected": source.status.frames_expected,
        "models": components.described,
    }

    def make_writer(folder: Path) -> RunWriter:
        return RunWriter(
            folder,
            width=source.width,
            height=source.height,
            fps=source.fps,
            class_names=components.detector.class_names,
            overlay=overlay,
            crf=config.render.crf,
            preset=config.render.preset,
            max_width=config.render.max_width,
            detections_log=config.output.detections_log,
            flush_interval_s=config.source.live.flush_interval_s,
            info=info,
        )

    rotate = config.source.live.rotate
    writer = RotatingWriter(out_dir, rotate, make_writer) if rotate != "none" else make_writer(out_dir)
    health = HealthLog(source, config.source.live.health_interval_s, on_progress, label)
    exit_code, state, error, failure = EXIT_OK, FINISHED, None, None
    # Files decode ahead on a thread; live sources already have their reader.
    frames = source if live else prefetch(source)
    try:
        stats = pipeline.run(frames, source.fps, writer, health.update, stop)
    except Terminated:
        exit_code, state, error, stats = EXIT_TERMINATED, INTERRUPTED, "terminated (SIGTERM)", pipeline.stats
    except KeyboardInterrupt:
        exit_code, state, error, stats = EXIT_INTERRUPTED, INTERRUPTED, "interrupted", pipeline.stats
    except Exception as exc:  # recorded in summary.json, then raised again below
        failure, stats = exc, pipeline.stats
        exit_code = exc.exit_code if isinstance(exc, FishcamError) else 1
        state, error = FAILED, str(exc) if isinstance(exc, FishcamError) else f"{type(exc).__name__}: {exc}"
    finally:
        if frames is not source:
            frames.close()  # stop the decoding thread before the source goes
        source.close()
    status = source.status
    if exit_code == EXIT_OK and status.gave_up:
        exit_code, state, error = SourceError.exit_code, FAILED, "the source gave up: " + "; ".join(status.warnings)
    elif exit_code == EXIT_OK and status.damaged:
        exit_code = EXIT_PARTIAL_INPUT
    if stats.frames == 1 and not status.damaged:  # the tracker confirms a fish on its second sighting
        status.warnings.append("the input has a single frame: a track needs two, so no fish can be counted")
    final = {
        "exit_code": exit_code,
        "frames": stats.frames,
        "detected_frames": stats.detected_frames,
        "frames_expected": status.frames_expected,
        "unreadable_frames": status.unreadable_frames,
        "input_ended_early": status.ended_early,
        "warnings": list(status.warnings),
        "processing_s": round(stats.elapsed_s, 3),
        "processing_fps": round(stats.fps, 2),
        "crops_classified": stats.crops_classified,
        "calls": dict(components.caller.counts) if components.caller else {},
        "live": health.summary(stats),
    }
    try:
        summary = writer.finish(final, state, error)
    except OutputError as exc:  # the first error is the one to report
        failure = failure or exc
    for warning in status.warnings:
        log.warning(warning)
    if failure is not None:
        raise failure
    return exit_code, summary


def species_threads(caller: SpeciesCaller | None) -> dict[str, Any]:
    """How the species models run beside the frame loop. On a CPU: two workers splitting the
    torch threads between them (on 2 cores: 1.88 cores busy instead of 1.78, +6 % fps with 20
    fish); on a GPU: one."""
    expert = getattr(caller, "expert", None)
    if caller is None or not str(getattr(expert, "device", "cpu")).startswith("cpu"):
        return {}
    import torch

    return {"species_workers": 2, "species_threads": max(1, torch.get_num_threads() // 2)}


def _iso(unix: float | None) -> str | None:
    if unix is None:
        return None
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _source_path(source: Source) -> str:
    """Where the input is: a file or folder's absolute path, a camera's masked URL."""
    path = getattr(source, "path", None) or getattr(source, "folder", None)
    return str(path.resolve()) if path is not None else source.name
