"""The runs under a served folder and what their pages show, read from the run folders only:
summary.json, tracks.csv, species_counts.csv, the best views (``views/``), the MaxN evidence
frames (``maxn/``) and the review file (through :mod:`fishcam.review`)."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fishcam.serve.safety import masked
from fishcam.sinks.run_writer import CONFIG_NAME, COUNTS_NAME, SUMMARY_NAME, TRACKS_NAME, read_summary
from fishcam.sinks.views import INDEX_NAME, MAXN_DIR, VIEWS_DIR
from fishcam.types import RunSummary

log = logging.getLogger(__name__)

# Folders a run writes inside itself: never runs of their own.
_NOT_RUNS = {"views", "maxn", "reviewed", "exports", ".git", "__pycache__"}
_MAX_DEPTH = 4
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class RunEntry:
    """One run folder as the index lists it."""

    rel: str  # its path under the served folder, with "/"
    folder: Path
    summary: RunSummary | None
    problem: str = ""  # why its summary cannot be read
    reviewable: bool = False  # has tracks.csv
    progress: tuple[int, int] | None = None  # reviewed, tracks

    @property
    def status(self) -> str:
        return self.summary.status.value if self.summary is not None else "unreadable"

    @property
    def source(self) -> str:
        if self.summary is None:
            return ""
        return masked(self.summary.info.source or self.summary.info.source_path or "")


def find_runs(root: Path) -> list[RunEntry]:
    """Every run folder under ``root`` (``root`` itself included), batches' too, by path."""
    found: list[RunEntry] = []
    base = root.resolve()

    def visit(folder: Path, depth: int) -> None:
        if (folder / SUMMARY_NAME).is_file():
            found.append(entry_for(base, folder))
        if depth >= _MAX_DEPTH:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return
        for child in children:
            if child.name not in _NOT_RUNS and not child.name.startswith("."):
                visit(child, depth + 1)

    visit(base, 0)
    return found


def entry_for(base: Path, folder: Path, with_progress: bool = True) -> RunEntry:
    rel = folder.resolve().relative_to(base).as_posix()
    rel = "" if rel == "." else rel
    try:
        summary: RunSummary | None = read_summary(folder / SUMMARY_NAME)
        problem = ""
    except (OSError, ValueError) as exc:
        summary, problem = None, f"summary.json cannot be read: {str(exc).splitlines()[0] if str(exc) else exc}"
    entry = RunEntry(rel, folder, summary, problem, reviewable=(folder / TRACKS_NAME).is_file())
    if entry.reviewable and with_progress:
        entry.progress = review_progress(folder)
    return entry


def review_progress(folder: Path) -> tuple[int, int] | None:
    """n of m tracks reviewed. Without a review file, m is tracks.csv's rows (the index does not
    read every run's detections for that)."""
    if not (folder / "review.jsonl").is_file():
        return 0, len(_read_csv(folder / TRACKS_NAME))
    try:
        state = review_state(folder)
    except Exception as exc:  # a damaged run shows as such on the index, never breaks it
        log.warning("%s: %s", folder, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    return state.reviewed, state.total


@dataclass
class TrackCard:
    track_id: int
    species: str
    score: float | None
    origin: str
    first_time_s: float | None
    last_time_s: float | None
    first_frame: int | None
    last_frame: int | None
    counted: bool
    reason: str
    state: str  # unreviewed, confirmed, corrected, not a fish, merged, split
    detail: str  # e.g. "merged into #3", "species was X"
    original_species: str
    views: list[str] = field(default_factory=list)  # image paths under the served folder


@dataclass
class ReviewState:
    """A run's tracks and counts after its review (or as the run wrote them before any)."""

    cards: list[TrackCard]
    counts: list[dict[str, Any]]
    reviewed: int
    total: int
    queue: list[int]  # the order to review in: unknown first, low score first
    available: bool  # False: no review module here; the run's own files are shown


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _float(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _int(text: Any) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _card(row: dict[str, Any], state: str = "unreviewed", detail: str = "", original: str | None = None) -> TrackCard:
    return TrackCard(
        track_id=int(row["track_id"]),
        species=str(row.get("species", "")),
        score=_float(row.get("score")),
        origin=str(row.get("origin", "")),
        first_time_s=_float(row.get("first_time_s")),
        last_time_s=_float(row.get("last_time_s")),
        first_frame=_int(row.get("first_frame")),
        last_frame=_int(row.get("last_frame")),
        counted=str(row.get("counted", "1")) in ("1", "True", "true"),
        reason=str(row.get("reason", "") or ""),
        state=state,
        detail=detail,
        original_species=str(row.get("species", "")) if original is None else original,
    )


def _count_rows(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [
        {"species": r["species"], "unique": _int(r.get("unique_tracks")) or 0, "max_n": _int(r.get("max_n")) or 0,
         "max_n_frame": _int(r.get("max_n_frame")), "max_n_time_s": _float(r.get("max_n_time_s"))}
        for r in rows
    ]  # fmt: skip


def queue_order(cards: list[TrackCard]) -> list[int]:
    """Unknown (and unclassified) first, then low score first."""
    return [
        c.track_id
        for c in sorted(cards, key=lambda c: (c.species not in ("unknown", "unclassified"), c.score or 0.0, c.track_id))
    ]


def review_state(folder: Path) -> ReviewState:
    """The run's tracks with their review, and the counts after it (fishcam.review)."""
    try:
        from fishcam.review import reviewed_run
    except ImportError:  # the review module is not in this installation: the run as written
        rows = _read_csv(folder / TRACKS_NAME)
        cards = [_card(r) for r in rows]
        counts = _count_rows(_read_csv(folder / COUNTS_NAME))
        return ReviewState(cards, counts, 0, len(cards), queue_order(cards), available=False)
    return _from_review(folder, reviewed_run(folder))


_STATES = {None: "unreviewed", "confirm": "confirmed", "species": "corrected", "not_fish": "not a fish"}


def _from_review(folder: Path, reviewed: Any) -> ReviewState:
    """A :class:`fishcam.review.ReviewedRun` as the page shows it."""
    cards = []
    for tid, row in sorted(reviewed.record.tracks.items()):
        review = reviewed.states.get(tid)
        state, notes = "unreviewed", []
        if review is not None:
            state = _STATES.get(review.action, str(review.action))
            if review.action is not None:
                notes.append(f"by {review.reviewer}")
            if review.species != review.pipeline_species:
                notes.append(f"pipeline said {review.pipeline_species} ({review.pipeline_score:.2f})")
            for c in review.history:
                if c.action == "merge" and c.into == tid:
                    notes.append(f"#{c.track} merged in")
                elif c.action == "split" and c.track != tid:
                    notes.append(f"split from #{c.track} at frame {c.frame}")
                elif c.action == "split":
                    notes.append(f"split at frame {c.frame}")
        original = review.pipeline_species if review is not None else None
        cards.append(_card(row, state, "; ".join(notes), original))
    counts = [
        {"species": c.species, "unique": c.unique, "max_n": c.max_n, "max_n_frame": c.max_n_frame,
         "max_n_time_s": c.max_n_time_s}
        for c in reviewed.counts
    ]  # fmt: skip
    done, total = reviewed.progress
    waiting = list(reviewed.queue)
    rest = [c.track_id for c in cards if c.track_id not in set(waiting)]
    return ReviewState(cards, counts, done, total, waiting + rest, available=True)


def species_options(folder: Path, cards: list[TrackCard]) -> list[str]:
    """The species a reviewer picks from: the run's species list (its fallback list, or its
    expert's labels) where its config names one that is readable, and every species its tracks have."""
    names: list[str] = []
    try:
        import yaml

        config = yaml.safe_load((folder / CONFIG_NAME).read_text(encoding="utf-8")) or {}
        classify = config.get("classify") or {}
        listed = (classify.get("fallback") or {}).get("species_list")
        if listed and Path(listed).is_file():
            from fishcam.classify.species_list import read_species_list

            names += [entry.label for entry in read_species_list(listed)]
        expert = (classify.get("expert") or {}).get("weights")
        if expert and str(expert).endswith((".json", ".yaml", ".yml")) and Path(expert).is_file():
            from fishcam.models.expert_spec import read_manifest

            names += list(read_manifest(Path(expert)).labels)
    except Exception as exc:  # the list is a help: free text works without it
        log.debug("%s: no species list (%s)", folder, exc)
    names += [c.species for c in cards] + [c.original_species for c in cards]
    unique = dict.fromkeys(n for n in names if n and n not in ("unknown", "unclassified", "not a fish"))
    return sorted(unique)


def track_views(root: Path, folder: Path, track_id: int, limit: int = 4) -> list[str]:
    """A track's best views, best first, as ``views/index.json`` lists them (fishcam.sinks.views);
    the files in ``views/<id>/`` by name where the index is missing or damaged."""
    views = folder / VIEWS_DIR
    if not (views / str(track_id)).is_dir():
        return []
    index = _json(views / INDEX_NAME)
    entry = index.get("tracks", {}).get(str(track_id)) if isinstance(index, dict) else None
    listed = entry.get("views") if isinstance(entry, dict) else None
    ordered = [views / v["file"] for v in listed or [] if isinstance(v, dict) and isinstance(v.get("file"), str)]
    ordered = [p for p in ordered if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not ordered:
        ordered = sorted(p for p in (views / str(track_id)).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [r for r in (_rel(root, p) for p in ordered[:limit]) if r is not None]


def maxn_images(root: Path, folder: Path) -> dict[tuple[str, int, int], str]:
    """(species, frame, MaxN) → the run's MaxN evidence frame, as ``maxn/index.json`` names them
    (fishcam.sinks.views). Keyed by frame and number too: once a review moves or changes a
    species' MaxN, the run's picture (with the run's boxes) is no longer its evidence."""
    index = _json(folder / MAXN_DIR / INDEX_NAME)
    found: dict[tuple[str, int, int], str] = {}
    for item in index.get("species", []) if isinstance(index, dict) else []:
        if not isinstance(item, dict):
            continue
        species, name, frame, max_n = (item.get(k) for k in ("species", "file", "frame", "max_n"))
        if isinstance(species, str) and isinstance(name, str) and isinstance(frame, int) and isinstance(max_n, int):
            path = folder / MAXN_DIR / Path(name).name
            rel = _rel(root, path) if path.is_file() else None
            if rel is not None:
                found[(species, frame, max_n)] = rel
    return found


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _rel(root: Path, path: Path) -> str | None:
    """``path`` under ``root``, or None where it resolves outside (a symlink out is not shown)."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except (OSError, ValueError):
        return None
