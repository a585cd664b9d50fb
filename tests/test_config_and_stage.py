"""Typed configs (unknown keys rejected, nested round trip) and stage.json up-to-date logic."""

import dataclasses

import pytest

from mlkd_cli.config import dump_yaml, from_dict, load_yaml
from mlkd_cli.errors import ConfigError, StageError
from mlkd_cli.fsutil import atomic_path, path_digest, staging_dir
from mlkd_cli.stage import StageRecord, is_up_to_date, read_stage, write_stage


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


def record(digest="a", config=None, status="done"):
    return StageRecord(command="prepare", argv=["mlkd", "prepare"], inputs={"train": {"path": "p", "digest": digest}},
                       config=config or {"k": 1}, status=status)


def test_stage_up_to_date_changed_and_forced(tmp_path):
    assert not is_up_to_date(tmp_path, record(), force=False)  # nothing there yet
    write_stage(tmp_path, record())
    assert read_stage(tmp_path) == record()
    assert is_up_to_date(tmp_path, record(), force=False)
    assert not is_up_to_date(tmp_path, record(), force=True)
    with pytest.raises(StageError, match=r"changed: train, config.*--force"):
        is_up_to_date(tmp_path, record(digest="b", config={"k": 2}), force=False)
    assert not is_up_to_date(tmp_path, record(digest="b"), force=True)
    write_stage(tmp_path, record(status="running"))  # an interrupted run may simply run again
    assert not is_up_to_date(tmp_path, record(digest="b"), force=False)


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "m.jsonl.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".jsonl.gz")
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl.gz"]


def test_staging_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "lang"
    target.mkdir()
    (target / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with staging_dir(target) as tmp:
            (tmp / "a").write_text("new")
            raise RuntimeError
    assert (target / "a").read_text() == "old"
    with staging_dir(target) as tmp:
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lang"]


def test_path_digest_tracks_content(tmp_path):
    (tmp_path / "text").write_text("u1 hello\n")
    d1 = path_digest(tmp_path)
    (tmp_path / "text").write_text("u1 hullo\n")
    assert path_digest(tmp_path) != d1
