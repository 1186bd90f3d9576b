"""The user's species list for the zero-shot fallback. Pure.

One species per line; ``;`` separates names of the same species (scientific first, then common
names): ``Pterois volitans; red lionfish``. The first name is the label fishcam reports; every
name feeds the prompts. Blank lines and ``#`` comments are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fishcam.errors import SpeciesListError


@dataclass(frozen=True)
class SpeciesEntry:
    label: str
    names: tuple[str, ...]


def parse_species_list(text: str, origin: str = "species list") -> tuple[SpeciesEntry, ...]:
    entries: list[SpeciesEntry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        names = tuple(name.strip() for name in line.split(";") if name.strip())
        key = names[0].casefold()
        if key in seen:
            raise SpeciesListError(
                f"{origin}: '{names[0]}' on line {number} repeats line {seen[key]}; give each species once"
            )
        seen[key] = number
        entries.append(SpeciesEntry(label=names[0], names=names))
    if not entries:
        raise SpeciesListError(f"{origin} is empty: give one species per line, e.g. 'Pterois volitans; red lionfish'")
    return tuple(entries)


def read_species_list(path: str | Path) -> tuple[SpeciesEntry, ...]:
    path = Path(path)
    if not path.is_file():
        raise SpeciesListError(f"species list not found: {path}")
    try:
        # utf-8-sig: a list saved by Excel or Notepad starts with a byte-order mark, which would
        # otherwise stay in the first species' name in every output.
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpeciesListError(f"species list {path} cannot be read as UTF-8 text: {exc}") from exc
    return parse_species_list(text, origin=f"species list {path}")


def prompts_for(entry: SpeciesEntry, templates: list[str] | tuple[str, ...]) -> list[str]:
    return [template.format(name) for name in entry.names for template in templates]
