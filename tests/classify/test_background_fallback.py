"""A slow fallback on its worker thread: the frame loop never waits for it."""

import time

import numpy as np
from builders import ColourModel, colour_scene

from fishcam.app.compose import Components
from fishcam.app.run import run
from fishcam.classify.service import FallbackQueue, SpeciesModels
from fishcam.config import load_config
from fishcam.detect.scripted import ScriptedDetector
from fishcam.sources.arrays import ArraySource

RED, GREEN = (0, 0, 255), (0, 255, 0)


class Slow(ColourModel):
    def __init__(self, *args, delay_s=0.3):
        super().__init__(*args)
        self.delay_s = delay_s

    def predict(self, crops_bgr):
        time.sleep(self.delay_s)
        return super().predict(crops_bgr)


def test_worker_answers_later_and_refuses_when_full():
    model = Slow(["a", "b"], {RED: [0.9, 0.1]}, delay_s=0.2)
    worker = FallbackQueue(model, max_pending=2, batch_size=1)
    crop = np.zeros((8, 8, 3), np.uint8)
    crop[:] = RED
    started = time.monotonic()
    accepted = [worker.submit(i, crop) for i in range(5)]
    assert time.monotonic() - started < 0.05  # submitting never waits for the model
    assert accepted.count(True) >= 2 and accepted.count(False) >= 2 and worker.refused >= 2
    worker.wait(5)
    answers = worker.collect()
    assert [key for key, _ in answers] == [i for i, ok in enumerate(accepted) if ok]
    assert np.allclose(answers[0][1], [0.9, 0.1])
    worker.close()


def test_slow_fallback_in_the_background_labels_tracks_without_slowing_frames(tmp_path):
    fish = [
        {"colour": RED, "start": 0, "end": 59, "xy": (10, 20), "v": (3, 0), "wh": (40, 24)},
        {"colour": GREEN, "start": 0, "end": 59, "xy": (250, 120), "v": (-3, 0), "wh": (40, 24)},
    ]
    images, script = colour_scene(fish, frames=60)
    expert = ColourModel(["cod", "hake"], {RED: [0.9, 0.1], GREEN: [0.5, 0.5]})
    fallback = Slow(["Pterois volitans", "Gadus morhua"], {GREEN: [0.8, 0.2]}, delay_s=0.3)
    species = SpeciesModels(expert, fallback, expert_threshold=0.7, fallback_threshold=0.6)
    config = load_config(None, ["render.video=false", "classify.fallback.background=true"])
    started = time.monotonic()
    code, summary = run(ArraySource(images, fps=10.0), config, tmp_path, Components(ScriptedDetector(script), species))
    elapsed = time.monotonic() - started
    assert code == 0
    tracks = (tmp_path / "tracks.csv").read_text().splitlines()[1:]
    assert sorted(line.split(",")[1:4] for line in tracks) == [
        ["Pterois volitans", "0.8000", "fallback"],
        ["cod", "0.9000", "expert"],
    ]
    fallback_calls = summary.figures.calls["fallback"]
    # Done in line, each fallback call would cost 0.3 s of frame loop; in the background they overlap it.
    assert fallback_calls >= 2 and elapsed < 0.3 * fallback_calls + 2.0
    calls = (tmp_path / "calls.csv").read_text().splitlines()
    assert sum(",fallback," in line for line in calls) == fallback_calls


def test_the_worker_runs_below_the_frame_loop_in_cpu_priority():
    import os
    import threading

    seen = []

    class Probe(ColourModel):
        def predict(self, crops_bgr):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return super().predict(crops_bgr)

    worker = FallbackQueue(Probe(["a", "b"], {RED: [0.9, 0.1]}), max_pending=2, batch_size=1)
    worker.submit(0, np.zeros((8, 8, 3), np.uint8))
    worker.wait(5)
    worker.close()
    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen and seen[0] >= min(here + 10, 19)  # nice 10 more than the frame loop (19 is the floor)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == here  # the caller is untouched


def test_live_streams_classify_at_most_the_live_budget_per_frame(tmp_path):
    from fishcam.sources.live import LiveHealth

    class LiveArrays(ArraySource):  # a stream: it keeps live health counters
        health = LiveHealth()
        live = True

    fish = [
        {"colour": RED, "start": 0, "end": 29, "xy": (10 + 70 * i, 20 + 40 * i), "v": (1, 0), "wh": (40, 24)}
        for i in range(3)
    ]
    images, script = colour_scene(fish, frames=30)
    per_frame = {}
    for name, source, budget in (("file", ArraySource, 4), ("live", LiveArrays, 1)):
        expert = ColourModel(["cod", "hake"], {RED: [0.9, 0.1]})
        species = SpeciesModels(expert, None, expert_threshold=0.7, fallback_threshold=0.6)
        config = load_config(None, ["render.video=false", "classify.policy.max_crops_per_frame=4"])
        run(source(images, fps=10.0), config, tmp_path / name, Components(ScriptedDetector(script), species))
        frames = [line.split(",")[0] for line in (tmp_path / name / "calls.csv").read_text().splitlines()[1:]]
        per_frame[name] = max(frames.count(f) for f in set(frames))
        assert per_frame[name] <= budget
    assert per_frame == {"file": 3, "live": 1}  # three new fish at once: a file looks at all, a stream at one
