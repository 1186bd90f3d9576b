"""The whole pipeline with a scripted detector and scripted species models on a scene with exact
truth: who decides (expert, fallback, unknown), and exact counts and MaxN."""

import csv

import pytest
from builders import ColourModel, colour_scene

from fishcam.classify.caller import SpeciesCaller
from fishcam.config import load_config
from fishcam.detect.scripted import ScriptedDetector
from fishcam.run import Components, run
from fishcam.sources.arrays import ArraySource

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)
FISH = [
    {"colour": RED, "start": 0, "end": 59, "xy": (10, 20), "v": (3, 0), "wh": (40, 24)},
    {"colour": RED, "start": 10, "end": 40, "xy": (20, 70), "v": (4, 0), "wh": (40, 24)},
    {"colour": GREEN, "start": 5, "end": 50, "xy": (250, 120), "v": (-3, 0), "wh": (40, 24)},
    {"colour": BLUE, "start": 20, "end": 59, "xy": (30, 180), "v": (2, 0), "wh": (40, 24)},
]


def read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def scripted_run(tmp_path):
    images, script = colour_scene(FISH, frames=60)
    expert = ColourModel(["cod", "hake"], {RED: [0.9, 0.1], GREEN: [0.55, 0.45], BLUE: [0.5, 0.5]})
    fallback = ColourModel(["Pterois volitans", "Gadus morhua"], {GREEN: [0.8, 0.2], BLUE: [0.45, 0.55]})
    caller = SpeciesCaller(expert, fallback, expert_threshold=0.7, fallback_threshold=0.6)
    config = load_config(None, ["render.video=false"])
    code, summary = run(ArraySource(images, fps=10.0), config, tmp_path, Components(ScriptedDetector(script), caller))
    return code, summary, tmp_path, expert, fallback


def test_each_track_gets_one_species_from_the_model_that_decided(scripted_run):
    code, summary, out, expert, fallback = scripted_run
    assert code == 0
    tracks = sorted(read_csv(out / "tracks.csv"), key=lambda r: int(r["first_frame"]))
    decided = [(r["species"], r["origin"], r["first_frame"], r["last_frame"]) for r in tracks]
    # ByteTrack confirms a new track on its second detection: tracks start one frame after the fish.
    assert decided == [
        ("cod", "expert", "1", "59"),
        ("Pterois volitans", "fallback", "6", "50"),
        ("cod", "expert", "11", "40"),
        ("unknown", "unknown", "21", "59"),
    ]
    # The fallback only ever saw crops the expert was unsure about, and not every frame was classified.
    assert fallback.crops_seen < expert.crops_seen < 60
    assert summary["calls"]["expert"] > 0 and summary["calls"]["fallback"] > 0 and summary["calls"]["unknown"] > 0


def test_counts_and_max_n_are_exact(scripted_run):
    _, _, out, _, _ = scripted_run
    counts = {r["species"]: r for r in read_csv(out / "species_counts.csv")}
    assert set(counts) == {"cod", "Pterois volitans", "unknown"}
    cod = counts["cod"]
    assert (cod["unique_tracks"], cod["max_n"], cod["max_n_frame"], cod["max_n_time_s"]) == ("2", "2", "11", "1.100")
    assert (cod["first_seen_s"], cod["last_seen_s"]) == ("0.100", "5.900")
    assert (counts["Pterois volitans"]["unique_tracks"], counts["Pterois volitans"]["max_n"]) == ("1", "1")
    assert counts["unknown"]["max_n_frame"] == "21"


def test_expert_threshold_comes_from_the_manifest_unless_set(tmp_path, convnext_checkpoint):
    import json

    from fishcam.models.expert_spec import PUBLISHED_LABELS
    from fishcam.run import build_caller

    manifest = tmp_path / "expert.json"
    manifest.write_text(json.dumps({
        "architecture": "torchvision:convnext_tiny", "head": "classifier.2", "weights": str(convnext_checkpoint),
        "labels": list(PUBLISHED_LABELS), "fallback_threshold": 0.83,
    }))  # fmt: skip
    caller, described = build_caller(load_config(None, [f"classify.expert.weights={manifest}"]))
    assert caller.expert_threshold == 0.83 == described["expert"]["threshold"]
    caller, _ = build_caller(
        load_config(None, [f"classify.expert.weights={manifest}", "classify.expert.threshold=0.5"])
    )
    assert caller.expert_threshold == 0.5
    caller, _ = build_caller(load_config(None, [f"classify.expert.weights={convnext_checkpoint}"]))
    assert caller.expert_threshold == 0.6
