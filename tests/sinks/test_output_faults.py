"""Output faults: an --out that cannot be written, storage that turns read-only, a disk that
fills up mid-run, a kill -9. Each gives one line and exit 6 (or leaves a run folder that says it
is not complete); what was written stays valid. Real file systems: a small tmpfs, mounted
read-only or filled for real (the tests run as root, where file modes do not stop writes)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import SAMPLES, interruptible

from fishcam.app.cli import main
from fishcam.sinks.files import COUNT_COLUMNS, DETECTION_COLUMNS, TRACK_COLUMNS

SAMPLE = SAMPLES / "fixed_sample.mp4"
COUNT_ONLY = ["--config", "configs/count-only.yaml"]
ROOT = Path(__file__).resolve().parents[2]


def errors_of(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if "ERROR" in line]


def _mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")


@pytest.fixture
def small_disk(tmp_path):
    """A real file system with 192 KiB: the run's first files fit, the video does not."""
    folder = tmp_path / "small"
    _mount_tmpfs(folder, "size=192k")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def read_only_disk(tmp_path):
    folder = tmp_path / "ro"
    _mount_tmpfs(folder, "size=1m")
    (folder / "old-run").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_out_that_is_a_file(tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    assert main(["run", str(SAMPLE), *COUNT_ONLY, "--out", str(existing)]) == 6
    (line,) = errors_of(capsys)
    assert str(existing) in line and "is a file" in line
    assert existing.read_text() == "mine\n"  # untouched
    assert main(["run", str(SAMPLE), *COUNT_ONLY, "--out", str(existing / "run")]) == 6
    (line,) = errors_of(capsys)
    assert str(existing) in line and "not a folder" in line


def test_out_on_a_read_only_file_system(read_only_disk, capsys):
    for out in (read_only_disk / "new-run", read_only_disk / "old-run"):
        assert main(["run", str(SAMPLE), *COUNT_ONLY, "--out", str(out)]) == 6
        (line,) = errors_of(capsys)
        assert str(out) in line and "read-only" in line


def test_export_into_a_read_only_folder(tmp_path, read_only_disk, capsys):
    run = tmp_path / "run"
    assert main(["run", str(SAMPLE), *COUNT_ONLY, "--out", str(run), "-q"]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--format", "mot", "--out", str(read_only_disk / "exports")]) == 6
    (line,) = errors_of(capsys)
    assert "read-only" in line


def _valid_csv(path: Path, columns: int) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows, f"{path.name} has no header"
    assert all(len(row) == columns for row in rows), f"{path.name} has a partial row"
    assert path.read_bytes().endswith(b"\n")
    return rows


def test_disk_full_mid_run_is_one_line_and_leaves_valid_files(small_disk, capsys):
    out = small_disk / "run"
    code = main(["run", str(SAMPLE), *COUNT_ONLY, "--out", str(out), "--set", "source.live.flush_interval_s=0.05"])
    assert code == 6
    (line,) = errors_of(capsys)
    assert "disk is full" in line and str(out) in line
    rows = _valid_csv(out / "detections.csv", len(DETECTION_COLUMNS))
    assert len(rows) > 1, "the run should have written detections before the disk filled"
    _valid_csv(out / "tracks.csv", len(TRACK_COLUMNS))
    _valid_csv(out / "species_counts.csv", len(COUNT_COLUMNS))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] in {"running", "failed"}  # never "finished": the run did not finish
    if summary["status"] == "failed":  # the disk took the last small write: it says what the process exits with
        assert summary["exit_code"] == code
    assert not list(out.glob(".*.tmp")), "a temporary file was left behind"


def _wait_for(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fishcam", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)  # fmt: skip


def _status(out: Path) -> str | None:
    try:
        return json.loads((out / "summary.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.slow
def test_summary_says_running_until_the_end_and_survives_kill_9(tmp_path):
    """x264 at its slowest preset keeps the run going long enough to be killed mid-way."""
    out = tmp_path / "killed"
    proc = _start(["run", str(SAMPLE), *COUNT_ONLY, "--out", str(out), "--set", "source.live.flush_interval_s=0.1",
                   "--set", "render.preset=veryslow"])  # fmt: skip
    try:
        _wait_for(lambda: _status(out) == "running" and "progress" in json.loads((out / "summary.json").read_text()))
        _wait_for(lambda: json.loads((out / "summary.json").read_text())["progress"]["frames"] > 10)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "running" and summary["source"] == SAMPLE.name
    assert summary["progress"]["frames"] > 10 and "models" in summary


@pytest.mark.slow
def test_interrupted_and_finished_runs_say_so(tmp_path, capsys):
    out = tmp_path / "stopped"
    proc = _start(["run", str(SAMPLE), *COUNT_ONLY, "--out", str(out), "--set", "render.preset=veryslow"])
    try:
        _wait_for(lambda: _status(out) == "running")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["exit_code"] == 130
    assert summary["frames"] < 200
    _valid_csv(out / "tracks.csv", len(TRACK_COLUMNS))

    done = tmp_path / "done"
    assert main(["run", str(SAMPLE), *COUNT_ONLY, "--out", str(done), "-q"]) == 0
    summary = json.loads((done / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["error"] is None and summary["exit_code"] == 0
    assert summary["frames"] == 200


def test_an_unexpected_error_is_recorded_as_failed(tmp_path, monkeypatch):
    """A bug mid-run: the error is raised, and the folder says the run failed and why."""
    from fishcam.app.compose import build_components
    from fishcam.app.run import run
    from fishcam.config import load_config
    from fishcam.detect.motion import MotionDetector
    from fishcam.sources import open_source

    config = load_config(ROOT / "configs" / "count-only.yaml", [])
    components = build_components(config)
    calls = {"n": 0}
    real = MotionDetector.detect

    def broken(self, frame):
        calls["n"] += 1
        if calls["n"] == 50:
            raise ZeroDivisionError("a bug")
        return real(self, frame)

    monkeypatch.setattr(MotionDetector, "detect", broken)
    with pytest.raises(ZeroDivisionError):
        run(open_source(str(SAMPLE), config.source), config, tmp_path / "bug", components)
    summary = json.loads((tmp_path / "bug" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "ZeroDivisionError: a bug"
    assert summary["exit_code"] == 1 and summary["frames"] == 49
    _valid_csv(tmp_path / "bug" / "tracks.csv", len(TRACK_COLUMNS))


def test_a_one_frame_video_says_why_it_has_no_tracks(tmp_path, capsys):
    import cv2

    video = tmp_path / "one.mp4"
    capture = cv2.VideoCapture(str(SAMPLE))
    _, image = capture.read()
    capture.release()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25, (image.shape[1], image.shape[0]))
    writer.write(image)
    writer.release()
    assert main(["run", str(video), *COUNT_ONLY, "--out", str(tmp_path / "one")]) == 0
    err = capsys.readouterr().err
    assert "single frame" in err and "a track needs two" in err
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["tracks"] == 0 and any("single frame" in w for w in summary["warnings"])


def test_write_atomic_leaves_the_old_version_when_the_disk_is_full(small_disk):
    from fishcam.sinks.files import write_atomic

    target = small_disk / "tracks.csv"
    write_atomic(target, "track_id\n1\n")
    with pytest.raises(OSError):
        write_atomic(target, "x" * (1 << 20))
    assert target.read_text() == "track_id\n1\n"
    assert not list(small_disk.glob(".*.tmp"))


def test_no_leftover_folder_when_models_are_missing(tmp_path):
    """The --out check creates nothing that stays behind when the run stops before its first output."""
    out = tmp_path / "a" / "b"
    assert main(["run", str(SAMPLE), "--out", str(out), "--set", f"detector.weights={tmp_path / 'nope.pt'}"]) == 3
    assert not (tmp_path / "a").exists()
    assert os.listdir(tmp_path) == []


def test_out_in_a_folder_you_may_not_write(tmp_path):
    """chmod 555 stops writes only without root's override: as root the CLI runs in a child that
    keeps root's uid but not CAP_DAC_OVERRIDE (setpriv), as a user does."""
    import shutil

    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: chmod cannot stop a write here")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "fishcam", "run", str(SAMPLE), *COUNT_ONLY, "--out", str(locked / "run")],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        locked.chmod(0o755)
    assert result.returncode == 6, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert "permission denied" in line and str(locked / "run") in line and "Traceback" not in result.stderr
