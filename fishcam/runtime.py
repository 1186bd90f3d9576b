"""Process settings: environment, threads and telemetry off. The one module that changes them.

``setup()`` runs once per process before the heavy libraries are imported: ``fishcam.app.cli.main()``
calls it, so does every process fishcam starts to do work (batch workers, Ray actors), and so do
the model loaders (``fishcam.models.loading``) for library use, where ``import fishcam`` from a
notebook changes nothing. Nothing here runs at import.

``OMP_WAIT_POLICY`` is the one setting with a deadline: OpenMP (libgomp, loaded with torch) reads it
once, when torch is first imported; set later it does nothing. The CLI and the workers call
``setup()`` before anything imports torch; a program that imported torch first keeps OpenMP's
spinning wait (``setup()`` says so in the debug log), which costs about 8 % fps on 2 cores, not
correctness.

What each library would otherwise send (found in their sources and with the network watched,
see tests/test_no_network.py):

- OpenVINO: importing ``openvino`` imports its converter, which starts Google Analytics
  telemetry (opt-out by default: no consent file means consent), writes ``~/intel/stats`` and
  ``~/intel/openvino_ga_cid`` and posts events to www.google-analytics.com, one forked process
  each. Its telemetry package has no environment switch, so it is made unimportable here and
  OpenVINO falls back to the no-op stub it ships for that case.
- ONNX Runtime (rembg's background removal in training): its Linux build queues usage events in
  ``$XDG_CACHE_HOME/Microsoft/DeveloperTools/.onnxruntime`` and uploads them to
  mobile.events.data.microsoft.com after about ten seconds. ``ORT_DISABLE_TELEMETRY`` stops both;
  ``onnxruntime.disable_telemetry_events()`` stops neither on Linux.
- Ultralytics: importing it resolves one.one.one.one and dns.google to decide whether it is
  online, and online it sends usage events (settings ``sync``), pip-installs missing export
  dependencies and downloads a font; ``YOLO_OFFLINE`` makes it offline for all of that. At import
  it also writes its ``settings.json`` (an install id, ``sync`` on) into its config folder, by
  default the user's ``~/.config/Ultralytics``: fishcam gives it a folder of its own in the cache
  (``YOLO_CONFIG_DIR``), a temporary one when the cache cannot be written, so a user's Ultralytics
  settings are neither read nor changed. Anything that imports Ultralytics in fishcam calls
  ``setup()`` first (``fishcam.models.checkpoint`` imports its layer classes to vet a ``.pt``).
- Hugging Face hub (open_clip, timm): offline, it never asks the hub about cached files; only
  ``fishcam models fetch`` downloads. Ray: usage stats are on by default for a cluster it starts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fishcam.models.paths import cache_dir

log = logging.getLogger(__name__)

# Switches that turn telemetry or other unasked-for traffic off, with the values each library
# reads as off. A user's value that turns it on is replaced: fishcam promises no network outside
# `fishcam models fetch`.
_TRUE = {"1", "true", "yes", "on"}
OFF = {
    "ORT_DISABLE_TELEMETRY": ("1", _TRUE),
    "YOLO_OFFLINE": ("1", _TRUE),
    "YOLO_AUTOINSTALL": ("false", {"0", "false", "no", "off"}),  # no pip install at run time
    "HF_HUB_DISABLE_TELEMETRY": ("1", _TRUE),
    "RAY_USAGE_STATS_ENABLED": ("0", {"0"}),
}

# Defaults only: a value the user set wins.
DEFAULTS = {
    "DO_NOT_TRACK": "1",  # https://donottrack.sh: honoured by huggingface_hub and others
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    "YOLO_VERBOSE": "false",  # fishcam logs what matters itself
    # torch's OpenMP threads otherwise spin for a while after each operator, taking the cores
    # from the detector's OpenVINO threads, the decoder and the encoder that share them: passive
    # waiting measured +8 % fps on the 20-fish 1080p benchmark (2 cores). Read when torch is
    # first imported (see above).
    "OMP_WAIT_POLICY": "PASSIVE",
}


def setup(hub: bool = False) -> None:
    """Set up this process. ``hub``: the command downloads models (``fishcam models fetch``), so
    the Hugging Face hub is left reachable. Safe to call more than once. Worker processes call it
    too: a spawned process inherits the environment but not the in-process part, and a Ray
    actor's environment is its cluster's."""
    for name, (value, off) in OFF.items():
        current = os.environ.get(name)
        if current is not None and current.strip().lower() not in off:
            log.warning("%s=%s ignored: fishcam sends no telemetry and installs nothing at run time", name, current)
        if current is None or current.strip().lower() not in off:
            os.environ[name] = value
    if "torch" in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
        log.debug("torch was imported before fishcam's set-up: OpenMP keeps its spinning wait in this process")
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    if not hub:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _ultralytics_config_dir()
    _openvino_telemetry_off()


@contextlib.contextmanager
def torch_threads(inside: int | None = None) -> Iterator[None]:
    """Keep torch's thread count for the process as it is across a call into a library that sets
    it (Ultralytics' device set-up, at loading and at the first predict, sets cores - 1 for the
    whole process: 1 of 2 on a dual-core laptop, which halved the expert's speed). ``inside``:
    torch's thread count meanwhile."""
    import torch

    threads = torch.get_num_threads()
    if inside is not None:
        torch.set_num_threads(inside)
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def set_torch_threads(threads: int) -> None:
    """torch's thread count for the calling thread and the work it starts: OpenMP keeps one per
    thread, so a worker thread sets its own (the species workers split the cores this way)."""
    import torch

    torch.set_num_threads(threads)


def _openvino_telemetry_off() -> None:
    if "openvino_telemetry" not in sys.modules:
        # A None entry makes `import openvino_telemetry` raise ImportError, for which OpenVINO
        # imports its own no-op stub (openvino/tools/ovc/telemetry_stub.py).
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
        return
    module = sys.modules["openvino_telemetry"]
    if module is not None:  # imported before set-up (library use): silence the instance it made
        with contextlib.suppress(Exception):  # not initialised yet, or another version's API
            module.Telemetry().consent = False


def _ultralytics_config_dir() -> None:
    """Ultralytics keeps its settings and fonts in a config dir (default ~/.config/Ultralytics),
    writes settings.json there when imported and downloads Arial.ttf there when it draws; fishcam
    gives it a folder of its own in the cache, else a temporary one, with matplotlib's DejaVuSans
    standing in for Arial (any TTF serves for labels)."""
    if "YOLO_CONFIG_DIR" in os.environ:
        return
    if "ultralytics" in sys.modules:
        log.debug("ultralytics was imported before fishcam's set-up: its settings stay where it put them")
    try:
        config_dir = _prepared(cache_dir("ultralytics"))
    except OSError as exc:  # a read-only cache: a folder of this process's own
        try:
            config_dir = _prepared(Path(tempfile.mkdtemp(prefix="fishcam-ultralytics-")))
        except OSError:
            log.debug("cannot prepare a config dir for ultralytics: %s", exc)
            return
        log.debug("cannot write %s (%s): ultralytics' settings go to %s", cache_dir("ultralytics"), exc, config_dir)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)


def _prepared(config_dir: Path) -> Path:
    """``config_dir`` with Ultralytics' font folder in it (OSError if it cannot be written)."""
    fonts = config_dir / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    spec = importlib.util.find_spec("matplotlib")  # its data path, without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        ttf = Path(location) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if ttf.is_file():
            for name in ("Arial.ttf", "Arial.Unicode.ttf"):
                if not (fonts / name).exists():
                    shutil.copyfile(ttf, fonts / name)
            break
    return config_dir
