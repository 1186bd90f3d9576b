"""The open-set test's numbers (prototypes, similarity, the conformal threshold) and the species
service with a scripted open-set expert: an out-of-set crop goes to the fallback (or unknown) and
is counted, a plain model (ConstantModel) behaves as before."""

from __future__ import annotations

import numpy as np
import pytest

from fishcam.classify.base import ConstantModel, OpenSetModel, Scored
from fishcam.classify.service import SpeciesModels, SpeciesService
from fishcam.models import open_set
from fishcam.types import Origin


def test_prototypes_are_centred_unit_class_means_and_the_nearest_decides():
    features = np.array([[3.0, 1.0, 0.0], [2.0, 1.0, 0.0], [1.0, 3.0, 0.0], [1.0, 2.0, 0.0]])
    protos = open_set.build_prototypes(features, np.array([0, 0, 1, 1]), classes=3)
    np.testing.assert_allclose(protos.center, [1.75, 1.75, 0.0])
    np.testing.assert_allclose(np.linalg.norm(protos.prototypes[:2], axis=1), 1.0, atol=1e-6)
    assert protos.counts.tolist() == [2, 2, 0] and not protos.prototypes[2].any()
    scores = protos.scores(np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [1.75, 1.75, 5.0]]))
    assert scores[0] > 0.9 and scores[1] > 0.9  # near class 0, near class 1
    assert abs(scores[2]) < 1e-6  # orthogonal to both; class 2 (no images) is never the nearest


def test_the_threshold_is_the_split_conformal_quantile():
    scores = np.arange(1, 40) / 40  # 39 held-out in-set scores
    record = open_set.keep_threshold(scores, keep=0.95)
    # floor((39 + 1) * 0.05) = 2: the second-lowest score; a new in-set crop is kept with p >= 0.95.
    assert record["threshold"] == pytest.approx(2 / 40) and record["guaranteed"]
    assert record["kept"] == pytest.approx(38 / 39, abs=1e-4)
    few = open_set.keep_threshold(np.array([0.3, 0.5, 0.9]), keep=0.95)  # too few for the guarantee
    assert few["threshold"] == pytest.approx(0.3) and not few["guaranteed"] and few["kept"] == 1.0
    with pytest.raises(ValueError):
        open_set.keep_threshold(np.array([]), keep=0.95)


class ScriptedOpenSet(ConstantModel):
    """A confident expert whose open-set score is scripted per crop: the crop's first pixel."""

    def __init__(self, labels, probabilities, threshold: float | None) -> None:
        super().__init__(labels, probabilities)
        self.open_set_threshold = threshold

    def predict_scored(self, crops_bgr):
        return Scored(self.predict(crops_bgr), np.array([c[0, 0, 0] / 100 for c in crops_bgr], np.float32))


def crops(*scores: int) -> list[np.ndarray]:
    return [np.full((4, 4, 3), s, np.uint8) for s in scores]


def test_out_of_set_crops_go_to_the_fallback_and_are_counted():
    expert = ScriptedOpenSet(["cod", "hake"], [0.95, 0.05], threshold=0.5)
    assert isinstance(expert, OpenSetModel) and not isinstance(ConstantModel(["a"], [1.0]), OpenSetModel)
    fallback = ConstantModel(["Pterois volitans"], [1.0])
    models = SpeciesModels(expert, fallback, 0.7, 0.3, open_set_threshold=0.5)
    calls, look = models.classify_scored(crops(90, 10, 50))
    assert [(c.label, c.origin) for c in calls] == [
        ("cod", Origin.EXPERT), ("Pterois volitans", Origin.FALLBACK), ("cod", Origin.EXPERT)
    ]  # fmt: skip
    np.testing.assert_allclose(look.open_set, [0.9, 0.1, 0.5])
    assert look.out_of_set == 1
    service = SpeciesService(models)
    service.ask(0, crops(90, 10, 20), ["a", "b", "c"])
    answers = dict(service.answers(0))
    service.finish()
    assert answers["b"].origin is Origin.FALLBACK and answers["a"].origin is Origin.EXPERT
    assert service.counts["expert_out_of_set"] == 2 and service.counts["fallback_crops"] == 2


def test_without_a_fallback_an_out_of_set_crop_is_unknown_with_the_experts_guess():
    expert = ScriptedOpenSet(["cod", "hake"], [0.05, 0.95], threshold=0.5)
    calls, _ = SpeciesModels(expert, None, 0.7, 0.3, open_set_threshold=0.5).classify(crops(10))
    assert (calls[0].label, calls[0].origin, calls[0].candidate) == ("unknown", Origin.UNKNOWN, "hake")


def test_the_check_off_or_a_plain_model_behaves_as_before():
    expert = ScriptedOpenSet(["cod", "hake"], [0.95, 0.05], threshold=0.5)
    calls, _ = SpeciesModels(expert, None, 0.7, 0.3).classify(crops(10))  # open_set_threshold None: off
    assert calls[0].origin is Origin.EXPERT
    plain = SpeciesModels(ConstantModel(["cod", "hake"], [0.95, 0.05]), None, 0.7, 0.3)
    assert not plain.open_set and plain.classify(crops(10))[0][0].origin is Origin.EXPERT
    service = SpeciesService(plain)
    service.finish()
    assert "expert_out_of_set" not in service.counts  # no check, no count
    with pytest.raises(ValueError, match="open-set"):
        SpeciesModels(ConstantModel(["cod"], [1.0]), None, 0.7, 0.3, open_set_threshold=0.5)
