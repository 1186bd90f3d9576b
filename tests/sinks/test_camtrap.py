"""Camtrap DP export of real runs and batches, validated by Frictionless (not fishcam's code)
against the Camtrap DP 1.0 table schemas and profile requirements in tests/data/camtrap-dp-1.0."""

import csv
import json
import shutil
from datetime import datetime, timedelta

import frictionless
import jsonschema
import pytest
from builders import ROOT, SAMPLES, TEST_DETECTOR, write_efficientnet_manifest, write_tagged_video

from fishcam.app.cli import main

pytestmark = pytest.mark.slow

SCHEMAS = ROOT / "tests" / "data" / "camtrap-dp-1.0"
START = "2026-05-01T09:30:00+10:00"


def validate_package(folder, tmp_path):
    """Frictionless validation offline: the package with its schema URLs pointed at the local copies."""
    copy = tmp_path / "validate"
    shutil.copytree(folder, copy)
    descriptor = json.loads((copy / "datapackage.json").read_text())
    jsonschema.validate(descriptor, json.loads((SCHEMAS / "package-profile.json").read_text()))
    for resource in descriptor["resources"]:
        name = resource["schema"].rsplit("/", 1)[1]
        shutil.copyfile(SCHEMAS / name, copy / name)
        resource["schema"] = name
    descriptor["profile"] = "tabular-data-package"  # the Camtrap profile itself was checked above
    (copy / "datapackage.json").write_text(json.dumps(descriptor))
    report = frictionless.validate(str(copy / "datapackage.json"))
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])
    return descriptor


def read_csv(path):
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def classified_run(tmp_path_factory, tiny_clip):
    """A run whose tracks were named by a real expert (ImageNet EfficientNet-Lite0) or the fallback."""
    out = tmp_path_factory.mktemp("run")
    manifest = write_efficientnet_manifest(tmp_path_factory.mktemp("expert"))
    args = ["run", str(SAMPLES / "dive_sample.mp4"), "--out", str(out), "-q", "--set", "render.video=false",
            "--set", f"detector.weights={TEST_DETECTOR}", "--set", "detector.image_size=320",
            "--set", f"classify.expert.weights={manifest}", "--set", "classify.expert.threshold=0.9",
            "--set", f"classify.fallback.model={tiny_clip}", "--set", "classify.fallback.threshold=0.0",
            "--set", f"classify.fallback.species_list={SAMPLES / 'species.txt'}"]  # fmt: skip
    assert main(args) == 0
    return out


def test_a_run_exports_a_valid_package_whose_observations_are_its_tracks(classified_run, tmp_path):
    out = tmp_path / "export"
    args = ["export", str(classified_run), "--format", "camtrap-dp", "--out", str(out), "-q",
            "--latitude", "-16.86", "--longitude", "145.87", "--start", START, "--site", "Moore Reef",
            "--depth", "12", "--bait", "yes", "--contributor", "Reef Station"]  # fmt: skip
    assert main(args) == 0
    package = out / "camtrap-dp"
    descriptor = validate_package(package, tmp_path)
    tracks = {r["track_id"]: r for r in read_csv(classified_run / "tracks.csv")}
    observations = read_csv(package / "observations.csv")
    assert len(observations) == len(tracks) > 0
    start = datetime.fromisoformat(START)
    names = set()
    for obs in observations:
        track = tracks[obs["observationTags"].removeprefix("track:")]
        assert obs["observationLevel"] == "event" and obs["count"] == "1"
        # Whole seconds that contain the track's time in view.
        first = start + timedelta(seconds=float(track["first_time_s"]))
        last = start + timedelta(seconds=float(track["last_time_s"]))
        assert (
            datetime.fromisoformat(obs["eventStart"])
            <= first
            < datetime.fromisoformat(obs["eventStart"]) + timedelta(seconds=1)
        )
        assert (
            datetime.fromisoformat(obs["eventEnd"]) - timedelta(seconds=1)
            < last
            <= datetime.fromisoformat(obs["eventEnd"])
        )
        if track["origin"] in ("expert", "fallback"):
            assert obs["observationType"] == "animal" and obs["classificationMethod"] == "machine"
            assert float(obs["classificationProbability"]) == pytest.approx(float(track["score"]), abs=1e-4)
            assert track["origin"] in obs["classifiedBy"]
            names.add(obs["scientificName"])
        else:
            assert obs["observationType"] == "unknown" and obs["scientificName"] == ""
    assert {t["origin"] for t in tracks.values()} >= {"fallback"}
    # Fallback labels are the species list's scientific names; the list gives vernacular names too.
    taxonomic = {t["scientificName"]: t for t in descriptor["taxonomic"]}
    assert set(taxonomic) == names
    lines = [line for line in (SAMPLES / "species.txt").read_text().splitlines() if not line.startswith("#")]
    listed = {line.split(";")[0].strip(): line.split(";")[1].strip() for line in lines if ";" in line}
    for name, taxon in taxonomic.items():
        if name in listed:
            assert taxon["vernacularNames"] == {"eng": listed[name]}
    (deployment,) = read_csv(package / "deployments.csv")
    assert (deployment["latitude"], deployment["locationName"], deployment["cameraDepth"], deployment["baitUse"]) == (
        "-16.860000", "Moore Reef", "12", "true")  # fmt: skip
    assert deployment["deploymentStart"] == "2026-04-30T23:30:00Z"
    (media,) = read_csv(package / "media.csv")
    assert media["filePath"] == str((SAMPLES / "dive_sample.mp4").resolve()) and media["fileMediatype"] == "video/mp4"
    assert descriptor["spatial"] == {"type": "Point", "coordinates": [145.87, -16.86]}
    assert descriptor["contributors"][0]["title"] == "Reef Station"


def test_a_batch_exports_one_deployment_per_video_from_its_manifest(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copyfile(SAMPLES / "fixed_sample.mp4", videos / name)
    manifest = tmp_path / "survey.csv"
    manifest.write_text(
        "path,site,date,camera,depth,latitude,longitude,start\n"
        "videos/a.mp4,reef-north,2026-11-01,cam1,8,-16.85,145.86,2026-11-01T08:00:00+10:00\n"
        "videos/b.mp4,reef-south,2026-11-02,cam2,9.5,-16.95,145.90,2026-11-02T08:15:00+10:00\n"
    )
    out = tmp_path / "batch"
    count_only = ["--config", "configs/count-only.yaml", "--set", "render.video=false", "-q"]
    assert main(["batch", str(manifest), "--out", str(out), *count_only]) == 0
    assert main(["export", str(out), "--format", "camtrap-dp", "--format", "mot", "-q"]) == 0
    package = out / "exports" / "camtrap-dp"
    descriptor = validate_package(package, tmp_path)
    deployments = {d["cameraID"]: d for d in read_csv(package / "deployments.csv")}
    assert set(deployments) == {"cam1", "cam2"}
    assert deployments["cam2"]["locationName"] == "reef-south" and deployments["cam2"]["cameraDepth"] == "9.5"
    assert deployments["cam1"]["deploymentStart"] == "2026-10-31T22:00:00Z"
    observations = read_csv(package / "observations.csv")
    report = json.loads((out / "batch_report.json").read_text())
    for result in report["done"]:
        tracks = read_csv(out / result["folder"].rsplit("/", 1)[1] / "tracks.csv")
        mine = [o for o in observations if o["deploymentID"] == result["folder"].rsplit("/", 1)[1]]
        assert len(mine) == len(tracks) > 0
        assert {o["observationType"] for o in mine} == {"unclassified"}  # no species models in this batch
    assert descriptor["temporal"] == {"start": "2026-10-31", "end": "2026-11-01"}
    assert descriptor["spatial"]["type"] == "Polygon"
    # The per-video formats land in a folder per video.
    assert len(list((out / "exports").glob("*/seqinfo.ini"))) == 2


def test_missing_place_or_time_is_named_and_nothing_is_written(classified_run, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(classified_run), "--format", "camtrap-dp", "--out", str(out), "-q"]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "dive_sample.mp4: no latitude, longitude, start" in message and "--latitude" in message
    assert not (out / "camtrap-dp").exists()
    bad_time = ["--latitude", "1", "--longitude", "2", "--start", "2026-05-01T09:30:00"]
    assert main(["export", str(classified_run), "--format", "camtrap-dp", "--out", str(out), "-q", *bad_time]) == 2
    assert "has no time zone" in capsys.readouterr().err
    off_earth = ["--latitude", "95", "--longitude", "2", "--start", START]
    assert main(["export", str(classified_run), "--format", "camtrap-dp", "--out", str(out), "-q", *off_earth]) == 2
    assert "not a place on Earth" in capsys.readouterr().err
    above_water = ["--latitude", "1", "--longitude", "2", "--start", START, "--depth", "-3"]
    assert main(["export", str(classified_run), "--format", "camtrap-dp", "--out", str(out), "-q", *above_water]) == 2
    assert "metres below the surface" in capsys.readouterr().err
    assert not (out / "camtrap-dp").exists()


def test_the_recording_time_tag_places_a_video_without_start_and_no_fish_is_a_valid_package(tmp_path):
    video = write_tagged_video(tmp_path / "tagged.mp4", "2026-05-01T09:30:00.000000Z", frames=25, size=(160, 120))
    run = tmp_path / "run"
    assert main(["run", str(video), "--out", str(run), "--config", "configs/count-only.yaml", "-q"]) == 0
    assert json.loads((run / "summary.json").read_text())["recorded_start"] == "2026-05-01T09:30:00Z"
    assert main(["export", str(run), "--format", "camtrap-dp", "--latitude", "10", "--longitude", "20", "-q"]) == 0
    package = run / "exports" / "camtrap-dp"
    descriptor = validate_package(package, tmp_path)
    (deployment,) = read_csv(package / "deployments.csv")
    assert (deployment["deploymentStart"], deployment["deploymentEnd"]) == (
        "2026-05-01T09:30:00Z",
        "2026-05-01T09:30:01Z",
    )
    assert read_csv(package / "observations.csv") == [] and descriptor["taxonomic"] == []


def test_a_deployment_lasts_the_files_frames_or_the_streams_wall_time():
    from types import SimpleNamespace

    from fishcam.sinks.camtrap import _duration_s
    from fishcam.types import RunSummary

    video = SimpleNamespace(
        summary=RunSummary.from_json({"frames": 201, "video_fps": 25.0, "processing_s": 3.0, "live": None})
    )
    stream = SimpleNamespace(
        summary=RunSummary.from_json(
            {"frames": 900, "video_fps": 25.0, "processing_s": 60.0, "live": {"drop_rate": 0.4}}
        )
    )
    assert (_duration_s(video), _duration_s(stream)) == (8.0, 60.0)  # a stream drops frames: its clock counts


GENUS_LIST = (
    "scientific_name,common_name,kingdom,phylum,class,order,family,genus\n"
    "Pterois volitans,red lionfish,Animalia,Chordata,Actinopterygii,Scorpaeniformes,Scorpaenidae,Pterois\n"
    "Pterois miles,devil firefish,Animalia,Chordata,Actinopterygii,Scorpaeniformes,Scorpaenidae,Pterois\n"
    "Gadus morhua,Atlantic cod,Animalia,Chordata,Actinopterygii,Gadiformes,Gadidae,Gadus\n"
)


def genus_level_run(out, list_path):
    """A scripted run: the green fish's crops are 0.35/0.35 between the two lionfish (no species
    sure at 0.6, their genus is: 0.7), the blue fish is a sure cod, the red one the expert's."""
    from builders import ColourModel, colour_scene

    from fishcam.app.compose import Components
    from fishcam.app.run import run
    from fishcam.classify.service import SpeciesModels
    from fishcam.classify.species_list import read_species_list
    from fishcam.classify.taxonomy import Taxonomy
    from fishcam.config import load_config
    from fishcam.detect.scripted import ScriptedDetector
    from fishcam.sources.arrays import ArraySource

    red, green, blue = (0, 0, 255), (0, 255, 0), (255, 0, 0)
    fish = [
        {"colour": red, "start": 0, "end": 49, "xy": (10, 20), "v": (3, 0), "wh": (40, 24)},
        {"colour": green, "start": 5, "end": 59, "xy": (250, 120), "v": (-3, 0), "wh": (40, 24)},
        {"colour": blue, "start": 10, "end": 59, "xy": (120, 180), "v": (1, -1), "wh": (40, 24)},
    ]
    images, script = colour_scene(fish, frames=60)
    entries = read_species_list(list_path)
    expert = ColourModel(["Tilapia", "Mullet"], {red: [0.9, 0.1], green: [0.5, 0.5], blue: [0.5, 0.5]})
    fallback = ColourModel([e.label for e in entries], {green: [0.35, 0.35, 0.3], blue: [0.05, 0.05, 0.9]})
    fallback.taxonomy = Taxonomy([e.lineage for e in entries], [e.rank for e in entries])
    species = SpeciesModels(expert, fallback, expert_threshold=0.7, fallback_threshold=0.6)
    config = load_config(None, ["render.video=false", f"classify.fallback.species_list={list_path}"])
    code, _ = run(ArraySource(images, fps=10.0), config, out, Components(ScriptedDetector(script), species))
    assert code == 0
    return out


def test_a_track_named_only_to_its_genus_is_counted_and_exported_as_that_genus(tmp_path):
    list_path = tmp_path / "species.csv"
    list_path.write_text(GENUS_LIST)
    run_dir = genus_level_run(tmp_path / "run", list_path)
    counts = {(r["species"], r["rank"]): r for r in read_csv(run_dir / "species_counts.csv")}
    assert set(counts) == {("Pterois", "genus"), ("Gadus morhua", "species"), ("Tilapia", "")}
    assert (counts[("Pterois", "genus")]["unique_tracks"], counts[("Pterois", "genus")]["max_n"]) == ("1", "1")
    calls = read_csv(run_dir / "calls.csv")
    assert {(c["species"], c["rank"], c["candidate"]) for c in calls if c["origin"] == "fallback"} == {
        ("Pterois", "genus", "Pterois volitans"), ("Gadus morhua", "species", "Gadus morhua"),
    }  # fmt: skip
    out = tmp_path / "export"
    args = ["export", str(run_dir), "--format", "camtrap-dp", "--out", str(out), "-q", "--latitude", "-16.86",
            "--longitude", "145.87", "--start", START, "--taxa", str(list_path)]  # fmt: skip
    assert main(args) == 0
    descriptor = validate_package(out / "camtrap-dp", tmp_path)
    taxa = {t["scientificName"]: t for t in descriptor["taxonomic"]}
    assert taxa["Pterois"] == {
        "scientificName": "Pterois", "taxonRank": "genus", "kingdom": "Animalia", "phylum": "Chordata",
        "class": "Actinopterygii", "order": "Scorpaeniformes", "family": "Scorpaenidae",
    }  # fmt: skip
    assert taxa["Gadus morhua"]["taxonRank"] == "species" and taxa["Gadus morhua"]["genus"] == "Gadus"
    assert taxa["Gadus morhua"]["vernacularNames"] == {"eng": "Atlantic cod"}
    assert "taxonRank" not in taxa["Tilapia"]  # the expert's classes have no stated rank
    (genus_obs,) = [o for o in read_csv(out / "camtrap-dp" / "observations.csv") if o["scientificName"] == "Pterois"]
    assert (
        genus_obs["observationType"] == "animal"
        and "genus (no species sure) by the fallback" in genus_obs["observationComments"]
    )
