import numpy as np
import pytest

from fishcam.types import Detections


def test_build_fills_defaults_and_checks_shapes():
    d = Detections.build([[0, 0, 10, 20], [5, 5, 7, 9]])
    assert len(d) == 2
    assert d.confidence.tolist() == [1.0, 1.0]
    assert d.track_id.tolist() == [-1, -1]
    assert d.area.tolist() == [200.0, 8.0]
    with pytest.raises(ValueError, match="confidence"):
        Detections(np.zeros((2, 4), np.float32), np.zeros(3, np.float32), np.zeros(2, np.int64), np.zeros(2, np.int64))


def test_filter_keeps_columns_aligned():
    d = Detections.build([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]], confidence=[0.1, 0.5, 0.9], track_id=[7, -1, 9])
    kept = d.filter(d.track_id >= 0)
    assert kept.xyxy[:, 0].tolist() == [0, 4]
    assert kept.confidence.tolist() == pytest.approx([0.1, 0.9])
    assert Detections.empty().filter(np.zeros(0, bool)).xyxy.shape == (0, 4)
