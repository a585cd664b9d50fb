"""Typed configs: unknown keys rejected, nested round trip, YAML errors named."""

import dataclasses

import pytest

from mlkd_cli.config import dump_yaml, from_dict, load_yaml
from mlkd_cli.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Inner:
    size: int = 4
    dims: tuple = (1, 2)


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = Inner()


def test_yaml_round_trip(tmp_path):
    cfg = Outer(name="y", inner=Inner(size=7, dims=(3, 4)))
    (tmp_path / "c.yaml").write_text(dump_yaml(cfg))
    assert load_yaml(Outer, tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize(
    "data, phrase",
    [({"nmae": "y"}, "unknown key(s) nmae"), ({"inner": {"sise": 3}}, "config.inner: unknown key(s) sise")],
)
def test_unknown_keys_are_errors(data, phrase):
    with pytest.raises(ConfigError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        from_dict(Outer, data)


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(Outer, tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml(Outer, tmp_path / "bad.yaml")


def test_command_line_overrides_of_the_training_config(tmp_path):
    from mlkd_cli.commands.options import load_train_config

    path = tmp_path / "train.yaml"
    path.write_text("max_steps: 100\nseed: 3\nprecision: bf16\n")
    train = load_train_config(path, max_steps=None, precision=None, seed=None)
    assert (train.max_steps, train.seed, train.precision) == (100, 3, "bf16")
    train = load_train_config(path, max_steps=7, precision="fp32", seed=11)
    assert (train.max_steps, train.seed, train.precision) == (7, 11, "fp32")
