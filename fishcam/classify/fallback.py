"""Zero-shot fallback: a loaded BioCLIP(-2) (``fishcam.models.loading.load_clip``) over the
user's species list.

The list's text embeddings are computed once per (model weights, list, templates) and cached
on disk, so a station restarting every day does not re-encode hundreds of prompts.
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
from fishcam.classify.species_list import SpeciesEntry, prompts_for
from fishcam.models.paths import cache_dir

if TYPE_CHECKING:
    from fishcam.models.loading import LoadedClip

log = logging.getLogger(__name__)


def embeddings_cache_dir() -> Path:
    """Where species lists' text embeddings are cached."""
    return cache_dir("text-embeddings")


class ZeroShotFallback:
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

    @torch.inference_mode()
    def predict(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        clip = self.loaded
        outputs = []
        for start in range(0, len(crops_bgr), self.batch_size):
            batch = torch.from_numpy(to_batch(crops_bgr[start : start + self.batch_size], clip.preprocess))
            image = clip.network.encode_image(batch.to(self.device)).float()
            image = image / image.norm(dim=-1, keepdim=True)
            logits = clip.logit_scale * image @ self.text_features.T
            outputs.append(torch.softmax(logits, dim=1).cpu().numpy())
        if not outputs:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(outputs)

    def describe(self) -> dict[str, Any]:
        return {"model": self.loaded.ref, **self.loaded.describe(), "species": len(self.labels), "device": self.device}


def species_embeddings(
    clip: LoadedClip, species: Sequence[SpeciesEntry], templates: Sequence[str], cache: Path | None = None
) -> torch.Tensor:
    """One unit text embedding per species (the mean over its names and templates), read from
    ``cache`` (default :func:`embeddings_cache_dir`) when this model, list and templates were
    encoded before, else encoded now and saved there."""
    cache = cache or embeddings_cache_dir()
    key_source = json.dumps([clip.weights.get("sha256", str(clip.folder)), [e.names for e in species], list(templates)])
    cached = cache / f"{hashlib.sha256(key_source.encode()).hexdigest()[:32]}.npy"
    if cached.is_file():
        features = np.load(cached)
        if features.shape[0] == len(species):
            log.info("species list embeddings from cache %s", cached)
            return torch.from_numpy(features).to(clip.device)
    rows = []
    with torch.inference_mode():
        for entry in species:
            tokens = clip.tokenizer(prompts_for(entry, tuple(templates))).to(clip.device)
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
