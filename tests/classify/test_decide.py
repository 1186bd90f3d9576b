import numpy as np

from fishcam.classify.decide import expert_call, fallback_call, unsure_call, vote
from fishcam.types import Origin, SpeciesCall

LABELS = ["cod", "hake", "ling"]


def test_expert_confident_or_not():
    call = expert_call(np.array([0.1, 0.8, 0.1]), LABELS, 0.6)
    assert (call.label, call.origin, call.candidate) == ("hake", Origin.EXPERT, "hake")
    assert abs(call.score - 0.8) < 1e-6
    assert expert_call(np.array([0.4, 0.35, 0.25]), LABELS, 0.6) is None


def test_fallback_unsure_is_unknown_with_candidate():
    call = fallback_call(np.array([0.3, 0.3, 0.4]), LABELS, 0.5)
    assert (call.label, call.origin, call.candidate) == ("unknown", Origin.UNKNOWN, "ling")
    assert fallback_call(np.array([0.1, 0.1, 0.8]), LABELS, 0.5).origin is Origin.FALLBACK
    assert unsure_call(np.array([0.5, 0.2, 0.3]), LABELS).candidate == "cod"


def test_vote_majority_then_score_and_origin():
    calls = [
        SpeciesCall("cod", 0.9, Origin.EXPERT),
        SpeciesCall("cod", 0.7, Origin.FALLBACK),
        SpeciesCall("cod", 0.8, Origin.FALLBACK),
        SpeciesCall("hake", 0.99, Origin.EXPERT),
    ]
    label, score, origin, votes = vote(calls)
    assert (label, origin, votes) == ("cod", Origin.FALLBACK, 3)
    assert abs(score - 0.8) < 1e-9
    # A tie goes to the higher summed score.
    assert vote([SpeciesCall("cod", 0.6, Origin.EXPERT), SpeciesCall("hake", 0.9, Origin.EXPERT)])[0] == "hake"
    # Mostly unsure stays unknown.
    unsure = [SpeciesCall("unknown", 0.2, Origin.UNKNOWN)] * 2 + [SpeciesCall("cod", 0.4, Origin.FALLBACK)]
    assert vote(unsure)[:1] == ("unknown",)
    assert vote([]) == ("unknown", 0.0, Origin.UNKNOWN, 0)


def test_route_sends_an_out_of_set_crop_on_however_confident_the_expert_is():
    from fishcam.classify.decide import OpenSet, rejected_as_out_of_set, route

    sure = np.array([0.02, 0.97, 0.01])
    inside, outside = OpenSet(score=0.71, threshold=0.55), OpenSet(score=0.12, threshold=0.55)
    # In the set (or no check at all): the confident expert decides, as before.
    for verdict in (inside, None):
        call = route(sure, LABELS, 0.6, has_fallback=True, open_set=verdict)
        assert (call.label, call.origin) == ("hake", Origin.EXPERT)
    assert OpenSet(0.55, 0.55).in_set  # the threshold itself is in the set
    # Out of the set: the fallback decides; without one, unknown keeping the expert's best guess.
    assert route(sure, LABELS, 0.6, has_fallback=True, open_set=outside) is None
    call = route(sure, LABELS, 0.6, has_fallback=False, open_set=outside)
    assert (call.label, call.origin, call.candidate) == ("unknown", Origin.UNKNOWN, "hake")
    assert abs(call.score - 0.97) < 1e-6
    # Unsure and out of the set: routed as unsure; only a confident call counts as taken by the check.
    unsure = np.array([0.4, 0.35, 0.25])
    assert route(unsure, LABELS, 0.6, has_fallback=True, open_set=outside) is None
    assert rejected_as_out_of_set(sure, 0.6, outside)
    assert not rejected_as_out_of_set(unsure, 0.6, outside)
    assert not rejected_as_out_of_set(sure, 0.6, inside) and not rejected_as_out_of_set(sure, 0.6, None)
    # No expert: as before.
    assert route(None, (), 0.6, has_fallback=True, open_set=outside) is None
