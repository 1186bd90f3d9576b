"""Opening inputs: what works, and a clear error for each kind of bad input."""

import shutil

import cv2
import numpy as np
import pytest
from builders import SAMPLES, write_tagged_video

from fishcam.config import SourceConfig
from fishcam.errors import SourceError
from fishcam.sources import open_source

SAMPLE = SAMPLES / "dive_sample.mp4"


def frames_of(source):
    return [frame.index for frame in source]


def test_video_file_reads_every_frame_in_order():
    source = open_source(str(SAMPLE), SourceConfig())
    assert (source.width, source.height, source.fps) == (640, 480, 25.0)
    assert frames_of(source) == list(range(200))
    assert not source.status.damaged and source.status.warnings == []


def test_folder_of_images_in_natural_order(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((20, 30, 3), i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "img5.jpg").write_bytes(b"broken")
    source = open_source(str(tmp_path), SourceConfig(image_fps=2.0))
    frames = list(source)
    assert [f.source for f in frames] == ["img1.png", "img2.png", "img10.png"]
    assert [f.time_s for f in frames] == [0.0, 0.5, 1.5]
    assert source.status.unreadable_frames == 1 and "img5.jpg" in source.status.warnings[0]


def _bad_input(folder, kind):
    path = folder / kind
    if kind == "empty.mp4":
        path.write_bytes(b"")
    elif kind == "notes.mp4":
        path.write_text("hello " * 100)
    elif kind == "empty_dir":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing.mp4", "input not found"),
        ("empty.mp4", "empty file"),
        ("notes.mp4", "not a video"),
        ("empty_dir", "holds no images"),
    ],
)
def test_bad_inputs_give_one_line_errors(tmp_path, kind, message):
    with pytest.raises(SourceError, match=message) as info:
        open_source(str(_bad_input(tmp_path, kind)), SourceConfig())
    assert "\n" not in str(info.value)


def test_truncated_file_is_read_to_where_it_breaks(tmp_path):
    data = SAMPLE.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    source = open_source(str(cut), SourceConfig())
    frames = frames_of(source)
    assert 80 < len(frames) < 200
    assert source.status.ended_early and source.status.damaged
    assert any("ended early" in w and "of 200 frames" in w for w in source.status.warnings)


def test_garbage_inside_a_file_skips_frames_and_reads_on(tmp_path):
    data = bytearray(SAMPLE.read_bytes())
    start = int(len(data) * 0.4)
    data[start : start + 60000] = bytes((i * 7) % 256 for i in range(60000))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    source = open_source(str(bad), SourceConfig())
    frames = frames_of(source)
    assert frames[-1] == 199  # read on to the end after the damage
    assert source.status.unreadable_frames > 0 and source.status.damaged


def test_other_containers_open(tmp_path):
    copy = tmp_path / "clip.mov"
    shutil.copyfile(SAMPLE, copy)
    assert len(frames_of(open_source(str(copy), SourceConfig()))) == 200


def test_recording_start_comes_from_the_container_tag(tmp_path):
    tagged = write_tagged_video(tmp_path / "tagged.mp4", "2026-05-01T09:30:00.000000Z")
    source = open_source(str(tagged), SourceConfig())
    assert source.recorded_start_unix == 1777627800.0  # 2026-05-01T09:30:00Z
    source.close()
    # Our own sample was encoded with no clock: no start is invented.
    sample = open_source(str(SAMPLES / "dive_sample.mp4"), SourceConfig())
    assert sample.recorded_start_unix is None
    sample.close()
