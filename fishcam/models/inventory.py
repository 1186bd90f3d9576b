"""``fishcam models fetch|list``: the models a config uses, and getting them onto this machine."""

from __future__ import annotations

import logging

from fishcam.config import Config
from fishcam.errors import MissingModelError, ModelError
from fishcam.models import hub
from fishcam.models.expert_spec import expert_weights
from fishcam.models.paths import hf_cache_dir

log = logging.getLogger(__name__)


def models_of(config: Config) -> list[tuple[str, str]]:
    """(role, reference) for every model the config can use; the fallback is listed even
    without a species list, so one fetch makes a machine ready for both."""
    wanted = []
    if config.detector.kind in {"yolo", "rfdetr"}:
        wanted.append(("detector", config.detector.weights))
    wanted.append(("expert", expert_weights(config.classify.expert.weights)))
    wanted.append(("fallback", config.classify.fallback.model))
    return wanted


def list_models(config: Config) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table("role", "reference", "status", "local file", "size", "sha256")
    for role, ref in models_of(config):
        try:
            info = hub.describe(hub.resolve(ref, role))
            size = f"{int(str(info['bytes'])) / 1e6:.1f} MB" if "bytes" in info else ""
            table.add_row(role, ref, "present", str(info["path"]), size, str(info.get("sha256", ""))[:12])
        except MissingModelError:
            table.add_row(role, ref, "MISSING", "", "", "")
    Console(width=160).print(table)
    print(f"Hugging Face cache: {hf_cache_dir()}  (fetch with: fishcam models fetch)")
    return 0


def fetch_models(config: Config) -> int:
    """Download what is missing; what is already present is left alone."""
    failures = []
    unreachable: str | None = None
    for role, ref in models_of(config):
        if hub.parse_ref(ref) is None:
            log.info("%s: %s is a local path, nothing to fetch", role, ref)
            continue
        try:
            path = hub.resolve(ref, role)
            log.info("%s: %s already present at %s", role, ref, path)
            continue
        except MissingModelError:
            pass
        unreachable = unreachable or hub.hub_unreachable()
        if unreachable:
            failures.append(f"{role} {ref}")
            continue
        log.info("%s: fetching %s ...", role, ref)
        try:
            path = hub.fetch(ref)
        except Exception as exc:  # network, auth and hub errors come in many types
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            failures.append(f"{role} {ref}: {reason}")
            continue
        log.info("%s: saved to %s", role, path)
    if failures:
        why = f" (the model hub: {unreachable})" if unreachable else ""
        raise ModelError(
            f"could not fetch {len(failures)} model(s){why}: "
            + " | ".join(failures)
            + f". On a machine without the hub, copy the files into {hf_cache_dir()} from a "
            "machine that has them, or point the config at local files (see docs/models.md)"
        )
    return 0
