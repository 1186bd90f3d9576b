"""Opening inputs: what works, and a clear error for each kind of bad input."""

import builtins
import json
import os
import shutil
import subprocess
import sys

import av
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


# ---- damage inside a file: frames after it keep their true number and time -----------------

STAMP_BITS, STAMP_BLOCK = 12, 16


def stamped(number: int, size=(240, 320)) -> np.ndarray:
    """A frame with its number painted as 12 black/white blocks (most significant bit first)
    over a moving pattern, so a decoded image says which frame it is."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    image = np.dstack([(x + number) % 256, (2 * y) % 256, ((x + y) // 2 + 3 * number) % 256]).astype(np.uint8)
    image[: STAMP_BLOCK + 4] = 128
    for bit in range(STAMP_BITS):
        on = number >> (STAMP_BITS - 1 - bit) & 1
        image[2 : 2 + STAMP_BLOCK, 4 + bit * STAMP_BLOCK : 2 + (bit + 1) * STAMP_BLOCK] = 255 if on else 0
    return image


def stamp_of(image: np.ndarray) -> int:
    row = 2 + STAMP_BLOCK // 2
    bits = [int(image[row, 7 + b * STAMP_BLOCK : 15 + b * STAMP_BLOCK].mean() > 127) for b in range(STAMP_BITS)]
    return int("".join(map(str, bits)), 2)


def write_stamped(path, frames=150, fps=25, gop=25):
    """H.264 at a constant rate, a keyframe every ``gop`` frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"g": str(gop), "preset": "ultrafast"}
        for number in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(stamped(number), format="bgr24")))
        container.mux(stream.encode())
    return path


def packets(path):
    """(frame number, byte offset, size, keyframe) of every video packet, from the container."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        return [
            (round(float(p.pts * stream.time_base) * fps), p.pos, p.size, p.is_keyframe)
            for p in container.demux(stream)
            if p.size
        ]


def damage(path, first_frame, length):
    """Garbage over ``length`` bytes from inside the packet of ``first_frame``; returns the frames
    at risk: from the keyframe before the damage to the keyframe after it (exclusive)."""
    table = packets(path)
    start = next(pos for number, pos, _, _ in table if number == first_frame) + 50
    hit = [n for n, pos, size, _ in table if pos < start + length and pos + size > start]
    keys = sorted(n for n, _, _, key in table if key)
    first = max(k for k in keys if k <= min(hit))
    after = min((k for k in keys if k > max(hit)), default=len(table))
    data = bytearray(path.read_bytes())
    data[start : start + length] = bytes((i * 7 + 3) % 256 for i in range(length))
    path.write_bytes(bytes(data))
    return range(first, after)


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_frames_after_damage_keep_their_number_and_time(tmp_path, suffix):
    clip = write_stamped(tmp_path / f"clip{suffix}")
    at_risk = damage(clip, first_frame=75, length=16000)
    source = open_source(str(clip), SourceConfig())
    frames = list(source)
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices))
    assert all(f.time_s == f.index / 25 for f in frames)
    # Every frame outside the damaged stretch comes through, numbered as painted.
    outside = [(f.index, stamp_of(f.image_bgr)) for f in frames if f.index not in at_risk]
    assert [i for i, _ in outside] == [i for i in range(150) if i not in at_risk]
    assert all(index == painted for index, painted in outside)
    lost = sorted(set(range(150)) - set(indices))
    assert lost and set(lost) <= set(at_risk)
    status = source.status
    assert status.unreadable_frames == len(lost) and status.frames_read == 150 - len(lost)
    assert status.damaged and not status.ended_early
    ranges = f"frames {lost[0]}-{lost[-1]}"
    assert lost == list(range(lost[0], lost[-1] + 1))  # one stretch
    assert any(f"{len(lost)} unreadable frames" in w and ranges in w for w in status.warnings), status.warnings


def test_a_cameras_ffmpeg_options_do_not_leak_into_files(tmp_path, monkeypatch):
    """A camera's FFmpeg options (a short probe) are set for its own open only: left in the
    environment, they changed how a damaged file opened later in the process resynchronised,
    and the frames after the damage were lost."""
    from fishcam.config import LiveConfig
    from fishcam.sources.live import LiveSource

    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    seen = []
    real = cv2.VideoCapture

    def capture(*args):
        seen.append(os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS"))
        return real(*args)

    monkeypatch.setattr(cv2, "VideoCapture", capture)
    camera = LiveSource("rtsp://127.0.0.1:9/none", LiveConfig(open_timeout_s=0.5, read_timeout_s=0.5), connect=False)
    assert camera._open() is None  # nothing listens there
    assert seen and "analyzeduration" in seen[0]
    assert "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ
    clip = write_stamped(tmp_path / "clip.mkv")
    at_risk = damage(clip, first_frame=75, length=16000)
    frames = list(open_source(str(clip), SourceConfig()))
    assert seen[-1] is None
    assert [f.index for f in frames if f.index not in at_risk] == [i for i in range(150) if i not in at_risk]


# ---- folders of images with unreadable ones ----------------------------------------------------


def write_images(folder, count, broken=()):
    folder.mkdir(exist_ok=True)
    for i in range(count):
        path = folder / f"img{i}.png"
        if i in broken:
            path.write_bytes(b"\x89PNG not really")
        else:
            cv2.imwrite(str(path), np.full((20, 30, 3), i, np.uint8))
    return folder


def test_folder_whose_first_image_is_corrupt_reads_the_others(tmp_path):
    folder = write_images(tmp_path / "shots", 31, broken={0})
    source = open_source(str(folder), SourceConfig(image_fps=2.0))
    frames = list(source)
    assert [f.index for f in frames] == list(range(1, 31))  # each image keeps its place and time
    assert [int(f.image_bgr[0, 0, 0]) for f in frames] == list(range(1, 31))
    assert frames[0].time_s == 0.5 and (source.width, source.height) == (30, 20)
    status = source.status
    assert (status.frames_read, status.unreadable_frames, status.damaged) == (30, 1, True)
    assert status.warnings == ["img0.png: not a readable image: skipped"]


def test_many_unreadable_images_are_named_then_counted(tmp_path):
    folder = write_images(tmp_path / "shots", 30, broken=set(range(0, 30, 2)))
    source = open_source(str(folder), SourceConfig())
    assert len(list(source)) == 15 and source.status.unreadable_frames == 15
    warnings = source.status.warnings
    assert len(warnings) == 11 and "5 more unreadable images skipped (15 in all" in warnings[-1]


def test_folder_with_no_readable_image_is_an_error(tmp_path):
    folder = write_images(tmp_path / "shots", 3, broken={0, 1, 2})
    with pytest.raises(SourceError, match=r"none of the 3 images in .*shots can be read: not a readable image \(3\)"):
        open_source(str(folder), SourceConfig())


# ---- permission denied is not damage -----------------------------------------------------------


def deny_open(monkeypatch, denied):
    """Python's open() refuses ``denied`` as the kernel does for a file its user may not read."""
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if os.fspath(file) == os.fspath(denied):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)


def test_a_video_that_may_not_be_read_says_permission_denied(tmp_path, monkeypatch):
    video = tmp_path / "dive.mp4"
    shutil.copyfile(SAMPLE, video)
    deny_open(monkeypatch, video)
    with pytest.raises(SourceError, match=f"cannot read {video}: permission denied"):
        open_source(str(video), SourceConfig())


def test_an_image_that_may_not_be_read_is_skipped_as_permission_denied(tmp_path, monkeypatch):
    folder = write_images(tmp_path / "shots", 3)
    deny_open(monkeypatch, folder / "img1.png")
    source = open_source(str(folder), SourceConfig())
    assert [f.index for f in source] == [0, 2]
    assert source.status.warnings == ["img1.png: permission denied: skipped"]


def without_read_override() -> list[str]:
    """A command prefix under which ``chmod 000`` stops reads. Root reads anything through
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH; the child keeps root's uid but not those."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: chmod cannot make a file unreadable here")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


OPEN_IN_CHILD = """
import json, sys
from fishcam.config import SourceConfig
from fishcam.errors import SourceError
from fishcam.sources import open_source
try:
    source = open_source(sys.argv[1], SourceConfig())
    print(json.dumps({"frames": len(list(source)), "warnings": source.status.warnings}))
except SourceError as exc:
    print(json.dumps({"error": str(exc)}))
"""


@pytest.mark.parametrize("kind", ["video", "folder", "images"])
def test_chmod_000_inputs_say_permission_denied(tmp_path, kind):
    if kind == "video":
        target = tmp_path / "dive.mp4"
        shutil.copyfile(SAMPLE, target)
        locked = [target]
    else:
        target = write_images(tmp_path / "shots", 2)
        locked = [target] if kind == "folder" else sorted(target.iterdir())
    for path in locked:
        path.chmod(0)
    try:
        child = subprocess.run(
            [*without_read_override(), sys.executable, "-c", OPEN_IN_CHILD, str(target)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    finally:
        for path in locked:
            path.chmod(0o755)
    error = json.loads(child.stdout.splitlines()[-1]).get("error", "")
    expected = {
        "video": f"cannot read {target}: permission denied",
        "folder": f"cannot list folder {target}: permission denied",
        "images": f"none of the 2 images in {target} can be read: permission denied (2)",
    }[kind]
    assert error == expected
