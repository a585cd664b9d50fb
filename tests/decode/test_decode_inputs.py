"""`mlkd decode` against hostile input: what is skipped, what is an error, and how it is said."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet

from conftest import run_cli
from mlkd_cli.decode.chunks import MIN_DURATION, plan_windows
from mlkd_cli.decode.decoder import DecodeConfig
from mlkd_cli.decode.inputs import resolve_inputs
from mlkd_cli.errors import ConfigError, DataError


def wav(path: Path, samples: int, rate: int = 16000) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = 0.1 * np.random.default_rng(samples).standard_normal(samples)
    sf.write(path, noise.astype(np.float32), rate)
    return str(path)


@pytest.fixture
def no_hang():
    """Fail instead of hanging forever (a FIFO blocks whoever opens it)."""
    def stuck(signum, frame):
        raise TimeoutError("resolve_inputs blocked")
    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# -- inputs that cannot be decoded ---------------------------------------------------------------

def test_each_undecodable_file_is_a_failure_naming_its_cause(tmp_path, no_hang):
    good = wav(tmp_path / "good.wav", 16000)
    empty = tmp_path / "empty.wav"
    empty.touch()
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    (tmp_path / "dangling.wav").symlink_to(tmp_path / "gone.wav")
    os.mkfifo(tmp_path / "pipe.wav")
    (tmp_path / "sub.wav").mkdir()
    wav(tmp_path / "zero.wav", 0)
    wav(tmp_path / "one.wav", 1)
    wav(tmp_path / "short8k.wav", 519, rate=8000)
    names = ["missing.wav", "empty.wav", "junk.wav", "dangling.wav", "pipe.wav", "su?.wav", "zero.wav", "one.wav",
             "short8k.wav"]  # a directory is a Kaldi data dir unless a glob matches it
    inputs = resolve_inputs([good, *(str(tmp_path / name) for name in names)])
    assert [item.path for item in inputs.items] == [good]
    assert [(Path(f["input"]).name, f["error"]) for f in inputs.failed] == [
        ("missing.wav", "no such file"),
        ("empty.wav", "empty file (0 bytes)"),
        ("junk.wav", "not an audio file that libsndfile or audioread can decode"),
        ("dangling.wav", f"no such file: a symlink to {tmp_path / 'gone.wav'}, which does not exist"),
        ("pipe.wav", "not a regular file (a FIFO); give an audio file"),
        ("sub.wav", "not a regular file (a directory); give an audio file"),
        ("zero.wav", "too short: 0 samples; at least 1040 (65 ms) needed"),
        ("one.wav", "too short: 1 sample; at least 1040 (65 ms) needed"),
        ("short8k.wav", "too short: 519 samples; at least 520 (65 ms) needed"),
    ]
    assert len(resolve_inputs([wav(tmp_path / "just8k.wav", 520, rate=8000)]).items) == 1


def test_nothing_left_to_decode_is_one_error(tmp_path):
    with pytest.raises(DataError) as e:
        resolve_inputs([str(tmp_path / "missing.wav")])
    assert str(e.value) == f"{tmp_path / 'missing.wav'}: no such file"
    (tmp_path / "empty.wav").touch()
    listing = tmp_path / "files.list"
    listing.write_text("nowhere/a.wav\n\n/nowhere/b.wav\n")
    with pytest.raises(DataError) as e:
        resolve_inputs([str(tmp_path / "empty.wav"), str(listing)])
    assert str(e.value) == (
        f"nothing to decode: none of the 3 inputs can be decoded ({tmp_path / 'empty.wav'}: empty file (0 bytes); "
        f"nowhere/a.wav: no such file ({listing} line 1); /nowhere/b.wav: no such file ({listing} line 3))"
    )
    with pytest.raises(DataError, match=r"^-: standard input is decoded alone, as a stream: mlkd decode --streaming MODEL_DIR -$"):
        resolve_inputs([wav(tmp_path / "good.wav", 16000), "-"])


def test_list_paths_are_relative_to_the_current_directory(tmp_path, monkeypatch):
    a = wav(tmp_path / "audio" / "a.wav", 16000)
    b = wav(tmp_path / "elsewhere" / "b.wav", 16000)
    listing = tmp_path / "lists" / "files.lst"
    listing.parent.mkdir()
    listing.write_text(f"# made in {tmp_path}\naudio/a.wav\n{b}\n")
    monkeypatch.chdir(tmp_path)
    inputs = resolve_inputs([str(listing)])
    assert [item.path for item in inputs.items] == ["audio/a.wav", b] and not inputs.failed
    assert Path(inputs.items[0].path).resolve() == Path(a)
    monkeypatch.chdir(listing.parent)  # where the list lies: its relative path no longer resolves
    inputs = resolve_inputs(["files.lst"])
    assert [item.path for item in inputs.items] == [b]
    assert inputs.failed == [{"input": "audio/a.wav", "error": "no such file (files.lst line 2)"}]


def test_too_short_utterances_of_a_manifest_are_failures(tmp_path, prepared):
    cuts = CutSet.from_file(prepared / "manifests" / "dev_cuts.jsonl.gz").to_eager()
    manifest = tmp_path / "short_cuts.jsonl.gz"
    CutSet.from_cuts([cuts[0].truncate(duration=0.05, preserve_id=True), cuts[1]]).to_file(manifest)
    inputs = resolve_inputs([str(manifest)])
    assert [item.id for item in inputs.items] == [cuts[1].id] and inputs.name == "short"
    assert inputs.failed == [{"input": f"{manifest}: {cuts[0].id}",
                              "error": "too short: 0.05 s; at least 0.065 s needed"}]


def test_a_tail_too_short_to_decode_is_never_a_window_of_its_own():
    windows = plan_windows(2.0000625, chunk=1.0, overlap=0.0)  # 32001 samples: a 1-sample tail
    assert [(w.start, w.duration, w.keep_to) for w in windows] == [(0.0, 1.0, 25),
                                                                    (1.0, pytest.approx(1.0000625), None)]
    for duration in np.arange(3.0, 3.2, 0.0025):
        for overlap in (0.0, 0.04):
            windows = plan_windows(float(duration), chunk=1.0, overlap=overlap)
            assert min(w.duration for w in windows) >= MIN_DURATION
            assert windows[-1].start + windows[-1].duration == pytest.approx(duration)


# -- options ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("beam", 0, "--beam 0: must be at least 1"),
    ("beam", -3, "--beam -3: must be at least 1"),
    ("max_duration", 0.0, "--max-duration 0.0: must be over 0"),
    ("chunk", 0.5, "--chunk 0.5: must be at least 1"),
    ("threads", -1, "--threads -1: must be at least 0"),
    ("lm_order", 0, "--lm-order 0: must be at least 1"),
    ("wfst_beam", float("nan"), "--wfst-beam nan: must be over 0"),
    ("max_active", 0, "--max-active 0: must be at least 1"),
    ("acoustic_scale", -1.0, "--acoustic-scale -1.0: must be over 0"),
    ("overlap", 20.0, "--overlap 20.0: must be at least 0 and under half of --chunk (30.0)"),
])
def test_each_out_of_range_option_is_one_config_error(field, value, message):
    with pytest.raises(ConfigError) as e:
        DecodeConfig(**{field: value})
    assert str(e.value) == message


def test_bad_options_and_undecodable_inputs_fail_the_command(tmp_path, tiny_adaptive):
    good = wav(tmp_path / "good.wav", 16000)
    result = run_cli("decode", tiny_adaptive, good, "--beam", "0")
    assert result.exit_code == 1 and result.stderr == "Error: --beam 0: must be at least 1\n"
    result = run_cli("decode", tiny_adaptive, tmp_path / "missing.wav", "--name", "nothing")
    assert result.exit_code == 1 and result.stderr == f"Error: {tmp_path / 'missing.wav'}: no such file\n"
    assert not (tiny_adaptive / "decode_nothing_ctc-greedy").exists()


# -- the command -----------------------------------------------------------------------------------

def test_too_short_files_are_skipped_while_the_others_decode(tmp_path, tiny_adaptive):
    good = wav(tmp_path / "good.wav", 16000)
    tail = wav(tmp_path / "tail.wav", 32001)  # a 1-sample tail with --overlap 0
    zero, one = wav(tmp_path / "zero.wav", 0), wav(tmp_path / "one.wav", 1)
    result = run_cli("decode", tiny_adaptive, good, zero, tail, one, "--chunk", "1", "--overlap", "0",
                     "--name", "short")
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [good, tail]
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert skipped == [f"skipped {zero}: too short: 0 samples; at least 1040 (65 ms) needed",
                       f"skipped {one}: too short: 1 sample; at least 1040 (65 ms) needed"]


def test_log_lines_are_printed_once(tmp_path, tiny_adaptive):
    good = wav(tmp_path / "good.wav", 16000)
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00not audio at all")  # lhotse logs through the root logger
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "mlkd_cli", "decode", str(tiny_adaptive), good,
                             str(tmp_path / "junk.wav"), "--name", "once"],
                            check=False, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{good}\t")
    decoded = [line for line in result.stderr.splitlines() if "decoded 1 utterances" in line]
    assert len(decoded) == 1 and " INFO [mlkd] " in decoded[0], result.stderr
    assert result.stderr.count(f"skipped {tmp_path / 'junk.wav'}: not an audio file") == 1


def test_root_logger_records_do_not_duplicate_mlkd_records():
    code = ("import logging; from mlkd_cli.log import setup_console_logging; setup_console_logging(); "
            "logging.info('a library logs via the root logger'); logging.getLogger('mlkd').info('mlkd says hi')")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("mlkd says hi") == 1, result.stderr


def test_lang_accepts_names_and_tags_of_the_models_languages(tmp_path, tiny_adaptive, tiny_teachers):
    good = wav(tmp_path / "good.wav", 16000)
    for lang in ("German", "deu", "de-DE", "ger"):
        result = run_cli("decode", tiny_adaptive, good, "--lang", lang)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"{good}\tde\t")
        assert f"results in {tiny_adaptive / 'decode_files_ctc-greedy_lang-de'}" in result.stderr
    result = run_cli("decode", tiny_adaptive, good, "--lang", "Klingonese")
    assert result.exit_code == 1 and "Error: --lang Klingonese: the model knows only de, en, ru\n" in result.stderr
    result = run_cli("decode", tiny_teachers["de"], good, "--lang", "German")
    assert result.exit_code == 0 and result.stdout.startswith(f"{good}\tde\t"), result.output
    result = run_cli("decode", tiny_teachers["de"], good, "--lang", "English")
    assert result.exit_code == 1 and "Error: --lang en: the model is a de teacher; it knows only de\n" in result.stderr
