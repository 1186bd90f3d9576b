"""The Tree-of-Life text embeddings of BioCLIP-2 (open-ended mode), read from local files.

The files are those of the TreeOfLife-200M dataset repository (``embeddings/`` on the Hugging
Face hub, docs/models.md says how to download them), in the layout pybioclip reads:

- ``txt_emb_species.npy``: float32, shape ``(dim, N)``: one unit text embedding per column
  (768 for BioCLIP-2's ViT-L/14), each the mean over the 80 OpenAI ImageNet templates of the
  taxon's names;
- ``txt_emb_species.json``: ``N`` items ``[[kingdom, phylum, class, order, family, genus,
  species_epithet], common_name]`` in column order. Intermediate ranks may be empty (ray-finned
  fishes have no class there).

The matrix is memory-mapped, never read whole: a filter (taxa at any rank) keeps a copy of its
columns only, and the top-k is one matrix product per batch of crops.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fishcam.classify.species_list import SpeciesEntry, read_species_list, with_lineage
from fishcam.classify.taxonomy import RANKS, Lineage
from fishcam.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

EMBEDDINGS_FILE = "txt_emb_species.npy"
NAMES_FILE = "txt_emb_species.json"
DATASET_REPO = "imageomics/TreeOfLife-200M"  # the files are under embeddings/ there


@dataclass(frozen=True)
class TreeOfLife:
    """The embeddings (``(dim, N)``, memory-mapped or a filtered copy) and each column's taxon."""

    features: np.ndarray
    lineages: tuple[Lineage, ...]  # kingdom … genus, then the binomial
    common_names: tuple[str, ...]
    path: Path
    filtered_by: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        return int(self.features.shape[0])

    def __len__(self) -> int:
        return len(self.lineages)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(lineage[-1] for lineage in self.lineages)

    def lookup(self) -> dict[str, int]:
        """Binomial (any case) → its first column."""
        index: dict[str, int] = {}
        for i, lineage in enumerate(self.lineages):
            index.setdefault(lineage[-1].casefold(), i)
        return index

    def select(self, taxa: Sequence[str]) -> TreeOfLife:
        """Only the columns under any of ``taxa`` (names at any rank, any case: ``Elasmobranchii``,
        ``Perciformes``, ``Pterois``, ``Pterois volitans``), or under the names of a species list
        file among them (a regional list: its species keep their precomputed columns, no text is
        encoded). A name given in the config that matches nothing is an error; a list's names
        missing from the Tree of Life (synonyms, new species) are logged and left out."""
        names, listed = taxa_names(taxa)
        wanted = {t.casefold(): t for t in [*names, *listed]}
        keep = np.zeros(len(self.lineages), dtype=bool)
        found: set[str] = set()
        for i, lineage in enumerate(self.lineages):
            hits = {name.casefold() for name in lineage} & wanted.keys()
            if hits:
                keep[i] = True
                found |= hits
        missing = [name for name in names if name.casefold() not in found]
        unlisted = [name for name in listed if name.casefold() not in found]
        if unlisted:
            log.warning(
                "open-ended: %d of %d names of the regional list are not in %s, left out: %s", len(unlisted),
                len(listed), self.path, ", ".join(unlisted[:5]) + (" …" if len(unlisted) > 5 else ""),
            )  # fmt: skip
        if missing:
            raise ConfigError(
                f"classify.fallback.open_ended_taxa: {', '.join(missing)} not in {self.path} at any rank "
                f"(ray-finned fishes have no class there: give their orders or families, or a species list)"
            )
        columns = np.flatnonzero(keep)
        return TreeOfLife(
            features=np.ascontiguousarray(self.features[:, columns]),
            lineages=tuple(self.lineages[i] for i in columns),
            common_names=tuple(self.common_names[i] for i in columns),
            path=self.path,
            filtered_by=tuple(str(t) for t in taxa),
        )


def taxa_names(taxa: Sequence[str]) -> tuple[list[str], list[str]]:
    """(names given as they are, names read from the species list files among ``taxa``): an item
    that is an existing ``.txt`` or ``.csv`` file is a list in either species-list form."""
    names, listed = [], []
    for item in taxa:
        text = str(item).strip()
        path = Path(text).expanduser()
        if path.suffix.casefold() in {".txt", ".csv"} and path.is_file():
            listed += [entry.label for entry in read_species_list(path)]
        elif text:
            names.append(text)
    return names, listed


def json_ref(ref: str) -> str:
    """The taxa JSON's reference beside an embeddings reference (a URL or a path to the .npy)."""
    return ref[: -len(".npy")] + ".json" if ref.endswith(".npy") else ref


def embedding_files(path: str | Path) -> tuple[Path, Path]:
    """The .npy and .json of ``path``: the .npy itself, or a folder holding them (directly or in
    ``embeddings/``, the dataset repository's layout), or a pinned ``https://`` URL of the .npy
    that ``fishcam models fetch`` downloaded with its .json (never downloaded here)."""
    if str(path).startswith(("https://", "http://")):
        from fishcam.models import hub

        ref = str(path)
        if not ref.endswith(".npy"):
            raise ConfigError(f"classify.fallback.open_ended: {ref} must name the {EMBEDDINGS_FILE} file")
        return hub.resolve(ref, "open_ended"), hub.resolve(json_ref(ref), "open_ended")
    path = Path(path).expanduser()
    if path.is_dir():
        for folder in (path, path / "embeddings"):
            if (folder / EMBEDDINGS_FILE).is_file():
                return folder / EMBEDDINGS_FILE, folder / NAMES_FILE
        raise ModelError(
            f"classify.fallback.open_ended: {path} holds no {EMBEDDINGS_FILE}; download embeddings/{EMBEDDINGS_FILE} "
            f"and {NAMES_FILE} from the {DATASET_REPO} dataset (docs/models.md, 'Open-ended mode')"
        )
    if not path.is_file():
        raise ModelError(
            f"classify.fallback.open_ended: {path} not found; download embeddings/{EMBEDDINGS_FILE} and {NAMES_FILE} "
            f"from the {DATASET_REPO} dataset (docs/models.md, 'Open-ended mode')"
        )
    return path, path.with_suffix(".json")


def read_tree_of_life(path: str | Path) -> TreeOfLife:
    npy, names_path = embedding_files(path)
    if not names_path.is_file():
        raise ModelError(f"open-ended embeddings {npy} need {names_path.name} beside them (each column's taxon)")
    try:
        features = np.load(npy, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise ModelError(f"open-ended embeddings {npy} are not a numpy array file: {exc}") from exc
    if features.ndim != 2 or features.dtype not in (np.float32, np.float16):
        raise ModelError(
            f"open-ended embeddings {npy} have shape {features.shape} and type {features.dtype}: expected "
            f"float32 (dim, species) as in the {DATASET_REPO} dataset"
        )
    try:
        items = json.loads(names_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{names_path} is not the taxa JSON of the embeddings: {exc}") from exc
    if not isinstance(items, list) or len(items) != features.shape[1]:
        count = len(items) if isinstance(items, list) else "no list of"
        raise ModelError(
            f"{names_path} has {count} taxa for {features.shape[1]} columns of {npy.name}: the two files are from "
            f"different releases; download both again"
        )
    lineages, commons = [], []
    for i, item in enumerate(items):
        try:
            ranks, common = item
            if len(ranks) != len(RANKS):
                raise ValueError
            names = ["" if n is None else str(n).strip() for n in ranks]
        except (TypeError, ValueError):
            raise ModelError(
                f"{names_path}: item {i} is {json.dumps(item)[:80]}, not [[kingdom … species epithet], common name]"
            ) from None
        genus, epithet = names[5], names[6]
        lineages.append((*names[:6], f"{genus} {epithet}".strip()))
        commons.append("" if common is None else str(common))
    log.info(
        "open-ended embeddings: %d taxa, %d dimensions, from %s (memory-mapped)", len(lineages), features.shape[0], npy
    )
    return TreeOfLife(features=features, lineages=tuple(lineages), common_names=tuple(commons), path=npy)


def fill_ranks(entries: Sequence[SpeciesEntry], tree: TreeOfLife) -> tuple[SpeciesEntry, ...]:
    """Each species of a list with the ranks it left out taken from the Tree of Life (matched by
    its scientific name); a species not found there keeps what the list gave."""
    index = tree.lookup()
    filled, missing = [], []
    for entry in entries:
        column = index.get(entry.label.casefold()) if entry.rank == "species" else None
        if column is None:
            missing += [entry.label] if entry.rank == "species" else []
            filled.append(entry)
            continue
        filled.append(with_lineage(entry, tree.lineages[column]))
    if missing:
        log.info(
            "%d of %d species of the list are not in the open-ended taxonomy (their ranks are the list's): %s",
            len(missing), len(entries), ", ".join(missing[:5]) + (" …" if len(missing) > 5 else ""),
        )  # fmt: skip
    return tuple(filled)
