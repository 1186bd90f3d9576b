"""The review applied to a real run (the dive sample through the whole pipeline): corrections
move tracks between species, out of the counts, together and apart, and replay the same."""

import pytest
from review_helpers import AT, add, by_species, rows, tracks

from fishcam.review import Correction, apply_review, reviewed_run, write_reviewed
from fishcam.sinks.exports import read_run


def species_tracks(folder, species):
    return sorted((t for t in tracks(folder).values() if t["species"] == species), key=lambda t: int(t["first_frame"]))


def test_without_corrections_the_review_is_the_run(run_dir, tmp_path):
    run = reviewed_run(run_dir)
    assert run.progress == (0, len(tracks(run_dir))) and run.reviewed == frozenset()
    write_reviewed(run, tmp_path / "reviewed")
    # The counts recomputed from tracks and boxes are the pipeline's, to the byte.
    assert (tmp_path / "reviewed" / "species_counts.csv").read_bytes() == (run_dir / "species_counts.csv").read_bytes()
    reviewed = tracks(tmp_path / "reviewed")
    for tid, row in tracks(run_dir).items():
        assert {k: reviewed[tid][k] for k in row} == row
        assert (reviewed[tid]["reviewed_by"], reviewed[tid]["review_action"]) == ("", "")
    assert len(rows(tmp_path / "reviewed" / "detections.csv")) == len(rows(run_dir / "detections.csv"))


def test_a_new_species_moves_the_track_between_species_rows(run_dir):
    lionfish = species_tracks(run_dir, "Pterois volitans")
    assert len(lionfish) == 2  # the sample's two lionfish, both in view from the second's first frame
    before = by_species(reviewed_run(run_dir).counts)
    assert before["Pterois volitans"][:2] == (2, 2) and before["Chelmon rostratus"][:2] == (1, 1)
    moved, stays = lionfish
    add(run_dir, "species", int(moved["track_id"]), species="Chelmon rostratus")
    run = reviewed_run(run_dir)
    after = by_species(run.counts)
    assert after["Pterois volitans"] == (1, 1, int(stays["first_frame"]))
    (butterflyfish,) = species_tracks(run_dir, "Chelmon rostratus")
    # Both on screen together from the later of their first frames: MaxN 2 there.
    assert after["Chelmon rostratus"] == (2, 2, max(int(moved["first_frame"]), int(butterflyfish["first_frame"])))
    row = run.record.tracks[int(moved["track_id"])]
    assert (row["species"], row["origin"], row["counted"], row["reviewed_by"], row["reviewed_at"]) == (
        "Chelmon rostratus", "review", "1", "ana", AT)  # fmt: skip
    state = run.states[int(moved["track_id"])]
    assert (state.action, state.reviewer, state.pipeline_species) == ("species", "ana", "Pterois volitans")
    assert run.progress == (1, 6) and run.record.summary.species["Chelmon rostratus"].unique == 2


def test_not_a_fish_leaves_the_counts(run_dir):
    (trout,) = species_tracks(run_dir, "Plectropomus leopardus")
    add(run_dir, "not_fish", int(trout["track_id"]), reviewer="ben")
    run = reviewed_run(run_dir)
    assert "Plectropomus leopardus" not in by_species(run.counts)
    row = run.record.tracks[int(trout["track_id"])]
    assert (row["counted"], row["reason"], row["review_action"]) == ("0", "not a fish (review: ben)", "not_fish")
    assert run.record.summary.counted_tracks == 5 and sum(c.unique for c in run.counts) == 5


def test_a_merge_gives_one_track_with_both_tracks_boxes(run_dir):
    original = read_run(run_dir)
    (first,) = species_tracks(run_dir, "Chelmon rostratus")  # frames 1-71 in the sample
    (second,) = species_tracks(run_dir, "Plectropomus leopardus")  # 71-199
    a, b = int(first["track_id"]), int(second["track_id"])
    add(run_dir, "merge", b, into=a)
    run = reviewed_run(run_dir)
    assert b not in run.record.tracks and run.total == 5
    frames_a = {int(r["frame"]) for r in original.boxes if int(r["track_id"]) == a}
    frames_b = {int(r["frame"]) for r in original.boxes if int(r["track_id"]) == b}
    merged = [r for r in run.record.boxes if int(r["track_id"]) == a]
    assert sorted(int(r["frame"]) for r in merged) == sorted(frames_a | frames_b)  # one box a frame
    assert not [r for r in run.record.boxes if int(r["track_id"]) == b]
    row = run.record.tracks[a]
    assert (int(row["first_frame"]), int(row["last_frame"])) == (min(frames_a | frames_b), max(frames_a | frames_b))
    assert float(row["last_time_s"]) == float(second["last_time_s"])
    # Detected boxes, not filled-in ones: both tracks' less the frame they share.
    assert int(row["detections"]) == sum(r["interpolated"] != "1" for r in merged)
    assert int(row["detections"]) == int(first["detections"]) + int(second["detections"]) - len(frames_a & frames_b)
    assert row["species"] == "Chelmon rostratus"  # the track merged into keeps its species
    counts = by_species(run.counts)
    assert "Plectropomus leopardus" not in counts and counts["Chelmon rostratus"][:2] == (1, 1)
    assert [c.action for c in run.states[a].history] == ["merge"]


def test_a_split_gives_two_tracks_the_new_one_with_the_next_id(run_dir):
    lionfish = species_tracks(run_dir, "Pterois volitans")[0]  # frames 1-199
    tid = int(lionfish["track_id"])
    new = max(tracks(run_dir)) + 1
    add(run_dir, "split", tid, frame=100)
    run = reviewed_run(run_dir)
    assert run.total == 7 and new in run.record.tracks
    early = [int(r["frame"]) for r in run.record.boxes if int(r["track_id"]) == tid]
    late = [int(r["frame"]) for r in run.record.boxes if int(r["track_id"]) == new]
    assert max(early) < 100 <= min(late) and len(early) + len(late) == int(lionfish["detections"]) + sum(
        r["interpolated"] == "1" for r in rows(run_dir / "detections.csv") if int(r["track_id"]) == tid
    )
    assert (run.record.tracks[tid]["last_frame"], run.record.tracks[new]["first_frame"]) == (str(max(early)), "100")
    assert run.record.tracks[new]["species"] == "Pterois volitans" and new in run.queue  # to be reviewed
    assert by_species(run.counts)["Pterois volitans"][:2] == (3, 2)


def test_a_split_part_without_the_evidence_is_not_counted(run_dir):
    lionfish = species_tracks(run_dir, "Pterois volitans")[0]
    add(run_dir, "split", int(lionfish["track_id"]), frame=int(lionfish["last_frame"]))
    run = reviewed_run(run_dir)
    new = max(run.record.tracks)
    # Judged again by the run's count rules (configs/sample.yaml: the defaults, 4 detections).
    assert (run.record.tracks[new]["counted"], run.record.tracks[new]["reason"]) == ("0", "1 detections, fewer than 4")
    add(run_dir, "confirm", new)  # a person saw it: counted
    assert reviewed_run(run_dir).record.tracks[new]["counted"] == "1"


def test_a_later_correction_overrides_an_earlier_one(run_dir):
    (wrasse,) = species_tracks(run_dir, "Thalassoma lunare")
    tid = int(wrasse["track_id"])
    add(run_dir, "species", tid, species="Pterois volitans")
    add(run_dir, "species", tid, reviewer="ben", species="Achoerodus viridis")
    run = reviewed_run(run_dir)
    assert run.record.tracks[tid]["species"] == "Achoerodus viridis" and run.states[tid].reviewer == "ben"
    assert by_species(run.counts)["Achoerodus viridis"][0] == 2 and "Thalassoma lunare" not in by_species(run.counts)
    add(run_dir, "not_fish", tid)
    assert "Thalassoma lunare" not in by_species(reviewed_run(run_dir).counts)
    add(run_dir, "confirm", tid)  # changed their mind again: the pipeline's species, seen by a person
    run = reviewed_run(run_dir)
    assert (run.record.tracks[tid]["species"], run.record.tracks[tid]["counted"]) == ("Thalassoma lunare", "1")
    assert by_species(run.counts)["Thalassoma lunare"][:2] == (1, 1) and run.progress == (1, 6)
    assert [c.action for c in run.states[tid].history] == ["species", "species", "not_fish", "confirm"]


def test_replaying_twice_gives_the_same_result(run_dir, tmp_path):
    ids = sorted(tracks(run_dir))
    add(run_dir, "split", ids[1], frame=120)
    add(run_dir, "merge", ids[3], into=ids[0])
    add(run_dir, "species", ids[2], species="Chelmon rostratus")
    add(run_dir, "not_fish", ids[5])
    first, second = reviewed_run(run_dir), reviewed_run(run_dir)
    assert first.record.tracks == second.record.tracks and first.record.boxes == second.record.boxes
    assert first.counts == second.counts and first.states == second.states
    write_reviewed(first, tmp_path / "a")
    write_reviewed(second, tmp_path / "b")
    for name in ("tracks.csv", "detections.csv", "species_counts.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_the_queue_puts_unknown_species_then_low_scores_first(run_dir):
    record = read_run(run_dir)
    ids = sorted(record.tracks)
    record.tracks[ids[4]]["species"] = "unknown"
    record.tracks[ids[2]]["score"] = "0.5100"
    run = apply_review(record, [Correction("confirm", ids[0], "ana", AT)])
    assert run.queue[:2] == [ids[4], ids[2]] and ids[0] not in run.queue and len(run.queue) == 5
    scores = [float(run.record.tracks[t]["score"]) for t in run.queue[1:]]
    assert scores == sorted(scores)


def test_a_correction_in_the_file_that_does_not_fit_names_its_line(run_dir):
    add(run_dir, "confirm", 0)
    with (run_dir / "review.jsonl").open("a") as handle:
        handle.write('{"v": 1, "at": "2026-12-02T21:31:00Z", "reviewer": "ana", "action": "confirm", "track": 42}\n')
    from fishcam.errors import SourceError

    with pytest.raises(SourceError, match=r"review\.jsonl, line 2: .*no track 42"):
        reviewed_run(run_dir)
    before = (run_dir / "review.jsonl").read_bytes()
    with pytest.raises(SourceError, match=r"review\.jsonl, line 2: .*no track 42"):
        add(run_dir, "confirm", 1)  # nothing more is appended to a file that does not fit
    assert (run_dir / "review.jsonl").read_bytes() == before
