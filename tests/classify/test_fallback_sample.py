"""The whole fallback on the dive sample (configs/sample.yaml's detector and expert) with a tiny
open_clip model of random weights: the species list as CSV, the authors' prompts, every crop the
expert is unsure of named at its rank, and the rank through calls.csv, tracks.csv,
species_counts.csv and a Camtrap DP export. Random weights name nothing of use: what is checked
is that every answer is one the rules allow, never which fish it names."""

import csv
import json

import pytest
from builders import ROOT, SAMPLES, TOL_FISH, save_tiny_open_clip, save_tree_of_life

from fishcam.app.cli import main
from fishcam.classify.species_list import read_species_list

pytestmark = [pytest.mark.slow, pytest.mark.model]

THRESHOLD = 0.5


def read_csv(path):
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def run_sample(out, *settings):
    args = ["run", "samples/dive_sample.mp4", "--config", "configs/sample.yaml", "--out", str(out), "-q",
            "--set", "render.video=false", "--set", "classify.expert.threshold=1.0",  # the expert: hardly ever sure
            "--set", f"classify.fallback.threshold={THRESHOLD}"]  # fmt: skip
    for setting in settings:
        args += ["--set", setting]
    return main(args)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory, tiny_clip):
    out = tmp_path_factory.mktemp("fallback") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        code = run_sample(
            out, f"classify.fallback.model={tiny_clip}", f"classify.fallback.species_list={SAMPLES / 'species.csv'}"
        )
    assert code == 0
    return out


def lineages():
    """Every name of the list at every rank → (rank, lineage down to it)."""
    found = {}
    for entry in read_species_list(SAMPLES / "species.csv"):
        for rank, i in (("species", 6), ("genus", 5), ("family", 4), ("order", 3)):
            found[entry.lineage[i]] = (rank, entry.lineage[: i + 1])
    return found


def test_every_fallback_call_is_a_species_or_a_rank_that_reached_the_threshold(sample_run):
    calls = read_csv(sample_run / "calls.csv")
    fallback = [c for c in calls if c["origin"] == "fallback"]
    unknown = [c for c in calls if c["origin"] == "unknown"]
    assert fallback
    names = lineages()
    for c in fallback:
        rank, _ = names[c["species"]]  # a name of the list, at one of its ranks
        assert c["rank"] == rank and float(c["score"]) >= THRESHOLD
        assert names[c["candidate"]][0] == "species"  # the best species is kept as the candidate
    for c in unknown:
        assert c["rank"] == "" and float(c["score"]) < THRESHOLD
    assert {c["rank"] for c in fallback} - {"species"}, "no crop rolled up: the test shows nothing"


def test_tracks_and_counts_keep_each_answers_rank(sample_run):
    names = lineages()
    tracks = read_csv(sample_run / "tracks.csv")
    assert list(tracks[0])[-1] == "rank"  # the new column comes last
    for t in tracks:
        if t["species"] != "unknown":
            assert t["rank"] == names[t["species"]][0]
    counted = [t for t in tracks if t["counted"] == "1"]
    expected = {}
    for t in counted:
        expected[(t["species"], t["rank"])] = expected.get((t["species"], t["rank"]), 0) + 1
    counts = read_csv(sample_run / "species_counts.csv")
    assert {(c["species"], c["rank"]): int(c["unique_tracks"]) for c in counts} == expected
    summary = json.loads((sample_run / "summary.json").read_text())
    assert summary["models"]["fallback"]["species"] == 7


def test_the_camtrap_export_gives_each_taxon_its_rank(sample_run, tmp_path):
    out = tmp_path / "export"
    args = ["export", str(sample_run), "--format", "camtrap-dp", "--out", str(out), "-q", "--latitude", "-16.86",
            "--longitude", "145.87", "--start", "2026-05-01T09:30:00+10:00",
            "--taxa", str(SAMPLES / "species.csv")]  # fmt: skip
    assert main(args) == 0
    package = json.loads((out / "camtrap-dp" / "datapackage.json").read_text())
    names = lineages()
    observed = {o["scientificName"] for o in read_csv(out / "camtrap-dp" / "observations.csv")} - {""}
    assert observed and {t["scientificName"] for t in package["taxonomic"]} == observed
    for taxon in package["taxonomic"]:
        rank, lineage = names[taxon["scientificName"]]
        assert taxon["taxonRank"] == rank
        assert taxon["kingdom"] == "Animalia" and taxon.get("order", lineage[3]) == lineage[3]


def test_open_ended_on_the_sample_names_crops_from_the_filtered_tree_of_life(tmp_path, monkeypatch):
    clip = save_tiny_open_clip(tmp_path / "clip768", embed_dim=768)
    tree = save_tree_of_life(tmp_path / "tol", TOL_FISH, dim=768, filler=500)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    code = run_sample(out, f"classify.fallback.model={clip}", f"classify.fallback.open_ended={tree}",
                      "classify.fallback.open_ended_taxa=[Scorpaeniformes, Perciformes]")  # fmt: skip
    assert code == 0
    kept = {"Pterois volitans", "Pterois miles", "Thalassoma lunare", "Dascyllus aruanus",
            "Pterois", "Thalassoma", "Dascyllus", "Scorpaenidae", "Labridae", "Pomacentridae",
            "Scorpaeniformes", "Perciformes"}  # fmt: skip
    calls = read_csv(out / "calls.csv")
    fallback = [c for c in calls if c["origin"] == "fallback"]
    assert fallback and all(c["species"] in kept and float(c["score"]) >= THRESHOLD for c in fallback)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["fallback"]["species"] == 4 and summary["models"]["fallback"]["open_ended"]
