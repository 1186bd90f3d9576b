import numpy as np

from fishcam.render.overlay import Overlay, label_text
from fishcam.types import Detections


def test_boxes_are_drawn_on_a_copy_and_untracked_boxes_are_not():
    image = np.zeros((120, 160, 3), np.uint8)
    dets = Detections.build([[40, 50, 100, 100], [5, 5, 20, 20]], track_id=[3, -1])
    drawn = Overlay(thickness=2).draw(image, dets, lambda tid: ("Pterois volitans", 0.91, "expert"))
    assert image.sum() == 0  # the source frame is untouched
    assert drawn[75, 40].any() and drawn[75, 99].any()  # left and right edges of the box
    assert drawn[100 - 1, 70].any()  # bottom edge
    assert not drawn[75, 70].any()  # inside the box stays clear
    assert not drawn[12, 12].any()  # the unconfirmed detection is not drawn


def test_label_text():
    assert label_text(3, None) == "#3 ..."
    assert label_text(3, ("Pterois volitans", 0.914, "fallback")) == "#3 Pterois volitans 0.91 fallback"
    assert label_text(4, ("unclassified", 0.0, "none")) == "#4 unclassified"
