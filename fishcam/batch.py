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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fishcam.config import Config, validate_config
from fishcam.errors import ConfigError, FishcamError
from fishcam.sinks.files import csv_text, write_atomic, write_json
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


def discover(inputs: list[str]) -> list[Job]:
    """Globs, folders (videos inside, recursively) and CSV manifests (``path`` + metadata)."""
    jobs: dict[Path, Job] = {}
    for item in inputs:
        path = Path(item)
        if path.suffix.lower() == ".csv" and path.is_file():
            with path.open(encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if reader.fieldnames is None or "path" not in reader.fieldnames:
                    raise ConfigError(
                        f"manifest {path} needs a 'path' column (and optionally {', '.join(METADATA_COLUMNS)})"
                    )
                for row in reader:
                    video = (path.parent / row["path"]).resolve()
                    meta = {k: row[k] for k in reader.fieldnames if k != "path" and row.get(k)}
                    jobs[video] = Job(video, meta)
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
    return list(jobs.values())


def job_key(job: Job, config: Config) -> str:
    """Same input file (path, size, time) and same resolved config: same key, nothing to redo."""
    stat = job.video.stat() if job.video.exists() else None
    identity = [str(job.video), stat.st_size if stat else None, stat.st_mtime if stat else None, config.to_dict()]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


# ---- one worker process -------------------------------------------------------------------

_components = None  # models, built once per worker process


def _worker_init(config_data: dict[str, Any]) -> None:
    global _components
    from fishcam.run import build_components

    _components = build_components(validate_config(config_data))


def process(job: Job, config_data: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Run one video into its folder; the marker is written last, so a kill leaves none."""
    from fishcam.run import build_components, run
    from fishcam.sources import open_source

    global _components
    config = validate_config(config_data)
    folder = Path(out_dir) / job.name
    key = job_key(job, config)
    try:
        if _components is None:
            _components = build_components(config)
        source = open_source(str(job.video), config.source)
        code, summary = run(source, config, folder, _components)
    except FishcamError as exc:
        result = {
            "video": str(job.video),
            "folder": str(folder),
            "key": key,
            "error": str(exc),
            "exit_code": exc.exit_code,
        }
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / FAILED_NAME, result)
        return result
    result = {
        "video": str(job.video), "folder": str(folder), "key": key, "exit_code": code,
        "tracks": summary["tracks"], "metadata": job.metadata,
    }  # fmt: skip
    (folder / FAILED_NAME).unlink(missing_ok=True)
    write_json(folder / DONE_NAME, result)
    return result


# ---- the batch ------------------------------------------------------------------------------


def run_batch(
    inputs: list[str], config: Config, out_dir: Path, workers: int = 1, ray_address: str | None = None
) -> dict[str, Any]:
    jobs = discover(inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    done, skipped, failed, todo = [], [], [], []
    for job in jobs:
        marker = out_dir / job.name / DONE_NAME
        if marker.is_file() and json.loads(marker.read_text()).get("key") == job_key(job, config):
            skipped.append(json.loads(marker.read_text()))
        else:
            todo.append(job)
    log.info("%d videos: %d already done, %d to process with %d worker(s)", len(jobs), len(skipped), len(todo), workers)
    data = config.to_dict()
    if ray_address is not None:
        results = _run_on_ray(todo, data, out_dir, ray_address, workers)
    elif workers <= 1:
        results = [process(job, data, str(out_dir)) for job in todo]
    else:
        # Spawned, not forked: a fork of a process running torch or OpenVINO thread pools can crash.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_worker_init, initargs=(data,)) as pool:
            futures = [pool.submit(process, job, data, str(out_dir)) for job in todo]
            results = [future.result() for future in as_completed(futures)]
    for result in results:
        (failed if "error" in result else done).append(result)
        if "error" in result:
            log.error("%s failed: %s", result["video"], result["error"])
    report = {"videos": len(jobs), "done": done, "skipped": skipped, "failed": failed}
    write_json(out_dir / "batch_report.json", report)
    write_aggregates(out_dir, done + skipped)
    return report


def _run_on_ray(jobs: list[Job], data: dict[str, Any], out_dir: Path, address: str, workers: int) -> list[dict]:
    """One actor per worker, each loading the models once; a GPU each where the cluster has them.
    ``out_dir`` must be on storage every node sees."""
    import ray
    from ray.util import ActorPool

    ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
    try:
        resources = ray.cluster_resources()
        actors = max(1, min(workers if workers > 1 else int(resources.get("CPU", 1)), len(jobs) or 1))
        gpus = resources.get("GPU", 0)
        options = {"num_cpus": 1, "num_gpus": min(1.0, gpus / actors) if gpus else 0}
        log.info("Ray at %s: %d actors (%s)", address, actors, options)
        worker_class = ray.remote(**options)(_RayWorker)
        pool = ActorPool([worker_class.remote(data) for _ in range(actors)])
        return list(pool.map_unordered(lambda actor, job: actor.process.remote(job, data, str(out_dir)), jobs))
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
        with (Path(result["folder"]) / "species_counts.csv").open(encoding="utf-8") as handle:
            for count in csv.DictReader(handle):
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
