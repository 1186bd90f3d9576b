"""The roll-up from species to genus, family or order, on scripted scores: a crop no species is
sure of is named at the lowest rank that is, and a track whose calls split within a genus is
that genus. Pure."""

import numpy as np
import pytest

from fishcam.classify.decide import fallback_call, track_vote
from fishcam.classify.species_list import parse_species_list
from fishcam.classify.taxonomy import Taxonomy
from fishcam.counts import species_counts
from fishcam.types import Origin, SpeciesCall, TrackSummary

LIST = parse_species_list(
    "scientific_name,common_name,kingdom,phylum,order,family,genus\n"
    "Pterois volitans,red lionfish,Animalia,Chordata,Scorpaeniformes,Scorpaenidae,Pterois\n"
    "Pterois miles,devil firefish,Animalia,Chordata,Scorpaeniformes,Scorpaenidae,Pterois\n"
    "Scorpaena porcus,black scorpionfish,Animalia,Chordata,Scorpaeniformes,Scorpaenidae,Scorpaena\n"
    "Thalassoma lunare,moon wrasse,Animalia,Chordata,Perciformes,Labridae,Thalassoma\n"
    "Labroides dimidiatus,cleaner wrasse,Animalia,Chordata,Perciformes,Labridae,Labroides\n"
    "Dascyllus aruanus,humbug damselfish,Animalia,Chordata,Perciformes,Pomacentridae,Dascyllus\n"
)
LABELS = [e.label for e in LIST]
TAXONOMY = Taxonomy([e.lineage for e in LIST], [e.rank for e in LIST])


def call(probs, threshold=0.5, roll_up=True):
    return fallback_call(np.array(probs), LABELS, threshold, TAXONOMY, roll_up)


def test_a_sure_species_is_named_as_it_is():
    c = call([0.7, 0.1, 0.05, 0.05, 0.05, 0.05])
    assert (c.label, c.rank, c.origin) == ("Pterois volitans", "species", Origin.FALLBACK)
    assert c.score == pytest.approx(0.7) and c.lineage[-2:] == ("Pterois", "Pterois volitans")


def test_two_unsure_species_of_one_genus_are_that_genus():
    c = call([0.3, 0.3, 0.1, 0.1, 0.1, 0.1])
    assert (c.label, c.rank, c.origin, c.candidate) == ("Pterois", "genus", Origin.FALLBACK, "Pterois volitans")
    assert c.score == pytest.approx(0.6)
    assert c.lineage == ("Animalia", "Chordata", "", "Scorpaeniformes", "Scorpaenidae", "Pterois")


def test_then_the_family_then_the_order():
    c = call([0.2, 0.1, 0.25, 0.15, 0.15, 0.15])  # Pterois 0.3, Scorpaenidae 0.55
    assert (c.label, c.rank) == ("Scorpaenidae", "family") and c.score == pytest.approx(0.55)
    c = call([0.1, 0.05, 0.05, 0.3, 0.25, 0.25])  # Labridae 0.55 before Perciformes 0.8
    assert (c.label, c.rank) == ("Labridae", "family")
    c = call([0.1, 0.05, 0.05, 0.25, 0.2, 0.35], threshold=0.7)  # Labridae 0.45; Perciformes 0.8
    assert (c.label, c.rank) == ("Perciformes", "order") and c.score == pytest.approx(0.8)


def test_nothing_sure_at_any_rank_is_unknown_never_a_guess():
    c = call([0.2, 0.1, 0.2, 0.2, 0.1, 0.2], threshold=0.65)  # orders 0.5 / 0.5
    assert (c.label, c.rank, c.origin, c.candidate) == ("unknown", "", Origin.UNKNOWN, "Pterois volitans")


def test_roll_up_off_answers_species_or_unknown():
    assert call([0.3, 0.3, 0.1, 0.1, 0.1, 0.1], roll_up=False).label == "unknown"
    sure = call([0.7, 0.1, 0.05, 0.05, 0.05, 0.05], roll_up=False)
    assert (sure.label, sure.rank, sure.lineage) == ("Pterois volitans", "species", ())


def test_homonym_genera_in_two_kingdoms_stay_apart():
    both = parse_species_list(
        "scientific_name,kingdom,family,genus\n"
        "Morus bassanus,Animalia,Sulidae,Morus\nMorus alba,Plantae,Moraceae,Morus\n"
    )
    taxonomy = Taxonomy([e.lineage for e in both], [e.rank for e in both])
    c = fallback_call(np.array([0.45, 0.45]), [e.label for e in both], 0.5, taxonomy)
    assert c.label == "unknown"  # never "Morus": a gannet and a mulberry are not one genus


def test_labels_without_lineage_never_roll_up():
    plain = parse_species_list("Blue tang\nYellow tang\n")
    taxonomy = Taxonomy([e.lineage for e in plain], [e.rank for e in plain])
    assert fallback_call(np.array([0.5, 0.5]), [e.label for e in plain], 0.6, taxonomy).label == "unknown"


# ---- a track's vote ----------------------------------------------------------------------------


def species(name, score=0.8, origin=Origin.FALLBACK):
    entry = LIST[LABELS.index(name)]
    return SpeciesCall(name, score, origin, name, "species", entry.lineage)


def test_a_track_split_between_two_species_of_one_genus_is_that_genus():
    calls = [species("Pterois volitans", 0.9), species("Pterois miles", 0.6), species("Pterois volitans", 0.5),
             species("Pterois miles", 0.8)]  # fmt: skip
    voted = track_vote(calls)
    assert (voted.label, voted.rank, voted.votes, voted.origin) == ("Pterois", "genus", 4, Origin.FALLBACK)
    assert voted.score == pytest.approx(0.7)


def test_a_clear_majority_keeps_its_species():
    calls = [species("Pterois volitans"), species("Pterois volitans"), species("Pterois miles")]
    voted = track_vote(calls)
    assert (voted.label, voted.rank, voted.votes) == ("Pterois volitans", "species", 2)


def test_a_split_across_genera_rolls_up_to_the_family_and_no_further_than_a_majority():
    calls = [species("Pterois volitans"), species("Scorpaena porcus"), species("Pterois miles"),
             species("Thalassoma lunare")]  # fmt: skip
    voted = track_vote(calls)  # Pterois 2 of 4 (not more than half); Scorpaenidae 3 of 4
    assert (voted.label, voted.rank, voted.votes) == ("Scorpaenidae", "family", 3)


def test_rolled_up_crop_calls_and_species_calls_of_the_genus_vote_together():
    genus_call = call([0.3, 0.3, 0.1, 0.1, 0.1, 0.1])
    voted = track_vote([genus_call, species("Pterois volitans"), species("Pterois miles")])
    assert (voted.label, voted.rank) == ("Pterois", "genus")


def test_unknown_majority_stays_unknown_and_the_expert_never_rolls_up():
    unsure = SpeciesCall("unknown", 0.2, Origin.UNKNOWN)
    assert track_vote([unsure, unsure, species("Pterois volitans")]).label == "unknown"
    expert = [SpeciesCall("cod", 0.9, Origin.EXPERT), SpeciesCall("hake", 0.8, Origin.EXPERT)]
    voted = track_vote(expert)
    assert (voted.label, voted.rank) == ("cod", "")


# ---- counts at each answer's rank ----------------------------------------------------------------


def track(track_id, name, rank, frames):
    return TrackSummary(track_id, name, 0.7, Origin.FALLBACK, frames[0], frames[-1], frames[0] / 10, frames[-1] / 10,
                        len(frames), 3, 3, frames=tuple(frames), frame_times_s=tuple(f / 10 for f in frames),
                        rank=rank)  # fmt: skip


def test_counts_and_max_n_are_kept_per_answer_at_its_rank():
    tracks = [track(1, "Pterois volitans", "species", [0, 1, 2]), track(2, "Pterois", "genus", [1, 2, 3]),
              track(3, "Pterois", "genus", [2, 3, 4]), track(4, "Pterois volitans", "species", [10, 11])]  # fmt: skip
    counts = {(c.species, c.rank): c for c in species_counts(tracks)}
    assert set(counts) == {("Pterois volitans", "species"), ("Pterois", "genus")}
    genus = counts[("Pterois", "genus")]
    assert (genus.unique, genus.max_n, genus.max_n_frame) == (2, 2, 2)
    assert (counts[("Pterois volitans", "species")].unique, counts[("Pterois volitans", "species")].max_n) == (2, 1)
