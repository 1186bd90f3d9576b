"""``fishcam score``: a run against MOTChallenge, VIAME and sample ground truth, metrics from
py-motmetrics, counts per species with their errors."""

import json
import subprocess
import sys

import pytest
from builders import ROOT, SAMPLES, one_error_line

from fishcam.app.cli import main
from fishcam.scoring import read_truth, score

COUNT_ONLY = ["--config", str(ROOT / "configs" / "count-only.yaml")]


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixed-run")
    assert main(["run", str(SAMPLES / "fixed_sample.mp4"), *COUNT_ONLY, "--out", str(out), "-q"]) == 0
    return out


def test_a_run_scored_against_its_own_mot_and_viame_exports_is_perfect(fixed_run, tmp_path):
    """The exports count frames, ids and pixels as their formats do: read back as ground truth,
    they give the run's own boxes, so every metric is perfect and every count exact."""
    assert main(["export", str(fixed_run), "--format", "mot", "--format", "viame", "--out", str(tmp_path)]) == 0
    for truth in (tmp_path / "fixed_sample.txt", tmp_path / "fixed_sample.viame.csv"):
        result = score(fixed_run, truth)
        assert result.tracking["idf1"] == result.tracking["mota"] == 1.0 and result.tracking["num_switches"] == 0
        assert result.truth_fish == result.run_tracks == 6
        assert all(s.unique_error == 0 for s in result.species), result.species
    viame = score(fixed_run, tmp_path / "fixed_sample.viame.csv")
    assert [(s.species, s.truth_unique, s.max_n_error) for s in viame.species] == [("unclassified", 6, 0)]


def test_the_sample_run_against_the_sample_ground_truth(fixed_run, tmp_path, capsys):
    """Real scores against the exact ground truth: the motion detector's boxes are not the
    amodal truth's, so MOTA is below 1; species are named by the ground truth, not this run."""
    code = main(["score", str(fixed_run), str(SAMPLES / "fixed_sample.gt.csv"), "--json", str(tmp_path / "s.json")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "IDF1" in printed and "Pterois volitans" in printed
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["frames"] == 200 and data["truth_fish"] == 6 and data["run_tracks"] == 6
    assert 0.5 < data["tracking"]["idf1"] <= 1.0 and data["tracking"]["num_switches"] >= 0
    by_species = {s["species"]: s for s in data["species"]}
    # The run named no species: every truth species is missed, and "unclassified" is extra.
    assert by_species["unclassified"]["truth_unique"] == 0 and by_species["unclassified"]["run_unique"] == 6
    assert by_species["Pterois volitans"]["unique_error"] == -by_species["Pterois volitans"]["truth_unique"]


def test_mot_rows_count_from_one_and_boxes_to_ignore_are_left_out(tmp_path):
    truth = tmp_path / "gt.txt"
    truth.write_text("1,1,11,21,30,40,1,1,1\n1,2,100,100,10,10,0,1,1\n2,1,12,21,30,40,1,1,1\n")
    boxes = read_truth(truth)
    assert [(b.frame, b.object_id, b.xyxy) for b in boxes] == [(0, "1", (10, 20, 40, 60)), (1, "1", (11, 20, 41, 60))]
    assert boxes[0].species is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("frame,fish_id,species,x1,y1,x2,y2\n0,1,cod,10,10,5,20\n", "line 2: box"),  # x2 < x1
        ("frame,fish_id,species,x1,y1,x2,y2\nsoon,1,cod,1,1,5,5\n", "line 2"),
        ("1,1,11,21,thirty,40,1,1,1\n", "line 1"),
        ("", "holds no boxes"),
    ],
)
def test_damaged_ground_truth_is_one_line_naming_the_row(fixed_run, tmp_path, capsys, text, named):
    truth = tmp_path / "gt.csv"
    truth.write_text(text)
    assert main(["score", str(fixed_run), str(truth)]) == 3
    line = one_error_line(capsys)
    assert str(truth) in line and named in line


def test_without_motmetrics_score_says_what_to_install(fixed_run):
    probe = (
        "import sys; sys.modules['motmetrics'] = None\n"
        "from fishcam.app.cli import main\n"
        f"sys.exit(main(['score', {str(fixed_run)!r}, {str(SAMPLES / 'fixed_sample.gt.csv')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "fishcam score needs motmetrics" in done.stderr and "pip install 'fishcam[score]'" in done.stderr


def test_the_offline_sample_run_scores_as_the_docs_say(tmp_path, monkeypatch):
    """docs/commands.md's example: the shipped sample models on the dive sample, scored against
    its exact ground truth: no identity switch, every species' unique count and MaxN exact."""
    monkeypatch.chdir(ROOT)  # configs/sample.yaml names its models relative to the repository
    config = ["--config", "configs/sample.yaml"]
    assert main(["run", str(SAMPLES / "dive_sample.mp4"), *config, "--out", str(tmp_path), "-q"]) == 0
    result = score(tmp_path, SAMPLES / "dive_sample.gt.csv")
    assert result.tracking["idf1"] >= 0.9 and result.tracking["num_switches"] == 0
    assert len(result.species) == 5 and all(s.unique_error == s.max_n_error == 0 for s in result.species)
