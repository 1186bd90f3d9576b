"""Markdown tables the benchmark scripts print (run as ``python benchmarks/<name>.py``, so this
folder is on the import path)."""

from __future__ import annotations


def two_column(rows: list[tuple[str, str]], head: tuple[str, str] = ("what", "figure")) -> str:
    """A two-column Markdown table of (name, value) rows, the first column padded."""
    width = max(len(head[0]), *(len(k) for k, _ in rows))
    lines = [f"| {head[0].ljust(width)} | {head[1]} |", f"|{'-' * (width + 2)}|{'-' * (len(head[1]) + 2)}|"]
    lines += [f"| {key.ljust(width)} | {value} |" for key, value in rows]
    return "\n".join(lines)
