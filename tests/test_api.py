"""The public API as docs/api.md shows it: its example runs as written and prints what the page says."""

import contextlib
import io
import json
import re
import subprocess
import sys

import pytest
from builders import ROOT

import fishcam

PAGE = ROOT / "docs" / "api.md"


def _blocks(text: str) -> list[str]:
    return re.findall(r"```(?:python)?\n(.*?)```", text, flags=re.S)


def test_the_documented_example_runs_and_prints_what_the_page_says(tmp_path, monkeypatch):
    example, output = _blocks(PAGE.read_text(encoding="utf-8"))[:2]
    for name in ("samples", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, str(PAGE), "exec"), {})
    assert printed.getvalue() == output
    assert (tmp_path / "runs" / "fixed_sample" / "summary.json").is_file()


def test_the_summary_is_what_summary_json_says(tmp_path):
    config = fishcam.load_config(ROOT / "configs" / "count-only.yaml", ["source.max_frames=60"])
    summary = fishcam.process_video(ROOT / "samples" / "fixed_sample.mp4", tmp_path, config)
    assert summary == fishcam.RunSummary.from_json(json.loads((tmp_path / "summary.json").read_text(encoding="utf-8")))
    assert summary.frames == 60 and summary.info.source == "fixed_sample.mp4"


def test_import_fishcam_loads_no_model_library_and_names_its_api():
    probe = "import sys, fishcam; print(any(m in sys.modules for m in ('torch', 'ultralytics', 'open_clip', 'cv2')))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert {"process_video", "load_models", "load_config", "RunSummary", "FishcamError"} <= set(fishcam.__all__)
    assert all(getattr(fishcam, name) is not None for name in fishcam.__all__)


def test_errors_are_the_commands_one_line_errors(tmp_path):
    with pytest.raises(fishcam.FishcamError, match="input not found"):
        fishcam.process_video(tmp_path / "missing.mp4", tmp_path / "out")


def test_the_stages_never_import_the_application_layer():
    """docs/layout.md: fishcam/app/ composes the stages; only the entry points (api, __main__) sit above it."""
    import ast

    package = ROOT / "fishcam"
    offenders = []
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        if relative.parts[0] == "app" or relative.name in {"api.py", "__main__.py"}:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{relative}: {name}" for name in names if name.startswith("fishcam.app")]
    assert offenders == []
