"""The user's species list for the zero-shot fallback, and the prompts made from it. Pure.

Two forms (docs/models.md, "Species lists"):

- plain text, one species a line; ``;`` separates names of one species, scientific first, then
  common names: ``Pterois volitans; red lionfish``. Blank lines and ``#`` comments are ignored.
  A line whose first name is a binomial and that gives a common name after it is taken as
  ``Genus species``: its genus is known (for the roll-up).
- CSV (a ``.csv`` file, or a first line naming ``scientific_name``): columns ``scientific_name``,
  optional ``common_name`` and any of the ranks ``kingdom, phylum, class, order, family, genus``.

The first name is the label fishcam reports. Ranks a list leaves out are filled from the
Tree-of-Life taxonomy when the open-ended embeddings are configured
(:func:`fishcam.classify.tree_of_life.fill_ranks`). Every problem is one line naming the file,
the line and what to do (a :class:`SpeciesListError`, exit code 2).
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from fishcam.classify.taxonomy import RANKS, Lineage, lineage_name
from fishcam.errors import SpeciesListError

PromptForm = Literal["taxonomic_common", "taxonomic", "scientific_common", "scientific", "names"]
PROMPT_FORMS: tuple[str, ...] = ("taxonomic_common", "taxonomic", "scientific_common", "scientific", "names")
CSV_RANKS = RANKS[:-1]  # kingdom … genus: the species is the scientific name
CSV_COLUMNS = ("scientific_name", "common_name", *CSV_RANKS)
_BINOMIAL = re.compile(r"^[A-Z][a-z-]+ [a-z][a-z-]+( [a-z][a-z-]+)?$")


@dataclass(frozen=True)
class SpeciesEntry:
    """One taxon of the list: its label (the scientific name), every name of it (label first),
    its lineage (names from kingdom down, ``""`` where not known) and its rank."""

    label: str
    names: tuple[str, ...]
    lineage: Lineage = ()
    rank: str = "species"

    @property
    def common_names(self) -> tuple[str, ...]:
        return self.names[1:]


def parse_species_list(text: str, origin: str = "species list") -> tuple[SpeciesEntry, ...]:
    """Either form, told apart by its first line (CSV when it names ``scientific_name``)."""
    first = next((line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    if "scientific_name" in [cell.strip().strip('"').casefold() for cell in first.split(",")]:
        return parse_species_csv(text, origin)
    return parse_plain_list(text, origin)


def parse_plain_list(text: str, origin: str = "species list") -> tuple[SpeciesEntry, ...]:
    entries: list[SpeciesEntry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        names = tuple(name.strip() for name in line.split(";") if name.strip())
        if not names:
            raise SpeciesListError(f"{origin}, line {number}: no name before ';': give 'Scientific name; common name'")
        _check_repeat(seen, names[0], number, origin)
        lineage: Lineage = ()
        if len(names) > 1 and _BINOMIAL.match(names[0]):
            lineage = _species_lineage(names[0], {})
        entries.append(SpeciesEntry(label=names[0], names=names, lineage=lineage))
    if not entries:
        raise SpeciesListError(f"{origin} is empty: give one species per line, e.g. 'Pterois volitans; red lionfish'")
    return tuple(entries)


def parse_species_csv(text: str, origin: str = "species list") -> tuple[SpeciesEntry, ...]:
    reader = csv.reader(io.StringIO(text))
    rows = ((reader.line_num, row) for row in reader if not (row and row[0].lstrip().startswith("#")))
    header = [h.strip().casefold() for h in next(rows, (0, []))[1]]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], CSV_COLUMNS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SpeciesListError(
            f"{origin}: unknown column '{unknown[0]}'{hint}; the columns are scientific_name, common_name and "
            f"the ranks {', '.join(CSV_RANKS)}"
        )
    if "scientific_name" not in header:
        raise SpeciesListError(f"{origin}: no scientific_name column; the first line names the columns")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise SpeciesListError(f"{origin}: column '{repeated[0]}' is given twice")
    entries: list[SpeciesEntry] = []
    seen: dict[str, int] = {}
    for number, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise SpeciesListError(
                f"{origin}, line {number}: {len(row)} values for {len(header)} columns; quote a name that holds a comma"
            )
        values = {h: cell.strip() for h, cell in zip(header, row, strict=True)}
        name = values["scientific_name"]
        if not name:
            raise SpeciesListError(f"{origin}, line {number}: scientific_name is blank")
        _check_repeat(seen, name, number, origin)
        ranks = {r: values.get(r, "") for r in CSV_RANKS}
        lineage, rank = _csv_lineage(name, ranks, f"{origin}, line {number}")
        common = values.get("common_name", "")
        entries.append(
            SpeciesEntry(label=name, names=(name, common) if common else (name,), lineage=lineage, rank=rank)
        )
    if not entries:
        raise SpeciesListError(f"{origin} has no species under its header: give one per line")
    return tuple(entries)


def _check_repeat(seen: dict[str, int], name: str, number: int, origin: str) -> None:
    key = name.casefold()
    if key in seen:
        raise SpeciesListError(f"{origin}: '{name}' on line {number} repeats line {seen[key]}; give each species once")
    seen[key] = number


def _species_lineage(binomial: str, ranks: dict[str, str]) -> Lineage:
    genus = ranks.get("genus") or binomial.split()[0]
    return (*(ranks.get(r, "") for r in CSV_RANKS[:-1]), genus, binomial)


def _csv_lineage(name: str, ranks: dict[str, str], where: str) -> tuple[Lineage, str]:
    words = name.split()
    if len(words) >= 2:
        genus = ranks.get("genus", "")
        if genus and genus.casefold() != words[0].casefold():
            raise SpeciesListError(f"{where}: genus is '{genus}' but '{name}' starts with '{words[0]}'")
        return _species_lineage(name, ranks), "species"
    # One word: a genus, family … given as itself in its own rank's column.
    for rank in reversed(CSV_RANKS):
        if ranks.get(rank, "").casefold() == name.casefold():
            i = RANKS.index(rank)
            return tuple(ranks.get(r, "") for r in RANKS[: i + 1]), rank
    raise SpeciesListError(
        f"{where}: '{name}' is one word: give the binomial (Genus species), or its rank's column "
        f"(e.g. genus '{name}') for a list entry above species"
    )


def read_species_list(path: str | Path) -> tuple[SpeciesEntry, ...]:
    path = Path(path)
    if not path.is_file():
        raise SpeciesListError(f"species list not found: {path}")
    try:
        # utf-8-sig: a list saved by Excel or Notepad starts with a byte-order mark, which would
        # otherwise stay in the first species' name in every output.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise SpeciesListError(
            f"species list {path}, line {line}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); save the file as "
            f"UTF-8 (Excel: 'CSV UTF-8')"
        ) from None
    except OSError as exc:
        raise SpeciesListError(f"species list {path} cannot be read: {exc.strerror or exc}") from exc
    if "\x00" in text:
        raise SpeciesListError(f"species list {path} holds NUL characters: save it as UTF-8 text, not UTF-16")
    origin = f"species list {path}"
    if path.suffix.casefold() == ".csv":
        return parse_species_csv(text, origin)
    return parse_species_list(text, origin)


def taxonomic_name(entry: SpeciesEntry) -> str:
    """The authors' taxonomic text: the known ranks from kingdom down, then the species epithet
    (``Animalia Chordata Actinopterygii … Amphiprion ocellaris``); ranks not known are left out."""
    lineage = entry.lineage
    if not lineage:
        return entry.label
    if entry.rank != "species":
        return " ".join(n for n in lineage if n)
    words = [n for n in lineage[:-1] if n]
    genus = lineage_name(lineage, "genus")
    species = lineage[-1]
    epithet = species[len(genus) :].strip() if genus and species.startswith(genus) else species
    return " ".join([*words, epithet.lower()])


def prompt_texts(entry: SpeciesEntry, form: str = "taxonomic_common") -> list[str]:
    """The class texts of one entry, before templates: the taxonomic (or scientific) name, with
    ``with common name X`` for each common name in the ``*_common`` forms (BioCLIP's
    ``taxon_com`` and ``sci_com`` text types); ``names``: every name as it is (fishcam before)."""
    if form == "names":
        return list(entry.names)
    base = taxonomic_name(entry) if form.startswith("taxonomic") else entry.label
    if form.endswith("_common") and entry.common_names:
        return [f"{base} with common name {common}" for common in entry.common_names]
    return [base]


def prompts_for(entry: SpeciesEntry, templates: Sequence[str], form: str = "names") -> list[str]:
    """Every prompt of one entry: each of its texts in each template (their embeddings are averaged)."""
    return [template.format(text) for text in prompt_texts(entry, form) for template in templates]


def with_lineage(entry: SpeciesEntry, lineage: Lineage) -> SpeciesEntry:
    """The entry with the ranks it did not give taken from ``lineage`` (its own values stay)."""
    n = RANKS.index(entry.rank) + 1 if entry.rank in RANKS else len(RANKS)
    own = (*entry.lineage, *("",) * (n - len(entry.lineage)))
    theirs = (*lineage, *("",) * (n - len(lineage)))
    return replace(entry, lineage=tuple(a or b for a, b in zip(own[:n], theirs[:n], strict=True)))
