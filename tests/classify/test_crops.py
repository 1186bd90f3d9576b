import numpy as np

from fishcam.classify.crops import crop, padded_boxes, touches_edge


def test_padding_is_clipped_to_the_frame():
    boxes = padded_boxes(np.array([[10, 10, 30, 20], [0, 0, 5, 5]]), 0.5, 32, 24)
    assert boxes.tolist() == [[0, 5, 32, 24], [0, 0, 8, 8]]


def test_crop_takes_exact_pixels_and_edges_are_flagged():
    image = np.arange(12 * 10 * 3, dtype=np.uint8).reshape(12, 10, 3)
    (c,) = crop(image, np.array([[2, 3, 5, 7]]))
    assert np.array_equal(c, image[3:7, 2:5])
    assert touches_edge(np.array([[0, 3, 5, 7], [2, 3, 5, 7], [2, 3, 10, 7]]), 10, 12, 0).tolist() == [
        True,
        False,
        True,
    ]
