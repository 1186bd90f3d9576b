import pytest

from fishcam.classify.species_list import parse_species_list, prompts_for, read_species_list
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
