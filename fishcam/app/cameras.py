"""Several live cameras in one ``fishcam run``: one thread per camera, each with its own source,
detector, tracker, counts and output folder (``OUT/<name>/``, written by :func:`fishcam.app.run.run`
exactly as a single run writes), the species models loaded once and shared.

A camera that cannot be opened fails alone. Ctrl-C and SIGTERM arrive in the main thread, which
asks every camera to stop (:class:`fishcam.pipeline.Stop`), wakes any camera waiting for a frame
or a connection, and waits for each to close its tracks and finish its files. ``OUT/cameras.json``
lists what became of each camera.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fishcam.app.compose import Components, components_sharing_models
from fishcam.app.run import run
from fishcam.config import Config
from fishcam.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, FishcamError, Terminated, exit_code_for
from fishcam.pipeline import Stop
from fishcam.sinks.files import write_json
from fishcam.sinks.run_writer import SUMMARY_NAME, read_summary
from fishcam.sources.cameras import CAMERAS_NAME, Camera
from fishcam.sources.live import LiveSource
from fishcam.types import RunSummary, SpeciesTally

log = logging.getLogger(__name__)

_WAIT_S = 0.5  # the main thread waits in slices: Ctrl-C and SIGTERM reach it between them


@dataclass
class CameraResult:
    camera: Camera
    folder: Path
    exit_code: int | None = None
    error: str | None = None
    summary: RunSummary | None = None

    def record(self) -> dict[str, Any]:
        summary = self.summary
        species = species_of(summary, self.folder) if summary is not None else {}
        return {
            "name": self.camera.name,
            "source": self.camera.masked,
            "folder": str(self.folder) if self.folder.is_dir() else None,  # None: it never connected
            "exit_code": self.exit_code,
            "error": self.error,
            "frames": summary.frames if summary is not None else 0,
            "tracks": (summary.tracks or 0) if summary is not None else 0,
            "species": {name: {"unique": t.unique, "max_n": t.max_n} for name, t in species.items()},
        }

    def read_back(self) -> None:
        """The summary ``run`` left in the camera's folder, when it raised instead of returning."""
        try:
            self.summary = read_summary(self.folder / SUMMARY_NAME)
        except (OSError, ValueError):  # never written (the folder could not be), or cut short
            self.summary = None


def species_of(summary: RunSummary, folder: Path) -> dict[str, SpeciesTally]:
    """Species counts of a camera's run; a rotated run's are its periods' together (a track
    belongs to one period, so unique counts add; MaxN is the highest of the periods')."""
    if summary.species is not None or not summary.periods:
        return summary.species or {}
    total: dict[str, SpeciesTally] = {}
    for period in summary.periods:
        try:
            counted = read_summary(folder / period / SUMMARY_NAME).species or {}
        except (OSError, ValueError):
            continue
        for species, tally in counted.items():
            before = total.get(species, SpeciesTally(0, 0))
            total[species] = SpeciesTally(before.unique + tally.unique, max(before.max_n, tally.max_n))
    return total


class CameraRunner:
    """Runs each camera on its own thread; :meth:`run` returns the overall exit code."""

    def __init__(self, cameras: list[Camera], config: Config, out_dir: Path, components: list[Components]) -> None:
        self.cameras = cameras
        self.config = config
        self.out_dir = out_dir
        self.components = components
        self.stop = Stop()
        self.results = [CameraResult(camera, out_dir / camera.name) for camera in cameras]
        self._sources: list[LiveSource] = []
        self._lock = threading.Lock()

    # ---- one camera, on its thread ----------------------------------------------------------

    def _camera(self, result: CameraResult, components: Components, done: threading.Event) -> None:
        try:
            self._process(result, components)
        finally:
            done.set()

    def _process(self, result: CameraResult, components: Components) -> None:
        name = result.camera.name
        try:
            source = LiveSource(result.camera.url, self.config.source.live, connect=False)
            with self._lock:  # registered before it connects: a stop ends its retries
                if self.stop.is_set():
                    self._stopped_before_start(result)
                    return
                self._sources.append(source)
            source.connect()
        except FishcamError as exc:
            if self.stop.is_set():
                self._stopped_before_start(result)
                return
            log.error("camera %s: %s", name, exc)
            result.exit_code, result.error = exit_code_for(exc), str(exc)
            return
        except Exception as exc:  # a bug: this camera fails, the others go on
            log.exception("camera %s failed to start", name)
            result.exit_code, result.error = exit_code_for(exc), f"{type(exc).__name__}: {exc}"
            return
        log.info(
            "camera %s: processing %s (%dx%d, %.2f fps) into %s",
            name, source.name, source.width, source.height, source.fps, result.folder,
        )  # fmt: skip
        try:
            result.exit_code, result.summary = run(
                source, self.config, result.folder, components, stop=self.stop, label=name
            )
            result.error = result.summary.error
            if result.exit_code != EXIT_OK and result.error is None and source.status.warnings:
                result.error = source.status.warnings[-1]  # a camera that gave up reconnecting
        except FishcamError as exc:  # its folder is full or read-only: one line, this camera ends
            log.error("camera %s: %s", name, exc)
            result.exit_code, result.error = exit_code_for(exc), str(exc)
            result.read_back()
        except Exception as exc:  # run() wrote the summary; this camera ends, the others go on
            log.exception("camera %s failed", name)
            result.exit_code, result.error = exit_code_for(exc), f"{type(exc).__name__}: {exc}"
            result.read_back()

    def _stopped_before_start(self, result: CameraResult) -> None:
        result.exit_code = exit_code_for(self.stop.exception())
        result.error = "stopped before the camera connected"

    # ---- the main thread --------------------------------------------------------------------

    def run(self) -> int:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        done = [threading.Event() for _ in self.results]
        threads = [
            threading.Thread(
                target=self._camera,
                args=(result, components, finished),
                name=f"fishcam-camera-{result.camera.name}",
                daemon=True,
            )
            for result, components, finished in zip(self.results, self.components, done, strict=True)
        ]
        started = time.time()
        interrupted: type[BaseException] | None = None
        try:
            for thread in threads:
                thread.start()
            _wait(done)
        except KeyboardInterrupt as exc:  # Ctrl-C, or Terminated from the SIGTERM handler
            interrupted = Terminated if isinstance(exc, Terminated) else KeyboardInterrupt
            log.warning(
                "%s: stopping %d camera(s); each closes its tracks and finishes its files",
                "terminated" if interrupted is Terminated else "interrupted", len(threads),
            )  # fmt: skip
            self.stop.request(interrupted)
            with self._lock:
                sources = list(self._sources)
            for source in sources:
                source.stop()  # a camera waiting for a frame or a connection wakes at once
            try:  # the cameras whose thread started (an interrupt may come while they start)
                _wait([event for thread, event in zip(threads, done, strict=True) if thread.ident is not None])
            except KeyboardInterrupt:
                log.error("interrupted again: not waiting for the cameras to finish their files")
        if interrupted is not None:
            code = exit_code_for(interrupted())
        else:
            code = max((r.exit_code if r.exit_code is not None else 1 for r in self.results), default=EXIT_OK)
        self._report(code, started)
        return code

    def _report(self, code: int, started: float) -> None:
        records = [result.record() for result in self.results]
        for record in records:
            if record["exit_code"] is None:  # still running after a second interrupt
                record["error"] = record["error"] or "did not finish"
        write_json(
            self.out_dir / CAMERAS_NAME,
            {
                "exit_code": code,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "cameras": records,
            },
        )
        for record in records:
            species = ", ".join(f"{s} {c['unique']}" for s, c in record["species"].items()) or "no fish"
            line = f"camera {record['name']}: exit {record['exit_code']}, {record['frames']} frames, "
            line += f"{record['tracks']} tracks ({species})"
            if record["folder"]:
                line += f"; outputs in {record['folder']}"
            if record["error"]:
                line += f"; {record['error']}"
            if record["exit_code"] in (EXIT_OK, EXIT_INTERRUPTED, EXIT_TERMINATED):
                log.info("%s", line)
            else:
                log.error("%s", line)
        log.info("%d camera(s): %s", len(records), self.out_dir / CAMERAS_NAME)


def _wait(done: list[threading.Event]) -> None:
    """Until every camera is done, in slices, never forever: signals reach the main thread between
    them. On an event set by each camera thread last, not ``Thread.join``: on Python 3.11 a join
    that a signal handler interrupts marks the thread stopped while it still runs (bpo-45274)."""
    for event in done:
        while not event.wait(_WAIT_S):
            pass


def run_cameras(cameras: list[Camera], config: Config, out_dir: Path, components: Components) -> int:
    """Every camera into ``out_dir/<name>/`` at the same time; returns the exit code: 130/143 when
    interrupted or terminated, else the highest of the cameras' (0 when all were fine).
    ``components`` go to the first camera; the others get their own detector and caller over the
    same species models."""
    per_camera = [components] + [components_sharing_models(components, config) for _ in cameras[1:]]
    return CameraRunner(cameras, config, out_dir, per_camera).run()
