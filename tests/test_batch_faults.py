"""Batch and export faults: bad manifest rows, manifests that are not UTF-8, one video's bug, a
worker process that dies, Ctrl-C mid-batch, damaged run files, and batch reports that point
outside their folder. Every bad row and every failed video is recorded; the rest go on."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from builders import ROOT, SAMPLES, one_error_line
from builders import batch_report as report

import fishcam.sources
from fishcam.app.cli import main

pytestmark = pytest.mark.slow

COUNT_ONLY = ["--config", "configs/count-only.yaml", "--set", "render.video=false",
              "--set", "source.max_frames=40", "-q"]  # fmt: skip


def test_bad_manifest_rows_are_recorded_and_the_rest_go_on(videos, tmp_path, capsys):
    manifest = videos / "survey.csv"
    manifest.write_text(
        "path,site,date\n"
        "a.mp4,reef,2026-05-01\n"
        "b.mp4\n"  # too few columns
        "c.mp4,reef,2026-05-02,extra\n"  # too many
        "\n"
        "missing.mp4,reef,2026-05-03\n"
        ",reef,2026-05-04\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), *COUNT_ONLY]) == 4
    data = report(out)
    assert [r["video"].endswith("a.mp4") for r in data["done"]] == [True]
    assert data["done"][0]["metadata"] == {"site": "reef", "date": "2026-05-01"}
    bad = {row["line"]: row["error"] for row in data["bad_rows"]}
    assert bad == {3: "1 values for 3 columns", 4: "4 values for 3 columns",
                   6: f"{videos / 'missing.mp4'} is not a file", 7: "no path"}  # fmt: skip
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("WARNING: manifest") == 4


def test_a_manifest_that_is_not_utf8_is_one_line(videos, tmp_path, capsys):
    manifest = videos / "latin1.csv"
    manifest.write_bytes("path,site\na.mp4,Baía\n".encode("latin-1"))
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out"), *COUNT_ONLY]) == 2
    line = one_error_line(capsys)
    assert str(manifest) in line and "not UTF-8" in line


def test_a_manifest_with_a_byte_order_mark_is_read(videos, tmp_path):
    manifest = videos / "excel.csv"
    manifest.write_bytes("\ufeffpath,site\na.mp4,Baía\n".encode())
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out"), *COUNT_ONLY]) == 0
    assert report(tmp_path / "out")["done"][0]["metadata"] == {"site": "Baía"}


def test_one_videos_unexpected_error_is_recorded_and_the_rest_go_on(videos, tmp_path, monkeypatch):
    real = fishcam.sources.open_source

    def buggy(spec, config):
        if spec.endswith("b.mp4"):
            raise RuntimeError("a bug in one video's path")
        return real(spec, config)

    monkeypatch.setattr(fishcam.sources, "open_source", buggy)
    out = tmp_path / "out"
    assert main(["batch", str(videos), "--out", str(out), *COUNT_ONLY]) == 4
    data = report(out)
    assert len(data["done"]) == 2
    (failure,) = data["failed"]
    assert failure["video"].endswith("b.mp4") and failure["error"] == "RuntimeError: a bug in one video's path"
    assert json.loads((Path(failure["folder"]) / "batch_failed.json").read_text())["error"] == failure["error"]


def test_a_worker_that_dies_fails_its_video_only(videos, tmp_path):
    """A real worker death (os._exit in the worker, as an out-of-memory kill would end it)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import os
        if os.environ.get("FISHCAM_TEST_DIE_ON"):
            import fishcam.app.batch as batch
            real = batch.process
            def process(job, data, out_dir):
                if job.video.name == os.environ["FISHCAM_TEST_DIE_ON"]:
                    os._exit(9)
                return real(job, data, out_dir)
            batch.process = process
    """)
    )
    env = {"PYTHONPATH": f"{hook}:{ROOT}", "FISHCAM_TEST_DIE_ON": "b.mp4", "PATH": "/usr/bin:/bin",
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path)}  # fmt: skip
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "fishcam", "batch", str(videos), "--out", str(out), "--workers", "2", *COUNT_ONLY],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    data = report(out)
    assert sorted(r["video"].rsplit("/", 1)[1] for r in data["done"]) == ["a.mp4", "c.mp4"]
    (failure,) = data["failed"]
    assert failure["video"].endswith("b.mp4") and "worker process died" in failure["error"]


def test_ctrl_c_mid_batch_still_writes_the_report(videos, tmp_path, monkeypatch):
    real = fishcam.sources.open_source

    def interrupted(spec, config):
        if spec.endswith("b.mp4"):
            raise KeyboardInterrupt
        return real(spec, config)

    monkeypatch.setattr(fishcam.sources, "open_source", interrupted)
    out = tmp_path / "out"
    assert main(["batch", str(videos), "--out", str(out), *COUNT_ONLY]) == 130
    data = report(out)
    assert data["interrupted"] is True and len(data["done"]) == 1
    assert sorted(v.rsplit("/", 1)[1] for v in data["not_processed"]) == ["b.mp4", "c.mp4"]


@pytest.fixture
def finished_batch(videos, tmp_path):
    out = tmp_path / "batch"
    assert main(["batch", str(videos), "--out", str(out), *COUNT_ONLY]) == 0
    return out


def test_damaged_run_files_are_one_line_naming_the_file_and_line(finished_batch, tmp_path, capsys):
    capsys.readouterr()
    run = next(p for p in finished_batch.iterdir() if p.is_dir())
    tracks = run / "tracks.csv"
    lines = tracks.read_text().splitlines()
    cases = {
        "a row cut short": "\n".join([*lines[:2], "7,unclassified"]) + "\n",
        "a score that is not a number": "\n".join([lines[0], lines[1].replace(lines[1].split(",")[2], "high", 1)]),
        "a missing column": "track_id,species\n1,unclassified\n",
    }
    for what, text in cases.items():
        tracks.write_text(text)
        assert main(["export", str(run), "--format", "mot", "--out", str(tmp_path / "x")]) == 3, what
        line = one_error_line(capsys)
        assert str(tracks) in line and "re-run fishcam" in line, what
    (run / "summary.json").write_text("{not json")
    tracks.write_text("\n".join(lines) + "\n")
    assert main(["export", str(run), "--format", "coco", "--out", str(tmp_path / "x")]) == 3
    assert "summary.json" in one_error_line(capsys)


def test_a_batch_report_cannot_point_outside_the_batch(finished_batch, tmp_path, capsys):
    capsys.readouterr()
    outside = tmp_path / "secret-run"
    shutil.copytree(next(p for p in finished_batch.iterdir() if p.is_dir()), outside)
    data = report(finished_batch)
    for recorded in ("..", ".", ""):
        data["done"][0]["folder"] = recorded
        (finished_batch / "batch_report.json").write_text(json.dumps(data))
        assert main(["export", str(finished_batch), "--format", "mot", "--out", str(tmp_path / "x")]) == 3
        assert "outside the batch" in one_error_line(capsys)
    # An absolute path is read as its last part inside the batch, never as the path itself.
    data["done"][0]["folder"] = str(outside)
    (finished_batch / "batch_report.json").write_text(json.dumps(data))
    assert main(["export", str(finished_batch), "--format", "mot", "--out", str(tmp_path / "x")]) == 3
    assert str(finished_batch / "secret-run") in one_error_line(capsys)
    assert not (tmp_path / "x").exists()


def test_export_file_names_come_from_a_safe_name(tmp_path):
    run = tmp_path / "run"
    assert main(["run", str(SAMPLES / "fixed_sample.mp4"), *COUNT_ONLY, "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    summary["source"] = "../../../../tmp/../escaped name.mp4"
    (run / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "exports"
    assert main(["export", str(run), "--format", "viame", "--out", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["escaped_name.viame.csv"]


def test_camtrap_export_of_a_run_whose_config_is_damaged_is_one_line(finished_batch, tmp_path, capsys):
    capsys.readouterr()
    run = next(p for p in finished_batch.iterdir() if p.is_dir())
    (run / "config.yaml").write_text("classify: [unclosed\n")
    code = main(["export", str(run), "--format", "camtrap-dp", "--out", str(tmp_path / "x"),
                 "--latitude", "-16.86", "--longitude", "145.87", "--start", "2026-05-01T09:30:00+10:00"])  # fmt: skip
    assert code == 3
    line = one_error_line(capsys)
    assert "config.yaml is damaged" in line and "--taxa" in line
