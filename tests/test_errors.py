"""One mapping from how something ended to its exit code, used by the process, summary.json,
cameras.json and the batch report alike."""

import pytest

from fishcam.errors import (
    ConfigError,
    MissingModelError,
    OutputError,
    SourceError,
    Terminated,
    TrainingError,
    exit_code_for,
)


@pytest.mark.parametrize(
    ("error", "gave_up", "damaged", "code"),
    [
        (None, False, False, 0),
        (None, False, True, 4),  # finished; the input was damaged (or a batch lost videos)
        (None, True, False, 3),  # a camera that stopped reconnecting
        (None, True, True, 3),
        (ConfigError("x"), False, False, 2),
        (MissingModelError("x"), False, False, 3),
        (SourceError("x"), False, True, 3),
        (TrainingError("x"), False, False, 5),
        (OutputError("x"), False, False, 6),
        (ZeroDivisionError("a bug"), False, False, 1),
        (KeyboardInterrupt(), True, True, 130),  # how it ended beats what the input was like
        (Terminated(), False, False, 143),
    ],
)
def test_exit_codes(error, gave_up, damaged, code):
    assert exit_code_for(error, gave_up=gave_up, damaged=damaged) == code
