import numpy as np

from fishcam.classify.ledger import TrackLedger
from fishcam.config import PolicyConfig
from fishcam.types import Detections, Origin, SpeciesCall

POLICY = PolicyConfig(min_box_px=10, min_gap_frames=3, max_crops_per_track=4, settle_votes=2, better_view_ratio=2.0)


def dets(boxes, ids):
    return Detections.build(boxes, track_id=ids)


def test_new_tracks_are_looked_at_then_wait_for_the_gap():
    ledger = TrackLedger(POLICY)
    d = dets([[10, 10, 40, 40], [50, 50, 55, 55], [60, 60, 90, 90]], [1, 2, -1])
    ledger.update(0, 0.0, d)
    assert ledger.select(0, d, 200, 200).tolist() == [0]  # small box and unconfirmed are skipped
    ledger.observe(1, 0, SpeciesCall("unknown", 0.2, Origin.UNKNOWN), 900)
    for frame in (1, 2):
        ledger.update(frame, frame / 10, d)
        assert ledger.select(frame, d, 200, 200).tolist() == []
    ledger.update(3, 0.3, d)
    assert ledger.select(3, d, 200, 200).tolist() == [0]  # still uncertain after the gap


def test_settled_tracks_stop_unless_a_much_better_view_comes():
    ledger = TrackLedger(POLICY)
    small = dets([[10, 10, 40, 40]], [1])
    for frame in range(0, 8, 3):
        ledger.update(frame, 0.0, small)
        if ledger.select(frame, small, 200, 200).size:
            ledger.observe(1, frame, SpeciesCall("cod", 0.9, Origin.EXPERT), 900)
    label, score, origin = ledger.label(1)
    assert (label, origin) == ("cod", "expert") and abs(score - 0.9) < 1e-6
    ledger.update(9, 0.9, small)
    assert ledger.select(9, small, 200, 200).tolist() == []  # settled after 2 agreeing calls
    big = dets([[10, 10, 60, 60]], [1])  # 2500 px² ≥ 2 × 900
    ledger.update(10, 1.0, big)
    assert ledger.select(10, big, 200, 200).tolist() == [0]


def test_edge_boxes_wait_for_a_whole_view():
    ledger = TrackLedger(POLICY)
    edge = dets([[0, 10, 30, 40]], [1])
    ledger.update(0, 0.0, edge)
    assert ledger.select(0, edge, 200, 200).tolist() == []
    for frame in range(1, 6):
        ledger.update(frame, 0.0, edge)
    assert ledger.select(6, edge, 200, 200).tolist() == [0]  # never leaves the edge: look anyway


def test_budget_and_summaries():
    ledger = TrackLedger(POLICY.model_copy(update={"recheck_s": 0.0}))
    d = dets([[10, 10, 40, 40]], [4])
    for frame in range(0, 40):
        ledger.update(frame, frame * 0.5, d)
        if ledger.select(frame, d, 200, 200).size:
            ledger.observe(4, frame, SpeciesCall("unknown", 0.1, Origin.UNKNOWN), 900)
    assert ledger.select(40, d, 200, 200).tolist() == []  # budget of 4 looks spent
    assert ledger.close_stale(45, max_gap_frames=10) == []
    (summary,) = ledger.close_stale(60, max_gap_frames=10)
    assert (summary.track_id, summary.species, summary.observations) == (4, "unknown", 4)
    assert (summary.first_frame, summary.last_frame, summary.detections) == (0, 39, 40)
    assert summary.last_time_s == 19.5
    assert len(ledger) == 0


def test_count_only_tracks_are_unclassified():
    ledger = TrackLedger(POLICY, classifying=False)
    ledger.update(0, 0.0, dets([[1, 1, 30, 30]], [1]))
    (summary,) = ledger.close_all()
    assert (summary.species, summary.origin) == ("unclassified", Origin.NONE)
    assert np.array_equal(summary.frames, (0,))


def test_frame_budget_serves_new_tracks_first_then_bigger_views():
    ledger = TrackLedger(PolicyConfig(min_box_px=10, min_gap_frames=0, max_crops_per_frame=2))
    d = dets([[10, 10, 40, 40], [50, 50, 100, 100], [120, 120, 140, 140]], [1, 2, 3])
    ledger.update(0, 0.0, d)
    assert ledger.select(0, d, 200, 200).tolist() == [1, 0]  # biggest first, two at most
    ledger.observe(2, 0, SpeciesCall("cod", 0.9, Origin.EXPERT), 2500)
    ledger.observe(1, 0, SpeciesCall("cod", 0.9, Origin.EXPERT), 900)
    ledger.update(1, 0.1, d)
    assert ledger.select(1, d, 200, 200).tolist()[0] == 2  # the track not yet looked at goes first


def test_looks_go_on_through_a_tracks_life_and_a_disagreeing_look_unsettles_it():
    # 10 fps; settled after two agreeing looks, then re-checked every 2 s, not frozen.
    ledger = TrackLedger(POLICY.model_copy(update={"recheck_s": 2.0}))
    d = dets([[10, 10, 40, 40]], [1])
    looked = []
    for frame in range(0, 100):
        ledger.update(frame, frame / 10, d)
        if ledger.select(frame, d, 200, 200).size:
            species = "cod" if frame < 50 else "hake"  # the track took another fish at 5 s
            ledger.observe(1, frame, SpeciesCall(species, 0.9, Origin.EXPERT), 900)
            looked.append(frame)
    # Two looks settle it (0, 3); re-checks every 20 frames; the first "hake" (63) unsettles
    # it, so it is looked at again after the gap (66) until two agree again.
    assert looked == [0, 3, 23, 43, 63, 66, 86]
    (summary,) = ledger.close_all()
    assert [look.frame for look in summary.looks] == looked
    assert [look.call.label for look in summary.looks] == ["cod"] * 4 + ["hake"] * 3


def test_a_box_covered_by_another_fish_waits_for_a_clear_view():
    ledger = TrackLedger(POLICY)
    d = dets([[10, 10, 50, 50], [20, 20, 60, 60], [120, 120, 150, 150]], [1, 2, 3])
    ledger.update(0, 0.0, d)
    assert ledger.select(0, d, 200, 200).tolist() == [2]  # 1 and 2 overlap by over half
    (summary, *_) = ledger.close_all()
    assert summary.boxes.shape == (1, 4) and summary.confidences.tolist() == [1.0]


def test_a_recheck_costs_a_classification_only_when_the_view_may_have_changed():
    # 10 fps, settled after two looks, re-checks due every 2 s. Colours stay the same until
    # frame 50, then change; the track is missed for frames 70-74.
    red, blue = np.eye(8, dtype=np.float32)[0], np.eye(8, dtype=np.float32)[5]
    ledger = TrackLedger(POLICY.model_copy(update={"recheck_s": 2.0}))
    d = dets([[10, 10, 40, 40]], [1])
    looked = []
    for frame in [*range(0, 70), *range(75, 100)]:
        colour = red if frame < 50 else blue
        ledger.update(frame, frame / 10, d)
        if ledger.select(frame, d, 200, 200, lambda row, c=colour: c).size:
            ledger.observe(1, frame, SpeciesCall("cod", 0.9, Origin.EXPERT), 900, colour)
            looked.append(frame)
    # 0, 3 settle it; the re-checks at 23 and 43 see the same colours and cost nothing; at 63
    # the colours have changed (looked); then the gap at 70-74 makes the re-check at 83 look.
    assert looked == [0, 3, 63, 83]
