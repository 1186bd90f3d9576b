"""Composition: the models a config asks for, built once per process and shared by its runs.

Models are checked before any frame is read, so an offline machine missing a model stops at
once with a message naming every missing file.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fishcam.classify.service import SpeciesModels
from fishcam.config import Config
from fishcam.detect.base import Detector
from fishcam.errors import MissingModelError, ModelError
from fishcam.models import hub

if TYPE_CHECKING:
    from fishcam.classify.expert import ExpertClassifier
    from fishcam.classify.fallback import OpenEndedFallback, ZeroShotFallback
    from fishcam.config import FallbackConfig

log = logging.getLogger(__name__)

DEFAULT_EXPERT_THRESHOLD = 0.6


@dataclass
class Components:
    """The models of a run, built once (and reusable across runs in one process)."""

    detector: Detector
    species: SpeciesModels | None
    described: dict[str, Any] = field(default_factory=dict)


def check_models(config: Config) -> None:
    """Raise one MissingModelError naming every model the config needs and this machine lacks."""
    if config.classify.enabled and config.classify.fallback.species_list:
        from fishcam.classify.species_list import read_species_list

        read_species_list(config.classify.fallback.species_list)  # a bad list is a config error, first
    if config.classify.enabled and config.classify.fallback.open_ended:
        from fishcam.classify.tree_of_life import embedding_files

        embedding_files(config.classify.fallback.open_ended)  # missing embeddings name the download
    wanted = []
    if config.detector.kind == "rfdetr":
        from fishcam.models.rfdetr import require_rfdetr

        require_rfdetr()  # a missing package says so before any model is looked for
    if config.detector.kind in {"yolo", "rfdetr"}:
        wanted.append(("detector", config.detector.weights))
    if config.classify.enabled:
        wanted.append(("expert", config.classify.expert.weights))
        if config.classify.fallback.enabled:
            wanted.append(("fallback", config.classify.fallback.model))
    missing = []
    for role, ref in wanted:
        if role == "expert":
            from fishcam.models.expert_spec import expert_weights

            ref = expert_weights(ref)
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
    from fishcam.models.devices import settle_for_device

    settled = settle_for_device(config)
    if settled is not config:
        log.info(
            "detector on the CPU: image size %d, stride %d (detector.on_cpu; docs/speed.md)",
            settled.detector.image_size, settled.detector.stride,
        )  # fmt: skip
    config = settled
    check_models(config)
    described: dict[str, Any] = {}
    detector = build_detector(config)
    described["detector"] = detector.describe()
    species = None
    if config.classify.enabled:
        species, models = build_species_models(config)
        described.update(models)
    else:
        log.info("species classification is off (classify.enabled=false): tracks are counted, not named")
    # The tracking and drawing libraries take most of a second to import: now, with the models,
    # not at the first video's first frame.
    import supervision  # noqa: F401
    import trackers  # noqa: F401

    return Components(detector, species, described)


def build_detector(config: Config) -> Detector:
    if config.detector.kind == "motion":
        from fishcam.detect.motion import MotionDetector

        return MotionDetector(config.detector.motion)
    if config.detector.kind == "rfdetr":
        from fishcam.models.rfdetr import load_rfdetr_detector

        return load_rfdetr_detector(config.detector)
    from fishcam.models.loading import load_detector

    return load_detector(config.detector)


def components_sharing_models(components: Components, config: Config) -> Components:
    """Components for one more source processed at the same time as ``components``' (several
    cameras, one process): a detector of its own (detectors keep state and are not thread-safe)
    over the same species models, loaded once (each run has its own species service: counts,
    threads and waiting answers)."""
    detector = build_detector(config)
    described = copy.deepcopy(components.described)
    described["detector"] = detector.describe()
    return Components(detector, components.species, described)


def build_species_models(config: Config) -> tuple[SpeciesModels, dict[str, Any]]:
    from fishcam.models.expert_spec import expert_spec_for
    from fishcam.models.loading import load_expert

    cfg = config.classify
    expert = load_expert(
        expert_spec_for(cfg.expert.weights),
        cfg.expert.device,
        cfg.expert.batch_size,
        cfg.expert.precision,
        cfg.expert.backend,
    )
    described: dict[str, Any] = {"expert": expert.describe()}
    fallback = None
    if cfg.fallback.enabled:
        fallback = build_fallback(cfg.fallback)
        described["fallback"] = fallback.describe()
    else:
        log.info(
            "no fallback: classify.fallback.species_list (or open_ended) is not set, so unsure expert calls become "
            "'unknown'"
        )
    threshold = cfg.expert.threshold
    if threshold is None:  # the threshold `fishcam train` measured on its validation split, if any
        threshold = float(expert.spec.extra.get("fallback_threshold", DEFAULT_EXPERT_THRESHOLD))
    described["expert"]["threshold"] = threshold
    open_set_threshold, checked = open_set_check(expert, cfg.expert.open_set, cfg.expert.weights)
    described["expert"]["open_set"] = checked
    models = SpeciesModels(
        expert, fallback, threshold, cfg.fallback.threshold, open_set_threshold, roll_up=cfg.fallback.roll_up
    )
    return models, described


def build_fallback(cfg: FallbackConfig) -> ZeroShotFallback | OpenEndedFallback:
    """The fallback a config asks for: over the species list (its ranks filled from the
    open-ended taxonomy when both are given), or open-ended over the Tree of Life."""
    from fishcam.models.loading import load_fallback, load_open_ended

    if cfg.species_list:
        from fishcam.classify.species_list import read_species_list

        species = read_species_list(cfg.species_list)
        if cfg.open_ended:
            from fishcam.classify.tree_of_life import fill_ranks, read_tree_of_life

            species = fill_ranks(species, read_tree_of_life(cfg.open_ended))
        return load_fallback(
            cfg.model, species, cfg.templates, cfg.device, cfg.batch_size, prompt_form=cfg.prompt_form,
            resize=cfg.resize,
        )  # fmt: skip
    assert cfg.open_ended is not None
    return load_open_ended(
        cfg.model, cfg.open_ended, cfg.open_ended_taxa, cfg.device, cfg.batch_size, resize=cfg.resize
    )


def open_set_check(expert: ExpertClassifier, mode: bool | str, weights: str) -> tuple[float | None, dict[str, Any]]:
    """Whether the expert's calls are checked for crops that are none of its species, said in one
    log line: (the calibrated threshold or None, what the summary records)."""
    from fishcam.models.expert_spec import is_manifest
    from fishcam.models.open_set import CALIBRATE_COMMAND

    calibration = expert.calibration
    if mode is False:
        log.info("open-set check off (classify.expert.open_set=false): the expert's confidence alone decides")
        return None, {"check": "off", "why": "classify.expert.open_set=false"}
    if calibration is not None:
        log.info(
            "open-set check on: crops less like the expert's species than %.3f (prototype cosine; keeps %.0f%% of "
            "in-set crops) go to the fallback, or unknown", calibration.threshold, 100 * calibration.keep,
        )  # fmt: skip
        return calibration.threshold, {"check": "on", "threshold": calibration.threshold, "keep": calibration.keep}
    if expert.spec.open_set is not None:
        why = "the manifest's calibration cannot be used: the input of the expert's head cannot be read"
    elif is_manifest(weights):
        why = "no calibration in the manifest"
    else:
        why = f"no calibration in the manifest ({weights.rsplit('/', 1)[-1]} has no manifest)"
    if mode is True:
        raise ModelError(f"classify.expert.open_set=true, but {why}; run `{CALIBRATE_COMMAND}` to calibrate")
    log.warning("open-set check off: %s; run `%s` to calibrate", why, CALIBRATE_COMMAND)
    return None, {"check": "off", "why": why}
