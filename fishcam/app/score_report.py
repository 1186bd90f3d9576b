"""``fishcam score``'s table: tracking metrics (IDF1, HOTA and its parts, MOTA, …), then counts
per species with their errors."""

from __future__ import annotations

import io

from fishcam.scoring import Score


def render(result: Score) -> str:
    from rich.console import Console
    from rich.table import Table

    t = result.tracking
    tracking = Table(
        "frames", "fish (truth)", "tracks (run)", "IDF1", "HOTA", "DetA", "AssA", "LocA", "MOTA", "ID switches",
        "precision", "recall",
    )  # fmt: skip
    tracking.add_row(
        str(result.frames), str(result.truth_fish), str(result.run_tracks), f"{t['idf1']:.3f}", f"{t['hota']:.3f}",
        f"{t['deta']:.3f}", f"{t['assa']:.3f}", f"{t['loca']:.3f}", f"{t['mota']:.3f}", str(int(t["num_switches"])),
        f"{t['precision']:.3f}", f"{t['recall']:.3f}",
    )  # fmt: skip
    counts = Table("species", "unique (truth)", "unique (run)", "error", "MaxN (truth)", "MaxN (run)", "error")
    for s in result.species:
        counts.add_row(
            s.species, _text(s.truth_unique), str(s.run_unique), _signed(s.unique_error), _text(s.truth_max_n),
            str(s.run_max_n), _signed(s.max_n_error),
        )  # fmt: skip
    text = io.StringIO()
    console = Console(file=text, width=128, force_terminal=False)  # the tracking table unwrapped
    console.print(tracking)
    console.print(counts)
    return text.getvalue()


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


def _signed(value: int | None) -> str:
    return "" if value is None else f"{value:+d}"
