"""Count-failure benchmark (issue #13): every clip of ``benchmarks/clips.py`` through fishcam,
scored against its exact ground truth, one markdown table.

    python benchmarks/counts.py                          # every scenario, clips and runs in a temp folder
    python benchmarks/counts.py --clips leave_enter,stride3 --out runs/counts
    PYTHONPATH=/tmp/base python benchmarks/counts.py     # the fishcam of another checkout (its configs too)

Each scenario is one run of ``python -m fishcam run CLIP --config CONFIG --out DIR --set …`` in a
subprocess, from the root of the checkout whose ``fishcam`` the Python (``--python``, with
PYTHONPATH as given) imports, so its configs and models are the ones that code shipped with.
Scenarios with a scripted detector run the same pipeline (``fishcam.app.run.run``) in a
subprocess of that Python, with ``ScriptedDetector`` in place of YOLO. Every run sets
``render.video=false`` (the annotated video changes no figure and costs a third of the time).

Each run is scored with ``fishcam score RUN GT --json`` of *this* checkout (``--scorer run``: of
the run's; ``--scorer DIR``: of the checkout in DIR), so figures of old and new code are measured
with the same yardstick:

- IDF1 and HOTA (when that ``fishcam score`` reports it), on every frame of the video;
- count error: the sum over species of |unique fish (run) - unique fish (truth)|; MaxN error: the
  same for MaxN (``species_counts.csv`` against the clip's json). A truth species the expert
  never saw (``unseen_species``) takes every run species that is neither a truth species nor one
  of the expert's labels (``unknown``, a fallback's answer outside them);
- species right: the share of true fish whose track (the run track matched to it on most
  frames) has its species; for an unseen species, any answer but one of the expert's labels;
- tracks covering two fish: run tracks matched to two or more true fish, each on at least
  ``MIN_FRAMES`` frames (matching: per frame, one to one, IoU >= 0.5, boxes of detections.csv).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # run as a script it is there already; never ROOT: it would shadow PYTHONPATH's fishcam
    sys.path.insert(0, str(HERE))
import clips  # noqa: E402

COMMON_OVERRIDES = ("render.video=false",)
EXPERT_MANIFEST = ROOT / "samples" / "models" / "sample-fish-expert.json"
MIN_IOU = 0.5
MIN_FRAMES = 3  # a track "covers" a fish it is matched to on at least this many frames


@dataclass
class Result:
    scenario: str
    clip: str
    detector: str
    frames: int
    tracks: int
    true_fish: int
    idf1: float
    hota: float | None
    mota: float
    id_switches: int
    count_error: int
    max_n_error: int
    species_right: float  # 0..1
    tracks_covering_two: int
    run_s: float
    per_species: dict[str, dict[str, int]] = field(default_factory=dict)
    fish_species: dict[str, str] = field(default_factory=dict)  # true fish id -> its track's species


# ---- running -----------------------------------------------------------------------------------


def fishcam_root(python: str, env: dict[str, str] | None = None) -> Path:
    """The checkout whose ``fishcam`` ``python`` imports (under ``env``): runs start there."""
    code = "import pathlib, fishcam; print(pathlib.Path(fishcam.__file__).resolve().parents[1])"
    with tempfile.TemporaryDirectory() as neutral:  # not a folder with a fishcam/ of its own
        done = subprocess.run([python, "-c", code], cwd=neutral, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{python} cannot import fishcam: {done.stderr.strip()[-500:]}")
    return Path(done.stdout.strip())


def run_scenario(
    scenario: clips.Scenario,
    clip: clips.ClipPaths,
    run_dir: Path,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    root: Path | None = None,
) -> float:
    """Run fishcam on the clip into ``run_dir``; returns the wall seconds it took."""
    root = root or fishcam_root(python, env)
    sets = [*COMMON_OVERRIDES, *scenario.overrides]
    if scenario.detector == "scripted":
        cmd = [python, str(Path(__file__).resolve()), "_scripted", scenario.name, str(clip.mp4), str(clip.script),
               str(run_dir)]  # fmt: skip
    else:
        cmd = [python, "-m", "fishcam", "run", str(clip.mp4), "--config", scenario.config, "--out", str(run_dir), "-q"]
        for item in sets:
            cmd += ["--set", item]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{scenario.name}: {' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def run_scripted(name: str, mp4: Path, script: Path, run_dir: Path) -> int:
    """In the subprocess: the pipeline of ``fishcam run`` with a scripted detector that reports
    the clip's script (boxes under ``detector.confidence`` dropped, as YOLO drops them)."""
    from fishcam import runtime
    from fishcam.api import load_config
    from fishcam.app.compose import Components, build_species_models
    from fishcam.app.run import run
    from fishcam.detect.scripted import ScriptedDetector
    from fishcam.sources import open_source
    from fishcam.types import Detections

    scenario = clips.SCENARIOS[name]
    runtime.setup()
    config = load_config(scenario.config, [*COMMON_OVERRIDES, *scenario.overrides])
    threshold = config.detector.confidence
    frames = json.loads(script.read_text())["frames"]
    detections = {}
    for frame, boxes in frames.items():
        kept = np.array([b for b in boxes if b[4] >= threshold], np.float64).reshape(-1, 5)
        detections[int(frame)] = Detections.build(kept[:, :4], confidence=kept[:, 4], class_id=[0] * len(kept))
    detector = ScriptedDetector(detections)
    species, described = build_species_models(config) if config.classify.enabled else (None, {})
    described["detector"] = detector.describe()
    source = open_source(str(mp4), config.source)
    code, _ = run(source, config, run_dir, Components(detector, species, described))
    return code


def score_run(run_dir: Path, gt: Path, python: str = sys.executable, env: dict[str, str] | None = None,
              root: Path = ROOT) -> dict:  # fmt: skip
    """``fishcam score RUN GT --json`` of the checkout at ``root``."""
    out = run_dir / "score.json"
    cmd = [python, "-m", "fishcam", "score", str(run_dir), str(gt), "--json", str(out), "-q"]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"fishcam score {run_dir} exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(out.read_text())


# ---- measuring ---------------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def expert_labels() -> set[str]:
    return set(json.loads(EXPERT_MANIFEST.read_text())["labels"])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(-1, 4), b.reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def matches(gt_rows: list[dict], run_rows: list[dict]) -> dict[str, Counter]:
    """Run track id -> Counter of true fish ids it is matched to, per frame (one to one, IoU >= 0.5)."""
    from scipy.optimize import linear_sum_assignment

    def boxes(rows, key):
        per: dict[int, list] = defaultdict(list)
        for r in rows:
            per[int(r["frame"])].append((r[key], [float(r[k]) for k in ("x1", "y1", "x2", "y2")]))
        return per

    truth, run = boxes(gt_rows, "fish_id"), boxes(run_rows, "track_id")
    covered: dict[str, Counter] = defaultdict(Counter)
    for frame in sorted(set(truth) & set(run)):
        t, r = truth[frame], run[frame]
        iou = iou_matrix(np.array([b for _, b in t]), np.array([b for _, b in r]))
        rows, cols = linear_sum_assignment(-iou)
        for i, j in zip(rows, cols, strict=True):
            if iou[i, j] >= MIN_IOU:
                covered[r[j][0]][t[i][0]] += 1
    return covered


def per_species_counts(meta: dict, run_counts: list[dict], labels: set[str]) -> dict[str, dict[str, int]]:
    """Truth and run unique count and MaxN per species, run species folded into an unseen one."""
    truth = meta["species_counts"]
    unseen = list(meta.get("unseen_species", []))
    table = {sp: {"truth_unique": v["unique"], "truth_max_n": v["max_n"], "run_unique": 0, "run_max_n": 0}
             for sp, v in truth.items()}  # fmt: skip
    for row in run_counts:
        species = row["species"]
        if species not in truth and species not in labels and unseen:
            species = unseen[0]  # "unknown" or a fallback's answer: right for a species no model knows
        entry = table.setdefault(species, {"truth_unique": 0, "truth_max_n": 0, "run_unique": 0, "run_max_n": 0})
        entry["run_unique"] += int(row["unique_tracks"])
        entry["run_max_n"] = max(entry["run_max_n"], int(row["max_n"]))  # exact while they are not in view together
    return table


def measure(scenario: clips.Scenario, clip: clips.ClipPaths, run_dir: Path, score: dict, run_s: float = 0.0) -> Result:
    meta = json.loads(clip.meta.read_text())
    labels = expert_labels()
    gt_rows = read_csv(clip.gt)
    run_rows = read_csv(run_dir / "detections.csv")
    tracks = {r["track_id"]: r for r in read_csv(run_dir / "tracks.csv")}
    table = per_species_counts(meta, read_csv(run_dir / "species_counts.csv"), labels)
    covered = matches(gt_rows, run_rows)
    truth_species = {r["fish_id"]: r["species"] for r in gt_rows}
    unseen = set(meta.get("unseen_species", []))
    best: dict[str, tuple[int, str]] = {}  # fish -> (frames, track)
    for track, fish in covered.items():
        for fish_id, n in fish.items():
            if n > best.get(fish_id, (0, ""))[0]:
                best[fish_id] = (n, track)
    fish_species, right = {}, 0
    for fish_id, species in sorted(truth_species.items(), key=lambda kv: int(kv[0])):
        track = best.get(fish_id, (0, None))[1]
        called = tracks[track]["species"] if track in tracks else "(no track)"
        fish_species[fish_id] = called
        right += called == species or (species in unseen and track in tracks and called not in labels)
    two = sum(1 for fish in covered.values() if sum(1 for n in fish.values() if n >= MIN_FRAMES) >= 2)
    t = score["tracking"]
    return Result(
        scenario=scenario.name,
        clip=scenario.clip,
        detector=scenario.detector,
        frames=int(score["frames"]),
        tracks=int(score["run_tracks"]),
        true_fish=int(score["truth_fish"]),
        idf1=float(t["idf1"]),
        hota=float(t["hota"]) if "hota" in t else None,
        mota=float(t["mota"]),
        id_switches=int(t["num_switches"]),
        count_error=sum(abs(v["run_unique"] - v["truth_unique"]) for v in table.values()),
        max_n_error=sum(abs(v["run_max_n"] - v["truth_max_n"]) for v in table.values()),
        species_right=right / max(1, len(truth_species)),
        tracks_covering_two=two,
        run_s=round(run_s, 1),
        per_species=table,
        fish_species=fish_species,
    )


def run_in_process(scenario: clips.Scenario, clip: clips.ClipPaths, run_dir: Path) -> float:
    """The same run in this process (the test suite's way: no interpreter start, imports warm),
    from this checkout's root."""
    from fishcam.app.cli import main as fishcam_main

    start, here = time.perf_counter(), os.getcwd()
    os.chdir(ROOT)  # the configs name their models relative to the repository root
    try:
        if scenario.detector == "scripted":
            code = run_scripted(scenario.name, clip.mp4, clip.script, run_dir)
        else:
            argv = ["run", str(clip.mp4), "--config", scenario.config, "--out", str(run_dir), "-q"]
            for item in (*COMMON_OVERRIDES, *scenario.overrides):
                argv += ["--set", item]
            code = fishcam_main(argv)
    finally:
        os.chdir(here)
    if code != 0:
        raise RuntimeError(f"{scenario.name}: fishcam exited {code}")
    return time.perf_counter() - start


def evaluate(
    name: str,
    out: Path,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    root: Path | None = None,
    scorer_root: Path = ROOT,
    in_process: bool = False,
) -> Result:
    """Build the scenario's clip into ``out/clips``, run it into ``out/runs/<name>``, score it.
    ``in_process``: run and score with the fishcam this process imports, without subprocesses."""
    scenario = clips.SCENARIOS[name]
    clip = clips.build(scenario.clip, out / "clips")
    run_dir = out / "runs" / name
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    if in_process:
        from fishcam.scoring import score

        seconds = run_in_process(scenario, clip, run_dir)
        scored = score(run_dir, clip.gt).to_json()
    else:
        seconds = run_scenario(scenario, clip, run_dir, python, env, root)
        scored = score_run(run_dir, clip.gt, python, env, scorer_root)
    return measure(scenario, clip, run_dir, scored, seconds)


# ---- the table ---------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def table(results: list[Result]) -> str:
    head = ["clip", "detector", "tracks", "true fish", "IDF1", "HOTA", "count error", "MaxN error",
            "species right", "tracks covering two fish"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in results:
        cells = [r.scenario, r.detector, str(r.tracks), str(r.true_fish), _f(r.idf1), _f(r.hota), str(r.count_error),
                 str(r.max_n_error), f"{100 * r.species_right:.0f} %", str(r.tracks_covering_two)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details(results: list[Result]) -> str:
    """The species whose counts are off, per scenario."""
    lines = []
    for r in results:
        off = [f"{sp}: unique {v['truth_unique']}→{v['run_unique']}, MaxN {v['truth_max_n']}→{v['run_max_n']}"
               for sp, v in sorted(r.per_species.items())
               if (v["truth_unique"], v["truth_max_n"]) != (v["run_unique"], v["run_max_n"])]  # fmt: skip
        if off:
            lines.append(f"- {r.scenario}: " + "; ".join(off))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_scripted"]:
        name, mp4, script, run_dir = argv[1:5]
        return run_scripted(name, Path(mp4), Path(script), Path(run_dir))
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--clips", help=f"comma-separated scenarios (default: all of {', '.join(clips.SCENARIOS)})")
    parser.add_argument("--out", type=Path, help="folder for clips, runs and results.json (default: a temp folder)")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs fishcam (default: this one)")
    parser.add_argument("--scorer", default="here",
                        help="whose `fishcam score`: here (this checkout's, default), run (the run's) or a checkout's "
                             "folder")  # fmt: skip
    args = parser.parse_args(argv)
    names = args.clips.split(",") if args.clips else list(clips.SCENARIOS)
    unknown = [n for n in names if n not in clips.SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(clips.SCENARIOS)}")
    env = dict(os.environ)
    root = fishcam_root(args.python, env)
    scorer_root = {"here": ROOT, "run": root}.get(args.scorer) or Path(args.scorer).resolve()
    out = args.out or Path(tempfile.mkdtemp(prefix="fishcam-counts-"))
    out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(f"fishcam from {root} (commit {commit.stdout.strip() or '?'}); outputs in {out}", file=sys.stderr)
    results = []
    for name in names:
        start = time.perf_counter()
        result = evaluate(name, out, args.python, env, root, scorer_root)
        results.append(result)
        print(f"{name}: {time.perf_counter() - start:.1f} s (run {result.run_s} s)", file=sys.stderr)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    print(table(results))
    extra = details(results)
    if extra:
        print("\nCounts that are off (truth→run):\n" + extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
