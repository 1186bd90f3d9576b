"""Zero-shot fallback: a loaded BioCLIP(-2) (``fishcam.models.loading.load_clip``) over the
user's species list, or open-ended over the Tree of Life.

The list's text embeddings are made as BioCLIP's authors make them (docs/models.md, "Prompts"):
each species' taxonomic name with its common name (``Animalia Chordata … Pterois volitans with
common name red lionfish``) in each of the 80 OpenAI ImageNet templates, the unit embeddings
averaged. They are computed once per (model weights, prompts, templates) and cached on disk, so
a station restarting every day does not re-encode hundreds of prompts.

Open-ended, the label set is the Tree of Life's precomputed species embeddings
(:mod:`fishcam.classify.tree_of_life`), memory-mapped, optionally filtered to some taxa; a crop's
probabilities are one matrix product and a softmax over them, as pybioclip computes them.

Both carry the labels' :class:`~fishcam.classify.taxonomy.Taxonomy`, so a crop no species is sure
of can be named at genus, family or order (:func:`fishcam.classify.decide.fallback_call`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fishcam.classify.preprocess import to_batch
from fishcam.classify.species_list import SpeciesEntry, prompt_texts
from fishcam.classify.taxonomy import Taxonomy
from fishcam.errors import ModelError
from fishcam.models.paths import cache_dir

if TYPE_CHECKING:
    from fishcam.classify.tree_of_life import TreeOfLife
    from fishcam.models.loading import LoadedClip

log = logging.getLogger(__name__)


def embeddings_cache_dir() -> Path:
    """Where species lists' text embeddings are cached."""
    return cache_dir("text-embeddings")


class _ClipImages:
    """Unit image embeddings of crops, in batches."""

    loaded: LoadedClip
    batch_size: int

    @torch.inference_mode()
    def image_features(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        clip = self.loaded
        rows = []
        for start in range(0, len(crops_bgr), self.batch_size):
            batch = torch.from_numpy(to_batch(crops_bgr[start : start + self.batch_size], clip.preprocess))
            image = clip.network.encode_image(batch.to(clip.device)).float()
            rows.append((image / image.norm(dim=-1, keepdim=True)).cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)


class ZeroShotFallback(_ClipImages):
    """Implements the SpeciesModel protocol over a species list.

    ``ZeroShotFallback(load_clip(ref), species, species_embeddings(...))`` adapts a loaded model;
    ``load_fallback(ref, species, templates)`` does all of it.
    """

    def __init__(
        self, clip: LoadedClip, species: Sequence[SpeciesEntry], text_features: torch.Tensor, *, batch_size: int = 8
    ) -> None:
        if len(text_features) != len(species):
            raise ValueError(f"{len(text_features)} text embeddings for {len(species)} species")
        self.loaded = clip
        self.species = tuple(species)
        self.labels = tuple(entry.label for entry in self.species)
        self.device = clip.device
        self.batch_size = batch_size
        self.text_features = text_features.to(clip.device)
        self.taxonomy = Taxonomy([e.lineage for e in self.species], [e.rank for e in self.species])

    @torch.inference_mode()
    def predict(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        if not len(crops_bgr):
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        image = torch.from_numpy(self.image_features(crops_bgr)).to(self.device)
        logits = self.loaded.logit_scale * image @ self.text_features.T
        return torch.softmax(logits, dim=1).cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {"model": self.loaded.ref, **self.loaded.describe(), "species": len(self.labels), "device": self.device}


class OpenEndedFallback(_ClipImages):
    """The SpeciesModel protocol over the Tree of Life's species text embeddings: probabilities
    over every (kept) species, from one matrix product with the memory-mapped ``(dim, N)`` matrix."""

    def __init__(self, clip: LoadedClip, tree: TreeOfLife, *, batch_size: int = 8) -> None:
        self.loaded = clip
        self.tree = tree
        self.labels = tree.labels
        self.device = clip.device
        self.batch_size = batch_size
        self.taxonomy = Taxonomy(tree.lineages, ["species"] * len(tree))

    def check_dimension(self) -> None:
        """The model's embeddings must be the file's (BioCLIP-2: 768; BioCLIP-1's files: 512)."""
        probe = np.zeros((1, 32, 32, 3), np.uint8)
        dim = self.image_features(list(probe)).shape[1]
        if dim != self.tree.dim:
            raise ModelError(
                f"open-ended embeddings {self.tree.path} have {self.tree.dim} dimensions, the fallback model "
                f"{self.loaded.ref} gives {dim}: they were made by another model (BioCLIP-2's are 768)"
            )

    def probabilities(self, image_features: np.ndarray) -> np.ndarray:
        """Softmax over every kept species of ``logit_scale * image @ text`` (float32)."""
        logits = image_features.astype(np.float32) @ self.tree.features  # (B, N): reads the matrix once a batch
        logits *= np.float32(self.loaded.logit_scale)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def predict(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        if not len(crops_bgr):
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.probabilities(self.image_features(crops_bgr))

    def top_k(self, probs: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable species of each row, best first."""
        k = min(k, probs.shape[1])
        out = []
        for row in probs:
            idx = np.argpartition(row, -k)[-k:]
            idx = idx[np.argsort(row[idx])[::-1]]
            out.append([(self.labels[i], float(row[i])) for i in idx])
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.loaded.ref, **self.loaded.describe(), "open_ended": str(self.tree.path),
            "species": len(self.labels), "taxa_filter": list(self.tree.filtered_by), "device": self.device,
        }  # fmt: skip


def species_embeddings(
    clip: LoadedClip,
    species: Sequence[SpeciesEntry],
    templates: Sequence[str],
    cache: Path | None = None,
    prompt_form: str = "taxonomic_common",
) -> torch.Tensor:
    """One unit text embedding per species (the mean over its texts and templates), read from
    ``cache`` (default :func:`embeddings_cache_dir`) when this model, these prompts and templates
    were encoded before, else encoded now and saved there."""
    cache = cache or embeddings_cache_dir()
    texts = [prompt_texts(entry, prompt_form) for entry in species]
    key_source = json.dumps([clip.weights.get("sha256", str(clip.folder)), texts, list(templates)])
    cached = cache / f"{hashlib.sha256(key_source.encode()).hexdigest()[:32]}.npy"
    if cached.is_file():
        features = np.load(cached)
        if features.shape[0] == len(species):
            log.info("species list embeddings from cache %s", cached)
            return torch.from_numpy(features).to(clip.device)
    rows = []
    with torch.inference_mode():
        for names in texts:
            prompts = [template.format(text) for text in names for template in templates]
            tokens = clip.tokenizer(prompts).to(clip.device)
            text = clip.network.encode_text(tokens).float()
            text = text / text.norm(dim=-1, keepdim=True)
            mean = text.mean(dim=0)
            rows.append(mean / mean.norm())
    features = torch.stack(rows)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npy")
    np.save(tmp, features.cpu().numpy())
    os.replace(tmp, cached)
    return features
