"""The review file: one JSON line per correction, appended whole, read back strictly."""

import json
import logging

import pytest
from review_helpers import AT, add

from fishcam.errors import ConfigError, SourceError
from fishcam.review import REVIEW_NAME, Correction, append_correction, read_review


def test_each_correction_is_one_json_line_read_back_as_written(run_dir):
    made = [add(run_dir, "species", 3, species="Pterois volitans"), add(run_dir, "merge", 4, into=0),
            add(run_dir, "split", 1, frame=50), add(run_dir, "not_fish", 2), add(run_dir, "confirm", 5)]  # fmt: skip
    lines = (run_dir / REVIEW_NAME).read_text().splitlines()
    assert json.loads(lines[0]) == {"v": 1, "at": AT, "reviewer": "ana", "action": "species", "track": 3,
                                    "species": "Pterois volitans"}  # fmt: skip
    assert json.loads(lines[2])["frame"] == 50 and json.loads(lines[1])["into"] == 0
    assert read_review(run_dir) == made


def test_the_time_is_stamped_when_not_given(run_dir):
    written = append_correction(run_dir, Correction("confirm", 0, "ana"))
    assert written.at.endswith("Z") and read_review(run_dir) == [written]


def test_a_torn_last_line_is_ignored_and_cut_off_by_the_next_append(run_dir, caplog):
    add(run_dir, "confirm", 0)
    path = run_dir / REVIEW_NAME
    with path.open("a") as handle:
        handle.write('{"v": 1, "at": "2026-12-02T21:31:00Z", "reviewer": "ana", "act')  # a crash mid-write
    with caplog.at_level(logging.WARNING):
        assert [c.track for c in read_review(run_dir)] == [0]
    assert "line 2 was cut short" in caplog.text
    add(run_dir, "confirm", 1)
    assert [c.track for c in read_review(run_dir)] == [0, 1]
    assert path.read_text().count("\n") == 2


def test_a_bad_line_is_an_error_naming_the_file_and_line(run_dir):
    add(run_dir, "confirm", 0)
    path = run_dir / REVIEW_NAME
    with path.open("a") as handle:
        handle.write("not json\n")
        handle.write(path.read_text().splitlines()[0] + "\n")
    with pytest.raises(SourceError, match=rf"{REVIEW_NAME}, line 2: not a JSON line"):
        read_review(run_dir)
    path.write_text('{"v": 1, "at": "2026-12-02T21:31:00Z", "reviewer": "ana", "action": "paint", "track": 1}\n')
    with pytest.raises(SourceError, match=r"line 1: not a review correction \(action is 'paint'"):
        read_review(run_dir)


@pytest.mark.parametrize(
    ("correction", "message"),
    [
        (Correction("confirm", 42, "ana", AT), "the run has no track 42"),
        (Correction("merge", 1, "ana", AT, into=1), "cannot be merged into itself"),
        (Correction("merge", 1, "ana", AT, into=42), "cannot merge into it: the run has no track 42"),
        (Correction("merge", 5, "ana", AT, into=3), "cannot merge into it: track 3 was merged into track 0"),
        (Correction("species", 3, "ana", AT, species="Pterois volitans"), "track 3 was merged into track 0"),
        (Correction("split", 1, "ana", AT, frame=1), "split it at a frame from 2 to 199"),
        (Correction("split", 1, "ana", AT, frame=500), "split it at a frame from 2 to 199"),
        (Correction("confirm", 1, " ", AT), "the reviewer's name is empty"),
        (Correction("species", 1, "ana", AT, species=" "), "the species is empty"),
        (Correction("species", 1, "ana", AT), "a species correction needs species"),
        (Correction("confirm", 1, "ana", "yesterday"), "not an ISO 8601 time"),
        (Correction("delete", 1, "ana", AT), "not one of confirm, species, not_fish, merge, split"),
    ],
)
def test_an_invalid_correction_is_refused_and_nothing_is_appended(run_dir, correction, message):
    add(run_dir, "merge", 3, into=0)
    before = (run_dir / REVIEW_NAME).read_bytes()
    with pytest.raises(ConfigError, match=message):
        append_correction(run_dir, correction)
    assert (run_dir / REVIEW_NAME).read_bytes() == before


def test_a_folder_that_is_not_a_run_gets_no_review_file(tmp_path):
    with pytest.raises(SourceError, match="not a finished fishcam run"):
        append_correction(tmp_path, Correction("confirm", 0, "ana", AT))
    assert not (tmp_path / REVIEW_NAME).exists()
