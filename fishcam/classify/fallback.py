"""Zero-shot fallback: BioCLIP(-2) through open_clip over the user's species list.

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
from typing import Any

import numpy as np
import torch

from fishcam.classify.preprocess import to_batch
from fishcam.classify.species_list import SpeciesEntry, prompts_for
from fishcam.errors import ModelError
from fishcam.models import hub
from fishcam.models.checkpoint import load_state_dict
from fishcam.models.devices import pick_device
from fishcam.models.expert_spec import Preprocess

log = logging.getLogger(__name__)


def embeddings_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "fishcam" / "text-embeddings"


class ZeroShotFallback:
    """Implements the SpeciesModel protocol over a species list."""

    def __init__(
        self,
        model_ref: str,
        species: Sequence[SpeciesEntry],
        templates: Sequence[str],
        device: str = "auto",
        batch_size: int = 8,
        cache_dir: Path | None = None,
    ) -> None:
        import open_clip

        self.model_ref = model_ref
        self.species = tuple(species)
        self.labels = tuple(entry.label for entry in self.species)
        self.templates = tuple(templates)
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.folder = _model_folder(hub.resolve(model_ref, "fallback"))
        weights = weights_file(self.folder)
        state = load_state_dict(weights)  # tensors only: open_clip would fall back to full unpickling
        name = f"local-dir:{self.folder}"
        try:
            # The architecture from the folder's config, with no weights of its own (and no base
            # tower weights fetched from a hub); fishcam loads the folder's tensors itself.
            model, _, _ = open_clip.create_model_and_transforms(
                name, load_weights=False, pretrained_image=False, pretrained_text=False
            )
            tokenizer = open_clip.get_tokenizer(name)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise ModelError(f"cannot build fallback model from {self.folder}: {exc}".split("\n")[0]) from exc
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(
                f"fallback weights {weights} do not fit the architecture in {self.folder / CONFIG_FILE}: "
                f"{str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}"
            ) from exc
        self.model = model.to(self.device).eval()
        self.weights = hub.describe(weights)
        self.preprocess = _preprocess_of(model)
        self.text_features = self._text_features(tokenizer, cache_dir or embeddings_cache_dir())
        self.logit_scale = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else 100.0

    def _text_features(self, tokenizer, cache_dir: Path) -> torch.Tensor:
        key_source = json.dumps(
            [self.weights.get("sha256", str(self.folder)), [e.names for e in self.species], self.templates]
        )
        key = hashlib.sha256(key_source.encode()).hexdigest()[:32]
        cached = cache_dir / f"{key}.npy"
        if cached.is_file():
            features = np.load(cached)
            if features.shape[0] == len(self.species):
                log.info("species list embeddings from cache %s", cached)
                return torch.from_numpy(features).to(self.device)
        rows = []
        with torch.inference_mode():
            for entry in self.species:
                tokens = tokenizer(prompts_for(entry, self.templates)).to(self.device)
                text = self.model.encode_text(tokens).float()
                text = text / text.norm(dim=-1, keepdim=True)
                mean = text.mean(dim=0)
                rows.append(mean / mean.norm())
        features = torch.stack(rows)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npy")
        np.save(tmp, features.cpu().numpy())
        os.replace(tmp, cached)
        return features

    @torch.inference_mode()
    def predict(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        outputs = []
        for start in range(0, len(crops_bgr), self.batch_size):
            batch = torch.from_numpy(to_batch(crops_bgr[start : start + self.batch_size], self.preprocess))
            image = self.model.encode_image(batch.to(self.device)).float()
            image = image / image.norm(dim=-1, keepdim=True)
            logits = self.logit_scale * image @ self.text_features.T
            outputs.append(torch.softmax(logits, dim=1).cpu().numpy())
        if not outputs:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(outputs)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_ref, **self.weights, "species": len(self.labels), "device": self.device}


CONFIG_FILE = "open_clip_config.json"
# open_clip's own preference among the weight files of a folder, tensor formats first.
WEIGHT_FILES = (
    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "model.safetensors",
    "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
)  # fmt: skip


def _model_folder(path: Path) -> Path:
    """An open_clip model folder: open_clip_config.json beside the weights."""
    folder = path if path.is_dir() else path.parent
    if not (folder / CONFIG_FILE).is_file():
        raise ModelError(
            f"fallback model {path} needs {CONFIG_FILE} beside its weights "
            f"(the layout of an open_clip Hugging Face repo)"
        )
    return folder


def weights_file(folder: Path) -> Path:
    """The weights of an open_clip folder. None at all is refused: open_clip would build the model
    with random weights and only log a warning, and every species in every output would be noise."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    others = sorted(p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin", ".pth", ".pt"} and p.is_file())
    if len(others) == 1:
        return others[0]
    if others:
        raise ModelError(
            f"fallback folder {folder} holds several weight files ({', '.join(p.name for p in others)}): "
            f"keep one, or name it open_clip_model.safetensors"
        )
    raise ModelError(
        f"fallback folder {folder} has {CONFIG_FILE} but no weights (open_clip_model.safetensors): fishcam will not "
        f"run a randomly initialised model. Download open_clip_model.safetensors from the model's Hugging Face repo "
        f"into that folder"
    )


def _preprocess_of(model) -> Preprocess:
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", cfg.get("image_size", 224))
    size = tuple(size) if isinstance(size, list | tuple) else (size, size)
    mode = cfg.get("resize_mode", "shortest")
    return Preprocess(
        size=size,
        mean=tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
        color="RGB",
        resize="squash" if mode == "squash" else "center_crop",
        interpolation="bicubic" if cfg.get("interpolation", "bicubic") == "bicubic" else "bilinear",
    )
