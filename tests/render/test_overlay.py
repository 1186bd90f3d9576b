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


def test_labels_do_not_overlap_in_a_crowd_and_stay_near_their_fish():
    from fishcam.render.overlay import place_labels

    rng = np.random.default_rng(0)
    # 20 fish in a shoal: boxes overlapping each other, some at the frame's edges.
    x1 = rng.uniform(-10, 900, 20)
    y1 = rng.uniform(0, 200, 20)
    boxes = np.stack([x1, y1, x1 + 120, y1 + 60], axis=1)
    sizes = np.tile([[150, 22]], (20, 1))
    corners = place_labels(boxes, sizes, 960, 540)
    rects = np.concatenate([corners, corners + sizes], axis=1)
    for i in range(20):
        for j in range(i + 1, 20):
            a, b = rects[i], rects[j]
            assert a[0] >= b[2] or b[0] >= a[2] or a[1] >= b[3] or b[1] >= a[3], (i, j)
    assert (rects[:, :2] >= 0).all() and (rects[:, 2] <= 960).all() and (rects[:, 3] <= 540).all()
    # Each label is at its box's left edge (or pushed in from the frame's), at most a stack away.
    assert np.array_equal(corners[:, 0], np.clip(boxes[:, 0], 0, 960 - 150).astype(int))
    assert (np.abs(corners[:, 1] - (boxes[:, 1] - 22)) <= 20 * 22).all()
    # A lone fish's label sits just above its box; one at the top edge, just inside it.
    assert place_labels(np.array([[100.0, 200, 200, 260]]), np.array([[80, 20]]), 960, 540).tolist() == [[100, 180]]
    assert place_labels(np.array([[100.0, 5, 200, 60]]), np.array([[80, 20]]), 960, 540).tolist() == [[100, 5]]


def test_labels_are_drawn_in_their_track_colour():
    image = np.zeros((200, 300, 3), np.uint8)
    dets = Detections.build([[40, 80, 140, 150], [60, 90, 160, 160]], track_id=[1, 2])
    drawn = Overlay().draw_labels(image, dets, ["#1 cod 0.90 expert", "#2 hake 0.80 expert"])
    import supervision as sv

    for track_id in (1, 2):
        colour = np.array(sv.ColorPalette.DEFAULT.by_idx(track_id).as_bgr())
        assert (drawn.reshape(-1, 3) == colour).all(axis=1).sum() > 300  # a label background, not just a box edge
