"""The command line: exit codes and one-line messages for bad input; outputs kept valid."""

import csv
import json
import subprocess
import sys

import pytest
import torch
from builders import REAL_FISH, SAMPLES, write_efficientnet_manifest

from fishcam.app.cli import main

SAMPLE = SAMPLES / "fixed_sample.mp4"
COUNT_ONLY = ["--config", "configs/count-only.yaml"]


def last_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_help_is_instant_and_module_entry_point_works():
    result = subprocess.run([sys.executable, "-m", "fishcam", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "classify" in result.stdout
    # Importing the CLI pulls in no model library.
    probe = "import sys, fishcam.app.cli; print(any(m in sys.modules for m in ('torch', 'ultralytics', 'open_clip')))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


def test_missing_input_exits_3(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.mp4"), *COUNT_ONLY, "--out", str(tmp_path / "o")]) == 3
    assert "input not found" in last_error(capsys)


def test_unknown_config_key_exits_2(tmp_path, capsys):
    assert main(["run", str(SAMPLE), "--set", "tracker.lost_track=2", "--out", str(tmp_path)]) == 2
    assert "unknown key 'tracker.lost_track' (did you mean 'lost_track_s'?)" in last_error(capsys)


def test_missing_models_offline_stop_at_once_naming_each_and_the_fetch_command(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", str(SAMPLE), "--out", str(out), "--species", str(SAMPLES / "species.txt")]) == 3
    message = last_error(capsys)
    for name in ("cfd-yolov12x-1.00.pt", "balik_modeli_final.pth", "imageomics/bioclip-2"):
        assert name in message
    assert "fishcam models fetch" in message and "count-only.yaml" in message
    assert not out.exists()  # stopped before reading a frame


def test_pickled_checkpoint_is_refused_with_exit_3(tmp_path, capsys):
    evil = tmp_path / "evil.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, evil)  # a whole module: needs unpickling classes
    code = main(["classify", str(REAL_FISH / "kde_goldfish.png"), "--set", f"classify.expert.weights={evil}"])
    assert code == 3
    assert "pickled Python objects" in last_error(capsys)


@pytest.mark.parametrize(("text", "message"), [("# none\n", "is empty"), ("Gadus morhua\ngadus morhua\n", "repeats")])
def test_bad_species_lists_exit_2(tmp_path, capsys, convnext_checkpoint, text, message):
    species = tmp_path / "species.txt"
    species.write_text(text)
    code = main(["classify", str(REAL_FISH / "kde_goldfish.png"), "--species", str(species),
                 "--set", f"classify.expert.weights={convnext_checkpoint}"])  # fmt: skip
    assert code == 2 and message in last_error(capsys)


def test_truncated_video_keeps_what_was_readable_and_exits_4(tmp_path, capsys):
    data = SAMPLE.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o"
    assert main(["run", str(cut), *COUNT_ONLY, "--out", str(out), "-q"]) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input_ended_early"] and 0 < summary["frames"] < 200
    assert any("ended early" in w for w in summary["warnings"])
    with (out / "tracks.csv").open() as handle:
        tracks = list(csv.DictReader(handle))
    positions = summary["frames"] + summary["unreadable_frames"]
    assert tracks and all(int(t["last_frame"]) < positions for t in tracks)
    import av

    with av.open(str(out / "annotated.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == summary["frames"]


def test_classify_real_weights_table_csv_json(tmp_path, capsys):
    manifest = write_efficientnet_manifest(tmp_path)
    images = [str(REAL_FISH / "kde_goldfish.png"), str(REAL_FISH / "goby_lionfish.jpg")]
    base = [
        "classify",
        *images,
        "--set",
        f"classify.expert.weights={manifest}",
        "--set",
        "classify.expert.threshold=0.5",
    ]
    assert main([*base, "--format", "json", "-q"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["species"], r["origin"]) for r in rows] == [("goldfish", "expert"), ("lionfish", "expert")]
    assert main([*base, "--format", "csv", "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("image,species,score,origin")
    assert main([*base, "-q"]) == 0
    assert "goldfish" in capsys.readouterr().out
    # The squirrel is not confidently anything in the species sense: the threshold decides.
    assert main(["classify", str(REAL_FISH / "not_a_fish_squirrel.jpg"), *base[3:], "--format", "json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["origin"] in {"expert", "unknown"}


def test_models_list_shows_missing_and_present(tmp_path, capsys, convnext_checkpoint):
    assert main(["models", "list", "--set", f"classify.expert.weights={convnext_checkpoint}"]) == 0
    out = capsys.readouterr().out
    assert "MISSING" in out and "present" in out


def test_models_fetch_offline_fails_clearly(capsys):
    assert main(["models", "fetch"]) == 3
    message = last_error(capsys)
    assert "could not fetch 3 model(s): detector https://github.com/filippovarini/community-fish-detector/" in message
    assert "cfd-yolov12x-1.00.pt: FISHCAM_OFFLINE is set" in message
    assert "expert hf://Heretix/convnext-fish-classifier/balik_modeli_final.pth: HF_HUB_OFFLINE is set" in message


def test_bounded_runs_by_frames_or_duration(tmp_path):
    assert main(["run", str(SAMPLE), *COUNT_ONLY, "--out", str(tmp_path / "a"), "-q", "--max-frames", "30"]) == 0
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["frames"] == 30
    assert main(["run", str(SAMPLE), *COUNT_ONLY, "--out", str(tmp_path / "b"), "-q", "--duration", "2"]) == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["frames"] == 50  # 2 s at 25 fps
