"""The whole pipeline with a scripted detector and scripted species models on a scene with exact
truth: who decides (expert, fallback, unknown), and exact counts and MaxN."""

import csv
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from builders import ColourModel, colour_scene

import fishcam.app.run
import fishcam.pipeline
from fishcam.app.compose import Components
from fishcam.app.run import run
from fishcam.classify.service import SpeciesModels
from fishcam.config import PolicyConfig, load_config
from fishcam.detect.scripted import ScriptedDetector
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
    species = SpeciesModels(expert, fallback, expert_threshold=0.7, fallback_threshold=0.6)
    config = load_config(None, ["render.video=false"])
    code, summary = run(ArraySource(images, fps=10.0), config, tmp_path, Components(ScriptedDetector(script), species))
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
    calls = summary.figures.calls
    assert calls["expert"] > 0 and calls["fallback"] > 0 and calls["unknown"] > 0


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

    from fishcam.app.compose import build_species_models
    from fishcam.models.expert_spec import PUBLISHED_LABELS

    manifest = tmp_path / "expert.json"
    manifest.write_text(json.dumps({
        "architecture": "torchvision:convnext_tiny", "head": "classifier.2", "weights": str(convnext_checkpoint),
        "labels": list(PUBLISHED_LABELS), "fallback_threshold": 0.83,
    }))  # fmt: skip
    species, described = build_species_models(load_config(None, [f"classify.expert.weights={manifest}"]))
    assert species.expert_threshold == 0.83 == described["expert"]["threshold"]
    species, _ = build_species_models(
        load_config(None, [f"classify.expert.weights={manifest}", "classify.expert.threshold=0.5"])
    )
    assert species.expert_threshold == 0.5
    species, _ = build_species_models(load_config(None, [f"classify.expert.weights={convnext_checkpoint}"]))
    assert species.expert_threshold == 0.6


class SlowModel(ColourModel):
    """A ColourModel that takes a random while and notes the thread it ran on."""

    def __init__(self, *args, seed: int = 0) -> None:
        super().__init__(*args)
        self.rng = np.random.default_rng(seed)
        self.threads: set[int] = set()

    def predict(self, crops_bgr):
        self.threads.add(threading.get_ident())
        time.sleep(float(self.rng.uniform(0, 0.05)))
        return super().predict(crops_bgr)


def run_scene(out, lag, seed):
    images, script = colour_scene(FISH, frames=60)
    expert = SlowModel(["cod", "hake"], {RED: [0.9, 0.1], GREEN: [0.55, 0.45], BLUE: [0.5, 0.5]}, seed=seed)
    fallback = ColourModel(["Pterois volitans", "Gadus morhua"], {GREEN: [0.8, 0.2], BLUE: [0.45, 0.55]})
    species = SpeciesModels(expert, fallback, expert_threshold=0.7, fallback_threshold=0.6)
    config = load_config(None, ["render.video=false", "classify.policy.min_gap_frames=4"])
    settings = fishcam.app.run.LoopSettings
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fishcam.app.run, "LoopSettings", lambda **kw: settings(**{**kw, "answer_lag_frames": lag}))
        code, summary = run(ArraySource(images, fps=10.0), config, out, Components(ScriptedDetector(script), species))
    assert code == 0
    return summary, expert


def test_species_calls_run_beside_the_frame_loop_and_decide_as_if_answered_at_once(tmp_path):
    """The expert works on its own thread and its answers are taken a fixed number of frames
    later: whatever its speed, the run decides exactly what answering at once decides."""
    at_once, _ = run_scene(tmp_path / "at-once", lag=0, seed=1)
    lagged, expert = run_scene(tmp_path / "lagged", lag=4, seed=2)
    assert threading.get_ident() not in expert.threads
    for name in ("tracks.csv", "species_counts.csv"):
        assert (tmp_path / "lagged" / name).read_text() == (tmp_path / "at-once" / name).read_text()
    looks = sorted(map(tuple, (r.values() for r in read_csv(tmp_path / "at-once" / "calls.csv"))))
    assert sorted(map(tuple, (r.values() for r in read_csv(tmp_path / "lagged" / "calls.csv")))) == looks
    assert at_once.figures == replace(lagged.figures, processing_s=at_once.figures.processing_s,
                                      processing_fps=at_once.figures.processing_fps)  # fmt: skip
    # A lag longer than the policy's gap between looks would change decisions: it is capped.
    assert (
        fishcam.pipeline.Pipeline(
            None, None, None, PolicyConfig(min_gap_frames=4), fishcam.pipeline.LoopSettings(answer_lag_frames=9)
        ).lag
        == 4
    )


def test_a_species_model_error_ends_the_run_with_its_message(tmp_path):
    class Broken(ColourModel):
        def predict(self, crops_bgr):
            raise RuntimeError("expert exploded")

    images, script = colour_scene(FISH, frames=60)
    species = SpeciesModels(Broken(["cod"], {}), None, expert_threshold=0.7, fallback_threshold=0.6)
    with pytest.raises(RuntimeError, match="expert exploded"):
        run(ArraySource(images, fps=10.0), load_config(None, ["render.video=false"]), tmp_path,
            Components(ScriptedDetector(script), species))  # fmt: skip
    assert (tmp_path / "summary.json").exists() and (tmp_path / "tracks.csv").exists()


def test_on_a_cpu_two_species_workers_split_the_torch_threads(tmp_path):
    import torch

    class Recording(ColourModel):
        def __init__(self, *args):
            super().__init__(*args)
            self.seen = set()

        def predict(self, crops_bgr):
            self.seen.add((threading.get_ident(), torch.get_num_threads()))
            time.sleep(0.01)
            return super().predict(crops_bgr)

    before = torch.get_num_threads()
    images, script = colour_scene(FISH, frames=60)
    expert = Recording(["cod", "hake"], {RED: [0.9, 0.1], GREEN: [0.55, 0.45], BLUE: [0.5, 0.5]})
    species = SpeciesModels(expert, None, expert_threshold=0.7, fallback_threshold=0.6)
    code, _ = run(ArraySource(images, fps=10.0), load_config(None, ["render.video=false"]), tmp_path,
                  Components(ScriptedDetector(script), species))  # fmt: skip
    assert code == 0
    assert {threads for _, threads in expert.seen} == {max(1, before // 2)}
    assert threading.get_ident() not in {ident for ident, _ in expert.seen}
    assert torch.get_num_threads() == before  # the frame loop's (and the detector's) count is untouched
