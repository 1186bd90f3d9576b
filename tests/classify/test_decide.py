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
