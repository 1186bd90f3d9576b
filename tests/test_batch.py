"""`fishcam batch`: local workers, failures recorded, resumable, aggregates by site and date."""

import csv
import subprocess
import sys
import time

import pytest
from builders import batch_report as report

from fishcam.app.cli import main

pytestmark = pytest.mark.slow

COUNT_ONLY = ["--config", "configs/count-only.yaml", "--set", "render.video=false", "-q"]


@pytest.fixture
def videos(videos):
    """Three copies of the fixed-camera sample (tests/conftest.py) and a file that is no video."""
    (videos / "broken.mp4").write_text("not a video at all")
    return videos


def tracks_of(result):
    with open(f"{result['folder']}/tracks.csv") as handle:
        return handle.read()


def test_workers_match_a_sequential_run_and_a_broken_video_is_reported(videos, tmp_path):
    assert main(["batch", str(videos), "--out", str(tmp_path / "par"), "--workers", "2", *COUNT_ONLY]) == 4
    assert main(["batch", str(videos), "--out", str(tmp_path / "seq"), "--workers", "1", *COUNT_ONLY]) == 4
    par, seq = report(tmp_path / "par"), report(tmp_path / "seq")
    assert len(par["done"]) == 3 and [f["video"].endswith("broken.mp4") for f in par["failed"]] == [True]
    assert "not a video" in par["failed"][0]["error"]
    by_video = {r["video"]: tracks_of(r) for r in seq["done"]}
    assert {r["video"]: tracks_of(r) for r in par["done"]} == by_video
    with (tmp_path / "par" / "counts_by_video.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and {r["unique_tracks"] for r in rows} == {"6"}


def test_a_killed_batch_resumes_without_redoing_finished_videos(videos, tmp_path):
    (videos / "broken.mp4").unlink()
    out = tmp_path / "out"
    command = [sys.executable, "-m", "fishcam", "batch", str(videos), "--out", str(out), *COUNT_ONLY]
    proc = subprocess.Popen(command)
    deadline = time.monotonic() + 120
    while not list(out.glob("*/batch_done.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    finished = len(list(out.glob("*/batch_done.json")))
    assert 1 <= finished < 3
    assert main(["batch", str(videos), "--out", str(out), *COUNT_ONLY]) == 0
    final = report(out)
    assert len(final["skipped"]) == finished and len(final["done"]) == 3 - finished
    # The same config again: nothing to do. Another config: everything again.
    assert main(["batch", str(videos), "--out", str(out), *COUNT_ONLY]) == 0
    assert len(report(out)["skipped"]) == 3
    assert main(["batch", str(videos), "--out", str(out), *COUNT_ONLY, "--set", "tracker.lost_track_s=2"]) == 0
    assert len(report(out)["done"]) == 3


def test_manifest_metadata_and_counts_by_site_and_date(videos, tmp_path):
    manifest = tmp_path / "survey.csv"
    manifest.write_text(
        "path,site,date,camera,depth\n"
        "videos/a.mp4,reef-north,2026-11-01,cam1,8\n"
        "videos/b.mp4,reef-north,2026-11-01,cam2,12\n"
        "videos/c.mp4,reef-south,2026-11-02,cam1,9\n"
    )
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), *COUNT_ONLY]) == 0
    with (out / "counts_by_site_date.csv").open() as handle:
        sites = {(r["site"], r["date"]): r for r in csv.DictReader(handle)}
    north = sites[("reef-north", "2026-11-01")]
    assert (north["videos"], north["unique_tracks"], north["max_n_per_video"]) == ("2", "12", "6")
    assert sites[("reef-south", "2026-11-02")]["videos"] == "1"
    with (out / "counts_by_video.csv").open() as handle:
        assert {r["camera"] for r in csv.DictReader(handle)} == {"cam1", "cam2"}


def test_bad_inputs(tmp_path, capsys):
    assert main(["batch", str(tmp_path / "none*.mp4"), "--out", str(tmp_path / "o"), *COUNT_ONLY]) == 2
    assert "no input matches" in capsys.readouterr().err
    bad = tmp_path / "m.csv"
    bad.write_text("file,site\nx.mp4,a\n")
    assert main(["batch", str(bad), "--out", str(tmp_path / "o"), *COUNT_ONLY]) == 2


def test_ray_cluster_gives_the_same_results_as_a_sequential_run(videos, tmp_path, ray_cluster):
    (videos / "broken.mp4").unlink()
    assert main(["batch", str(videos), "--out", str(tmp_path / "ray"), "--ray", ray_cluster, *COUNT_ONLY]) == 0
    assert main(["batch", str(videos), "--out", str(tmp_path / "seq"), *COUNT_ONLY]) == 0
    on_ray, sequential = report(tmp_path / "ray"), report(tmp_path / "seq")
    assert len(on_ray["done"]) == 3
    assert {r["video"]: tracks_of(r) for r in on_ray["done"]} == {r["video"]: tracks_of(r) for r in sequential["done"]}
