"""Export faults on a real run folder: damaged run files (every field an export reads, the
summary's values, a batch's metadata), and targets that cannot be written. Each is one line
naming the file and the cause, with its exit code; nothing half-written is left under a final
name, and a previous export stays as it was."""

import errno
import json
import os
import shutil
import subprocess

import pytest
from builders import SAMPLES, one_error_line

from fishcam.app.cli import main

pytestmark = pytest.mark.slow

COUNT_ONLY = ["--config", "configs/count-only.yaml", "--set", "render.video=false", "-q"]
PLACE = ["--latitude", "-16.86", "--longitude", "145.87", "--start", "2026-05-01T09:30:00+10:00"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", str(SAMPLES / "fixed_sample.mp4"), *COUNT_ONLY, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(finished_run, tmp_path):
    """A copy of the finished run, this test's to damage."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def replace_in_row(path, row: int, column: str, value: str) -> None:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    values = lines[row].split(",")
    values[header.index(column)] = value
    lines[row] = ",".join(values)
    path.write_text("\n".join(lines) + "\n")


def edit_summary(run, **changes) -> None:
    summary = json.loads((run / "summary.json").read_text())
    for key, value in changes.items():
        if value is None:
            summary.pop(key, None)
        else:
            summary[key] = value
    (run / "summary.json").write_text(json.dumps(summary))


# ---- damaged run files ------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["first_time_s", "last_time_s", "votes", "first_frame", "detections"])
def test_a_track_field_camtrap_reads_that_is_not_a_number(run, tmp_path, capsys, column):
    tracks = run / "tracks.csv"
    replace_in_row(tracks, 2, column, "soon")
    assert main(["export", str(run), "--format", "camtrap-dp", "--out", str(tmp_path / "x"), *PLACE]) == 3
    line = one_error_line(capsys)
    assert f"{tracks}, line 3: {column} is 'soon'" in line and "re-run fishcam" in line
    assert not (tmp_path / "x").exists()


def test_a_row_with_more_values_than_columns(run, tmp_path, capsys):
    detections = run / "detections.csv"
    lines = detections.read_text().splitlines()
    lines[4] += ",9,9"
    detections.write_text("\n".join(lines) + "\n")
    assert main(["export", str(run), "--format", "mot", "--out", str(tmp_path / "x")]) == 3
    line = one_error_line(capsys)
    assert f"{detections}, line 5" in line and "more values than columns" in line and "re-run fishcam" in line


def test_run_files_that_are_not_utf8(run, tmp_path, capsys):
    (run / "tracks.csv").write_bytes((run / "tracks.csv").read_bytes() + "9,Baía\n".encode("latin-1"))
    assert main(["export", str(run), "--format", "viame", "--out", str(tmp_path / "x")]) == 3
    assert str(run / "tracks.csv") in one_error_line(capsys)


BOTH = ("coco", "camtrap-dp")


@pytest.mark.parametrize(
    ("changes", "named", "formats"),
    [
        ({"video_fps": "fast"}, "video_fps", BOTH),
        ({"frames": [1, 2]}, "frames", BOTH),
        ({"width": "wide"}, "width", BOTH),
        ({"models": "yolo"}, "models", BOTH),
        ({"source": 7}, "source", BOTH),
        ({"started": None}, "started", ("camtrap-dp",)),  # only Camtrap DP says when models decided
        ({"started": "yesterday"}, "started", ("camtrap-dp",)),
    ],
)
def test_summary_values_of_the_wrong_kind(run, tmp_path, capsys, changes, named, formats):
    edit_summary(run, **changes)
    for fmt in formats:
        assert main(["export", str(run), "--format", fmt, "--out", str(tmp_path / fmt), *PLACE]) == 3, fmt
        line = one_error_line(capsys)
        assert str(run / "summary.json") in line and named in line and "re-run fishcam" in line, (fmt, line)


def test_a_summary_that_is_a_list(run, tmp_path, capsys):
    (run / "summary.json").write_text("[1, 2]\n")
    assert main(["export", str(run), "--format", "mot", "--out", str(tmp_path / "x")]) == 3
    assert str(run / "summary.json") in one_error_line(capsys)


def fake_batch(run, tmp_path, metadata):
    """A batch folder around a real run, with a report as `fishcam batch` writes it."""
    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.move(run, batch / "fixed_sample-0123abcd")
    record = {"video": str(SAMPLES / "fixed_sample.mp4"), "folder": str(batch / "fixed_sample-0123abcd"),
              "key": "k", "exit_code": 0, "tracks": 1, "metadata": metadata}  # fmt: skip
    report = {"videos": 1, "done": [record], "skipped": [], "failed": [], "bad_rows": []}
    (batch / "batch_report.json").write_text(json.dumps(report))
    return batch


@pytest.mark.parametrize("metadata", [["site", "reef"], "reef", {"site": ["a", "b"]}])
def test_batch_metadata_that_is_not_names_and_values(run, tmp_path, capsys, metadata):
    batch = fake_batch(run, tmp_path, metadata)
    assert main(["export", str(batch), "--format", "camtrap-dp", "--out", str(tmp_path / "x"), *PLACE[:4]]) == 3
    line = one_error_line(capsys)
    assert str(batch / "batch_report.json") in line and "metadata" in line


def test_batch_metadata_numbers_are_read_as_text(run, tmp_path):
    """A report edited by hand (or by a script) may hold numbers: they are the same values."""
    metadata = {"latitude": -16.86, "longitude": 145.87, "depth": 12, "start": "2026-05-01T09:30:00+10:00"}
    batch = fake_batch(run, tmp_path, metadata)
    assert main(["export", str(batch), "--format", "camtrap-dp", "--out", str(tmp_path / "x"), "-q"]) == 0
    deployments = (tmp_path / "x" / "camtrap-dp" / "deployments.csv").read_text()
    assert "-16.860000,145.870000" in deployments and ",12," in deployments


def test_a_long_source_name_gives_a_file_name_that_fits(run, tmp_path):
    edit_summary(run, source="reef " * 80 + ".mp4")
    out = tmp_path / "x"
    assert main(["export", str(run), "--format", "viame", "--format", "mot", "--out", str(out), "-q"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3 and all(len(n.encode()) <= 255 and "/" not in n for n in names)


# ---- targets that cannot be written ----------------------------------------------------------


def test_out_that_is_an_existing_file(finished_run, tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    for fmt in ("mot", "camtrap-dp"):
        assert main(["export", str(finished_run), "--format", fmt, "--out", str(existing), *PLACE]) == 6
        line = one_error_line(capsys)
        assert str(existing) in line and "is a file" in line
    assert existing.read_text() == "mine\n"


def test_out_whose_parent_is_a_file(finished_run, tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    for fmt in ("coco", "camtrap-dp"):
        assert main(["export", str(finished_run), "--format", fmt, "--out", str(existing / "sub"), *PLACE]) == 6
        line = one_error_line(capsys)
        assert str(existing) in line and "not a folder" in line
    assert existing.read_text() == "mine\n"


def fail_nth_fsync(monkeypatch, n: int, code: int) -> None:
    """The n-th file an export writes fails as the disk does: on its flush to storage."""
    real, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == n:
            raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("fmt", "files", "failing"),
    [
        ("mot", ["fixed_sample.txt", "seqinfo.ini"], "seqinfo.ini"),
        ("camtrap-dp", ["datapackage.json", "deployments.csv", "media.csv", "observations.csv"], "media.csv"),
    ],
)
def test_a_disk_that_fills_up_midway_leaves_no_half_export(
    finished_run, tmp_path, capsys, monkeypatch, fmt, files, failing
):
    out = tmp_path / "exports"
    folder = out / "camtrap-dp" if fmt == "camtrap-dp" else out
    assert main(["export", str(finished_run), "--format", fmt, "--out", str(out), "-q", *PLACE]) == 0
    assert leftovers(folder) == files
    before = {name: (folder / name).read_bytes() for name in files}
    capsys.readouterr()
    fail_nth_fsync(monkeypatch, 2, errno.ENOSPC)
    assert main(["export", str(finished_run), "--format", fmt, "--out", str(out), *PLACE]) == 6
    line = one_error_line(capsys)
    assert "disk is full" in line and str(folder / failing) in line
    # No temporary file left, and the previous export whole: old files, not a mix of old and new.
    assert leftovers(folder) == files
    assert {name: (folder / name).read_bytes() for name in files} == before


def test_a_new_export_on_a_full_disk_leaves_no_files(finished_run, tmp_path, capsys, monkeypatch):
    fail_nth_fsync(monkeypatch, 3, errno.ENOSPC)
    out = tmp_path / "exports"
    assert main(["export", str(finished_run), "--format", "camtrap-dp", "--out", str(out), *PLACE]) == 6
    assert "disk is full" in one_error_line(capsys)
    assert leftovers(out) == []


def test_storage_gone_read_only_is_one_line_exit_6(finished_run, tmp_path, capsys, monkeypatch):
    real = os.replace

    def replace(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "exports"
    assert main(["export", str(finished_run), "--format", "coco", "--out", str(out)]) == 6
    line = one_error_line(capsys)
    assert "read-only" in line and str(out / "fixed_sample.coco.json") in line
    monkeypatch.setattr(os, "replace", real)
    assert leftovers(out) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A real file system with 64 KiB: a MOT file fits, a COCO JSON of the same run does not."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_really_full_disk(finished_run, tiny_disk, capsys):
    out = tiny_disk / "exports"
    assert main(["export", str(finished_run), "--format", "coco", "--out", str(out)]) == 6
    line = one_error_line(capsys)
    assert "disk is full" in line and str(out / "fixed_sample.coco.json") in line
    assert leftovers(out) == []
