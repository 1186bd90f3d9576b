"""Open-ended mode: BioCLIP-2's Tree-of-Life species embeddings, in the dataset's real format
(768 dimensions, float32 ``(dim, N)``, the taxa JSON's layout with the empty class ray-finned
fishes have there; random vectors), through a tiny open_clip model with random weights that
gives 768-dimensional embeddings. Nothing downloads."""

import itertools
import json

import cv2
import numpy as np
import pytest
from builders import REAL_FISH, SAMPLES, TOL_FISH, save_tiny_open_clip, save_tree_of_life

from fishcam.classify.decide import fallback_call
from fishcam.classify.species_list import prompt_texts, read_species_list
from fishcam.classify.tree_of_life import fill_ranks, read_tree_of_life
from fishcam.errors import ConfigError, ModelError
from fishcam.models.loading import load_open_ended

pytestmark = pytest.mark.model

REAL_TAXA = TOL_FISH
FILLER = 3000


@pytest.fixture(scope="module")
def tree_folder(tmp_path_factory):
    return save_tree_of_life(tmp_path_factory.mktemp("tol"), REAL_TAXA, dim=768, filler=FILLER)


@pytest.fixture(scope="module")
def clip_768(tmp_path_factory):
    return save_tiny_open_clip(tmp_path_factory.mktemp("clip768") / "tiny-bioclip-768", embed_dim=768)


@pytest.fixture(scope="module")
def crops():
    return [cv2.imread(str(REAL_FISH / "goby_lionfish.jpg")), cv2.imread(str(REAL_FISH / "kde_goldfish.png"))]


def test_the_embeddings_are_memory_mapped_with_each_columns_taxon(tree_folder):
    tree = read_tree_of_life(tree_folder)  # the folder as downloaded: embeddings/ inside
    assert isinstance(tree.features, np.memmap) and tree.features.shape == (768, len(REAL_TAXA) + FILLER)
    assert tree.labels[:2] == ("Pterois volitans", "Pterois miles")
    assert tree.lineages[0] == ("Animalia", "Chordata", "", "Scorpaeniformes", "Scorpaenidae", "Pterois",
                                "Pterois volitans")  # fmt: skip
    assert tree.common_names[4] == "Blacktip reef shark"


def test_a_taxon_filter_keeps_the_species_under_it_at_any_rank(tree_folder):
    tree = read_tree_of_life(tree_folder).select(["Elasmobranchii", "Perciformes"])
    assert tree.labels == ("Thalassoma lunare", "Dascyllus aruanus", "Carcharhinus melanopterus", "Taeniura lymma")
    full = np.load(tree_folder / "embeddings" / "txt_emb_species.npy")
    assert np.array_equal(tree.features, full[:, [2, 3, 4, 5]])
    # Ray-finned fishes have no class in the Tree of Life: the filter says so instead of keeping nothing.
    with pytest.raises(ConfigError, match=r"Actinopterygii not in .* \(ray-finned fishes have no class there"):
        read_tree_of_life(tree_folder).select(["Actinopterygii"])


def test_open_ended_probabilities_are_one_product_with_the_matrix(tree_folder, clip_768, crops):
    fallback = load_open_ended(str(clip_768), tree_folder, device="cpu")
    assert fallback.loaded.preprocess.resize == "squash"  # as pybioclip: no centre crop
    probs = fallback.predict(crops)
    assert probs.shape == (2, len(REAL_TAXA) + FILLER) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    # The same numbers the authors' formula gives: softmax(logit_scale * image @ text).
    image = fallback.image_features(crops).astype(np.float64)
    text = np.load(tree_folder / "embeddings" / "txt_emb_species.npy").astype(np.float64)
    logits = fallback.loaded.logit_scale * image @ text
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.allclose(probs, expected, atol=1e-5)
    top = fallback.top_k(probs, k=5)
    assert top[0][0][0] == fallback.labels[int(np.argmax(probs[0]))]
    assert all(a[1] >= b[1] for row in top for a, b in itertools.pairwise(row))


def test_a_filtered_open_ended_fallback_rolls_up_over_the_tree_of_lifes_ranks(tree_folder, clip_768):
    fallback = load_open_ended(str(clip_768), tree_folder, ["Scorpaeniformes", "Perciformes"], device="cpu")
    assert fallback.labels == ("Pterois volitans", "Pterois miles", "Thalassoma lunare", "Dascyllus aruanus")
    c = fallback_call(np.array([0.35, 0.3, 0.2, 0.15]), fallback.labels, 0.5, fallback.taxonomy)
    assert (c.label, c.rank, c.candidate) == ("Pterois", "genus", "Pterois volitans")
    c = fallback_call(np.array([0.2, 0.1, 0.4, 0.3]), fallback.labels, 0.6, fallback.taxonomy)
    assert (c.label, c.rank) == ("Perciformes", "order")  # families 0.4 / 0.3: none sure
    assert fallback.describe()["taxa_filter"] == ["Scorpaeniformes", "Perciformes"]


def test_embeddings_of_another_model_are_refused(tree_folder, tiny_clip):
    with pytest.raises(ModelError, match=r"have 768 dimensions, the fallback model .* gives 32"):
        load_open_ended(str(tiny_clip), tree_folder, device="cpu")


def test_broken_or_missing_files_say_what_is_wrong(tree_folder, tmp_path):
    with pytest.raises(ModelError, match=r"holds no txt_emb_species\.npy; download embeddings/txt_emb_species\.npy"):
        read_tree_of_life(tmp_path)
    folder = tmp_path / "tol"
    (folder / "embeddings").mkdir(parents=True)
    np.save(folder / "embeddings" / "txt_emb_species.npy", np.zeros((768, 3), np.float32))
    (folder / "embeddings" / "txt_emb_species.json").write_text(json.dumps([[["Animalia"] * 7, ""]] * 2))
    with pytest.raises(ModelError, match="has 2 taxa for 3 columns"):
        read_tree_of_life(folder)
    (folder / "embeddings" / "txt_emb_species.json").write_text(json.dumps([[["Animalia"] * 7, ""]] * 2 + [["x"]]))
    with pytest.raises(ModelError, match=r"item 2 is \[\"x\"\], not \[\[kingdom"):
        read_tree_of_life(folder)


def test_a_species_list_gets_its_missing_ranks_from_the_tree_of_life(tree_folder):
    entries = fill_ranks(read_species_list(SAMPLES / "species.txt"), read_tree_of_life(tree_folder))
    lionfish, groper = entries[0], entries[1]
    assert lionfish.lineage == ("Animalia", "Chordata", "", "Scorpaeniformes", "Scorpaenidae", "Pterois",
                                "Pterois volitans")  # fmt: skip
    assert prompt_texts(lionfish) == [
        "Animalia Chordata Scorpaeniformes Scorpaenidae Pterois volitans with common name red lionfish"
    ]
    assert groper.lineage == ("", "", "", "", "", "Achoerodus", "Achoerodus viridis")  # not in the file: the list's


def test_a_config_with_a_list_and_the_tree_of_life_prompts_with_the_filled_ranks(tree_folder, tiny_clip, tmp_path):
    from fishcam.app.compose import build_fallback
    from fishcam.config import load_config

    config = load_config(None, [f"classify.fallback.model={tiny_clip}", "classify.fallback.device=cpu",
                                f"classify.fallback.species_list={SAMPLES / 'species.txt'}",
                                f"classify.fallback.open_ended={tree_folder}"])  # fmt: skip
    fallback = build_fallback(config.classify.fallback)
    assert fallback.labels[0] == "Pterois volitans" and len(fallback.labels) == 7  # the list is the label set
    assert fallback.species[0].lineage[3:5] == ("Scorpaeniformes", "Scorpaenidae")
    assert fallback.loaded.preprocess.resize == "squash"


def test_a_regional_list_keeps_its_species_precomputed_columns(tree_folder, tmp_path, caplog):
    regional = tmp_path / "moore-reef.txt"
    regional.write_text("Pterois volitans; red lionfish\nThalassoma lunare; moon wrasse\nAchoerodus viridis; groper\n")
    tree = read_tree_of_life(tree_folder).select([str(regional), "Elasmobranchii"])
    assert tree.labels == ("Pterois volitans", "Thalassoma lunare", "Carcharhinus melanopterus", "Taeniura lymma")
    full = np.load(tree_folder / "embeddings" / "txt_emb_species.npy")
    assert np.array_equal(tree.features, full[:, [0, 2, 4, 5]])  # the authors' own embeddings, nothing encoded
    # A list's name missing from the Tree of Life is said and left out, not fatal.
    assert "1 of 3 names of the regional list are not in" in caplog.text and "Achoerodus viridis" in caplog.text
