"""`fishcam batch` and what its folder holds: markers whose folder points elsewhere, damaged run
outputs of finished videos, manifests with quoted line breaks, a report that cannot be written,
and Ctrl-C with and without workers (an interrupted video is never marked done)."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from builders import ROOT, SAMPLES, interruptible
from builders import batch_report as report

from fishcam.app.cli import main

pytestmark = pytest.mark.slow

COUNT_ONLY = ["--config", "configs/count-only.yaml", "--set", "render.video=false", "-q"]
SHORT = [*COUNT_ONLY, "--set", "source.max_frames=60"]  # a fish needs 0.5 s in view to count


def copies(folder, count):
    folder.mkdir()
    for n in range(count):
        shutil.copyfile(SAMPLES / "fixed_sample.mp4", folder / f"v{n}.mp4")
    return folder


def counted_videos(out):
    with (out / "counts_by_video.csv").open() as handle:
        return [row for row in csv.DictReader(handle)]


@pytest.fixture
def finished(tmp_path):
    videos = copies(tmp_path / "videos", 2)
    out = tmp_path / "batch"
    assert main(["batch", str(videos), "--out", str(out), *SHORT]) == 0
    return videos, out


def test_markers_that_point_outside_the_batch_are_not_followed(finished, tmp_path):
    videos, out = finished
    # Counts a marker must never reach: beside the batch, and in another folder.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for folder in (tmp_path, outside):
        (folder / "species_counts.csv").write_text(
            "species,unique_tracks,max_n,max_n_frame,max_n_time_s,first_seen_s,last_seen_s\n"
            "outsider,99,99,0,0.000,0.000,0.000\n"
        )
    markers = sorted(out.glob("*/batch_done.json"))
    for marker, folder in zip(markers, ["..", str(outside)], strict=True):
        data = json.loads(marker.read_text())
        data["folder"] = folder
        marker.write_text(json.dumps(data))
    assert main(["batch", str(videos), "--out", str(out), *SHORT]) == 0
    data = report(out)
    assert len(data["skipped"]) == 2
    assert sorted(r["folder"] for r in data["skipped"]) == sorted(str(m.parent) for m in markers)
    rows = counted_videos(out)
    assert rows and "outsider" not in {r["species"] for r in rows}
    # The report it wrote exports what the batch holds, into --out only.
    exports = tmp_path / "exports"
    assert main(["export", str(out), "--format", "mot", "--out", str(exports), "-q"]) == 0
    assert sorted(p.name for p in exports.iterdir()) == sorted(m.parent.name for m in markers)


def test_a_finished_video_whose_counts_are_damaged_is_left_out_with_a_warning(finished, capsys):
    videos, out = finished
    damaged, kept = sorted(out.glob("*/species_counts.csv"))
    header, first = damaged.read_text().splitlines()[:2]
    values = first.split(",")
    values[header.split(",").index("max_n")] = "many"
    damaged.write_text(f"{header}\n{','.join(values)}\n")
    capsys.readouterr()
    assert main(["batch", str(videos), "--out", str(out), *SHORT]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    (warning,) = [line for line in err.splitlines() if "WARNING" in line]
    assert f"{damaged}, line 2" in warning and "max_n" in warning and "left out of the batch counts" in warning
    rows = counted_videos(out)
    assert rows and {r["video"] for r in rows} == {json.loads((kept.parent / "batch_done.json").read_text())["video"]}


def test_a_manifest_value_with_a_line_break_inside_quotes(tmp_path):
    """Spreadsheets write a cell with a line break as one quoted value over two lines."""
    videos = copies(tmp_path / "videos", 2)
    manifest = videos / "survey.csv"
    manifest.write_text(
        'path,site,notes\nv0.mp4,reef,"turbid,\nsurge"\nv1.mp4,reef,calm\nmissing.mp4,reef,x\n', encoding="utf-8"
    )
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), *SHORT]) == 4
    data = report(out)
    notes = {r["video"].rsplit("/", 1)[1]: r["metadata"]["notes"] for r in data["done"]}
    assert notes == {"v0.mp4": "turbid,\nsurge", "v1.mp4": "calm"}
    # Lines are the file's own: the quoted value took two.
    assert [(r["line"], r["error"]) for r in data["bad_rows"]] == [(5, f"{videos / 'missing.mp4'} is not a file")]


def test_a_manifest_that_is_not_csv(tmp_path, capsys):
    videos = copies(tmp_path / "videos", 1)
    manifest = videos / "survey.csv"
    # A quote never closed would swallow the rows after it into one value.
    manifest.write_text('path,site\nv0.mp4,"reef\nv1.mp4,reef\n', encoding="utf-8")
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out"), *SHORT]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if "ERROR" in line]
    assert f"manifest {manifest}, line 2: not valid CSV" in line and "quote" in line
    assert not (tmp_path / "out").exists()


def test_a_report_that_cannot_be_written_is_one_line_exit_6(tmp_path, capsys):
    videos = copies(tmp_path / "videos", 1)
    out = tmp_path / "out"
    (out / "batch_report.json").mkdir(parents=True)  # a folder where the report goes
    assert main(["batch", str(videos), "--out", str(out), *SHORT]) == 6
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if "ERROR" in line]
    assert str(out / "batch_report.json") in line
    assert len(list(out.glob("*/batch_done.json"))) == 1  # the video itself is done, and resumable


def wait_for(predicate, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def running(out) -> bool:
    """A video in the middle of its run: summary.json says so from its first frame to its last."""
    for summary in out.glob("*/summary.json"):
        try:
            if json.loads(summary.read_text()).get("status") == "running":
                return True
        except (OSError, ValueError):
            continue  # being replaced
    return False


def status_of(folder) -> str:
    """What a run folder's summary says; "not started" for one interrupted before its first output."""
    summary = folder / "summary.json"
    return json.loads(summary.read_text())["status"] if summary.exists() else "not started"


@pytest.mark.parametrize(("workers", "to"), [(1, "group"), (2, "group"), (2, "main")])
def test_ctrl_c_stops_the_batch_and_marks_no_interrupted_video_done(tmp_path, workers, to):
    """A real SIGINT to the batch's process group, as a terminal's Ctrl-C sends it, or to the
    main process only (``kill -INT``): the videos in flight are interrupted either way."""
    videos = copies(tmp_path / "videos", 8)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "fishcam", "batch", str(videos), "--out", str(out), "--workers", str(workers),
               *COUNT_ONLY]  # fmt: skip
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)  # fmt: skip
    wait_for(lambda: list(out.glob("*/batch_done.json")))
    wait_for(lambda: running(out))  # Ctrl-C in the middle of a video, not between two
    (os.killpg if to == "group" else os.kill)(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)  # seconds normally; a machine shared with other work is slow
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"the batch had not stopped 120 s after SIGINT; it said: {err[-4000:]}")
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    data = report(out)
    assert data["interrupted"] is True
    marked = {json.loads(m.read_text())["video"] for m in out.glob("*/batch_done.json")}
    # The report says what is done, and it stopped: the videos after it were not started.
    assert marked == {r["video"] for r in data["done"]} and 1 <= len(marked) < 8, err
    assert len(data["not_processed"]) == 8 - len(marked)
    assert all(json.loads(m.read_text())["exit_code"] == 0 for m in out.glob("*/batch_done.json"))
    # The video in flight was stopped, not run to its end, and only finished videos are marked.
    folders = {p: status_of(p) for p in out.iterdir() if p.is_dir()}
    assert set(folders.values()) - {"finished"}, folders
    assert all((p / "batch_done.json").exists() == (status == "finished") for p, status in folders.items()), folders
    # The same command finishes the rest; nothing counted twice, nothing left interrupted.
    assert main(["batch", str(videos), "--out", str(out), *COUNT_ONLY]) == 0
    final = report(out)
    assert len(final["skipped"]) == len(marked) and len(final["done"]) == 8 - len(marked)
    assert {status_of(p) for p in out.iterdir() if p.is_dir()} == {"finished"}
