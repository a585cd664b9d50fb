"""`mlkd prepare` through the CLI: outputs lhotse can read, provenance, and bad inputs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, SupervisionSet, load_manifest
from lhotse.qa import validate

from conftest import PREPARED_SETS, TINY_LANGS, run_cli
from mlkd_cli.config import load_yaml
from mlkd_cli.data.prepare import PrepareConfig, PreparedData

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_prepare_without_importing_torch():
    code = (
        "import sys; from click.testing import CliRunner; from mlkd_cli.cli import cli; "
        "r = CliRunner().invoke(cli, ['--help']); print(r.output); "
        "print('TORCH' if 'torch' in sys.modules or 'lhotse' in sys.modules else 'LIGHT')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "prepare" in out and out.strip().endswith("LIGHT")
    assert subprocess.run([sys.executable, "-m", "mlkd_cli", "--version"], capture_output=True, text=True).stdout.startswith("mlkd")


def test_prepared_data_loads_with_lhotse(prepared: Path, tiny_corpus: Path):
    for name in ("train", "dev", "test"):
        cuts = load_manifest(prepared / "manifests" / f"{name}_cuts.jsonl.gz")
        validate(cuts, read_data=True)
        kaldi_ids = [line.split()[0] for line in (tiny_corpus / name / "text").read_text().splitlines()]
        assert sorted(cuts.ids) == kaldi_ids
        assert {c.supervisions[0].language for c in cuts} == set(TINY_LANGS)
        for cut in cuts:
            feats = cut.load_features()
            assert feats.shape == (cut.num_frames, 80) and np.isfinite(feats).all()
            assert cut.sampling_rate == 16000 and Path(cut.features.storage_path).is_absolute()
        for kind in ("recordings", "supervisions"):
            assert len(load_manifest(prepared / "manifests" / f"{name}_{kind}.jsonl.gz")) == len(cuts)


def test_tokenizer_tables(prepared: Path):
    data = PreparedData(prepared)
    tok = data.tokenizer()
    lines = (data.lang_dir / "tokens.txt").read_text().splitlines()
    assert lines[:2] == ["<blk> 0", "<unk> 1"] and len(lines) == tok.vocab_size
    assert [int(line.split()[1]) for line in lines] == list(range(tok.vocab_size))
    ru = {tok.id_to_piece(i) for i in tok.language_tokens("ru")}
    en = {tok.id_to_piece(i) for i in tok.language_tokens("en")}
    assert "я" in ru and "я" not in en and "w" in en
    for cut in data.cuts("train"):  # every training character is covered: no <unk>
        text = cut.supervisions[0].text
        assert 1 not in tok.encode(text) and tok.decode(tok.encode(text)) == text


def test_provenance(prepared: Path):
    stage = json.loads((prepared / "stage.json").read_text())
    assert stage["command"] == "prepare" and stage["status"] == "done"
    assert {k.split(":")[0] for k in stage["inputs"]} == {*PREPARED_SETS, "audio"}
    assert "lhotse" in stage["versions"] and "torch" in stage["versions"]
    assert load_yaml(PrepareConfig, prepared / "config.yaml").tokenizer.type == "char"
    assert "prepare" in (prepared / "log" / "prepare.log").read_text()


def snapshot(root: Path) -> dict[str, str]:
    """Digests of the files under ``root``, but for its lock (which says who held it last: under
    pytest-xdist, perhaps a command of another test reading the data)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".stage.lock"}


def test_rerun_is_up_to_date(prepared: Path, tiny_corpus: Path, caplog):
    before = snapshot(prepared)
    c = tiny_corpus
    result = run_cli("prepare", "--tokenizer", "char", *(c / s for s in PREPARED_SETS), prepared)
    assert result.exit_code == 0
    assert "up to date" in caplog.text
    after = snapshot(prepared)
    after.pop("log/prepare.log", None), before.pop("log/prepare.log", None)
    assert after == before


@pytest.fixture
def small_copy(tiny_corpus: Path, prepared: Path, tmp_path: Path):
    """A private copy of the corpus train/dev dirs and an output dir already prepared from them."""
    for name in ("train", "dev"):
        shutil.copytree(tiny_corpus / name, tmp_path / name)
    out = tmp_path / "out"
    result = run_cli("prepare", "--tokenizer", "char", tmp_path / "train", tmp_path / "dev", out)
    assert result.exit_code == 0, result.output
    return tmp_path


def test_changed_input_refuses_without_force(small_copy: Path):
    text = small_copy / "dev" / "text"
    lines = text.read_text().splitlines()
    utt = lines[0].split()[0]
    lines[0] = f"{utt} a changed transcript"
    text.write_text("\n".join(lines) + "\n")
    args = ["prepare", "--tokenizer", "char", small_copy / "train", small_copy / "dev", small_copy / "out"]
    result = run_cli(*args)
    assert result.exit_code == 1
    assert "changed: dev:" in result.output and "--force" in result.output
    assert run_cli(*args, "--force").exit_code == 0
    cuts = PreparedData(small_copy / "out").cuts("dev").to_eager()
    assert cuts[utt].supervisions[0].text == "a changed transcript"
    fbank_dirs = [p.name for p in (small_copy / "out" / "fbank").iterdir()]
    assert len(fbank_dirs) == 2, "stale feature dirs of the first run must be removed"


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def edit(name: str, change):
    def mutate(d: Path) -> None:
        write_lines(d / name, change(lines_of(d / name)))

    return mutate


def first_wav(d: Path) -> Path:
    return Path(lines_of(d / "wav.scp")[0].split(maxsplit=1)[1])


def corrupt_first_wav(d: Path) -> None:
    first_wav(d).write_bytes(np.random.default_rng(0).bytes(3000))


def truncate_first_wav(d: Path) -> None:
    """As an interrupted copy or `head -c` leaves it: the header still announces the whole audio."""
    audio = first_wav(d).read_bytes()
    first_wav(d).write_bytes(audio[: len(audio) // 10])


def resample_first_wav(d: Path) -> None:
    audio, rate = sf.read(first_wav(d))
    sf.write(first_wav(d), audio[::2], rate // 2)


def segments_past_end(d: Path) -> None:
    write_lines(d / "segments", [f"{line.split()[0]} {line.split()[0]} 0.0 99.0" for line in lines_of(d / "wav.scp")])


def spk2utt_mismatch(d: Path) -> None:
    lines = lines_of(d / "spk2utt")
    spk, *utts = lines[0].split()
    lines[0] = " ".join([spk, *utts[:-1]])
    write_lines(d / "spk2utt", lines)


def private_wavs(d: Path) -> None:
    """Point wav.scp at copies, so that corrupting one leaves the shared corpus intact."""
    (d / "wav").mkdir()
    rows = []
    for line in lines_of(d / "wav.scp"):
        utt, path = line.split(maxsplit=1)
        rows.append(f"{utt} {shutil.copy(path, d / 'wav')}")
    write_lines(d / "wav.scp", rows)


BAD_INPUTS = {
    "unsorted file": (edit("text", lambda ls: [ls[1], ls[0], *ls[2:]]), "text:2", "not sorted"),
    "duplicate id": (edit("text", lambda ls: [ls[0], ls[0], *ls[1:]]), "text:2", "duplicate key"),
    "utt2spk/spk2utt mismatch": (spk2utt_mismatch, "spk2utt", "does not match utt2spk"),
    "text for a missing utterance": (edit("text", lambda ls: ls + ["zz-extra-001 hello"]), "text", "not in"),
    "utt2lang missing": (lambda d: (d / "utt2lang").unlink(), "utt2lang", "awk"),
    "utt2lang unknown code": (edit("utt2lang", lambda ls: [ls[0].split()[0] + " xx", *ls[1:]]), "utt2lang:1", "unknown language 'xx'"),
    "wav path does not exist": (edit("wav.scp", lambda ls: [ls[0].split()[0] + " /no/such.wav", *ls[1:]]), "wav.scp:1", "does not exist"),
    "corrupt wav": (corrupt_first_wav, "wav.scp:1", "is corrupt"),
    "empty transcript": (edit("text", lambda ls: [ls[0].split()[0], *ls[1:]]), "text:1", "empty transcript"),
    "segments past the end of the audio": (segments_past_end, "segments:1", "past the end of the audio"),
    "truncated wav": (truncate_first_wav, "wav.scp:1", "is truncated: its header declares"),
    "UTF-8 byte-order mark": (lambda d: (d / "text").write_bytes(b"\xef\xbb\xbf" + (d / "text").read_bytes()),
                              "text:1", "starts with a UTF-8 byte-order mark"),
    "CRLF line endings": (lambda d: (d / "utt2spk").write_bytes((d / "utt2spk").read_bytes().replace(b"\n", b"\r\n")), "utt2spk:1", "CRLF"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_error_and_outputs_stay_intact(case: str, small_copy: Path):
    mutate, where, phrase = BAD_INPUTS[case]
    bad = small_copy / "dev"
    private_wavs(bad)
    mutate(bad)
    out = small_copy / "out"
    before = snapshot(out)
    result = run_cli("prepare", "--tokenizer", "char", small_copy / "train", bad, out, "--force")
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and where in error[0] and phrase in error[0], result.output
    after = snapshot(out)
    after.pop("log/prepare.log", None), before.pop("log/prepare.log", None)
    assert after == before


def test_failing_wav_command_is_an_error(small_copy: Path):
    """A wav.scp command is not probed by validation; lhotse would drop it with only a warning."""
    bad = small_copy / "dev"
    lines = lines_of(bad / "wav.scp")
    lines[-1] = lines[-1].split()[0] + " cat /no/such/file.wav |"
    write_lines(bad / "wav.scp", lines)
    out = small_copy / "out"
    before = snapshot(out)
    result = run_cli("prepare", "--tokenizer", "char", small_copy / "train", bad, out, "--force")
    assert result.exit_code == 1, result.output
    assert "cannot read audio of recording" in result.output
    after = snapshot(out)
    after.pop("log/prepare.log", None), before.pop("log/prepare.log", None)
    assert after == before


def test_missing_training_set_and_unknown_source(small_copy: Path):
    result = run_cli("prepare", small_copy / "dev", small_copy / "out2")
    assert result.exit_code == 1 and "no source for the training set 'train'" in result.output
    result = run_cli("prepare", small_copy / "train", small_copy / "nothing-here", small_copy / "out2")
    assert result.exit_code == 1 and "nothing-here: no such file or directory" in result.output
    assert not (small_copy / "out2").exists()


def test_named_sources_merge_into_one_set(small_copy: Path, tiny_corpus: Path):
    out = small_copy / "merged"
    result = run_cli("prepare", "--tokenizer", "char", f"train={small_copy / 'train'}", f"train={tiny_corpus / 'test'}",
                     f"heldout={small_copy / 'dev'}", out)
    assert result.exit_code == 0, result.output
    data = PreparedData(out)
    n_train = len(lines_of(small_copy / "train" / "text")) + len(lines_of(tiny_corpus / "test" / "text"))
    assert len(data.cuts("train")) == n_train and len(data.cuts("heldout")) == len(lines_of(small_copy / "dev" / "text"))



def test_lhotse_manifests_as_sources(prepared: Path, tmp_path: Path):
    """Manifests as `lhotse prepare <corpus>` writes them: language names, recordings+supervisions pairs, cuts."""
    manifests = prepared / "manifests"
    names = {"en": "English", "de": "German", "ru": "Russian"}
    supervisions = SupervisionSet.from_segments(
        dataclasses.replace(s, language=names[s.language]) for s in load_manifest(manifests / "train_supervisions.jsonl.gz")
    )
    src = tmp_path / "lhotse"
    src.mkdir()
    shutil.copy(manifests / "train_recordings.jsonl.gz", src / "corpus_recordings_train.jsonl.gz")
    supervisions.to_file(src / "corpus_supervisions_train.jsonl.gz")
    out = tmp_path / "out"
    result = run_cli("prepare", "--tokenizer", "char", "--train-set", "corpus_train",
                     src / "corpus_recordings_train.jsonl.gz", f"dev={manifests / 'dev_cuts.jsonl.gz'}", out)
    assert result.exit_code == 0, result.output
    data = PreparedData(out)
    train = data.cuts("corpus_train").to_eager()
    assert {c.supervisions[0].language for c in train} == set(TINY_LANGS)
    assert sorted(train.ids) == sorted(supervisions.ids)
    assert len(data.cuts("dev").to_eager()) == len(load_manifest(manifests / "dev_cuts.jsonl.gz"))


def test_commonvoice_style_manifests_with_normalize_text(prepared: Path, tmp_path: Path):
    """`lhotse prepare commonvoice` output: cv-<lang>_{recordings,supervisions}_<split>, locale tags
    (en-US), cased and punctuated text; --normalize-text lower-cases and drops punctuation."""
    manifests = prepared / "manifests"
    locales = {"en": "en-US", "de": "de_de", "ru": "ru"}

    def commonvoice_style(s):
        return dataclasses.replace(s, language=locales[s.language], text=f"«{s.text.capitalize()}», he said!")

    src = tmp_path / "cv"
    src.mkdir()
    shutil.copy(manifests / "train_recordings.jsonl.gz", src / "cv-all_recordings_train.jsonl.gz")
    original = load_manifest(manifests / "train_supervisions.jsonl.gz")
    SupervisionSet.from_segments(commonvoice_style(s) for s in original).to_file(src / "cv-all_supervisions_train.jsonl.gz")
    out = tmp_path / "out"
    result = run_cli("prepare", "--tokenizer", "char", "--normalize-text", "--train-set", "cv-all_train",
                     src / "cv-all_recordings_train.jsonl.gz", out)
    assert result.exit_code == 0, result.output
    data = PreparedData(out)
    assert data.config.normalize_text
    texts = {c.id: (c.supervisions[0].text, c.supervisions[0].language) for c in data.cuts("cv-all_train")}
    assert texts == {s.id: (f"{s.text} he said", s.language) for s in original}
    symbols = (out / "lang_char" / "tokens.txt").read_text().split()[::2]
    assert not {"«", "»", ",", "!"} & set(symbols) and not any(c.isupper() for c in symbols if len(c) == 1)
    # a model trained on it scores raw (cased, punctuated) references in their normalised form
    raw_cuts = tmp_path / "raw_cuts.jsonl.gz"
    CutSet.from_manifests(recordings=load_manifest(src / "cv-all_recordings_train.jsonl.gz"),
                          supervisions=load_manifest(src / "cv-all_supervisions_train.jsonl.gz")).to_file(raw_cuts)
    model_yaml = ROOT / "conf" / "model" / "tiny.yaml"
    assert run_cli("train-teacher", "--data", out, "--lang", "en", "--model-config", model_yaml, "--max-steps", "2",
                   "--train-set", "cv-all_train", "--dev-set", "cv-all_train", tmp_path / "teacher").exit_code == 0
    assert run_cli("decode", tmp_path / "teacher", raw_cuts).exit_code == 0
    refs = (tmp_path / "teacher" / "decode_raw_ctc-greedy" / "ref.text").read_text().splitlines()
    assert sorted(line.split(" ", 1)[1] for line in refs) == sorted(f"{s.text} he said" for s in original
                                                                      if s.language == "en")


def test_normalize_text_rejects_utterance_without_words(prepared: Path, tmp_path: Path):
    manifests = prepared / "manifests"
    first, *rest = load_manifest(manifests / "train_supervisions.jsonl.gz")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(manifests / "train_recordings.jsonl.gz", src / "x_recordings_train.jsonl.gz")
    SupervisionSet.from_segments([dataclasses.replace(first, text="...?"), *rest]).to_file(src / "x_supervisions_train.jsonl.gz")
    out = tmp_path / "out"
    result = run_cli("prepare", "--normalize-text", "--train-set", "x_train", src / "x_recordings_train.jsonl.gz", out)
    assert result.exit_code == 1
    assert f"utterance {first.id} has no words once punctuation is removed ('...?'); drop it" in result.output
    assert not out.exists()


def test_every_directorys_problems_in_one_run_each_once(small_copy: Path):
    for name in ("train", "dev"):
        private_wavs(small_copy / name)
        edit("utt2lang", lambda lines: [lines[0].split()[0] + " elvish", *lines[1:]])(small_copy / name)
    result = run_cli("prepare", "--tokenizer", "char", small_copy / "train", small_copy / "dev", small_copy / "out",
                     "--force")
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and "train/utt2lang:1: unknown language 'elvish'" in error[0], result.output
    assert error[0].endswith("(and 1 more problem, logged above)")
    assert result.output.count("unknown language 'elvish'") == 2 and "dev/utt2lang:1: unknown language" in result.output


def test_mixed_sample_rates_are_resampled_unless_refused(small_copy: Path):
    bad = small_copy / "dev"
    private_wavs(bad)
    resample_first_wav(bad)
    out = small_copy / "out"
    before = snapshot(out)
    refused = run_cli("prepare", "--tokenizer", "char", "--refuse-mixed-rates", small_copy / "train", bad, out, "--force")
    error = [line for line in refused.output.splitlines() if line.startswith("Error: ")]
    assert refused.exit_code == 1 and len(error) == 1, refused.output
    assert "dev/wav.scp: mixed sampling rates: 16000 Hz" in error[0] and "sox IN -r 16000 OUT.wav" in error[0]
    after = snapshot(out)
    after.pop("log/prepare.log", None), before.pop("log/prepare.log", None)
    assert after == before
    result = run_cli("prepare", "--tokenizer", "char", small_copy / "train", bad, out, "--force")
    assert result.exit_code == 0, result.output
    assert "set dev: recordings at 8000 Hz (1) are resampled to 16000 Hz" in result.output
    assert "set train: recordings at" not in result.output
    assert {cut.sampling_rate for cut in PreparedData(out).cuts("dev")} == {16000}
