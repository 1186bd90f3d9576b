"""BioCLIP's architecture (tiny widths) in the open_clip hub layout, loaded offline."""

import numpy as np
import pytest
from builders import REAL_FISH

from fishcam.classify.species_list import parse_species_list
from fishcam.errors import MissingModelError
from fishcam.models.loading import load_fallback

pytestmark = pytest.mark.model

SPECIES = parse_species_list("Pterois volitans; red lionfish\nCarassius auratus; goldfish\nGadus morhua; cod\n")


def test_predicts_over_the_species_list_and_caches_text_embeddings(tiny_clip, tmp_path, monkeypatch):
    import cv2

    fallback = load_fallback(str(tiny_clip), SPECIES, ["a photo of {}."], device="cpu", embeddings_dir=tmp_path)
    assert fallback.labels == ("Pterois volitans", "Carassius auratus", "Gadus morhua")
    crops = [cv2.imread(str(REAL_FISH / "goby_lionfish.jpg")), cv2.imread(str(REAL_FISH / "kde_goldfish.png"))]
    probs = fallback.predict(crops)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert len(list(tmp_path.glob("*.npy"))) == 1

    # A second load reads the cached embeddings and never encodes text again.
    import open_clip

    def no_text(*args, **kwargs):
        raise AssertionError("text encoded again")

    monkeypatch.setattr(open_clip.CLIP, "encode_text", no_text)
    again = load_fallback(str(tiny_clip), SPECIES, ["a photo of {}."], device="cpu", embeddings_dir=tmp_path)
    assert np.allclose(again.predict(crops), probs, atol=1e-5)
    # Another list is another cache entry.
    monkeypatch.undo()
    load_fallback(str(tiny_clip), SPECIES[:2], ["a photo of {}."], device="cpu", embeddings_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_embeddings_are_cached_in_fishcams_cache_by_default(tiny_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    load_fallback(str(tiny_clip), SPECIES, ["{}"], device="cpu")
    assert len(list((tmp_path / "fishcam" / "text-embeddings").glob("*.npy"))) == 1


def test_hub_model_missing_offline_names_the_fetch_command():
    with pytest.raises(MissingModelError, match=r"imageomics/bioclip-2 is not on this machine.*fishcam models fetch"):
        load_fallback("hf-hub:imageomics/bioclip-2", SPECIES, ["{}"], device="cpu")


def test_hub_model_found_in_a_prefilled_cache(tiny_clip, tmp_path, monkeypatch):
    """What `fishcam models fetch` leaves behind: the standard Hugging Face cache layout."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--imageomics--bioclip-2" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (cache / "models--imageomics--bioclip-2" / "refs").mkdir()
    (cache / "models--imageomics--bioclip-2" / "refs" / "main").write_text("a" * 40)
    for name in ("open_clip_config.json", "open_clip_model.safetensors"):
        (snapshot / name).symlink_to(tiny_clip / name)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    fallback = load_fallback("hf-hub:imageomics/bioclip-2", SPECIES, ["{}"], device="cpu", embeddings_dir=tmp_path)
    assert fallback.loaded.folder == snapshot
