"""The evidence rules: which tracks count as fish, and the reason for each that does not."""

from dataclasses import replace

import numpy as np

from fishcam.classify.ledger import summarize
from fishcam.config import CountConfig
from fishcam.counts import species_counts
from fishcam.evidence import judge

RULES = CountConfig()  # the defaults a reviewer is asked to accept


def scripted(frames, move_px=3.0, confidence=0.8, fps=25.0, species="cod"):
    frames = tuple(frames)
    boxes = np.array([[100 + move_px * i, 100, 160 + move_px * i, 140] for i in range(len(frames))], np.float32)
    t = summarize(1, frames, tuple(f / fps for f in frames), boxes, np.full(len(frames), confidence, np.float32),
                  np.zeros(len(frames), bool), ())  # fmt: skip
    return replace(t, species=species)


def test_a_fish_seen_long_enough_moving_and_detected_surely_counts():
    judged = judge(scripted(range(40)), RULES)
    assert judged.counted and judged.reason == ""


def test_each_rule_says_why_a_track_is_not_counted():
    once = judge(scripted([7]), RULES)
    assert not once.counted and once.reason == "1 detections, fewer than 4"
    brief = judge(scripted(range(8)), RULES)  # 8 frames at 25 fps: 0.28 s
    assert not brief.counted and brief.reason == "seen for 0.28 s, under 0.5 s"
    faint = judge(scripted(range(40), confidence=0.28), RULES)
    assert not faint.counted and faint.reason == "mean detection confidence 0.28, under 0.4"
    rock = judge(scripted(range(40), move_px=0.0), RULES)
    assert not rock.counted and rock.reason.startswith("static: moved 0%")
    assert judge(scripted(range(40), move_px=0.0), CountConfig(min_motion=0)).counted


def test_counts_and_max_n_come_from_counted_tracks_only():
    fish = judge(scripted(range(40)), RULES)
    rock = judge(scripted(range(40), move_px=0.0), RULES)
    (count,) = species_counts([fish, rock])
    assert (count.species, count.unique, count.max_n) == ("cod", 1, 1)
    assert species_counts([rock]) == []
