"""``fishcam export RUN --reviewed``: the reviewed tables and every format carry the corrections,
read back by readers that are not fishcam's (motmetrics, pycocotools, Frictionless); the run's
own files stay byte for byte as the pipeline wrote them."""

import csv
import hashlib
import json
import shutil

import motmetrics as mm
from review_helpers import AT, add, rows, tracks
from sinks.test_camtrap import validate_package

from fishcam.app.cli import main

START = "2026-05-01T09:30:00+10:00"


def digests(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def corrected(run_dir):
    """Five corrections of the sample: ids by species, as the pipeline gave them."""
    ids = {row["species"]: tid for tid, row in sorted(tracks(run_dir).items(), reverse=True)}
    lionfish, trout = ids["Pterois volitans"], ids["Plectropomus leopardus"]  # the first lionfish: frames 1-199
    add(run_dir, "species", ids["Thalassoma lunare"], species="Chelmon rostratus")
    add(run_dir, "merge", trout, into=ids["Chelmon rostratus"])
    add(run_dir, "not_fish", ids["Achoerodus viridis"], reviewer="ben")
    add(run_dir, "split", lionfish, frame=150)
    add(run_dir, "confirm", lionfish)
    return ids


def test_export_reviewed_carries_the_corrections_into_every_format(run_dir, tmp_path):
    ids = corrected(run_dir)
    before = digests(run_dir)
    new = max(tracks(run_dir)) + 1
    formats = [arg for fmt in ("mot", "viame", "coco", "camtrap-dp") for arg in ("--format", fmt)]
    args = ["export", str(run_dir), "--reviewed", *formats, "-q", "--latitude", "-16.86", "--longitude", "145.87",
            "--start", START]  # fmt: skip
    assert main(args) == 0
    out = run_dir / "reviewed"
    after = digests(run_dir)
    assert {k: v for k, v in after.items() if k.parts[0] != "reviewed"} == before  # the run as it was
    reviewed = tracks(out)
    gone = ids["Plectropomus leopardus"]
    assert gone not in reviewed and new in reviewed and set(reviewed) == set(tracks(run_dir)) - {gone} | {new}
    boxes = rows(out / "detections.csv")
    owner = {(int(b["frame"]), float(b["x1"]), float(b["y1"])): int(b["track_id"]) for b in boxes}

    # MOT: the merged track's boxes under its new owner's id, the split part under the new id.
    mot = mm.io.loadtxt(str(out / "dive_sample.txt"), fmt="mot15-2D")
    assert len(mot) == len(boxes)
    assert sorted(mot.index.get_level_values("Id").unique()) == sorted(t + 1 for t in reviewed)
    late = mot.xs(ids["Pterois volitans"] + 1, level="Id").index
    assert max(late) == 150  # frame 149, counted from 1
    assert min(mot.xs(new + 1, level="Id").index) == 151
    for (frame, tid), row in mot.iterrows():
        assert owner[(frame - 1, round(row["X"], 1), round(row["Y"], 1))] == tid - 1  # motmetrics: 0-based pixels

    # VIAME: each box's species column is its reviewed track's.
    lines = (out / "dive_sample.viame.csv").read_text().splitlines()
    viame = list(csv.reader(lines[2:]))
    assert len(viame) == len(boxes)
    for row in viame:
        assert row[9:] == [reviewed[int(row[0])]["species"], reviewed[int(row[0])]["score"]]
    assert {r[9] for r in viame if int(r[0]) == ids["Thalassoma lunare"]} == {"Chelmon rostratus"}

    # COCO, through the reference API: the reviewed species as categories, the reviewed track ids.
    from pycocotools.coco import COCO

    coco = COCO(str(out / "dive_sample.coco.json"))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    annotations = coco.loadAnns(coco.getAnnIds())
    assert {a["track_id"] for a in annotations} == set(reviewed)
    for a in annotations:
        assert names[a["category_id"]] == reviewed[a["track_id"]]["species"]
        assert a["counted"] == (reviewed[a["track_id"]]["counted"] == "1")
    assert "Thalassoma lunare" not in names.values() and "Plectropomus leopardus" not in names.values()
    assert {a["origin"] for a in annotations if a["track_id"] == ids["Thalassoma lunare"]} == {"review"}

    # Camtrap DP, validated by Frictionless: reviewed tracks classified by a human, by name, then.
    package = out / "camtrap-dp"
    validate_package(package, tmp_path)
    with (package / "observations.csv").open(encoding="utf-8") as handle:
        observations = {int(o["observationTags"].removeprefix("track:")): o for o in csv.DictReader(handle)}
    assert set(observations) == {t for t, r in reviewed.items() if r["counted"] == "1"}
    assert ids["Achoerodus viridis"] not in observations  # not a fish: no observation
    wrasse = observations[ids["Thalassoma lunare"]]
    assert (wrasse["scientificName"], wrasse["classificationMethod"], wrasse["classifiedBy"]) == (
        "Chelmon rostratus", "human", "ana")  # fmt: skip
    assert wrasse["classificationTimestamp"] == AT and wrasse["classificationProbability"] == ""
    assert wrasse["observationComments"].endswith("species given by ana in review")
    machine = observations[ids["Chelmon rostratus"]]
    assert machine["classificationMethod"] == "machine" and "expert" in machine["classifiedBy"]
    assert observations[new]["classificationMethod"] == "machine"  # the split-off part: not reviewed yet

    counts = {r["species"]: r for r in rows(out / "species_counts.csv")}
    assert set(counts) == {"Chelmon rostratus", "Pterois volitans"}
    assert (counts["Chelmon rostratus"]["unique_tracks"], counts["Pterois volitans"]["unique_tracks"]) == ("2", "3")


def test_export_reviewed_of_a_batch_applies_each_runs_own_review(run_dir, tmp_path):
    batch = tmp_path / "batch"
    batch.mkdir()
    for name in ("a", "b"):
        shutil.copytree(run_dir, batch / name)
    report = {"done": [{"video": f"{name}.mp4", "folder": name} for name in ("a", "b")], "skipped": []}
    (batch / "batch_report.json").write_text(json.dumps(report))
    ids = sorted(tracks(run_dir))
    add(batch / "a", "not_fish", ids[0])
    add(batch / "b", "species", ids[0], species="Pterois volitans")
    assert main(["export", str(batch), "--reviewed", "--format", "viame", "-q"]) == 0
    a, b = tracks(batch / "reviewed" / "a"), tracks(batch / "reviewed" / "b")
    assert (a[ids[0]]["counted"], b[ids[0]]["counted"]) == ("0", "1")
    assert (a[ids[0]]["species"], b[ids[0]]["species"]) == (tracks(run_dir)[ids[0]]["species"], "Pterois volitans")
    viame = list(csv.reader((batch / "reviewed" / "b" / "dive_sample.viame.csv").read_text().splitlines()[2:]))
    assert {r[9] for r in viame if int(r[0]) == ids[0]} == {"Pterois volitans"}


def test_export_needs_a_format_or_reviewed(run_dir, capsys):
    assert main(["export", str(run_dir)]) == 2
    assert "give at least one --format" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--reviewed", "-q"]) == 0
    assert rows(run_dir / "reviewed" / "species_counts.csv") == rows(run_dir / "species_counts.csv")


def test_the_reviewed_tables_never_go_over_the_runs_own(run_dir, capsys):
    add(run_dir, "not_fish", 0)
    before = digests(run_dir)
    assert main(["export", str(run_dir), "--reviewed", "--out", str(run_dir)]) == 2
    assert "the run folder itself" in capsys.readouterr().err
    assert digests(run_dir) == before
