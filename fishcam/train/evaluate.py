"""Honest numbers about an expert: accuracy, macro and per-class precision/recall/F1, the fallback
threshold, a confusion matrix readable at 40 classes, a gallery of mistakes, JSON and Markdown.

The metric functions are pure numpy; the writers at the bottom do the I/O."""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fishcam.errors import DatasetError
from fishcam.train import extras
from fishcam.train.data import Sample, read_image, read_labelled

log = logging.getLogger(__name__)

Predict = Callable[[list[np.ndarray]], np.ndarray]  # BGR images → (N, K) probabilities


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support and their macro means.

    Macro means are over the classes that occur in ``y_true`` (a 40-class expert evaluated on a
    folder of 5 species is scored on those 5); a wrong call into another class still costs the
    recall of the true class."""
    k = len(labels)
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    present = support > 0
    per_class = [
        {
            "label": labels[i],
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in range(k)
        if present[i] or predicted[i] > 0
    ]
    mean = (lambda a: float(a[present].mean())) if present.any() else (lambda a: 0.0)
    right = int((y_true == y_pred).sum())
    return {
        "images": len(y_true),
        "accuracy": right / len(y_true) if len(y_true) else 0.0,
        "accuracy_ci95": [round(v, 4) for v in wilson_interval(right, len(y_true))],
        "macro_precision": mean(precision),
        "macro_recall": mean(recall),
        "macro_f1": mean(f1),
        "classes_evaluated": int(present.sum()),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % for z = 1.96): honest at 0 or n successes
    and on small n, where the normal approximation claims a zero-width interval."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def epoch_selection(history: Sequence[dict[str, Any]], best_epoch: int, val_images: int) -> dict[str, Any]:
    """Could the validation split tell the epochs apart? ``history``: the rows of history.csv.

    Says which epochs tie with the best validation macro-F1 (the earliest is kept), whether the
    split is saturated (the best epoch made no mistake on it, so later gains cannot show), which
    epochs' validation accuracies fall inside the best epoch's 95 % Wilson interval (the split is
    too small to separate them), and how each stage's best compares."""
    best = next(r for r in history if r["epoch"] == best_epoch)
    correct = round(best["val_accuracy"] * val_images)
    low, high = wilson_interval(correct, val_images)
    others = [r for r in history if r["epoch"] != best_epoch]
    ties = [r["epoch"] for r in others if abs(r["val_macro_f1"] - best["val_macro_f1"]) < 1e-9]
    within = [r["epoch"] for r in others if low <= r["val_accuracy"] <= high]
    stages = {}
    for stage in sorted({r["stage"] for r in history}):
        rows = [r for r in history if r["stage"] == stage]
        top = max(rows, key=lambda r: (r["val_macro_f1"], -r["epoch"]))
        stages[f"stage{stage}"] = {"best_epoch": top["epoch"], "val_macro_f1": top["val_macro_f1"],
                                   "val_accuracy": top["val_accuracy"]}  # fmt: skip
    notes = []
    if correct == val_images:
        notes.append(f"validation is saturated: the best epoch made no mistake on its {val_images} images")
    if ties:
        notes.append(f"epoch(s) {', '.join(map(str, ties))} tie with epoch {best_epoch}; the earliest is kept")
    if within:
        notes.append(
            f"{len(within)} other epoch(s) score inside epoch {best_epoch}'s 95 % interval "
            f"[{low:.3f}, {high:.3f}] on {val_images} validation images: the split is too small to separate them"
        )
    if "stage1" in stages and "stage2" in stages:
        one, two = stages["stage1"], stages["stage2"]
        if two["val_macro_f1"] <= one["val_macro_f1"]:
            notes.append(
                f"stage 2 did not beat stage 1 on validation (macro-F1 {two['val_macro_f1']:.3f} vs "
                f"{one['val_macro_f1']:.3f}): the exported weights are stage 1's"
            )
    return {
        "validation_images": val_images, "best_epoch": best_epoch, "best_val_accuracy": best["val_accuracy"],
        "best_val_accuracy_ci95": [round(low, 4), round(high, 4)], "one_image": round(1 / max(val_images, 1), 4),
        "ties": ties, "saturated": correct == val_images, "within_interval": within, "stages": stages,
        "separable": not (ties or within or correct == val_images), "notes": notes,
    }  # fmt: skip


def fallback_threshold(
    scores: np.ndarray, correct: np.ndarray, target_precision: float, band: int | None = None
) -> dict[str, Any]:
    """The confidence at or above which the expert's calls are trusted (below it the fallback
    decides), chosen on validation calls (``scores``: each call's confidence, ``correct``: was it
    right) for a precision of ``target_precision``.

    A threshold ``t`` qualifies when (a) the calls at or above ``t`` were right at least
    ``target_precision`` of the time, and (b) so were the calls just above ``t`` (the ``band``
    lowest-scored kept calls, default 10 % of the calls, at least 5), estimated half from
    validation and half from the model's own confidence in them: (right + Σ score) / (2 · band).
    (b) is what keeps a small validation split without mistakes from vouching for calls the model
    itself doubts: 72 right calls down to a confidence of 0.22 would otherwise make 0.22 the
    threshold, and a rock named at 0.29 an expert call. The lowest qualifying threshold is chosen
    (the most calls kept); a call is kept or dropped with its equals."""
    scores, correct = np.asarray(scores, dtype=float), np.asarray(correct, dtype=bool)
    n = len(scores)
    record: dict[str, Any] = {"target_precision": target_precision, "validation_images": n}
    if not n:
        return {"threshold": None, "coverage": 0.0, "precision_kept": None, "precision_ci95": None, **record}
    k = min(n, band if band is not None else max(5, round(0.1 * n)))
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_correct = scores[order], correct[order].astype(float)
    kept_n = np.arange(1, n + 1)
    running = np.cumsum(sorted_correct) / kept_n
    # the band of each cut: the last min(k, i) kept calls
    csum_c, csum_s = np.r_[0, np.cumsum(sorted_correct)], np.r_[0, np.cumsum(sorted_scores)]
    start = np.maximum(kept_n - k, 0)
    width = kept_n - start
    band_estimate = (csum_c[kept_n] - csum_c[start] + csum_s[kept_n] - csum_s[start]) / (2 * width)
    last_of_value = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    ok = np.flatnonzero((running >= target_precision) & (band_estimate >= target_precision) & last_of_value)
    if not len(ok):
        threshold, kept = float(min(1.0, sorted_scores[0] + 1e-6)), 0
    else:
        kept = int(ok[-1]) + 1
        threshold = float(sorted_scores[kept - 1])
    right = int(sorted_correct[:kept].sum())
    return {
        "threshold": round(threshold, 4),
        "coverage": kept / n,
        "precision_kept": right / kept if kept else None,
        "precision_ci95": [round(v, 4) for v in wilson_interval(right, kept)] if kept else None,
        "band_estimate": round(float(band_estimate[kept - 1]), 4) if kept else None,
        "band": k,
        "lowest_validation_score": round(float(sorted_scores[-1]), 4),
        **record,
    }


def predict_samples(predict: Predict, samples: Sequence[Sample], batch_size: int, progress=None) -> np.ndarray:
    """Probabilities for samples, reading images a batch at a time (memory stays flat)."""
    outputs = []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        images = []
        for sample in batch:
            image = read_image(sample.path)
            if image is None:
                raise DatasetError(f"{sample.path} can no longer be read")
            images.append(image)
        outputs.append(predict(images))
        if progress is not None:
            progress(len(batch))
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def label_indices(samples: Sequence[Sample], labels: Sequence[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({s.label for s in samples} - set(index))
    if unknown:
        import difflib

        hints = [f"{u!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, labels, 1)) else "")
                 for u in unknown[:5]]  # fmt: skip
        raise DatasetError(
            f"{len(unknown)} class(es) of the data are not labels of the expert: {', '.join(hints)}; "
            f"class folder names must be spelled as the expert's labels"
        )
    return np.asarray([index[s.label] for s in samples], dtype=int)


# ---- reports -----------------------------------------------------------------------------


def write_reports(
    out_dir: Path,
    samples: Sequence[Sample],
    probs: np.ndarray,
    labels: Sequence[str],
    title: str,
    extra: dict[str, Any] | None = None,
    gallery_max: int = 48,
) -> dict[str, Any]:
    """metrics.json, report.md, confusion.png, predictions.csv, misclassified.csv and .png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    y_true = label_indices(samples, labels)
    y_pred = probs.argmax(axis=1)
    scores = probs.max(axis=1)
    metrics = classification_metrics(y_true, y_pred, labels)
    report = {"title": title, **(extra or {}), **metrics}
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(markdown_report(report), encoding="utf-8")
    _write_predictions(out_dir, samples, y_true, y_pred, scores, labels)
    confusion_png(np.asarray(metrics["confusion"]), labels, out_dir / "confusion.png", title)
    wrong = [i for i in np.argsort(-scores) if y_true[i] != y_pred[i]][:gallery_max]
    if wrong:
        gallery_png(
            [samples[i].path for i in wrong],
            [f"true {labels[y_true[i]]}\npred {labels[y_pred[i]]} {scores[i]:.2f}" for i in wrong],
            out_dir / "misclassified.png",
        )
    log.info(
        "%s: accuracy %.4f, macro F1 %.4f on %d images; reports in %s",
        title, metrics["accuracy"], metrics["macro_f1"], metrics["images"], out_dir,
    )  # fmt: skip
    return report


def markdown_report(report: dict[str, Any]) -> str:
    lines = [
        f"# {report['title']}",
        "",
        "| measure | value |",
        "|---|---|",
        f"| images | {report['images']} |",
        f"| accuracy | {report['accuracy']:.4f} (95 % interval {_interval(report)}) |",
        f"| macro precision | {report['macro_precision']:.4f} |",
        f"| macro recall | {report['macro_recall']:.4f} |",
        f"| macro F1 | {report['macro_f1']:.4f} |",
    ]
    threshold = report.get("fallback_threshold")
    if isinstance(threshold, dict) and threshold.get("threshold") is not None:
        lines.append(
            f"| recommended fallback threshold (validation) | {threshold['threshold']:.3f} "
            f"(keeps {threshold['coverage']:.0%} of calls) |"
        )
    open_set = report.get("open_set")
    if isinstance(open_set, dict) and open_set.get("threshold") is not None:
        test = f", {open_set['test_kept']:.0%} of test images" if "test_kept" in open_set else ""
        lines.append(
            f"| open-set threshold (validation, prototype cosine) | {open_set['threshold']:.3f} "
            f"(keeps {open_set['kept']:.0%} of validation images{test}) |"
        )
    selection = report.get("selection")
    if isinstance(selection, dict):
        n, one = selection["validation_images"], selection["one_image"]
        lines += ["", f"Best epoch {selection['best_epoch']} by validation macro-F1, on {n} validation images "
                  f"(one image = {one:.1%})."]  # fmt: skip
        lines += [f"- {note}" for note in selection["notes"]]
    lines += ["", "| class | precision | recall | f1-score | support |", "|---|---|---|---|---|"]
    for row in report["per_class"]:
        lines.append(
            f"| {row['label']} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |"
        )
    lines += ["", "Macro means are over the classes present in the data.", "", "![confusion](confusion.png)", ""]
    return "\n".join(lines)


def _interval(report: dict[str, Any]) -> str:
    low, high = report.get("accuracy_ci95") or wilson_interval(round(report["accuracy"] * report["images"]),
                                                               report["images"])  # fmt: skip
    return f"{low:.3f}–{high:.3f}"


def _write_predictions(out_dir, samples, y_true, y_pred, scores, labels) -> None:
    fields = ["path", "label", "predicted", "score"]
    rows = [
        {"path": str(s.path), "label": labels[t], "predicted": labels[p], "score": f"{c:.4f}"}
        for s, t, p, c in zip(samples, y_true, y_pred, scores, strict=True)
    ]
    for name, subset in (
        ("predictions.csv", rows),
        ("misclassified.csv", [r for r in rows if r["label"] != r["predicted"]]),
    ):
        with (out_dir / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(subset)


def confusion_png(confusion: np.ndarray, labels: Sequence[str], path: Path, title: str) -> None:
    """Row-normalised colours (recall per class), counts in the cells; the figure grows with the
    class count so 40 names stay legible."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = len(labels)
    side = max(5.0, 0.32 * k + 2.5)
    fig = Figure(figsize=(side + 1.5, side), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = confusion.sum(axis=1, keepdims=True)
    norm = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="share of the true class")
    font = 8 if k <= 20 else 6
    ax.set_xticks(range(k), labels, rotation=90, fontsize=font)
    ax.set_yticks(range(k), labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i, j in zip(*np.nonzero(confusion), strict=True):
        colour = "white" if norm[i, j] > 0.5 else "black"
        ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=font - 1, color=colour)
    fig.tight_layout()
    fig.savefig(path)


def gallery_png(paths: Sequence[Path], captions: Sequence[str], path: Path, columns: int = 8) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = math.ceil(len(paths) / columns)
    cols = min(columns, len(paths))
    fig = Figure(figsize=(2.0 * cols, 2.4 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for n, (image_path, caption) in enumerate(zip(paths, captions, strict=True)):
        ax = fig.add_subplot(rows, cols, n + 1)
        image = read_image(image_path)
        if image is not None:
            ax.imshow(image[..., ::-1])
        ax.set_title(caption, fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)


def evaluate_expert(
    data: Path,
    weights: str,
    out_dir: Path,
    split: str | None = None,
    device: str = "auto",
    batch_size: int = 32,
    gallery_max: int = 48,
) -> dict[str, Any]:
    """``fishcam eval``: any expert (a manifest, or a checkpoint in the published format) on a
    labelled folder or CSV, through the same code ``fishcam run`` uses to classify crops."""
    extras.require("eval", extras.REPORTS)
    from fishcam.models.expert_spec import expert_spec_for
    from fishcam.models.loading import load_expert
    from fishcam.train.config import DataConfig

    samples, skipped = read_labelled(Path(data), DataConfig(), split)
    expert = load_expert(expert_spec_for(weights), device=device, batch_size=batch_size)
    label_indices(samples, expert.labels)  # fail on unknown class names before the slow part
    log.info(
        "evaluating %s on %d images of %d classes", expert.spec.name, len(samples), len({s.label for s in samples})
    )
    probs = predict_samples(expert.predict, samples, batch_size)
    split_name = evaluated_split(Path(data), split)
    return write_reports(
        Path(out_dir), samples, probs, expert.labels, f"{expert.spec.name} on {Path(data).name}: {split_name}",
        extra={"expert": expert.describe(), "skipped": skipped, "split": split_name}, gallery_max=gallery_max,
    )  # fmt: skip


def evaluated_split(source: Path, split: str | None) -> str:
    """What ``read_labelled`` reads of ``source``, for report titles: "<split> split" (given splits:
    folders, default test; a CSV's split column with ``--split``) or "all images"."""
    if source.is_file():
        import csv

        with source.open(newline="", encoding="utf-8-sig") as handle:
            given = any((row.get("split") or "").strip() for row in csv.DictReader(handle))
        return f"{split} split" if given and split else "all images"
    given = (source / "train").is_dir() or (source / (split or "test")).is_dir()
    return f"{split or 'test'} split" if given else "all images"
