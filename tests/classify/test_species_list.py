import pytest
from builders import SAMPLES

from fishcam.classify.species_list import parse_species_list, prompt_texts, prompts_for, read_species_list
from fishcam.classify.templates import OPENAI_IMAGENET
from fishcam.errors import SpeciesListError


def test_names_comments_and_prompts():
    entries = parse_species_list("# fish\nPterois volitans; red lionfish\n\nGadus morhua  # cod\n")
    assert [e.label for e in entries] == ["Pterois volitans", "Gadus morhua"]
    assert prompts_for(entries[0], ["a photo of {}."]) == ["a photo of Pterois volitans.", "a photo of red lionfish."]


def test_empty_and_duplicate_lists_are_refused(tmp_path):
    with pytest.raises(SpeciesListError, match="empty"):
        parse_species_list("# nothing\n\n")
    with pytest.raises(SpeciesListError, match="line 3 repeats line 1"):
        parse_species_list("Gadus morhua\nMerluccius\ngadus morhua; cod\n")
    with pytest.raises(SpeciesListError, match="not found"):
        read_species_list(tmp_path / "none.txt")


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    path = tmp_path / "species.txt"
    path.write_bytes("\ufeffPterois volitans; red lionfish\nGobiidae\n".encode())
    entries = read_species_list(path)
    assert [e.label for e in entries] == ["Pterois volitans", "Gobiidae"]
    assert entries[0].names == ("Pterois volitans", "red lionfish")


# ---- the two forms as data, and the prompts the authors' form makes ----------------------------

SAMPLE_CSV = SAMPLES / "species.csv"
SAMPLE_TXT = SAMPLES / "species.txt"


def test_a_csv_list_gives_names_and_ranks():
    entries = read_species_list(SAMPLE_CSV)
    assert [e.label for e in entries] == [e.label for e in read_species_list(SAMPLE_TXT)]  # the same 7 species
    lionfish = entries[0]
    assert lionfish.names == ("Pterois volitans", "red lionfish") and lionfish.rank == "species"
    assert lionfish.lineage == (
        "Animalia", "Chordata", "Actinopterygii", "Scorpaeniformes", "Scorpaenidae", "Pterois", "Pterois volitans",
    )  # fmt: skip


def test_prompt_text_is_the_authors_taxonomic_form_with_the_common_name():
    lionfish = read_species_list(SAMPLE_CSV)[0]
    assert prompt_texts(lionfish) == [
        "Animalia Chordata Actinopterygii Scorpaeniformes Scorpaenidae Pterois volitans with common name red lionfish"
    ]
    prompts = prompts_for(lionfish, OPENAI_IMAGENET, "taxonomic_common")
    assert len(prompts) == 80
    assert prompts[:2] == [
        "a bad photo of a Animalia Chordata Actinopterygii Scorpaeniformes Scorpaenidae Pterois volitans with "
        "common name red lionfish.",
        "a photo of many Animalia Chordata Actinopterygii Scorpaeniformes Scorpaenidae Pterois volitans with "
        "common name red lionfish.",
    ]
    assert prompts[-1].startswith("a tattoo of the Animalia")
    taxonomic = "Animalia Chordata Actinopterygii Scorpaeniformes Scorpaenidae Pterois volitans"
    assert prompt_texts(lionfish, "taxonomic") == [taxonomic]
    assert prompt_texts(lionfish, "scientific_common") == ["Pterois volitans with common name red lionfish"]
    assert prompt_texts(lionfish, "scientific") == ["Pterois volitans"]
    assert prompt_texts(lionfish, "names") == ["Pterois volitans", "red lionfish"]


def test_plain_lines_know_the_genus_of_scientific_common_pairs_only():
    entries = parse_species_list("Pterois volitans; red lionfish\nBlue tang\nGobiidae\n")
    assert entries[0].lineage[5:] == ("Pterois", "Pterois volitans")
    assert prompt_texts(entries[0]) == ["Pterois volitans with common name red lionfish"]
    # "Blue tang" looks like a binomial but has no common name after it: no genus "Blue".
    assert entries[1].lineage == () and prompt_texts(entries[1]) == ["Blue tang"]
    assert prompt_texts(entries[2]) == ["Gobiidae"]


def test_empty_ranks_are_left_out_of_the_taxonomic_name():
    (entry,) = parse_species_list(
        "scientific_name,common_name,kingdom,phylum,class,order,family,genus\n"
        "Amphiprion ocellaris,clown anemonefish,Animalia,Chordata,,Perciformes,Pomacentridae,Amphiprion\n"
    )
    assert prompt_texts(entry) == [
        "Animalia Chordata Perciformes Pomacentridae Amphiprion ocellaris with common name clown anemonefish"
    ]


def test_an_entry_above_species_names_its_rank():
    entries = parse_species_list("scientific_name,family,genus\nPterois,Scorpaenidae,Pterois\nGobiidae,Gobiidae,\n")
    assert [(e.label, e.rank) for e in entries] == [("Pterois", "genus"), ("Gobiidae", "family")]
    assert entries[0].lineage == ("", "", "", "", "Scorpaenidae", "Pterois")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("scientific_name,comon_name\nGadus morhua,cod\n", r"column 'comon_name' \(did you mean 'common_name'\?\)"),
        ("scientific_name,colour\nGadus morhua,red\n", "unknown column 'colour'; the columns are scientific_name"),
        ("scientific_name,common_name\nGadus morhua,cod\n,hake\n", "line 3: scientific_name is blank"),
        ("scientific_name\nGadus morhua\n\ngadus morhua\n", "'gadus morhua' on line 4 repeats line 2"),
        ("scientific_name,genus\nGadus morhua,Merluccius\n", "genus is 'Merluccius' but 'Gadus morhua' starts"),
        ("scientific_name,common_name\nGadus morhua,cod,extra\n", "line 2: 3 values for 2 columns"),
        ("scientific_name,genus\nPterois,\n", "'Pterois' is one word"),
        ("scientific_name,genus,genus\nGadus morhua,Gadus,Gadus\n", "column 'genus' is given twice"),
        ("scientific_name,common_name\n", "no species under its header"),
        (
            "# my fish\nscientific_name,common_name\n# cod\nGadus morhua,cod\n,hake\n",
            "line 5: scientific_name is blank",
        ),
    ],
)
def test_each_csv_problem_is_one_clear_line(text, message):
    with pytest.raises(SpeciesListError, match=message) as caught:
        parse_species_list(text, "species list x.csv")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("species list x.csv")


def test_a_csv_needs_its_scientific_name_column(tmp_path):
    path = tmp_path / "fish.csv"
    path.write_text("name,common_name\nGadus morhua,cod\n")
    with pytest.raises(SpeciesListError, match="unknown column 'name'"):
        read_species_list(path)


def test_a_list_not_in_utf8_names_the_line_and_the_fix(tmp_path):
    path = tmp_path / "species.csv"
    text = "scientific_name,common_name\nGadus morhua,cod\nSalmo salar,saumon d'\xe9t\xe9\n"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(SpeciesListError, match=r"line 3: not UTF-8 text \(byte 0xe9\); save the file as UTF-8"):
        read_species_list(path)
    path.write_bytes("Gadus morhua; cod\n".encode("utf-16"))
    with pytest.raises(SpeciesListError, match="UTF-8"):
        read_species_list(path)


def test_a_bad_list_stops_a_run_with_exit_code_2_before_any_model(tmp_path, capsys):
    from fishcam.app.cli import main

    bad = tmp_path / "species.csv"
    bad.write_text("scientific_name,comon_name\nGadus morhua,cod\n")
    code = main(["run", str(SAMPLES / "dive_sample.mp4"), "--species", str(bad), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown column 'comon_name' (did you mean 'common_name'?)" in err
