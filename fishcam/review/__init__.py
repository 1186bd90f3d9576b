"""The human review of a finished run (docs/review.md): corrections in an append-only file
beside the run, replayed over its tracks into reviewed tracks, counts and exports.

The API the review page calls:

- :func:`reviewed_run` (folder) → :class:`ReviewedRun`: the reviewed tracks (``record``), counts,
  each track's :class:`TrackReview` (``states``), ``progress`` and ``queue``;
- :func:`append_correction` (folder, :class:`Correction`): checked against the run as reviewed,
  then appended;
- :func:`read_review` (folder): the corrections so far;
- :func:`export_reviewed` (folder, formats): what ``fishcam export --reviewed`` writes.
"""

from fishcam.review.apply import (
    REVIEW_COLUMNS,
    REVIEW_ORIGIN,
    ReviewConflict,
    ReviewedRun,
    TrackReview,
    apply_review,
    progress,
    review_queue,
)
from fishcam.review.folder import (
    REVIEWED_DIR,
    count_rules,
    export_reviewed,
    review_of,
    reviewed_outputs,
    reviewed_run,
    write_reviewed,
)
from fishcam.review.log import ACTIONS, REVIEW_NAME, VERDICTS, Correction, append_correction, now_utc, read_review

__all__ = [
    "ACTIONS",
    "REVIEWED_DIR",
    "REVIEW_COLUMNS",
    "REVIEW_NAME",
    "REVIEW_ORIGIN",
    "VERDICTS",
    "Correction",
    "ReviewConflict",
    "ReviewedRun",
    "TrackReview",
    "append_correction",
    "apply_review",
    "count_rules",
    "export_reviewed",
    "now_utc",
    "progress",
    "read_review",
    "review_of",
    "review_queue",
    "reviewed_outputs",
    "reviewed_run",
    "write_reviewed",
]
