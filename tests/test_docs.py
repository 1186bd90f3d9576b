"""The README and docs/ stay true to the code and to each other.

- docs/configuration.md is what scripts/config-reference writes from the config models, and it
  names every key of configs/default.yaml and configs/train.yaml;
- the README is a front door: at most 200 lines, linking every page in docs/;
- every relative link in README.md and docs/*.md points to a file that exists, and an anchor
  to a heading that exists.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
REFERENCE = DOCS / "configuration.md"
README_MAX_LINES = 200


def _generator():
    """scripts/config-reference as a module (it has no .py ending)."""
    path = ROOT / "scripts" / "config-reference"
    loader = importlib.machinery.SourceFileLoader("config_reference", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_configuration_reference_is_current(tmp_path):
    fresh = tmp_path / "configuration.md"
    assert _generator().main(["--output", str(fresh)]) == 0
    assert REFERENCE.is_file(), "docs/configuration.md is missing: run scripts/config-reference"
    assert fresh.read_text(encoding="utf-8") == REFERENCE.read_text(encoding="utf-8"), (
        "docs/configuration.md is stale (a config field or its description changed): run scripts/config-reference"
    )


def _yaml_keys(tree: dict, prefix: str = "") -> list[str]:
    found = []
    for key, value in tree.items():
        found.append(prefix + key)
        if isinstance(value, dict):
            found += _yaml_keys(value, f"{prefix}{key}.")
    return found


def _reference_parts() -> dict[str, str]:
    """The generated reference split into its run part and its training part."""
    text = REFERENCE.read_text(encoding="utf-8")
    run, sep, train = text.partition("\n## Training")
    assert sep, "docs/configuration.md has no '## Training' part: run scripts/config-reference"
    return {"default.yaml": run, "train.yaml": train}


@pytest.mark.parametrize("name", ["default.yaml", "train.yaml"])
def test_reference_names_every_key_of_the_shipped_yaml(name):
    written = yaml.safe_load((ROOT / "configs" / name).read_text(encoding="utf-8"))
    part = _reference_parts()[name]
    missing = [key for key in _yaml_keys(written) if f"`{key}`" not in part]
    assert not missing, f"keys of configs/{name} missing from docs/configuration.md: {missing}"


def test_train_yaml_lists_every_key_of_the_training_config():
    from fishcam.train.config import TrainConfig

    written = yaml.safe_load((ROOT / "configs" / "train.yaml").read_text(encoding="utf-8"))
    assert sorted(_generator().keys(TrainConfig)) == sorted(_yaml_keys(written))


def test_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail into docs/"
    )


def test_readme_links_every_docs_page():
    linked = {target.split("#")[0] for target in _links(README.read_text(encoding="utf-8"))}
    pages = {f"docs/{page.name}" for page in DOCS.glob("*.md")}
    assert not pages - linked, f"README.md does not link these docs pages: {sorted(pages - linked)}"


_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _without_code(text: str) -> str:
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _links(text: str) -> list[str]:
    return _LINK.findall(_without_code(text))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_what_exists(page):
    broken = []
    for target in _links(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, …
            continue
        file_part, _, anchor = target.partition("#")
        path = (page.parent / file_part).resolve() if file_part else page
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target} (no heading #{anchor} in {path.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"
