"""The stage protocol: plan (skip, resume, fresh, refuse), lock, staging, atomic publish, leftovers."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from mlkd_cli.errors import StageError
from mlkd_cli.stage import Stage, StageRecord, read_stage, write_stage


def record(digest="a", config=None, command="prepare"):
    return StageRecord(command=command, argv=["mlkd", command], inputs={"train": {"path": "p", "digest": digest}},
                       config=config or {"k": 1, "nested": {"x": 1}})


def publish(out, files, rec=None, **kwargs):
    """One run that writes ``files`` (name -> text); returns whether it ran."""
    with Stage(out, rec or record(), **kwargs).run() as staging:
        if staging is None:
            return False
        for name, text in files.items():
            (staging / name).write_text(text)
        return True


def test_plan_decides_from_the_record(tmp_path):
    assert Stage(tmp_path, record()).plan() == "fresh"  # nothing there
    write_stage(tmp_path, dataclasses_replace(record(), status="done"))
    assert Stage(tmp_path, record()).plan() == "skip"
    assert Stage(tmp_path, record(), force=True).plan() == "fresh"
    with pytest.raises(StageError, match=r"changed: train, config.nested.x\).*--force"):
        Stage(tmp_path, record(digest="b", config={"k": 1, "nested": {"x": 2}})).plan()
    assert Stage(tmp_path, record(digest="b"), on_change="redo").plan() == "fresh"
    write_stage(tmp_path, dataclasses_replace(record(), status="running"))
    assert Stage(tmp_path, record(), resumable=True).plan() == "resume"
    assert Stage(tmp_path, record()).plan() == "fresh"  # not resumable: an interrupted run is redone
    with pytest.raises(StageError, match="changed: train"):
        Stage(tmp_path, record(digest="b"), resumable=True).plan()  # running with other inputs: refused
    write_stage(tmp_path, dataclasses_replace(record(digest="b"), status="publishing"))
    assert Stage(tmp_path, record()).plan() == "fresh"  # a publish cut short is never up to date


def dataclasses_replace(rec: StageRecord, **changes) -> StageRecord:
    import dataclasses

    return dataclasses.replace(rec, **changes)


def test_publish_replaces_the_previous_set_and_skips_when_up_to_date(tmp_path):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "foreign").write_text("not ours")
    assert publish(out, {"a": "1", "b": "1"})
    rec = read_stage(out)
    assert rec.status == "done" and rec.outputs == ["a", "b"] and rec.started and rec.finished
    mtime = (out / "a").stat().st_mtime_ns
    assert not publish(out, {"a": "2"})  # up to date: nothing rewritten
    assert (out / "a").stat().st_mtime_ns == mtime
    assert publish(out, {"a": "3"}, record(digest="b"), force=True)
    assert (out / "a").read_text() == "3" and not (out / "b").exists()  # b belonged to the previous set
    assert (out / "foreign").read_text() == "not ours"  # never ours: untouched
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["a", "foreign", "stage.json"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".stage.lock"]


def test_a_failed_run_leaves_the_previous_output_and_the_next_run_finishes(tmp_path):
    out = tmp_path / "out"
    publish(out, {"a": "old"})
    with pytest.raises(RuntimeError):
        with Stage(out, record(digest="b"), force=True).run() as staging:
            (staging / "a").write_text("half")
            raise RuntimeError("killed")
    assert (out / "a").read_text() == "old" and read_stage(out).inputs["train"]["digest"] == "a"
    assert publish(out, {"a": "new"}, record(digest="b"), force=True)
    assert (out / "a").read_text() == "new"


def _killed_writer(out, started):
    with Stage(out, record(digest="b"), force=True).run() as staging:
        (staging / "a").write_text("half")
        (out / ".tmp123-x").write_text("temporary")
        started.set()
        time.sleep(60)


def test_a_killed_run_leaves_the_previous_output_and_its_leftovers_are_removed(tmp_path):
    out = tmp_path / "out"
    publish(out, {"a": "old"})
    started = multiprocessing.Event()
    proc = multiprocessing.get_context("fork").Process(target=_killed_writer, args=(out, started))
    proc.start()
    assert started.wait(30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert (out / "a").read_text() == "old" and (out / ".staging-stage").is_dir()  # killed: nothing cleaned up
    assert publish(out, {"a": "new"}, record(digest="b"), force=True)
    assert (out / "a").read_text() == "new"
    assert not (out / ".staging-stage").exists() and not (out / ".tmp123-x").exists()


def _holder(out, started):
    with Stage(out, record()).run() as staging:
        (staging / "a").write_text("x")
        started.set()
        time.sleep(60)


def started_holder(target, out: Path) -> multiprocessing.Process:
    """``target(out, started)`` in a forked process, returned once it holds the stage."""
    started = multiprocessing.Event()
    proc = multiprocessing.get_context("fork").Process(target=target, args=(out, started))
    proc.start()
    if not started.wait(30):
        os.kill(proc.pid, signal.SIGKILL)
        pytest.fail(f"{target.__name__} did not take the stage in 30 s")
    return proc


def test_a_second_command_on_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "out"
    proc = started_holder(_holder, out)
    try:
        with pytest.raises(StageError, match=rf"{out}: in use by pid {proc.pid} \(`mlkd prepare`\)"):
            publish(out, {"a": "y"})
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    assert publish(out, {"a": "y"})  # the lock died with its holder


def _shared_builder(out, started):
    with Stage(out, record(), shared=True).run() as staging:
        (staging / "a").write_text("built first")
        started.set()
        time.sleep(1.0)


def test_a_shared_cache_waits_for_the_first_builder_and_reads_its_output(tmp_path, caplog):
    """Caches that stages running at once all need (augmented copies for a job array of teachers)."""
    out = tmp_path / "cache"
    proc = started_holder(_shared_builder, out)
    try:
        with caplog.at_level("INFO", logger="mlkd"):
            assert not publish(out, {"a": "built second"}, shared=True)  # up to date once the first published
        assert f"in use by pid {proc.pid}" in caplog.text and "waiting for it" in caplog.text
        assert (out / "a").read_text() == "built first"
    finally:
        proc.join()


def test_records_name_their_own_file(tmp_path):
    publish(tmp_path, {"a": "1"})
    assert publish(tmp_path, {"s": "1"}, record(command="score"), record_name="stage.score.json")
    assert json.loads((tmp_path / "stage.json").read_text())["outputs"] == ["a"]
    assert json.loads((tmp_path / "stage.score.json").read_text())["outputs"] == ["s"]
    assert (tmp_path / "a").exists() and (tmp_path / "s").exists()


def test_an_unwritable_directory_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StageError, match=r"file/out: cannot write here \(.*\); choose a writable directory"):
        publish(tmp_path / "file" / "out", {"a": "1"})
