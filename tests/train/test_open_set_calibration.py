"""The open-set check of an expert `fishcam train` made: calibrated by the run itself (prototypes
on train, threshold on val), it keeps the held-out crops of its species and rejects species it
never saw (real cut-outs composited like the others) and things that are no fish (footage with
no fish, a squirrel photo). The same calibration for any expert from a labelled folder
(``python -m fishcam.train.calibrate``), the published checkpoint's rule."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
from builders import REAL_FISH
from fish_dataset import backgrounds, make_dataset

from fishcam.app.compose import build_species_models
from fishcam.config import load_config
from fishcam.models.expert_spec import read_manifest
from fishcam.models.loading import load_expert
from fishcam.train.calibrate import REPORT, main

pytestmark = [pytest.mark.model, pytest.mark.slow]

UNSEEN = ["stripedfish", "butterflyfish", "coraltrout", "dolphinfish"]  # cut-outs the expert never saw


@pytest.fixture(scope="module")
def unseen_fish(tmp_path_factory):
    """10 crops of each species the expert never saw, composited like its training crops."""
    return make_dataset(tmp_path_factory.mktemp("unseen"), UNSEEN, per_class=10, size=80, seed=1)


def no_fish(count: int = 30) -> list[np.ndarray]:
    """Patches of the dive footage with no fish pasted in (what a detector's false box shows)."""
    rng = np.random.default_rng(2)
    patches = []
    for scene in backgrounds(count=10, seed=3):
        for _ in range(count // 10):
            h, w = scene.shape[:2]
            side = int(rng.integers(60, 300))
            y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
            patches.append(cv2.resize(scene[y : y + side, x : x + side], (80, 80), interpolation=cv2.INTER_AREA))
    return patches


def test_train_calibrates_the_check_and_it_keeps_the_species_and_rejects_the_rest(trained, unseen_fish):
    out, result = trained
    spec = read_manifest(result.manifest)
    assert spec.open_set is not None and spec.open_set.keep == 0.95
    assert spec.open_set.threshold == result.open_set["threshold"] == result.test["open_set"]["threshold"]
    assert (out / "expert" / "fish-expert.open-set.safetensors").is_file()
    assert "open-set threshold (validation, prototype cosine)" in (out / "eval" / "report.md").read_text()
    assert result.open_set["images"] == 20 and result.open_set["prototype_images"] == 40

    expert = load_expert(spec, device="cpu")

    def kept(images) -> np.ndarray:
        return expert.predict_scored(images).open_set >= spec.open_set.threshold

    rows = [r for r in (out / "splits.csv").read_text().splitlines()[1:] if r.endswith(",test")]
    held_out = [cv2.imread(r.rsplit(",", 2)[0]) for r in rows]
    assert len(held_out) == 20 and kept(held_out).mean() >= 0.95  # in-set: at least 95 % kept
    assert result.open_set["test_kept"] == pytest.approx(kept(held_out).mean())

    per_species = {name: kept([cv2.imread(str(p)) for p in sorted((unseen_fish / name).iterdir())]) for name in UNSEEN}
    unseen = np.concatenate(list(per_species.values()))
    # Measured: 65 % of unseen-species crops rejected (stripedfish 90 %, butterflyfish 70 %, dolphinfish
    # 60 %, coral trout 40 %: a grouper shaped like the blue groper the expert knows).
    assert 1 - unseen.mean() >= 0.6
    assert per_species["stripedfish"].mean() <= 0.1
    squirrel = cv2.imread(str(REAL_FISH / "not_a_fish_squirrel.jpg"))
    goldfish = cv2.imread(str(REAL_FISH / "kde_goldfish.png"))
    assert 1 - kept(no_fish()).mean() >= 0.9  # measured: 100 %
    assert not kept([squirrel, goldfish]).any()
    # The softmax alone, at a threshold as low as the lowest validation score (what a threshold
    # chosen for accuracy alone is on an error-free validation split), would have named most of
    # them: what the open-set check is for. The threshold calibrated for precision names few
    # (measured: 6 %).
    scores = expert.predict([*no_fish(), squirrel]).max(1)
    assert result.fallback["precision_kept"] == 1.0  # this validation split has no mistake
    assert (scores >= result.fallback["lowest_validation_score"]).mean() > 0.3
    assert (scores >= spec.extra["fallback_threshold"]).mean() <= 0.15


def test_any_expert_is_calibrated_from_a_labelled_folder(trained, fish_data, unseen_fish, tmp_path, caplog):
    """The published checkpoint's rule, here on the trained expert's manifest (the same code path)."""
    out, result = trained
    cal = tmp_path / "calibrated"
    code = main([str(fish_data), "--expert", str(result.manifest), "--out", str(cal), "--unseen", str(unseen_fish),
                 "--device", "cpu", "--val-fraction", "0.5"])  # fmt: skip
    assert code == 0
    record = json.loads((cal / REPORT).read_text())
    assert record["images"] == 40 and record["prototype_images"] == 40 and record["unseen_images"] == 40
    assert record["unseen_rejected"] >= 0.5 and record["kept"] >= 0.95
    manifest = json.loads((cal / "fish-expert.json").read_text())
    assert manifest["weights"] == str((out / "expert" / "fish-expert.safetensors").resolve())
    assert manifest["fallback_threshold"] == result.fallback["threshold"]  # carried over
    assert manifest["open_set"]["prototypes"] == "fish-expert.open-set.safetensors"
    caplog.set_level(logging.INFO, logger="fishcam.app.compose")
    config = load_config(None, [f"classify.expert.weights={cal / 'fish-expert.json'}"])
    species, described = build_species_models(config)
    assert species.open_set and described["expert"]["open_set"]["threshold"] == record["threshold"]
    assert any(r.getMessage().startswith("open-set check on") for r in caplog.records)
    # A folder whose classes are not the expert's labels is one clear error (exit 5).
    (tmp_path / "wrong" / "cod").mkdir(parents=True)
    (tmp_path / "wrong" / "hake").mkdir(parents=True)
    for name in ("cod", "hake"):
        for i in range(3):
            cv2.imwrite(str(tmp_path / "wrong" / name / f"{i}.png"), np.full((20, 20, 3), 60 * i, np.uint8))
    assert main([str(tmp_path / "wrong"), "--expert", str(result.manifest), "--out", str(tmp_path / "x")]) == 5
