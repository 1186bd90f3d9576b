"""``fishcam score``: a run against MOTChallenge, VIAME and sample ground truth, metrics from
py-motmetrics and HOTA from TrackEval, counts per species with their errors."""

import csv
import json
import shutil
import subprocess
import sys

import pytest
from builders import ROOT, SAMPLES, one_error_line

from fishcam.app.cli import main
from fishcam.scoring import TruthBox, read_truth, score, tracking_metrics

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
        assert [result.tracking[k] for k in ("hota", "deta", "assa", "loca")] == [1.0] * 4
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
    assert "IDF1" in printed and "HOTA" in printed and "Pterois volitans" in printed
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["frames"] == 200 and data["truth_fish"] == 6 and data["run_tracks"] == 6
    assert 0.5 < data["tracking"]["idf1"] <= 1.0 and data["tracking"]["num_switches"] >= 0
    assert 0 < data["tracking"]["hota"] < 1 and 0 < data["tracking"]["deta"] < 1  # the boxes are not amodal
    by_species = {s["species"]: s for s in data["species"]}
    # The run named no species: every truth species is missed, and "unclassified" is extra.
    assert by_species["unclassified"]["truth_unique"] == 0 and by_species["unclassified"]["run_unique"] == 6
    assert by_species["Pterois volitans"]["unique_error"] == -by_species["Pterois volitans"]["truth_unique"]


def _one_fish(frames, run_ids, shift=0.0):
    """One fish on ``frames`` frames, and a run whose box on frame f has track ``run_ids[f]``. The
    fish id is no number: motmetrics keeps ids as floats, so fishcam numbers them itself."""
    truth = [TruthBox(f, "fish", "cod", (10.0 + f, 10.0, 50.0 + f, 40.0)) for f in range(frames)]
    hypotheses = {f: [(run_ids[f], (10.0 + f + shift, 10.0, 50.0 + f + shift, 40.0))] for f in range(frames)}
    return truth, hypotheses


def test_hota_when_the_track_changes_identity_halfway():
    """Every box found exactly, but the fish is track 1 for 5 frames and track 2 for the next 5:
    TrackEval's HOTA keeps detection perfect and halves association (each track matches the
    fish on 5 of its 10 frames), so HOTA = √0.5, where motmetrics sees one switch and IDF1 0.5."""
    truth, hypotheses = _one_fish(10, ["1"] * 5 + ["2"] * 5)
    t = tracking_metrics(truth, hypotheses, 10)
    assert t["deta"] == t["loca"] == 1.0 and t["assa"] == 0.5
    assert t["hota"] == pytest.approx(0.5**0.5, abs=1e-4)
    assert t["num_switches"] == 1 and t["idf1"] == 0.5
    assert tracking_metrics(*_one_fish(10, ["1"] * 10), 10)["hota"] == 1.0  # one track all along


def test_hota_of_boxes_that_fit_loosely_falls_with_the_iou_thresholds():
    """Boxes shifted 10 px on a 40-px fish (IoU 0.6): HOTA averages over thresholds 0.05 … 0.95
    and matches at 12 of the 19 (those up to 0.6), where motmetrics at --iou 0.5 finds them all."""
    truth, hypotheses = _one_fish(10, ["1"] * 10, shift=10.0)
    t = tracking_metrics(truth, hypotheses, 10)
    assert t["mota"] == 1.0 and t["idf1"] == 1.0
    assert t["deta"] == t["hota"] == pytest.approx(12 / 19, abs=1e-4)


def test_hota_is_trackevals_own_on_the_same_files(fixed_run, tmp_path):
    """The in-memory data fishcam hands TrackEval's HOTA class gives what TrackEval's own
    MOTChallenge reader and evaluator give on the run's MOT export and the truth as gt.txt."""
    trackeval = pytest.importorskip("trackeval")
    assert main(["export", str(fixed_run), "--format", "mot", "--out", str(tmp_path / "export")]) == 0
    (tmp_path / "trackers" / "fishcam" / "data").mkdir(parents=True)
    shutil.copy(tmp_path / "export" / "fixed_sample.txt", tmp_path / "trackers" / "fishcam" / "data" / "seq.txt")
    (tmp_path / "gt" / "seq" / "gt").mkdir(parents=True)
    with (SAMPLES / "fixed_sample.gt.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    ids = {fish: n for n, fish in enumerate(dict.fromkeys(r["fish_id"] for r in rows), start=1)}
    lines = []
    for r in rows:
        x1, y1, x2, y2 = (float(r[k]) for k in ("x1", "y1", "x2", "y2"))
        lines.append(f"{int(r['frame']) + 1},{ids[r['fish_id']]},{x1 + 1},{y1 + 1},{x2 - x1},{y2 - y1},1,1,1\n")
    (tmp_path / "gt" / "seq" / "gt" / "gt.txt").write_text("".join(lines))
    quiet = {"PRINT_CONFIG": False}
    evaluator = trackeval.Evaluator(
        {**quiet, "USE_PARALLEL": False, "PRINT_RESULTS": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
         "PLOT_CURVES": False, "TIME_PROGRESS": False}
    )  # fmt: skip
    dataset = trackeval.datasets.MotChallenge2DBox(
        {**quiet, "GT_FOLDER": str(tmp_path / "gt"), "TRACKERS_FOLDER": str(tmp_path / "trackers"),
         "SKIP_SPLIT_FOL": True, "SEQ_INFO": {"seq": 200}, "TRACKERS_TO_EVAL": ["fishcam"]}
    )  # fmt: skip
    results, _ = evaluator.evaluate([dataset], [trackeval.metrics.HOTA()])
    theirs = results["MotChallenge2DBox"]["fishcam"]["seq"]["pedestrian"]["HOTA"]
    ours = score(fixed_run, SAMPLES / "fixed_sample.gt.csv").tracking
    assert 0 < ours["hota"] < 1
    for name in ("HOTA", "DetA", "AssA", "LocA"):
        assert ours[name.lower()] == pytest.approx(float(theirs[name].mean()), abs=1e-3), name


def test_an_interpolated_column_in_the_detections_changes_nothing(fixed_run, tmp_path):
    """detections.csv is read by column name: a last column ``interpolated`` may be there or not,
    and its boxes are scored like the others."""
    run = tmp_path / "run"
    shutil.copytree(fixed_run, run)
    lines = (run / "detections.csv").read_text().splitlines()
    (run / "detections.csv").write_text(
        "\n".join([lines[0] + ",interpolated", *(f"{line},{n % 2}" for n, line in enumerate(lines[1:]))]) + "\n"
    )
    truth = SAMPLES / "fixed_sample.gt.csv"
    assert score(run, truth).tracking == score(fixed_run, truth).tracking


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


@pytest.mark.parametrize("package", ["motmetrics", "trackeval"])
def test_without_a_scoring_package_score_says_what_to_install(fixed_run, package):
    probe = (
        f"import sys; sys.modules[{package!r}] = None\n"
        "from fishcam.app.cli import main\n"
        f"sys.exit(main(['score', {str(fixed_run)!r}, {str(SAMPLES / 'fixed_sample.gt.csv')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"fishcam score needs {package}," in done.stderr and "pip install 'fishcam[score]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_offline_sample_run_scores_as_the_docs_say(tmp_path, monkeypatch, capsys):
    """docs/commands.md's example: the shipped sample models on the dive sample, scored against
    its exact ground truth: no identity switch, every species' unique count and MaxN exact, and
    HOTA printed beside IDF1 (below it: the boxes do not fit the amodal truth at the strictest
    IoU thresholds)."""
    monkeypatch.chdir(ROOT)  # configs/sample.yaml names its models relative to the repository
    config = ["--config", "configs/sample.yaml"]
    out = tmp_path / "run"
    assert main(["run", str(SAMPLES / "dive_sample.mp4"), *config, "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["score", str(out), str(SAMPLES / "dive_sample.gt.csv"), "--json", str(tmp_path / "s.json")]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if "IDF1" in line)
    assert header.index("IDF1") < header.index("HOTA") < header.index("DetA") < header.index("AssA")
    t = json.loads((tmp_path / "s.json").read_text())["tracking"]
    assert 0.75 <= t["hota"] < t["idf1"] and t["deta"] >= 0.75 and t["assa"] >= 0.75
    result = score(out, SAMPLES / "dive_sample.gt.csv")
    assert result.tracking["idf1"] >= 0.9 and result.tracking["num_switches"] == 0
    assert len(result.species) == 5 and all(s.unique_error == s.max_n_error == 0 for s in result.species)
