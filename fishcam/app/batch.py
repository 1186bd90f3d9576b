"""``fishcam batch``: many recorded videos through the same pipeline, resumable, with local
worker processes. Each video gets its own run folder; a marker written last records what was
done with which config, so a killed batch loses only the videos in flight and a second call
skips what is finished. Failures are recorded and the batch goes on."""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import io
import json
import logging
import multiprocessing
import os
import signal
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fishcam.config import Config, validate_config
from fishcam.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, ConfigError, FishcamError, OutputError, Terminated
from fishcam.sinks.files import csv_text, output_problem, prepare_output_dir, write_atomic, write_json
from fishcam.sinks.run_writer import COUNTS_NAME
from fishcam.sources.base import VIDEO_SUFFIXES

if TYPE_CHECKING:
    from fishcam.app.compose import Components

log = logging.getLogger(__name__)

DONE_NAME = "batch_done.json"
FAILED_NAME = "batch_failed.json"
REPORT_NAME = "batch_report.json"
METADATA_COLUMNS = ("site", "date", "camera", "depth")


@dataclass(frozen=True)
class Job:
    video: Path
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        digest = hashlib.sha256(str(self.video.resolve()).encode()).hexdigest()[:8]
        return f"{self.video.stem}-{digest}"


@dataclass
class Discovered:
    jobs: list[Job]
    bad_rows: list[dict[str, Any]]  # manifest rows that name no usable video: where and why


def discover(inputs: list[str]) -> Discovered:
    """Globs, folders (videos inside, recursively) and CSV manifests (``path`` + metadata). A bad
    manifest row is recorded and skipped; the other rows go on."""
    jobs: dict[Path, Job] = {}
    bad_rows: list[dict[str, Any]] = []
    for item in inputs:
        path = Path(item)
        if path.suffix.lower() == ".csv" and path.is_file():
            for job in _read_manifest(path, bad_rows):
                jobs[job.video] = job
            continue
        matches = [Path(p) for p in glob.glob(item, recursive=True)] or ([path] if path.exists() else [])
        if not matches:
            raise ConfigError(f"no input matches {item!r}")
        for match in matches:
            videos = (
                sorted(p for p in match.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES) if match.is_dir() else [match]
            )
            for video in videos:
                jobs.setdefault(video.resolve(), Job(video.resolve()))
    return Discovered(list(jobs.values()), bad_rows)


def _read_manifest(path: Path, bad_rows: list[dict[str, Any]]) -> list[Job]:
    rows = _manifest_rows(path)
    header = [name.strip() for name in next(rows, (1, []))[1]]
    if "path" not in header:
        raise ConfigError(f"manifest {path} needs a 'path' column (and optionally {', '.join(METADATA_COLUMNS)})")
    jobs = []
    for line, values in rows:
        if not any(v.strip() for v in values):
            continue  # a blank line
        why = None
        if len(values) != len(header):
            why = f"{len(values)} values for {len(header)} columns"
        row = dict(zip(header, (v.strip() for v in values), strict=False))
        if why is None and not row.get("path"):
            why = "no path"
        video = (path.parent / row.get("path", "")).resolve() if why is None else None
        if video is not None and not video.is_file():
            why = f"{video} is not a file"
        if why is not None or video is None:
            bad_rows.append({"manifest": str(path), "line": line, "error": why})
            log.warning("manifest %s, line %d skipped: %s", path, line, why)
            continue
        meta = {k: v for k, v in row.items() if k != "path" and v}
        jobs.append(Job(video, meta))
    return jobs


def _manifest_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each CSV row of a manifest with the line it starts on, as an editor shows it."""
    try:  # utf-8-sig: a manifest saved by Excel starts with a byte-order mark
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"manifest {path} is not UTF-8 text (byte {exc.start}): save it as CSV UTF-8 and run again"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"manifest {path} cannot be read: {exc.strerror or exc}") from exc
    # A quoted value may hold a line break (a spreadsheet cell over two lines). Strict: a quote
    # never closed is an error, not the rest of the file swallowed into one value.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    end = 0
    try:
        for values in reader:
            yield end + 1, values
            end = reader.line_num
    except csv.Error as exc:
        raise ConfigError(f"manifest {path}, line {end + 1}: not valid CSV ({exc}): is a quote not closed?") from exc


def job_key(job: Job, config: Config) -> str:
    """Same input file (path, size, time) and same resolved config: same key, nothing to redo."""
    stat = job.video.stat() if job.video.exists() else None
    identity = [str(job.video), stat.st_size if stat else None, stat.st_mtime if stat else None, config.to_dict()]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


# ---- one worker process -------------------------------------------------------------------

_components: Components | None = None  # models, built once per worker process
_load_error: Exception | None = None  # why this worker's models could not be built
_components_key: str | None = None  # the config they were built for
_stop: Any = None  # a pool worker's event (a multiprocessing Event): the batch was interrupted, start no more videos
# The same, seen by this process: the main thread reads this one, never ``_stop``. Ctrl-C raises
# in the main thread at any bytecode; raised inside the shared Event's lock (a semaphore shared
# between processes) it would leave that lock taken, and every process waiting on it hangs.
_stopped = threading.Event()
_interrupted = False  # this pool worker's video has had its Ctrl-C


def _config_key(config_data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config_data, sort_keys=True, default=str).encode()).hexdigest()


def _worker_init(config_data: dict[str, Any]) -> None:
    """Build the models once. A failure (an unsafe or missing model) is kept, not raised: a worker
    that dies in its initializer breaks the whole pool; this one reports it for each video."""
    global _components, _load_error, _components_key
    from fishcam import runtime
    from fishcam.app.compose import build_components

    runtime.setup()  # a spawned worker or Ray actor does not inherit the in-process part
    _components, _load_error, _components_key = None, None, _config_key(config_data)
    try:
        _components = build_components(validate_config(config_data))
    except Exception as exc:
        _load_error = exc


def _pool_worker_init(config_data: dict[str, Any], stop: Any) -> None:
    """A pool worker: Ctrl-C reaches it only while it runs a video (an idle worker hit by it
    would die with a traceback and break the pool); once the batch stops, the video it runs is
    interrupted as by Ctrl-C (also when only the main process got one) and it starts no other."""
    global _stop
    _stop = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_interrupt_when_stopped, name="batch-stop", daemon=True).start()
    _worker_init(config_data)


def _interrupt_when_stopped() -> None:
    _stop.wait()
    _stopped.set()
    # A real SIGINT, not _thread.interrupt_main(): that only flags the main thread, which may be
    # blocked in a wait (a frame queue, a lock) and never see it; a signal interrupts the wait.
    # Ignored while SIGINT is ignored: between videos.
    os.kill(os.getpid(), signal.SIGINT)


def _on_interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C in a pool worker's video, once: a second (the terminal's and the batch's own)
    must not break off run() while it closes the video's outputs."""
    global _interrupted
    if not _interrupted:
        _interrupted = True
        raise KeyboardInterrupt


def process(job: Job, config_data: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Run one video into its folder; the marker is written last, so a kill leaves none. Never
    raises for one video's problem (an expected error or a bug): the result records it. Ctrl-C
    (or SIGTERM) is raised: an interrupted video is not done, and the batch stops."""
    global _interrupted
    if _stop is None:
        return _process(job, config_data, out_dir)
    _interrupted = False
    signal.signal(signal.SIGINT, _on_interrupt)  # before the check: a stop from now on interrupts
    try:
        if _stopped.is_set():
            raise KeyboardInterrupt  # handed to this worker before the batch was interrupted
        return _process(job, config_data, out_dir)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _process(job: Job, config_data: dict[str, Any], out_dir: str) -> dict[str, Any]:
    from fishcam.app.run import run
    from fishcam.sources import open_source

    config = validate_config(config_data)
    folder = Path(out_dir) / job.name
    key = job_key(job, config)
    try:
        if _components_key != _config_key(config_data):  # the first video here, or another batch
            _worker_init(config_data)
        if _load_error is not None:
            raise _load_error
        assert _components is not None  # built, or _load_error says why not
        source = open_source(str(job.video), config.source)
        code, summary = run(source, config, folder, _components)
        if code == EXIT_INTERRUPTED:  # run() closed the video's outputs; it is not done
            raise KeyboardInterrupt
        if code == EXIT_TERMINATED:
            raise Terminated
        result = {
            "video": str(job.video), "folder": str(folder), "key": key, "exit_code": code,
            "tracks": summary.tracks, "metadata": job.metadata,
        }  # fmt: skip
        (folder / FAILED_NAME).unlink(missing_ok=True)
        write_json(folder / DONE_NAME, result)
    except Exception as exc:
        if isinstance(exc, OSError):
            exc = OutputError(output_problem(exc, folder))
        elif not isinstance(exc, FishcamError):
            log.exception("%s: unexpected error", job.video)
        return _failed(job, folder, key, exc)
    return result


def _failed(job: Job, folder: Path, key: str | None, exc: BaseException | str) -> dict[str, Any]:
    """The record of a video that failed; also written into its folder where that is possible."""
    if isinstance(exc, FishcamError):
        error, code = str(exc), exc.exit_code
    elif isinstance(exc, str):
        error, code = exc, 1
    else:
        error, code = f"{type(exc).__name__}: {exc}".split("\n")[0], 1
    result = {"video": str(job.video), "folder": str(folder), "key": key, "error": error, "exit_code": code}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / FAILED_NAME, result)
    except OSError:
        pass  # the report still has it
    return result


# ---- the batch ------------------------------------------------------------------------------


def run_batch(
    inputs: list[str], config: Config, out_dir: Path, workers: int = 1, ray_address: str | None = None
) -> dict[str, Any]:
    found = discover(inputs)
    prepare_output_dir(out_dir)
    done: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    todo: list[Job] = []
    for job in found.jobs:
        previous = _done_before(job, config, out_dir)
        if previous is not None:
            skipped.append(previous)
        else:
            todo.append(job)
    log.info(
        "%d videos: %d already done, %d to process with %d worker(s)", len(found.jobs), len(skipped), len(todo), workers
    )
    data = config.to_dict()
    results: list[dict[str, Any]] = []

    def report(interrupted: bool = False) -> dict[str, Any]:
        finished = {r["video"] for r in results}
        done[:] = [r for r in results if "error" not in r]
        failed[:] = [r for r in results if "error" in r]
        state = {
            "videos": len(found.jobs), "done": done, "skipped": skipped, "failed": failed,
            "bad_rows": found.bad_rows, "interrupted": interrupted,
            "not_processed": [str(j.video) for j in todo if str(j.video) not in finished],
        }  # fmt: skip
        _write(out_dir / REPORT_NAME, json.dumps(state, indent=2, default=str) + "\n")
        return state

    try:
        if ray_address is not None:
            _run_on_ray(todo, data, out_dir, ray_address, workers, results)
        elif workers <= 1:
            results.extend(process(job, data, str(out_dir)) for job in todo)
        else:
            _run_in_processes(todo, data, out_dir, workers, results)
    except BaseException:  # Ctrl-C, SIGTERM: the report says what finished and what did not
        known = {r["video"] for r in results}
        # A video may have finished as the interrupt came, its result never read: its marker says.
        results.extend(r for j in todo if str(j.video) not in known and (r := _done_before(j, config, out_dir)))
        try:
            report(interrupted=True)
        except OutputError as exc:  # the interruption is what to end with; this is one more line
            log.error("%s", exc)
        raise
    for result in results:
        if "error" in result:
            log.error("%s failed: %s", result["video"], result["error"])
    state = report()
    write_aggregates(out_dir, done + skipped)
    return state


def _write(path: Path, text: str) -> None:
    """A whole file or nothing; a failure is one OutputError line naming it (not its temporary name)."""
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise OutputError(output_problem(OSError(exc.errno, exc.strerror or str(exc)), path)) from exc


def _done_before(job: Job, config: Config, out_dir: Path) -> dict[str, Any] | None:
    """The record of a video finished with this config, from its marker; None if it is not."""
    previous = _read_marker(out_dir / job.name / DONE_NAME)
    if previous is None or previous.get("key") != job_key(job, config):
        return None
    # The folder is the one the marker is in, whatever it says: a marker is data, and data does
    # not choose what else on the disk is read (the batch may have moved, too).
    return {**previous, "video": str(job.video), "folder": str(out_dir / job.name)}


def _read_marker(path: Path) -> dict[str, Any] | None:
    """A finished video's marker, or None (absent, or damaged: the video is done again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _run_in_processes(jobs: list[Job], data: dict[str, Any], out_dir: Path, workers: int, results: list) -> None:
    """A pool of worker processes. A worker that dies (killed, out of memory, a crash in native
    code) breaks the pool and every video in flight with it: those are then run again one by one,
    each in a fresh worker, so that the video that kills its worker is the one reported."""
    # Spawned, not forked: a fork of a process running torch or OpenVINO thread pools can crash.
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    suspects = []
    with _pool(spawn, workers, data, stop) as pool:
        futures = {pool.submit(process, job, data, str(out_dir)): job for job in jobs}
        with _stopping(futures, stop):
            for future in as_completed(futures):
                try:
                    results.append(future.result())
                except BrokenProcessPool:
                    suspects.append(futures[future])
                except Exception as exc:  # the result could not come back (it did not pickle, say)
                    job = futures[future]
                    results.append(_failed(job, out_dir / job.name, None, exc))
    for job in suspects:
        with _pool(spawn, 1, data, stop) as alone:
            future = alone.submit(process, job, data, str(out_dir))
            try:
                with _stopping([future], stop):
                    results.append(future.result())
            except BrokenProcessPool:
                folder = out_dir / job.name
                results.append(_failed(job, folder, None, "the worker process died while processing this video"))


def _pool(spawn: Any, workers: int, data: dict[str, Any], stop: Any) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=spawn, initializer=_pool_worker_init, initargs=(data, stop))


@contextlib.contextmanager
def _stopping(futures: Iterable[Future], stop: Any) -> Iterator[None]:
    """On Ctrl-C the videos not yet started are dropped, and those in flight are interrupted
    (the workers watch ``stop``); the pool's exit then waits for them to close their outputs.
    Cancelled here, not by ``shutdown(cancel_futures=True)``: its manager thread can miss the
    cancellation and wait for ever on videos it will never send."""
    try:
        yield
    except BrokenProcessPool:
        raise  # a worker died: its video is failed, the batch goes on
    except BaseException:
        stop.set()
        for future in futures:
            future.cancel()
        raise


def _run_on_ray(
    jobs: list[Job], data: dict[str, Any], out_dir: Path, address: str, workers: int, results: list
) -> None:
    """One actor per worker, each loading the models once; a GPU each where the cluster has them.
    ``out_dir`` must be on storage every node sees. An actor that dies fails its video only: a
    new actor takes its place."""
    import ray

    ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
    try:
        resources = ray.cluster_resources()
        count = max(1, min(workers if workers > 1 else int(resources.get("CPU", 1)), len(jobs) or 1))
        gpus = resources.get("GPU", 0)
        options: dict[str, Any] = {"num_cpus": 1, "num_gpus": min(1.0, gpus / count) if gpus else 0}
        log.info("Ray at %s: %d actors (%s)", address, count, options)
        worker_class: Any = ray.remote(**options)(_RayWorker)
        idle = [worker_class.remote(data) for _ in range(count)]
        queue, running = list(jobs), dict[Any, tuple[Any, Job]]()
        while queue or running:
            while queue and idle:
                actor, job = idle.pop(), queue.pop(0)
                running[actor.process.remote(job, data, str(out_dir))] = (actor, job)
            ready, _ = ray.wait(list(running), num_returns=1)
            actor, job = running.pop(ready[0])
            try:
                results.append(ray.get(ready[0]))
                idle.append(actor)
            except ray.exceptions.RayError as exc:
                results.append(_failed(job, out_dir / job.name, None, f"the Ray actor died: {exc}".split("\n")[0]))
                idle.append(worker_class.remote(data))
    finally:
        ray.shutdown()


class _RayWorker:
    def __init__(self, data: dict[str, Any]) -> None:
        _worker_init(data)

    def process(self, job: Job, data: dict[str, Any], out_dir: str) -> dict[str, Any]:
        return process(job, data, out_dir)


def write_aggregates(out_dir: Path, finished: list[dict[str, Any]]) -> None:
    """Per video and species (with the video's metadata), and per site, date and species."""
    rows: list[list[Any]] = []
    by_site: defaultdict[tuple, dict[str, int]] = defaultdict(lambda: {"unique": 0, "max_n": 0, "videos": 0})
    for result in sorted(finished, key=lambda r: r["video"]):
        meta = result.get("metadata", {})
        counts, problem = _read_counts(out_dir, Path(str(result["folder"])).name)
        if problem:
            log.warning("%s left out of the batch counts: %s (delete its %s to run it again)",
                        result["video"], problem, DONE_NAME)  # fmt: skip
            continue
        for count in counts:
            rows.append([result["video"], *(meta.get(c, "") for c in METADATA_COLUMNS), count["species"],
                         count["unique_tracks"], count["max_n"], count["max_n_time_s"]])  # fmt: skip
            group = by_site[(meta.get("site", ""), meta.get("date", ""), count["species"])]
            group["unique"] += int(count["unique_tracks"])
            group["max_n"] = max(group["max_n"], int(count["max_n"]))
            group["videos"] += 1
    header = ["video", *METADATA_COLUMNS, "species", "unique_tracks", "max_n", "max_n_time_s"]
    _write(out_dir / "counts_by_video.csv", csv_text(header, rows))
    site_rows = [[s, d, sp, g["videos"], g["unique"], g["max_n"]] for (s, d, sp), g in sorted(by_site.items())]
    site_header = ["site", "date", "species", "videos", "unique_tracks", "max_n_per_video"]
    _write(out_dir / "counts_by_site_date.csv", csv_text(site_header, site_rows))


def _read_counts(out_dir: Path, folder: str) -> tuple[list[dict[str, str]], str | None]:
    """A finished video's species counts (its folder taken inside the batch: the batch may have
    moved), or what is wrong with them (missing, damaged)."""
    if folder in ("", ".", ".."):
        return [], f"its folder {folder!r} is not inside the batch"
    path = out_dir / folder / COUNTS_NAME
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
    except OSError as exc:
        return [], f"{path}: {exc.strerror or exc}"
    except (UnicodeDecodeError, csv.Error) as exc:
        return [], f"{path}: {exc}"
    for line, row in enumerate(rows, start=2):
        for name in ("species", "unique_tracks", "max_n", "max_n_time_s"):
            value = row.get(name)
            if value is None:
                return [], f"{path}, line {line}: no {name}"
            if name in ("unique_tracks", "max_n") and not _whole_number(value):
                return [], f"{path}, line {line}: {name} is {value!r}, not a whole number"
    return rows, None


def _whole_number(text: str) -> bool:
    try:
        return int(text) >= 0
    except ValueError:
        return False
