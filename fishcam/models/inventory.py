"""``fishcam models fetch|list``: the models a config uses, the presets' models, and getting them
onto this machine."""

from __future__ import annotations

import logging
from pathlib import Path

from fishcam.config import Config, load_config
from fishcam.errors import FishcamError, MissingModelError, ModelError
from fishcam.models import catalog, download, hub
from fishcam.models.expert_spec import expert_weights
from fishcam.models.paths import hf_cache_dir

log = logging.getLogger(__name__)

PRESETS = Path(__file__).resolve().parents[2] / "configs"  # a source checkout's presets


def models_of(config: Config) -> list[tuple[str, str]]:
    """(role, reference) for every model the config can use; the fallback is listed even
    without a species list, so one fetch makes a machine ready for both."""
    wanted = []
    if config.detector.kind in {"yolo", "rfdetr"}:
        wanted.append(("detector", config.detector.weights))
    if config.classify.enabled:
        wanted.append(("expert", expert_weights(config.classify.expert.weights)))
        wanted.append(("fallback", config.classify.fallback.model))
        open_ended = config.classify.fallback.open_ended
        if open_ended:  # the Tree-of-Life embeddings: a URL of the .npy brings its .json too
            from fishcam.classify.tree_of_life import json_ref

            wanted.append(("open_ended", open_ended))
            if hub.parse_ref(open_ended) is not None:
                wanted.append(("open_ended", json_ref(open_ended)))
    return wanted


def presets(folder: Path = PRESETS) -> list[tuple[str, Config]]:
    """The shipped presets (``configs/*.yaml``) that are run configs, by file name."""
    found = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            found.append((path.name, load_config(path)))
        except FishcamError:
            continue  # configs/train.yaml is a training config, not a run config
    return found


def describe_ref(role: str, ref: str) -> tuple[str, str, str, str]:
    """(what it is, classes, licence, source) for a reference: the catalogue's, or a local file's."""
    entry = catalog.published(ref)
    if entry is None:
        return (Path(ref).name or ref, "(read from the file)", "(yours)", ref)
    flag = " *" if entry.unverified else ""
    return (f"{entry.name} ({entry.architecture}){flag}", ", ".join(entry.classes), entry.licence, entry.source)


def list_models(config: Config, presets_folder: Path = PRESETS) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    table = Table("role", "model", "classes", "licence", "status", "local file", "size", "sha256", title="This config")
    for role, ref in models_of(config):
        name, classes, licence, _ = describe_ref(role, ref)
        try:
            info = hub.describe(hub.resolve(ref, role))
            size = f"{int(str(info['bytes'])) / 1e6:.1f} MB" if "bytes" in info else ""
            status, path, sha = "present", str(info["path"]), str(info.get("sha256", ""))[:12]
        except MissingModelError:
            status, path, size, sha = "MISSING", ref, "", ""
        except ModelError as exc:
            status, path, size, sha = "BAD", str(exc).split(":")[0], "", ""
        table.add_row(role, name, classes, licence, status, path, size, sha)
    if config.detector.kind == "motion":
        table.add_row(
            "detector", "motion (OpenCV background subtraction)", "moving blobs", "", "no weights", "", "", ""
        )
    console.print(table)

    shipped = presets(presets_folder)
    if shipped:
        table = Table("preset", "detector", "classes kept", "licence", "source", title="Presets (configs/)")
        for name, preset in shipped:
            detector = preset.detector
            if detector.kind == "motion":
                table.add_row(name, "motion: no weights", "moving blobs", "", "")
                continue
            what, _, licence, source = describe_ref("detector", detector.weights)
            kept = ", ".join(map(str, detector.classes)) if detector.classes else "all"
            table.add_row(name, what, kept, licence, source)
        console.print(table)
    marked = [entry for entry in catalog.CATALOG if entry.unverified]
    if marked:
        print("* not verified from where fishcam was built: " + "; ".join(f"{e.key}: {e.unverified}" for e in marked))
    print(f"Model caches: {hub.models_dir()} (https downloads), {hf_cache_dir()} (Hugging Face). "
          "Fetch with: fishcam models fetch [--config PRESET]")  # fmt: skip
    return 0


def fetch_models(config: Config) -> int:
    """Download what is missing; what is already present is left alone."""
    failures = []
    unreachable: dict[str, str | None] = {}
    for role, ref in models_of(config):
        parsed = hub.parse_ref(ref)
        if parsed is None:
            log.info("%s: %s is a local path, nothing to fetch", role, ref)
            continue
        try:
            path = hub.resolve(ref, role)
            log.info("%s: %s already present at %s", role, ref, path)
            continue
        except MissingModelError:
            pass
        server = parsed.url if isinstance(parsed, hub.UrlRef) else "hub"
        if server not in unreachable:
            unreachable[server] = hub.unreachable(server) if server != "hub" else hub.hub_unreachable()
        if unreachable[server]:
            failures.append(f"{role} {ref}: {unreachable[server]}")
            continue
        log.info("%s: fetching %s ...", role, ref)
        try:
            fetched = download.fetch(ref)
        except ModelError as exc:
            failures.append(f"{role} {ref}: {exc}")
            continue
        except Exception as exc:  # network, auth and hub errors come in many types
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            failures.append(f"{role} {ref}: {reason}")
            continue
        for note in fetched.notes:
            log.warning("%s: %s", role, note)
        log.info("%s: saved to %s", role, fetched.path)
    if failures:
        raise ModelError(
            f"could not fetch {len(failures)} model(s): "
            + " | ".join(failures)
            + f". On a machine without the network, copy {hub.models_dir()} and {hf_cache_dir()} from a machine "
            "that fetched, or point the config at local files (see docs/models.md)"
        )
    return 0
