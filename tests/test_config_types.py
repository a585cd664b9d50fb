"""Config values are checked against the dataclass annotations: one line naming file, key, type and value."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import pytest

from conftest import TINY_MODEL, run_cli
from mlkd_cli.config import from_dict, load_yaml
from mlkd_cli.errors import ConfigError
from mlkd_cli.experiment.config import SpecAugmentConfig, TrainConfig
from mlkd_cli.models.config import ModelConfig


def load_error(cls: type, tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_yaml(cls, path)
    return str(caught.value).replace(str(path), "FILE")


@pytest.mark.parametrize("text, message", [
    ("max_steps: ten", "FILE: key max_steps must be an integer, got 'ten'"),
    ("max_steps: true", "FILE: key max_steps must be an integer, got True"),
    ("max_steps: 1.5", "FILE: key max_steps must be an integer, got 1.5"),
    ("lr: fast", "FILE: key lr must be a number, got 'fast'"),
    ("lr: '1e-3x'", "FILE: key lr must be a number, got '1e-3x'"),
    ("max_duration: [1, 2]", "FILE: key max_duration must be a number, got [1, 2]"),
    ("speed_perturb: 1", "FILE: key speed_perturb must be true or false, got 1"),
    ("spec_augment: 3", "FILE: key spec_augment must be a mapping with keys among enabled, time_warp_factor, "
                        "num_feature_masks, features_mask_size, num_frame_masks, frames_mask_size, "
                        "max_frames_mask_fraction, got 3"),
    ("spec_augment: {enabled: 'no'}", "FILE: key spec_augment.enabled must be true or false, got 'no'"),
    ("spec_augment: {num_frame_masks: 2.0}", "FILE: key spec_augment.num_frame_masks must be an integer, got 2.0"),
    ("spec_augment: {enabeld: true}", "FILE.spec_augment: unknown key(s) enabeld; valid keys are: enabled, "
                                      "time_warp_factor, num_feature_masks, features_mask_size, num_frame_masks, "
                                      "frames_mask_size, max_frames_mask_fraction"),
])
def test_train_config_values_of_the_wrong_type(tmp_path, text, message):
    assert load_error(TrainConfig, tmp_path, text) == message


def test_numbers_are_read_as_their_field_types(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("lr: 1e-3\nmax_duration: 20\nspec_augment: {max_frames_mask_fraction: 0}\n")
    config = load_yaml(TrainConfig, path)
    assert config.lr == 0.001 and config.max_duration == 20.0 and isinstance(config.max_duration, float)
    assert config.spec_augment == SpecAugmentConfig(max_frames_mask_fraction=0.0)


@pytest.mark.parametrize("text, message", [
    ("languages: en", "FILE: key languages must be a list of strings, got 'en'"),
    ("lid_layer: true", "FILE: key lid_layer must be an integer, got True"),
    ("languages: {en: 1}", "FILE: key languages must be a list of strings, got {'en': 1}"),
    # the class's own check speaks first where it has one
    ("d_model: big", "FILE: model d_model must be an integer, got 'big'"),
])
def test_model_config_values_of_the_wrong_type(tmp_path, text, message):
    assert load_error(ModelConfig, tmp_path, text) == message


def test_languages_list_becomes_a_tuple(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(TINY_MODEL.read_text() + "languages: [en, de]\n")
    assert load_yaml(ModelConfig, path).languages == ("en", "de")


@dataclasses.dataclass(frozen=True)
class Typed:
    pair: tuple[int, float] = (1, 2.0)
    limit: Optional[int] = None
    names: tuple[str, ...] = ()


@pytest.mark.parametrize("data, message", [
    ({"pair": [1]}, "config: key pair must be a list of 2 values, got [1]"),
    ({"pair": [1, "x"]}, "config: key pair[1] must be a number, got 'x'"),
    ({"limit": "many"}, "config: key limit must be an integer or null, got 'many'"),
    ({"limit": False}, "config: key limit must be an integer or null, got False"),
    ({"names": ["a", None]}, "config: key names[1] must be a string, got None"),
])
def test_tuples_and_optionals(data, message):
    with pytest.raises(ConfigError) as caught:
        from_dict(Typed, data)
    assert str(caught.value) == message


def test_tuples_and_optionals_accept_their_values():
    assert from_dict(Typed, {"pair": [3, 4], "limit": None, "names": ["a"]}) == Typed((3, 4.0), None, ("a",))
    assert from_dict(Typed, {"limit": 7}).limit == 7


def test_the_cli_prints_one_line(tmp_path):
    """The config is read before the data: a data dir is not even needed to get there."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: ten\n")
    result = run_cli("train-teacher", "--data", tmp_path / "data", "--lang", "en", "--model-config", TINY_MODEL,
                     "--train-config", bad, tmp_path / "exp")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: {bad}: key max_steps must be an integer, got 'ten'"]
    assert not (tmp_path / "exp").exists()


def test_finetune_must_be_told_what_to_train(tmp_path):
    result = run_cli("finetune", "--data", tmp_path / "data", tmp_path / "exp")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: say what to train: pass --init EXP (fine-tune a distilled student) or --model-config YAML "
        "(train from scratch, e.g. the no-KD baseline)"]
    assert not (tmp_path / "exp").exists()
