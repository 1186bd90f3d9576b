"""Camtrap DP 1.0 (the TDWG/GBIF camera-trap data standard) from finished runs.

One video is one deployment with one media file; each track is one event-level observation of
one individual (``count`` 1), classified by the model that decided it. Camtrap DP requires what a
video does not say (where the camera was, when it recorded), so coordinates and start times come
from the batch manifest or the command line, or the recording's own timestamp; without them the
export stops with a message that names the missing value for each video.
"""

from __future__ import annotations

import getpass
import json
import mimetypes
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from fishcam import __version__
from fishcam.classify.species_list import SpeciesEntry
from fishcam.classify.taxonomy import RANKS
from fishcam.errors import ConfigError, SourceError
from fishcam.sinks.exports import DAMAGED, RunRecord, write_together
from fishcam.sinks.files import csv_text, prepare_output_dir
from fishcam.sinks.run_writer import SUMMARY_NAME
from fishcam.types import UNCLASSIFIED_LABEL, UNKNOWN_LABEL

VERSION_URL = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0"
PROFILE = f"{VERSION_URL}/camtrap-dp-profile.json"
SamplingDesign = Literal[
    "simpleRandom", "systematicRandom", "clusteredRandom", "experimental", "targeted", "opportunistic"
]  # fmt: skip
CaptureMethod = Literal["activityDetection", "timeLapse"]

DEPLOYMENT_COLUMNS = (
    "deploymentID", "locationID", "locationName", "latitude", "longitude", "coordinateUncertainty",
    "deploymentStart", "deploymentEnd", "setupBy", "cameraID", "cameraModel", "cameraDelay", "cameraHeight",
    "cameraDepth", "cameraTilt", "cameraHeading", "detectionDistance", "timestampIssues", "baitUse",
    "featureType", "habitat", "deploymentGroups", "deploymentTags", "deploymentComments",
)  # fmt: skip
MEDIA_COLUMNS = (
    "mediaID", "deploymentID", "captureMethod", "timestamp", "filePath", "filePublic", "fileName",
    "fileMediatype", "exifData", "favorite", "mediaComments",
)  # fmt: skip
OBSERVATION_COLUMNS = (
    "observationID", "deploymentID", "mediaID", "eventID", "eventStart", "eventEnd", "observationLevel",
    "observationType", "cameraSetupType", "scientificName", "count", "lifeStage", "sex", "behavior",
    "individualID", "individualPositionRadius", "individualPositionAngle", "individualSpeed", "bboxX", "bboxY",
    "bboxWidth", "bboxHeight", "classificationMethod", "classifiedBy", "classificationTimestamp",
    "classificationProbability", "observationTags", "observationComments",
)  # fmt: skip


class PackageInfo(BaseModel):
    """What the package says about itself; the command line fills it in (validated as config is)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = "fishcam species observations"
    contributor: str = ""  # default: the user running the export
    sampling_design: SamplingDesign = "opportunistic"
    # A recording camera samples continuously, not on triggers: timeLapse is the closer term.
    capture_method: CaptureMethod = "timeLapse"
    bait_use: bool | None = None


@dataclass(frozen=True)
class Deployment:
    """One run's placement: from the batch manifest (columns latitude, longitude, start, site,
    camera, depth, coordinate_uncertainty) with the command line's values as defaults."""

    deployment_id: str
    latitude: float
    longitude: float
    start: datetime
    site: str = ""
    camera: str = ""
    depth: float | None = None
    coordinate_uncertainty: int | None = None


def iso(moment: datetime) -> str:
    """Camtrap DP's datetime: whole seconds with a zone designator."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not an ISO 8601 time, e.g. 2026-05-01T09:30:00+02:00") from None
    if moment.tzinfo is None:
        raise ConfigError(f"{what}: {text!r} has no time zone; add one, e.g. {text.strip()}Z or {text.strip()}+02:00")
    return moment


def deployment_for(run: RunRecord, defaults: dict[str, str]) -> Deployment | str:
    """The run's Deployment, or a message naming what is missing for it."""
    values = {**{k: v for k, v in defaults.items() if v not in (None, "")}, **run.metadata}
    label = run.summary.info.source_path or run.name
    missing = [key for key in ("latitude", "longitude") if not values.get(key)]
    start_text = values.get("start") or run.summary.info.recorded_start or ""
    if not start_text:
        missing.append("start")
    if missing:
        return f"{label}: no {', '.join(missing)}"
    try:
        latitude, longitude = float(values["latitude"]), float(values["longitude"])
        depth = float(values["depth"]) if values.get("depth") else None
        uncertainty = int(float(values["coordinate_uncertainty"])) if values.get("coordinate_uncertainty") else None
    except ValueError as exc:
        raise ConfigError(f"{label}: {exc}; latitude, longitude, depth and uncertainty are numbers") from None
    if depth is not None and depth < 0:
        raise ConfigError(f"{label}: depth {depth:g}: give metres below the surface, a positive number")
    if uncertainty is not None and uncertainty < 1:
        raise ConfigError(f"{label}: coordinate_uncertainty {uncertainty}: give whole metres, at least 1")
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise ConfigError(
            f"{label}: latitude {latitude}, longitude {longitude} is not a place on Earth (WGS84 degrees)"
        )
    return Deployment(
        deployment_id=values.get("deployment") or run.folder.name,
        latitude=latitude,
        longitude=longitude,
        start=parse_time(start_text, f"start of {label}"),
        site=values.get("site", ""),
        camera=values.get("camera", ""),
        depth=depth,
        coordinate_uncertainty=uncertainty,
    )


def taxa_index(entries: tuple[SpeciesEntry, ...]) -> dict[str, SpeciesEntry]:
    """Any name of a species (scientific or common, any case) → its entry."""
    return {name.casefold(): entry for entry in entries for name in entry.names}


def _classified_by(run: RunRecord, origin: str) -> str:
    model = run.summary.info.models.get(origin, {})
    name = Path(str(model.get("weights") or model.get("model") or origin)).name
    digest = f", sha256 {model['sha256'][:12]}" if model.get("sha256") else ""
    return f"fishcam {run.summary.info.fishcam or __version__} {origin} model {name}{digest}"


def observation_rows(run: RunRecord, deployment: Deployment, taxa: dict[str, SpeciesEntry]) -> list[list[Any]]:
    """One event-level observation per track: the fish, when it was in view, what decided it."""
    rows = []
    classified_at = _classified_at(run)
    for track_id, track in sorted(run.tracks.items()):
        if track.get("counted", "1") == "0":
            continue  # not enough evidence of a fish (fishcam.evidence): no observation
        species, origin = track["species"], track["origin"]
        when = classified_at
        if origin == "review":  # a person named it in the review (fishcam.review): human, by them, then
            entry = taxa.get(species.casefold())
            named = species not in (UNKNOWN_LABEL, UNCLASSIFIED_LABEL)
            kind, name = ("animal", entry.label if entry else species) if named else ("unknown", "")
            method, by, probability = "human", track.get("reviewed_by") or "reviewer", ""
            when = _reviewed_at(run, track)
        elif species == UNCLASSIFIED_LABEL or origin == "none":
            kind, name, method, by, probability = "unclassified", "", "", "", ""
        elif species == UNKNOWN_LABEL:  # the models were asked and could not say
            kind, name, method, by, probability = "unknown", "", "machine", _classified_by(run, "expert"), ""
        else:
            entry = taxa.get(species.casefold())
            kind, name, method = "animal", entry.label if entry else species, "machine"
            by, probability = _classified_by(run, origin), f"{float(track['score']):.4f}"
        start = deployment.start + timedelta(seconds=float(track["first_time_s"]))
        end = deployment.start + timedelta(seconds=float(track["last_time_s"]))
        event = f"{deployment.deployment_id}-track{track_id}"
        rank = track.get("rank", "")
        level = "species" if rank in ("", "species") else f"{rank} (no species sure)"
        decided = f"{level} by the {origin} ({track['votes']} votes)" if origin != "none" else "no species models"
        if origin == "review":
            done = {"confirm": "species confirmed", "species": "species given"}.get(track.get("review_action", ""))
            decided = f"{done or 'reviewed'} by {by} in review"
        comment = (
            f"fishcam track {track_id}: frames {track['first_frame']}-{track['last_frame']}, "
            f"{track['detections']} detections, {decided}"
        )
        rows.append([
            event, deployment.deployment_id, "", event, iso(_floor(start)), iso(_ceil(end)), "event", kind, "",
            name, 1, "", "", "", "", "", "", "", "", "", "", "", method, by, when if method else "",
            probability, f"track:{track_id}", comment,
        ])  # fmt: skip
    return rows


def _classified_at(run: RunRecord) -> str:
    """When the models decided: the run's start, as summary.json says it."""
    text = run.summary.info.started
    try:
        return iso(datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z"))
    except ValueError:
        raise SourceError(
            f"{run.folder / SUMMARY_NAME}: started is {text!r}, not a time like 2026-05-01T09:30:00+1000; {DAMAGED}"
        ) from None


def _reviewed_at(run: RunRecord, track: dict[str, str]) -> str:
    """When a reviewer decided a track: its ``reviewed_at`` (ISO 8601 UTC, from the review file)."""
    text = track.get("reviewed_at", "")
    try:
        return iso(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise SourceError(
            f"{run.folder}: track {track['track_id']} reviewed_at is {text!r}, not a time like 2026-12-02T21:30:00Z"
        ) from None


def _floor(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _ceil(moment: datetime) -> datetime:
    return _floor(moment) + timedelta(seconds=1) if moment.microsecond else moment


def _utc_date(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).date().isoformat()


def _duration_s(run: RunRecord) -> float:
    """How long the recording covers: a file's frames over its rate; a live run's wall time (it
    drops frames, so its frame count says less)."""
    figures = run.summary.figures
    if figures is not None and figures.live:
        return figures.processing_s
    fps = run.summary.info.video_fps or 25.0
    return max(run.summary.frames - 1, 0) / fps


def export_camtrap_dp(
    runs: list[RunRecord],
    out_dir: Path,
    defaults: dict[str, str],
    info: PackageInfo,
    taxa: tuple[SpeciesEntry, ...] = (),
) -> list[Path]:
    """Write deployments.csv, media.csv, observations.csv and datapackage.json into ``out_dir``."""
    found = [(run, deployment_for(run, defaults)) for run in runs]
    problems = [d for _, d in found if isinstance(d, str)]
    placed = [(run, d) for run, d in found if isinstance(d, Deployment)]
    if problems:
        raise ConfigError(
            "Camtrap DP needs where and when each video was recorded: "
            + "; ".join(problems)
            + ". Give --latitude/--longitude/--start (one run), or latitude, longitude and start columns "
            "in the batch manifest; start is ISO 8601 with a zone, e.g. 2026-05-01T09:30:00+02:00"
        )
    index = taxa_index(taxa)
    ids = [d.deployment_id for _, d in placed]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"deployment ids repeat ({', '.join(sorted(ids))}): give each video its own 'deployment'")
    deployments, media, observations = [], [], []
    for run, dep in placed:
        end = _ceil(dep.start + timedelta(seconds=_duration_s(run)))
        deployments.append([
            dep.deployment_id, dep.site, dep.site, f"{dep.latitude:.6f}", f"{dep.longitude:.6f}",
            dep.coordinate_uncertainty if dep.coordinate_uncertainty is not None else "", iso(_floor(dep.start)),
            iso(end), "", dep.camera, "", "", "", "" if dep.depth is None else f"{dep.depth:g}", "", "", "", "",
            "" if info.bait_use is None else str(info.bait_use).lower(), "", "", "", "",
            f"fishcam run of {run.summary.info.source or run.name}",
        ])  # fmt: skip
        path = run.summary.info.source_path or run.summary.info.source or ""
        media.append([
            dep.deployment_id, dep.deployment_id, info.capture_method, iso(_floor(dep.start)), path, "false",
            Path(path).name, mimetypes.guess_type(path)[0] or "video/mp4", "", "",
            f"{run.summary.frames} frames at {run.summary.info.video_fps or ''} fps",
        ])  # fmt: skip
        observations += observation_rows(run, dep, index)
    prepare_output_dir(out_dir)
    package = descriptor([d for _, d in placed], runs, observations, index, info, ranks_of(runs, index))
    # One package: its four files are replaced together or not at all (a reader never sees new
    # observations beside an old deployments table).
    files = {
        out_dir / "deployments.csv": csv_text(DEPLOYMENT_COLUMNS, deployments),
        out_dir / "media.csv": csv_text(MEDIA_COLUMNS, media),
        out_dir / "observations.csv": csv_text(OBSERVATION_COLUMNS, observations),
        out_dir / "datapackage.json": json.dumps(package, indent=2, ensure_ascii=False) + "\n",
    }
    write_together(files)
    return list(files)


def ranks_of(runs: list[RunRecord], taxa: dict[str, SpeciesEntry]) -> dict[str, str]:
    """Each observed name's rank, as the tracks give it (``rank`` of tracks.csv: species, or the
    genus, family or order a track was named to when no species was sure), else the list's."""
    ranks: dict[str, str] = {}
    for run in runs:
        for track in run.tracks.values():
            entry = taxa.get(track["species"].casefold())
            name = entry.label if entry else track["species"]
            rank = track.get("rank", "") or (entry.rank if entry else "")
            if rank:
                ranks.setdefault(name, rank)
    return ranks


def _higher_ranks(name: str, rank: str, entry: SpeciesEntry | None, taxa: dict[str, SpeciesEntry]) -> dict[str, str]:
    """Camtrap DP's kingdom … genus of a taxon, from the species list (or what the Tree of Life
    filled in): a genus a track was named to takes them from a listed species of that genus."""
    if rank not in RANKS:
        return {}
    depth = RANKS.index(rank)
    lineage = entry.lineage if entry else ()
    if not lineage:
        lineage = next((e.lineage for e in taxa.values() if len(e.lineage) > depth and e.lineage[depth] == name), ())
    return {r: n for r, n in zip(RANKS[:depth], lineage, strict=False) if n}


def descriptor(
    deployments: list[Deployment],
    runs: list[RunRecord],
    observations: list[list[Any]],
    taxa: dict[str, SpeciesEntry],
    info: PackageInfo,
    ranks: dict[str, str] | None = None,
) -> dict[str, Any]:
    lats = [d.latitude for d in deployments]
    lons = [d.longitude for d in deployments]
    if len(set(zip(lats, lons, strict=True))) == 1:
        spatial = {"type": "Point", "coordinates": [lons[0], lats[0]]}
    else:
        w, e, s, n = min(lons), max(lons), min(lats), max(lats)
        spatial = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    starts = [d.start for d in deployments]
    ends = [d.start + timedelta(seconds=_duration_s(r)) for d, r in zip(deployments, runs, strict=True)]
    names = sorted({row[OBSERVATION_COLUMNS.index("scientificName")] for row in observations} - {""})
    taxonomic = []
    for name in names:
        entry = taxa.get(name.casefold())
        item: dict[str, Any] = {"scientificName": name}
        rank = (ranks or {}).get(name, "")
        if rank:
            item["taxonRank"] = rank
        item.update(_higher_ranks(name, rank, entry, taxa))
        if entry and len(entry.names) > 1:
            item["vernacularNames"] = {"eng": entry.names[1]}
        taxonomic.append(item)
    # The same deployments give the same package id: a re-export replaces, not duplicates, a dataset.
    package_id = uuid.uuid5(uuid.NAMESPACE_URL, "fishcam:" + ",".join(sorted(d.deployment_id for d in deployments)))
    return {
        "profile": PROFILE,
        "name": "fishcam-" + str(package_id)[:8],
        "id": str(package_id),
        "created": iso(datetime.now(timezone.utc)),
        "title": info.title,
        "contributors": [{"title": info.contributor or getpass.getuser(), "role": "contact"}],
        "sources": [{"title": "fishcam", "version": __version__}],
        "project": {
            "title": info.title,
            "samplingDesign": info.sampling_design,
            "captureMethod": [info.capture_method],
            "individualAnimals": False,
            "observationLevel": ["event"],
        },
        "spatial": spatial,
        "temporal": {"start": _utc_date(min(starts)), "end": _utc_date(max(ends))},
        "taxonomic": taxonomic,
        "resources": [
            {
                "name": name,
                "path": f"{name}.csv",
                "profile": "tabular-data-resource",
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "schema": f"{VERSION_URL}/{name}-table-schema.json",
            }
            for name in ("deployments", "media", "observations")
        ],
    }
