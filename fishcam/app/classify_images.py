"""``fishcam classify``: the model card's own use, one whole image at a time."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import cv2

from fishcam.config import Config
from fishcam.errors import SourceError


def classify_images(paths: list[Path], config: Config) -> list[dict[str, Any]]:
    images = []
    for path in paths:
        if not path.is_file():
            raise SourceError(f"image not found: {path}")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{path} is not an image OpenCV can read")
        images.append(image)
    from fishcam.app.compose import build_species_models, check_models

    config = config.model_copy(deep=True)
    config.detector.kind = "motion"  # classify needs no detector
    config.classify.enabled = True
    check_models(config)
    models, _ = build_species_models(config)
    calls, look = models.classify_scored(images)
    top, expert = look.probs, models.expert
    rows = []
    for i, (path, call) in enumerate(zip(paths, calls, strict=True)):
        row: dict[str, Any] = {
            "image": str(path),
            "species": call.label,
            "score": round(call.score, 4),
            "origin": call.origin.value,
            "candidate": call.candidate,
        }
        if top is not None and expert is not None:
            best = int(top[i].argmax())
            row["expert_top"] = expert.labels[best]
            row["expert_score"] = round(float(top[i][best]), 4)
        if look.open_set is not None and models.open_set_threshold is not None:
            # How much the image looks like the expert's species (prototype cosine) and the verdict.
            row["open_set_score"] = round(float(look.open_set[i]), 4)
            row["in_set"] = bool(look.open_set[i] >= models.open_set_threshold)
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    from rich.console import Console
    from rich.table import Table

    table = Table("image", "species", "score", "decided by", "expert's best guess")
    for row in rows:
        guess = f"{row.get('expert_top', '')} {row.get('expert_score', '')}".strip()
        table.add_row(Path(row["image"]).name, row["species"], f"{row['score']:.3f}", row["origin"], guess)
    text = io.StringIO()
    Console(file=text, width=120, force_terminal=False).print(table)
    return text.getvalue()
