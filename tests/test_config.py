from pathlib import Path

import pytest
import yaml

from fishcam.config import Config, load_config
from fishcam.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_default_yaml_matches_the_built_in_defaults():
    assert load_config(CONFIGS / "default.yaml").to_dict() == Config().to_dict()


@pytest.mark.parametrize("name", ["default", "fixed-camera", "dive", "count-only"])
def test_shipped_configs_validate(name):
    load_config(CONFIGS / f"{name}.yaml")


def test_unknown_key_names_its_dotted_path_and_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"classify": {"expert": {"treshold": 0.5}}}))
    with pytest.raises(ConfigError, match=r"unknown key 'classify\.expert\.treshold' \(did you mean 'threshold'\?\)"):
        load_config(path)


def test_set_overrides_are_typed_and_validated():
    config = load_config(None, ["detector.stride=3", "classify.fallback.species_list=x.txt", "detector.classes=[fish]"])
    assert config.detector.stride == 3
    assert config.classify.fallback.species_list == "x.txt"
    assert config.detector.classes == ["fish"]
    with pytest.raises(ConfigError, match=r"detector\.stride"):
        load_config(None, ["detector.stride=0"])
    with pytest.raises(ConfigError, match=r"unknown key 'detector\.strde'"):
        load_config(None, ["detector.strde=2"])
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        load_config(None, ["detector.stride"])


def test_bad_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_default_yaml_lists_every_key():
    def keys(tree, prefix=""):
        found = set()
        for key, value in tree.items():
            found.add(prefix + key)
            if isinstance(value, dict):
                found |= keys(value, f"{prefix}{key}.")
        return found

    written = yaml.safe_load((CONFIGS / "default.yaml").read_text())
    assert keys(Config().to_dict()) == keys(written)
