"""Process set-up: environment, threads and telemetry off, once per process before the heavy
libraries are imported. Called by ``fishcam.app.cli.main()`` and by every process that fishcam
starts to do work (batch workers, Ray actors). Nothing here runs at import.

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
  dependencies and downloads a font; ``YOLO_OFFLINE`` makes it offline for all of that.
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
from pathlib import Path

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
    # torch's OpenMP threads otherwise spin after each operator, taking the cores from OpenVINO,
    # the decoder and the encoder (see fishcam/__init__.py, which sets it for library use).
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
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    if not hub:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _ultralytics_config_dir()
    _openvino_telemetry_off()


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
    """Ultralytics keeps its settings and fonts in a config dir (default ~/.config/Ultralytics)
    and downloads Arial.ttf there when it draws; fishcam gives it its own folder in the cache,
    with matplotlib's DejaVuSans standing in for Arial (any TTF serves for labels)."""
    if "YOLO_CONFIG_DIR" in os.environ:
        return
    config_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fishcam" / "ultralytics"
    fonts = config_dir / "Ultralytics"
    try:
        fonts.mkdir(parents=True, exist_ok=True)
        spec = importlib.util.find_spec("matplotlib")  # its data path, without importing it
        for location in (spec.submodule_search_locations or []) if spec else []:
            ttf = Path(location) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
            if ttf.is_file():
                for name in ("Arial.ttf", "Arial.Unicode.ttf"):
                    if not (fonts / name).exists():
                        shutil.copyfile(ttf, fonts / name)
                break
    except OSError as exc:  # a read-only cache: ultralytics picks its own folder, offline anyway
        log.debug("cannot prepare ultralytics config dir %s: %s", config_dir, exc)
        return
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
