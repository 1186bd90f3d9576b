"""The offline pass on scripted tracks with exact truth: trim, cut, join, fill in."""

import numpy as np
import pytest

from fishcam.classify.ledger import summarize
from fishcam.config import OfflineConfig
from fishcam.track.refine import Geometry, refine, trim
from fishcam.types import Look, Origin, SpeciesCall

FPS = 25.0
GEOMETRY = Geometry(width=640, height=480, fps=FPS)
CONFIG = OfflineConfig()
RED, BLUE = np.eye(72, dtype=np.float32)[0], np.eye(72, dtype=np.float32)[40]  # colours with nothing in common


def track(track_id, frames, centre_at, size=60.0, confidence=0.9, looks=()):
    """A scripted track: a ``size`` box centred at ``centre_at(frame)`` on each of ``frames``."""
    frames = tuple(int(f) for f in frames)
    centres = np.array([centre_at(f) for f in frames], np.float32)
    half = size / 2
    boxes = np.concatenate([centres - half, centres + half], axis=1).astype(np.float32)
    conf = np.asarray(confidence if np.ndim(confidence) else [confidence] * len(frames), np.float32)
    return summarize(
        track_id, frames, tuple(f / FPS for f in frames), boxes, conf, np.zeros(len(frames), bool), tuple(looks),
        online_ids=(track_id,),
    )  # fmt: skip


def look(frame, species, colour=None, score=0.95):
    return Look(frame, 3600.0, SpeciesCall(species, score, Origin.EXPERT, species), colour)


def test_low_confidence_tails_are_trimmed_and_a_track_with_no_sure_box_is_kept_whole():
    confidence = [0.3, 0.3, 0.8, 0.9, 0.8, 0.7, 0.6, 0.3, 0.28, 0.27]
    t = track(1, range(10), lambda f: (100 + 5 * f, 200), confidence=confidence)
    trimmed = trim(t, 0.5)
    assert trimmed.frames == (2, 3, 4, 5, 6) and trimmed.detections == 5
    assert trimmed.first_time_s == 2 / FPS
    faint = track(2, range(5), lambda f: (100, 100), confidence=0.3)
    assert trim(faint, 0.5) is faint


def test_a_track_that_took_another_fish_after_a_gap_is_cut_there():
    # Fish 1 (cod) leaves at frame 40; fish 2 (hake) appears nearby at frame 51 and inherits the track.
    frames = [*range(0, 41), *range(51, 91)]
    looks = [look(f, "cod", RED) for f in (5, 10, 15)] + [look(f, "hake", BLUE) for f in (60, 65, 70)]
    t = track(7, frames, lambda f: (300 + 2 * f, 200), looks=looks)
    result = refine([t], GEOMETRY, CONFIG)
    first, second = result.tracks
    assert (first.species, first.first_frame, first.last_frame) == ("cod", 0, 40)
    assert (second.species, second.first_frame, second.last_frame) == ("hake", 51, 90)
    assert first.track_id == 7 and second.track_id == 8 and second.online_ids == (7,)
    assert result.owner[(7, 40)] == 7 and result.owner[(7, 51)] == 8
    assert not first.interpolated.any() and not second.interpolated.any()  # no box across the change


def test_colour_alone_cuts_when_no_species_says_otherwise():
    frames = range(0, 80)
    looks = [look(f, "unknown", RED) for f in (5, 10, 15)] + [look(f, "unknown", BLUE) for f in (50, 55, 60)]
    looks = [Look(x.frame, x.area, SpeciesCall("unknown", 0.2, Origin.UNKNOWN), x.appearance) for x in looks]
    result = refine([track(3, frames, lambda f: (300, 200))], GEOMETRY, CONFIG)
    assert len(result.tracks) == 1  # no looks: nothing says two fish
    result = refine([track(3, frames, lambda f: (300 + (40 if f >= 33 else 0), 200), looks=looks)], GEOMETRY, CONFIG)
    assert [(t.first_frame, t.last_frame) for t in result.tracks] == [(0, 32), (33, 79)]  # at the jump


def test_a_crossing_that_swapped_identities_is_cut_at_the_crossing_and_each_fish_rejoined():
    # Fish A (cod, red) swims right, fish B (hake, blue) left; they cross at frame 50, where the
    # tracker swapped them: track 1 follows A then B, track 2 B then A.
    def a(f):
        return (100 + 4 * f, 200)

    def b(f):
        return (500 - 4 * f, 210)

    frames = range(0, 100)
    cod_then_hake = [look(f, "cod", RED) for f in (10, 20, 30)] + [look(f, "hake", BLUE) for f in (70, 80, 90)]
    hake_then_cod = [look(f, "hake", BLUE) for f in (10, 20, 30)] + [look(f, "cod", RED) for f in (70, 80, 90)]
    t1 = track(1, frames, lambda f: a(f) if f < 50 else b(f), looks=cod_then_hake)
    t2 = track(2, frames, lambda f: b(f) if f < 50 else a(f), looks=hake_then_cod)
    result = refine([t1, t2], GEOMETRY, CONFIG)
    assert len(result.tracks) == 2
    by_species = {t.species: t for t in result.tracks}
    cod, hake = by_species["cod"], by_species["hake"]
    assert cod.frames == tuple(frames) and hake.frames == tuple(frames)
    # Each final track follows one fish: its boxes are that fish's path on every frame.
    cod_x = (cod.boxes[:, 0] + cod.boxes[:, 2]) / 2
    assert np.allclose(cod_x, [a(f)[0] for f in frames])
    assert set(cod.online_ids) == {1, 2} and cod.votes == 6


def test_fragments_of_a_still_fish_are_joined_and_the_gap_filled_in():
    # The fish stops at (320, 240) and the detector loses it for 2 s, then it swims on.
    first = track(1, range(0, 30), lambda f: (200 + 4 * min(f, 30), 240), looks=[look(10, "cod", RED)])
    second = track(5, range(80, 120), lambda f: (320 + 3 * (f - 80), 240), looks=[look(100, "cod", RED)])
    result = refine([first, second], GEOMETRY, CONFIG)
    (fish,) = result.tracks
    assert fish.track_id == 1 and fish.online_ids == (1, 5) and fish.frames == tuple(range(0, 120))
    assert fish.interpolated.sum() == 50 and fish.detections == 70
    assert result.owner[(5, 80)] == 1


@pytest.mark.parametrize("species_b", ["hake", "cod"])
def test_a_fish_leaving_at_the_edge_is_never_joined_to_one_entering_there(species_b):
    # Another species, or one of its own kind alike in colour: a video cannot tell the same
    # fish back from another, so these are two visits, never boxes made up while out of view.
    leaving = track(1, range(0, 30), lambda f: (560 + 2 * f, 240), looks=[look(5, "cod", RED), look(10, "cod", RED)])
    colour = BLUE if species_b == "hake" else RED
    entering = track(
        2,
        range(40, 70),
        lambda f: (620 - 2 * (f - 40), 250),
        looks=[look(50, species_b, colour), look(55, species_b, colour)],
    )
    result = refine([leaving, entering], GEOMETRY, CONFIG)
    assert [t.species for t in result.tracks] == ["cod", species_b]
    assert not any(t.interpolated.any() for t in result.tracks)


def test_stride_frames_get_interpolated_boxes():
    t = track(4, range(0, 30, 3), lambda f: (100 + 3 * f, 100))
    (fish,) = refine([t], Geometry(640, 480, FPS, stride=3), CONFIG).tracks
    assert fish.frames == tuple(range(0, 28))
    assert fish.interpolated.tolist() == [f % 3 != 0 for f in range(28)]
    centre = (fish.boxes[:, 0] + fish.boxes[:, 2]) / 2
    assert np.allclose(centre, [100 + 3 * f for f in range(28)])
    assert fish.detections == 10  # interpolated boxes are not detections


def test_two_fish_side_by_side_stay_two():
    a = track(1, range(0, 60), lambda f: (200 + 2 * f, 200), looks=[look(10, "cod", RED)])
    b = track(2, range(0, 60), lambda f: (200 + 2 * f, 280), looks=[look(10, "cod", RED)])
    assert len(refine([a, b], GEOMETRY, CONFIG).tracks) == 2


def test_an_expert_that_changes_its_mind_on_one_fish_does_not_cut_it():
    # The same colours throughout, no gap, no crossing: the calls alone are not evidence of two fish.
    looks = [look(f, "cod", RED) for f in (5, 10, 15)] + [look(f, "hake", RED) for f in (50, 55, 60)]
    result = refine([track(9, range(80), lambda f: (200 + 2 * f, 200), looks=looks)], GEOMETRY, CONFIG)
    (fish,) = result.tracks
    assert fish.votes == 3 and fish.frames == tuple(range(80))
    no_colour = [Look(x.frame, x.area, x.call) for x in looks]
    unsure = track(9, range(80), lambda f: (200 + 2 * f, 200), looks=no_colour)
    assert len(refine([unsure], GEOMETRY, CONFIG).tracks) == 1
