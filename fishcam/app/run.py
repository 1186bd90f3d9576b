"""One run: a source through the pipeline into a run folder, as open → loop → finish.

The models come built (``fishcam.app.compose``); what happens here is policy: live or file,
how the run ended, and what its summary and exit code say about it.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fishcam import __version__
from fishcam.app.compose import Components
from fishcam.classify.service import SpeciesModels
from fishcam.config import Config
from fishcam.detect.base import reset_detector
from fishcam.errors import FishcamError, OutputError, SourceError, Terminated, exit_code_for
from fishcam.health import HealthLog
from fishcam.pipeline import LoopSettings, LoopStats, Pipeline, PipelineSink, Stop
from fishcam.render.overlay import Overlay
from fishcam.sinks.files import output_problem, prepare_output_dir, write_atomic
from fishcam.sinks.run_writer import CONFIG_NAME, Counting, RotatingWriter, RunWriter
from fishcam.sinks.views import Evidence, reread_video
from fishcam.sources.base import Source
from fishcam.sources.file import VideoFileSource
from fishcam.sources.prefetch import prefetch
from fishcam.track.bytetrack import ByteTracker
from fishcam.types import Frame, RunFigures, RunInfo, RunStatus, RunSummary

log = logging.getLogger(__name__)


def build_pipeline(source: Source, config: Config, components: Components) -> Pipeline:
    """The frame loop for ``source``: its tracker, look policy and loop settings from ``config``."""
    policy, fallback = config.classify.policy, config.classify.fallback
    budget = policy.max_crops_per_frame
    if source.live:  # each expert crop costs tens of ms on a CPU: few per frame keep live latency low
        budget = min(budget, policy.live_max_crops_per_frame)
    return Pipeline(
        components.detector,
        ByteTracker(config.tracker, frame_rate=source.fps / config.detector.stride),
        components.species,
        policy.model_copy(update={"max_crops_per_frame": budget}),
        LoopSettings(
            stride=config.detector.stride,
            lost_track_s=config.tracker.lost_track_s,
            crop_padding=policy.crop_padding,
            max_frames=config.source.max_frames,
            max_duration_s=config.source.duration_s,
            background_fallback=fallback.background is True or (fallback.background == "auto" and source.live),
            fallback_queue=fallback.queue_size,
            fallback_batch=fallback.batch_size,
            **species_threads(components.species),
        ),
    )


@dataclass
class _OpenRun:
    """A run between open and finish: what the loop writes into and reports through."""

    source: Source
    pipeline: Pipeline
    writer: RunWriter | RotatingWriter
    health: HealthLog
    frames: Iterable[Frame]


@dataclass(frozen=True)
class _Ending:
    """How the loop ended: ``error`` is what ended it (None: the input's end or a frame limit)."""

    stats: LoopStats
    error: BaseException | None = None


def run(
    source: Source,
    config: Config,
    out_dir: Path,
    components: Components,
    on_progress: Callable[[LoopStats], None] | None = None,
    stop: Stop | None = None,
    label: str | None = None,
    tee: Callable[[Source, Pipeline, PipelineSink], PipelineSink] | None = None,
) -> tuple[int, RunSummary]:
    """Process ``source`` into ``out_dir``; returns (exit code, summary). ``stop``, set from
    another thread, ends the run as Ctrl-C or SIGTERM would; ``label`` names the source in
    health lines (several cameras in one process). An error is raised after every output has
    been completed as far as it can be, with summary.json saying ``failed`` and why. ``tee``
    (``fishcam run --serve``) wraps the writer in a sink that also hands the loop's latest frame
    to a live view."""
    from fishcam.models.devices import settle_for_device

    config = settle_for_device(config)  # as build_components did: the stride the detector was sized for
    opened = _open(source, config, out_dir, components, on_progress, label)
    ending = _loop(opened, stop, tee)
    return _finish(opened, ending, components)


def _open(
    source: Source,
    config: Config,
    out_dir: Path,
    components: Components,
    on_progress: Callable[[LoopStats], None] | None,
    label: str | None,
) -> _OpenRun:
    """The output folder with its config, the loop, the writer with the summary's first words."""
    prepare_output_dir(out_dir)
    try:
        write_atomic(out_dir / CONFIG_NAME, config.to_yaml())
    except OSError as exc:
        raise OutputError(output_problem(exc, out_dir)) from exc
    reset_detector(components.detector)  # components are reused across videos (batch)
    pipeline = build_pipeline(source, config, components)
    live = source.live
    overlay = Overlay(config.render.thickness, config.render.text_scale) if config.render.video else None
    info = RunInfo(  # what summary.json says from the first moment: a reader knows what is being made
        fishcam=__version__,
        python=platform.python_version(),
        source=source.name,
        source_path=source.location,
        # When the recording began (container tag, or a live stream's first frame): exports
        # place observations in real time with it.
        recorded_start=_iso(source.recorded_start_unix),
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        video_fps=source.fps,
        width=source.width,
        height=source.height,
        frames_expected=source.status.frames_expected,
        models=components.described,
    )

    # A recorded video's MaxN frames can be read again at the end; a live stream's cannot.
    reread = reread_video(source.path) if isinstance(source, VideoFileSource) else None

    def make_writer(folder: Path) -> RunWriter:
        evidence = None
        if config.output.views or config.output.maxn_frames:
            evidence = Evidence(
                folder,
                views=config.output.views and components.species is not None,
                maxn=config.output.maxn_frames,
                max_views=config.classify.policy.max_crops_per_track,
                crop_padding=config.classify.policy.crop_padding,
                classified=components.species is not None,
                reread=reread,
                overlay=overlay,
            )
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
            counting=Counting(
                config.count,
                config.tracker.offline,
                offline=not live,
                stride=config.detector.stride,
                edge_margin_px=config.classify.policy.edge_margin_px,
            ),
            evidence=evidence,
        )

    rotate = config.source.live.rotate
    writer = RotatingWriter(out_dir, rotate, make_writer) if rotate != "none" else make_writer(out_dir)
    health = HealthLog(source, config.source.live.health_interval_s, on_progress, label)
    # Files decode ahead on a thread; live sources already have their reader.
    frames = source if live else prefetch(source)
    return _OpenRun(source, pipeline, writer, health, frames)


def _loop(opened: _OpenRun, stop: Stop | None, tee=None) -> _Ending:
    """Every frame through the pipeline; whatever ends it is returned, not raised: the outputs
    are completed first."""
    pipeline, source = opened.pipeline, opened.source
    sink = opened.writer if tee is None else tee(source, pipeline, opened.writer)
    try:
        return _Ending(pipeline.run(opened.frames, source.fps, sink, opened.health.update, stop))
    except BaseException as exc:  # Ctrl-C, SIGTERM and errors alike: recorded, then raised or mapped
        if not isinstance(exc, Exception | KeyboardInterrupt):
            raise  # SystemExit, GeneratorExit: not a run's ending to record
        return _Ending(pipeline.stats, exc)
    finally:
        if isinstance(opened.frames, Generator):
            opened.frames.close()  # stop the decoding thread before the source goes
        source.close()


def _finish(opened: _OpenRun, ending: _Ending, components: Components) -> tuple[int, RunSummary]:
    """Complete every output and the summary; raise the error that ended the run, if any."""
    status, stats, error = opened.source.status, ending.stats, ending.error
    code = exit_code_for(error, gave_up=status.gave_up, damaged=status.damaged)
    if stats.frames == 1 and not status.damaged:  # the tracker confirms a fish on its second sighting
        status.warnings.append("the input has a single frame: a track needs two, so no fish can be counted")
    state, message = _state_of(error, status.gave_up, status.warnings)
    figures = RunFigures(
        exit_code=code,
        frames=stats.frames,
        detected_frames=stats.detected_frames,
        frames_expected=status.frames_expected,
        unreadable_frames=status.unreadable_frames,
        input_ended_early=status.ended_early,
        warnings=tuple(status.warnings),
        processing_s=round(stats.elapsed_s, 3),
        processing_fps=round(stats.fps, 2),
        crops_classified=stats.crops_classified,
        calls=stats.calls,
        live=opened.health.summary(stats),
    )
    failure = error if state is RunStatus.FAILED and error is not None else None
    try:
        summary = opened.writer.finish(figures, state, message)
    except OutputError as exc:  # the first error is the one to report, as the summary does
        if state is RunStatus.FAILED:
            if str(exc) != message:  # a second problem, after the one that ended the run
                log.warning("the outputs could not be completed: %s", exc)
            failure = failure or SourceError(message)
        else:
            failure = exc
    for warning in status.warnings:
        log.warning(warning)
    if failure is not None:
        raise failure
    return code, summary


def species_threads(species: SpeciesModels | None) -> dict[str, Any]:
    """How the species models run beside the frame loop. On a CPU: two workers splitting the
    torch threads between them (on 2 cores: 1.88 cores busy instead of 1.78, +6 % fps with 20
    fish); on a GPU: one."""
    if species is None or not species.device.startswith("cpu"):
        return {}
    import torch

    return {"species_workers": 2, "species_threads": max(1, torch.get_num_threads() // 2)}


def _state_of(error: BaseException | None, gave_up: bool, warnings: list[str]) -> tuple[RunStatus, str | None]:
    """What summary.json says of how a run ended: its status and why."""
    if isinstance(error, Terminated):
        return RunStatus.INTERRUPTED, "terminated (SIGTERM)"
    if isinstance(error, KeyboardInterrupt):
        return RunStatus.INTERRUPTED, "interrupted"
    if isinstance(error, FishcamError):
        return RunStatus.FAILED, str(error)
    if error is not None:
        return RunStatus.FAILED, f"{type(error).__name__}: {error}"
    if gave_up:
        return RunStatus.FAILED, "the source gave up: " + "; ".join(warnings)
    return RunStatus.FINISHED, None


def _iso(unix: float | None) -> str | None:
    if unix is None:
        return None
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
