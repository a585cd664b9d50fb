"""Typed configs: unknown keys rejected, nested round trip, YAML errors named."""

import dataclasses
from pathlib import Path

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


def test_a_noise_or_room_set_the_config_would_not_use_is_refused(tmp_path):
    from mlkd_cli.commands.options import load_train_config

    path = tmp_path / "train.yaml"
    path.write_text("max_steps: 100\n")
    with pytest.raises(ConfigError, match=f"--noise-set: {path} mixes in no noise .augment.noise.prob is 0."):
        load_train_config(path, None, None, noise_sets=(Path("noise"),))
    with pytest.raises(ConfigError, match="--rir-set: the default train config simulates no rooms"):
        load_train_config(None, None, None, rir_sets=(Path("rirs"),))
    path.write_text("augment:\n  noise: {prob: 0.5, snr: [10, 20], babble: 2}\n")
    assert load_train_config(path, None, None, noise_sets=(Path("noise"),)).augment.noise.sets == ("noise",)


def test_a_config_may_leave_its_noise_and_rooms_to_the_command_line(tmp_path):
    from mlkd_cli.commands.options import load_train_config

    path = tmp_path / "train.yaml"
    path.write_text("augment:\n  noise: {prob: 0.2, snr: [10, 20]}\n  reverb: {prob: 0.1}\n")
    train = load_train_config(path, None, None, noise_sets=(Path("a"), Path("b")), rir_sets=(Path("r"),))
    assert (train.augment.noise.sets, train.augment.noise.prob, train.augment.reverb.rirs) == (("a", "b"), 0.2, ("r",))
    with pytest.raises(ConfigError, match=f"{path}.augment.noise: augment noise prob > 0 needs a source"):
        load_train_config(path, None, None)


def test_command_line_overrides_of_the_kd_terms():
    from pathlib import Path

    from mlkd_cli.experiment.config import KdConfig

    demo = load_yaml(KdConfig, Path(__file__).resolve().parents[1] / "conf" / "kd" / "demo.yaml")
    assert demo.overridden() == demo
    assert demo.overridden(kl_weight=1.5).kl_weight == 1.5
    assert demo.overridden(kd_weight=0.5).layer_weights == (0.5,) * 6
    (weight,) = set(demo.layer_weights)  # one λ for every layer: a layer map keeps it
    pairs = demo.overridden(layer_map="2:3, 6:6")
    assert (pairs.student_layers, pairs.teacher_layers, pairs.layer_weights) == ((2, 6), (3, 6), (weight, weight))
    depth = KdConfig().overridden(layer_map="2,4")  # no weights: 1 for every pair, as before
    assert (depth.student_layers, depth.teacher_layers, depth.layer_weights) == ((2, 4), (), ())
    uneven = KdConfig(layer_weights=(0.1, 0.2, 0.3))
    assert uneven.overridden(layer_map="1,2", kd_weight=0.4).layer_weights == (0.4, 0.4)
    with pytest.raises(ConfigError, match="names 2 layers but kd layer_weights has 3; give --kd-weight"):
        uneven.overridden(layer_map="1,2")
    for bad in ("1:a", "1:2,3", "", "x"):
        with pytest.raises(ConfigError, match="write student:teacher layer pairs"):
            demo.overridden(layer_map=bad)
    with pytest.raises(ConfigError, match="--kd-weight: name the student layers"):
        KdConfig().overridden(kd_weight=1.0)


def test_a_bad_layer_map_is_one_error_line(tmp_path):
    from conftest import run_cli

    result = run_cli("distill", "--data", tmp_path, "--layer-map", "1:x", "de=exp/t", tmp_path / "s")
    assert result.exit_code == 1 and result.output.count("Error:") == 1 and "--layer-map '1:x'" in result.output


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "bench" / "kd").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_bench_lever_reads_as_its_config(path):
    """bench/kd_seeds.sh --variants NAME reads bench/kd/NAME.yaml (KD) and NAME.train.yaml (training)."""
    from mlkd_cli.experiment.config import KdConfig, TrainConfig

    load_yaml(TrainConfig if path.name.endswith(".train.yaml") else KdConfig, path)
