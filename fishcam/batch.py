"""``fishcam batch``: many recorded videos through the same pipeline, resumable, with local
worker processes. Each video gets its own run folder; a marker written last records what was
done with which config, so a killed batch loses only the videos in flight and a second call
skips what is finished. Failures are recorded and the batch goes on."""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import multiprocessing
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fishcam.config import Config, validate_config
from fishcam.errors import ConfigError, FishcamError, OutputError
from fishcam.sinks.files import csv_text, output_problem, prepare_output_dir, write_atomic, write_json
from fishcam.sources.base import VIDEO_SUFFIXES

log = logging.getLogger(__name__)

DONE_NAME = "batch_done.json"
FAILED_NAME = "batch_failed.json"
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
    try:  # utf-8-sig: a manifest saved by Excel starts with a byte-order mark
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"manifest {path} is not UTF-8 text (byte {exc.start}): save it as CSV UTF-8 and run again"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"manifest {path} cannot be read: {exc.strerror or exc}") from exc
    reader = csv.reader(text.splitlines())
    header = [name.strip() for name in next(reader, [])]
    if "path" not in header:
        raise ConfigError(f"manifest {path} needs a 'path' column (and optionally {', '.join(METADATA_COLUMNS)})")
    jobs = []
    for line, values in enumerate(reader, start=2):
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
        if why is not None:
            bad_rows.append({"manifest": str(path), "line": line, "error": why})
            log.warning("manifest %s, line %d skipped: %s", path, line, why)
            continue
        meta = {k: v for k, v in row.items() if k != "path" and v}
        jobs.append(Job(video, meta))
    return jobs


def job_key(job: Job, config: Config) -> str:
    """Same input file (path, size, time) and same resolved config: same key, nothing to redo."""
    stat = job.video.stat() if job.video.exists() else None
    identity = [str(job.video), stat.st_size if stat else None, stat.st_mtime if stat else None, config.to_dict()]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


# ---- one worker process -------------------------------------------------------------------

_components = None  # models, built once per worker process


_load_error: Exception | None = None  # why this worker's models could not be built
_components_key: str | None = None  # the config they were built for


def _config_key(config_data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config_data, sort_keys=True, default=str).encode()).hexdigest()


def _worker_init(config_data: dict[str, Any]) -> None:
    """Build the models once. A failure (an unsafe or missing model) is kept, not raised: a worker
    that dies in its initializer breaks the whole pool; this one reports it for each video."""
    global _components, _load_error, _components_key
    from fishcam import runtime
    from fishcam.run import build_components

    runtime.setup()  # a spawned worker or Ray actor does not inherit the in-process part
    _components, _load_error, _components_key = None, None, _config_key(config_data)
    try:
        _components = build_components(validate_config(config_data))
    except Exception as exc:
        _load_error = exc


def process(job: Job, config_data: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Run one video into its folder; the marker is written last, so a kill leaves none. Never
    raises for one video's problem (an expected error or a bug): the result records it."""
    from fishcam.run import run
    from fishcam.sources import open_source

    config = validate_config(config_data)
    folder = Path(out_dir) / job.name
    key = job_key(job, config)
    try:
        if _components_key != _config_key(config_data):  # the first video here, or another batch
            _worker_init(config_data)
        if _load_error is not None:
            raise _load_error
        source = open_source(str(job.video), config.source)
        code, summary = run(source, config, folder, _components)
        result = {
            "video": str(job.video), "folder": str(folder), "key": key, "exit_code": code,
            "tracks": summary["tracks"], "metadata": job.metadata,
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
    done, skipped, failed, todo = [], [], [], []
    for job in found.jobs:
        marker = out_dir / job.name / DONE_NAME
        previous = _read_marker(marker)
        if previous is not None and previous.get("key") == job_key(job, config):
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
        write_json(out_dir / "batch_report.json", state)
        return state

    try:
        if ray_address is not None:
            _run_on_ray(todo, data, out_dir, ray_address, workers, results)
        elif workers <= 1:
            results.extend(process(job, data, str(out_dir)) for job in todo)
        else:
            _run_in_processes(todo, data, out_dir, workers, results)
    except BaseException:  # Ctrl-C, SIGTERM: the report says what finished and what did not
        report(interrupted=True)
        raise
    for result in results:
        if "error" in result:
            log.error("%s failed: %s", result["video"], result["error"])
    state = report()
    write_aggregates(out_dir, done + skipped)
    return state


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
    suspects = []
    with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_worker_init, initargs=(data,)) as pool:
        futures = {pool.submit(process, job, data, str(out_dir)): job for job in jobs}
        for future in as_completed(futures):
            try:
                results.append(future.result())
            except BrokenProcessPool:
                suspects.append(futures[future])
            except Exception as exc:  # the result could not come back (it did not pickle, say)
                job = futures[future]
                results.append(_failed(job, out_dir / job.name, None, exc))
    for job in suspects:
        with ProcessPoolExecutor(1, mp_context=spawn, initializer=_worker_init, initargs=(data,)) as alone:
            try:
                results.append(alone.submit(process, job, data, str(out_dir)).result())
            except BrokenProcessPool:
                folder = out_dir / job.name
                results.append(_failed(job, folder, None, "the worker process died while processing this video"))


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
        options = {"num_cpus": 1, "num_gpus": min(1.0, gpus / count) if gpus else 0}
        log.info("Ray at %s: %d actors (%s)", address, count, options)
        worker_class = ray.remote(**options)(_RayWorker)
        idle = [worker_class.remote(data) for _ in range(count)]
        queue, running = list(jobs), {}
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
    rows, by_site = [], defaultdict(lambda: {"unique": 0, "max_n": 0, "videos": 0})
    for result in sorted(finished, key=lambda r: r["video"]):
        meta = result.get("metadata", {})
        counts = out_dir / Path(result["folder"]).name / "species_counts.csv"  # the batch may have moved
        try:
            text = counts.read_text(encoding="utf-8")
        except OSError as exc:
            log.warning("%s left out of the batch counts: %s", result["video"], exc.strerror or exc)
            continue
        for count in csv.DictReader(text.splitlines()):
            rows.append([result["video"], *(meta.get(c, "") for c in METADATA_COLUMNS), count["species"],
                         count["unique_tracks"], count["max_n"], count["max_n_time_s"]])  # fmt: skip
            group = by_site[(meta.get("site", ""), meta.get("date", ""), count["species"])]
            group["unique"] += int(count["unique_tracks"])
            group["max_n"] = max(group["max_n"], int(count["max_n"]))
            group["videos"] += 1
    header = ["video", *METADATA_COLUMNS, "species", "unique_tracks", "max_n", "max_n_time_s"]
    write_atomic(out_dir / "counts_by_video.csv", csv_text(header, rows))
    site_rows = [[s, d, sp, g["videos"], g["unique"], g["max_n"]] for (s, d, sp), g in sorted(by_site.items())]
    site_header = ["site", "date", "species", "videos", "unique_tracks", "max_n_per_video"]
    write_atomic(out_dir / "counts_by_site_date.csv", csv_text(site_header, site_rows))
