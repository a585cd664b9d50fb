"""`mlkd score`: error counts against hand alignments and jiwer, outputs, comparison tables, bad input."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import jiwer
import pytest
from click.testing import CliRunner

import mlkd_cli.cli as cli_module
from mlkd_cli.commands.score import score as score_command
from mlkd_cli.errors import DataError
from mlkd_cli.score import (
    ErrorCounts,
    compare,
    count_errors,
    format_alignment,
    format_params,
    score_decode_dir,
    score_languages,
    score_lid,
    score_utterance,
)


def make_decode_dir(path: Path, refs: dict[str, tuple[str, str]], hyps: dict[str, tuple[str, str | None]],
                    stats: dict | None = None) -> Path:
    """A decode dir as `mlkd decode` writes it: refs {utt: (lang, text)}, hyps {utt: (text, predicted lang)}."""
    path.mkdir(parents=True)
    (path / "hyp.text").write_text("".join(f"{u} {text}".rstrip() + "\n" for u, (text, _) in hyps.items()))
    (path / "hyps.jsonl").write_text("".join(
        json.dumps({"id": u, "text": text, "language": lang,
                    "language_posteriors": {lang: 1.0} if lang else {}, "duration": 1.0, "processing_time": 0.1}) + "\n"
        for u, (text, lang) in hyps.items()))
    (path / "ref.text").write_text("".join(f"{u} {text}\n" for u, (_, text) in refs.items()))
    (path / "ref.utt2lang").write_text("".join(f"{u} {lang}\n" for u, (lang, _) in refs.items()))
    (path / "stats.json").write_text(json.dumps(stats or {
        "model_dir": str(path.parent), "model_name": path.parent.name, "method": "greedy",
        "num_parameters": 1234567, "rtf": 0.01, "num_utts": len(hyps), "failed": []}))
    return path


# en u1: 1 ins + 1 sub of 3 words; u2: 1 sub of 2; u4: no hypothesis, 2 deletions → en WER 5/7.
# zh u3: one character deleted of 4 → zh CER 1/4. u9: hypothesis without reference.
REFS = {
    "u1": ("en", "the cat sat"),
    "u2": ("en", "hello world"),
    "u3": ("zh", "你好世界"),
    "u4": ("en", "good morning"),
}
HYPS = {
    "u1": ("the bat sat down", "en"),
    "u2": ("hello word", "de"),
    "u3": ("你好世", "zh"),
    "u9": ("stray", "en"),
}


@pytest.fixture
def decode_dir(tmp_path) -> Path:
    return make_decode_dir(tmp_path / "student" / "decode_test_greedy", REFS, HYPS)


# ---------------------------------------------------------------------------- counting


def test_word_and_character_errors_by_hand():
    u = score_utterance("u", "the cat sat", "the bat sat down")
    assert u.words == ErrorCounts(ref_len=3, ins=1, dels=0, sub=1)
    assert u.words.rate == pytest.approx(2 / 3)
    # "thecatsat" → "thebatsatdown": c→b, then d o w n inserted.
    assert u.chars == ErrorCounts(ref_len=9, ins=4, dels=0, sub=1)
    assert format_alignment(u.alignment()) == "the (cat->bat) sat (*->down)"


def test_cer_ignores_spaces():
    u = score_utterance("u", "a b  c", "abc")
    assert u.words == ErrorCounts(ref_len=3, ins=0, dels=2, sub=1)
    assert u.chars == ErrorCounts(ref_len=3)
    assert u.chars.rate == 0.0


@pytest.mark.parametrize("hyp", ["", None])
def test_empty_or_missing_hypothesis_is_all_deletions(hyp):
    u = score_utterance("u", "one two three", hyp)
    assert u.words == ErrorCounts(ref_len=3, dels=3)
    assert u.chars == ErrorCounts(ref_len=11, dels=11)
    assert format_alignment(u.alignment()) == "(one->*) (two->*) (three->*)"


def test_languages_sum_errors_before_dividing():
    utts = [score_utterance("a", "a b c d", "a b c d", "en"), score_utterance("b", "x", "y", "en"),
            score_utterance("c", "你好", "你", "zh"), score_utterance("d", "no language", "no")]
    overall, languages = score_languages(utts)
    assert languages["en"].words == ErrorCounts(ref_len=5, sub=1)
    assert languages["en"].primary_rate == pytest.approx(1 / 5)  # the mean of ratios would be 0.5
    assert languages["zh"].primary == "cer" and languages["zh"].primary_rate == pytest.approx(1 / 2)
    assert list(languages) == ["en", "zh"]  # unknown language counts overall only
    assert overall.num_utts == 4 and overall.primary is None and overall.primary_rate is None
    assert overall.words == ErrorCounts(ref_len=8, dels=1, sub=2)  # 你好→你 is one word substituted
    assert score_languages(utts[:2])[0].primary == "wer"


def test_character_languages_align_by_character():
    u = score_utterance("u", "你好世界", "你好世", "zh")
    assert format_alignment(u.alignment()) == "你 好 世 (界->*)"
    assert u.words == ErrorCounts(ref_len=1, sub=1)


def test_lid_accuracy_and_confusion():
    pairs = [("en", "en"), ("en", "de"), ("de", "de"), ("de", "de"), ("zh", None), (None, "en")]
    lid = score_lid([score_utterance(f"u{i}", "x", "x", ref, pred) for i, (ref, pred) in enumerate(pairs)])
    assert lid.confusion == {"de": {"de": 2}, "en": {"de": 1, "en": 1}}
    assert (lid.correct, lid.num_utts, lid.accuracy) == (3, 4, 0.75)
    assert lid.language_accuracy("en") == 0.5 and lid.language_accuracy("de") == 1.0
    assert lid.language_accuracy("zh") is None
    assert score_lid([score_utterance("u", "x", "x", "en", None)]) is None


def _random_pairs(n: int) -> list[tuple[str, str]]:
    rng = random.Random(0)
    vocab = ["a", "b", "c", "the", "cat", "Straße", "ça", "x-y", "don't"]
    pairs = [(" ".join(rng.choices(vocab, k=rng.randint(1, 9))), " ".join(rng.choices(vocab, k=rng.randint(0, 9))))
             for _ in range(n)]
    edge = [("a b c", "a b c"), ("a b c", ""), ("a", "a a a a"), ("a b c d", "d c b a"),
            ("the cat sat", "the bat sat down"), ("a  b c", " a b c "), ("a a a", "a")]
    return edge + pairs


def test_wer_and_cer_agree_with_jiwer():
    pairs = _random_pairs(300)
    for ref, hyp in pairs:
        ours = count_errors(ref.split(), hyp.split())
        assert ours.rate == pytest.approx(jiwer.wer(ref, hyp)), (ref, hyp)
        ref_chars, hyp_chars = "".join(ref.split()), "".join(hyp.split())
        assert score_utterance("u", ref, hyp).chars.rate == pytest.approx(jiwer.cer(ref_chars, hyp_chars)), (ref, hyp)
    # Corpus level: jiwer sums edits over all pairs, as the per-language figures do.
    total = sum((score_utterance("u", r, h).words for r, h in pairs), ErrorCounts())
    assert total.rate == pytest.approx(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


# ---------------------------------------------------------------------------- decode dirs


def test_score_decode_dir_figures(decode_dir):
    report = score_decode_dir(decode_dir)
    assert report.missing == ["u4"] and report.extra == ["u9"]
    assert report.languages["en"].words == ErrorCounts(ref_len=7, ins=1, dels=2, sub=2)
    assert report.languages["en"].num_missing == 1
    assert report.languages["zh"].chars == ErrorCounts(ref_len=4, dels=1)
    assert report.lid.confusion == {"en": {"de": 1, "en": 1}, "zh": {"zh": 1}}  # u4 has no prediction
    assert (report.model_name, report.method, report.num_parameters) == ("student", "greedy", 1234567)

    data = json.loads((decode_dir / "score.json").read_text())
    assert data["languages"]["en"]["wer"] == {"rate": pytest.approx(5 / 7), "errors": 5, "ref_len": 7,
                                              "ins": 1, "del": 2, "sub": 2}
    assert data["languages"]["en"]["primary"] == "wer"
    assert data["languages"]["zh"]["primary"] == "cer"
    assert data["languages"]["zh"]["cer"]["rate"] == 0.25
    # Overall: words 3 + 2 + 1 + 2 = 8 reference words; zh u3 is one word, substituted.
    assert data["overall"]["wer"] == {"rate": 0.75, "errors": 6, "ref_len": 8, "ins": 1, "del": 2, "sub": 3}
    assert data["overall"]["primary"] is None
    assert data["lid"]["accuracy"] == pytest.approx(2 / 3) and data["lid"]["num_utts"] == 3
    assert data["missing"] == ["u4"] and data["extra"] == ["u9"]


def test_errs_txt(decode_dir):
    score_decode_dir(decode_dir)
    errs = (decode_dir / "errs.txt").read_text()
    lines = errs.splitlines()
    assert lines[0] == "%WER 75.00 [ 6 / 8, 1 ins, 2 del, 3 sub ]"
    assert "u1\ten\tthe (cat->bat) sat (*->down)" in lines
    assert "u2\ten\thello (world->word)" in lines
    assert "u3\tzh\t你 好 世 (界->*)" in lines
    assert "u4\ten\t(good->*) (morning->*)" in lines
    missing = lines.index("MISSING: reference utterances without a hypothesis (scored as all deletions)")
    assert lines[missing + 1:missing + 3] == ["u4", ""]
    subs = lines.index("SUBSTITUTIONS: count ref -> hyp")
    assert set(lines[subs + 1:subs + 3]) == {"1\tcat -> bat", "1\tworld -> word"}
    dels = lines.index("DELETIONS: count ref")
    assert set(lines[dels + 1:dels + 4]) == {"1\tgood", "1\tmorning", "1\t界"}
    assert lines[lines.index("INSERTIONS: count hyp") + 1] == "1\tdown"


def test_wer_summary(decode_dir):
    score_decode_dir(decode_dir)
    lines = (decode_dir / "wer_summary").read_text().splitlines()
    assert lines[0].endswith("4 reference utterances, 1 without hypothesis (all deletions), "
                             "1 hypothesis without reference (ignored)")
    en, zh, overall = lines[1:4]
    assert en.startswith("en ") and "%WER 71.43 [ 5 / 7, 1 ins, 2 del, 2 sub ]" in en
    assert en.endswith("primary WER  3 utts")
    assert zh.startswith("zh ") and "%CER 25.00 [ 1 / 4, 0 ins, 1 del, 0 sub ]" in zh
    assert zh.endswith("primary CER  1 utts")
    assert overall.startswith("all ") and "%WER 75.00 [ 6 / 8" in overall and "primary —" in overall
    assert lines[4] == "%LID 66.67 [ 2 / 3 correct ]"
    matrix = lines[lines.index("LID confusion (rows: reference language, columns: predicted language)") + 1:]
    assert [row.split() for row in matrix] == [["ref\\hyp", "de", "en", "zh"], ["en", "1", "1", "0"],
                                               ["zh", "0", "0", "1"]]


def test_ref_from_kaldi_data_dir(tmp_path):
    """--ref data/<set>/text takes the utt2lang beside it; the decode dir needs no reference."""
    decode = make_decode_dir(tmp_path / "m" / "decode_x_greedy", REFS, HYPS)
    (decode / "ref.text").unlink()
    (decode / "ref.utt2lang").unlink()
    data = tmp_path / "data" / "test"
    data.mkdir(parents=True)
    (data / "text").write_text("u1 the cat sat\nu2 hello world\n")
    (data / "utt2lang").write_text("u1 English\nu2 eng\n")
    report = score_decode_dir(decode, ref=data / "text")
    assert list(report.languages) == ["en"]
    assert report.languages["en"].words == ErrorCounts(ref_len=5, ins=1, sub=2)
    assert report.extra == ["u3", "u9"]
    assert str((data / "utt2lang").resolve()) in report.inputs


def test_score_is_up_to_date_until_an_input_changes_by_content(decode_dir):
    first = score_decode_dir(decode_dir)
    stamp = (decode_dir / "score.json").stat().st_mtime_ns
    assert score_decode_dir(decode_dir) == first  # up to date: reused, nothing rewritten
    assert (decode_dir / "score.json").stat().st_mtime_ns == stamp
    hyp = decode_dir / "hyp.text"
    hyp.write_text(hyp.read_text().replace("hello word", "hello world"))
    os.utime(hyp, ns=(stamp - 10**9, stamp - 10**9))  # older than score.json: a date check would reuse it
    again = score_decode_dir(decode_dir)
    assert again.languages["en"].words == ErrorCounts(ref_len=7, ins=1, dels=2, sub=1)
    assert json.loads((decode_dir / "score.json").read_text())["overall"] == again.to_dict()["overall"]


# ---------------------------------------------------------------------------- comparison


def _compare_dirs(tmp_path) -> list[Path]:
    # As `mlkd decode` writes them: a teacher's hyps carry its own language, which it does not predict.
    teacher_en = make_decode_dir(tmp_path / "teacher_en" / "decode_test_greedy", {"a": ("en", "the cat sat")},
                                 {"a": ("the bat sat", "en")},
                                 {"model_name": "teacher_en", "method": "greedy", "num_parameters": 2_500_000,
                                  "predicts_language": False})
    teacher_zh = make_decode_dir(tmp_path / "teacher_zh" / "decode_test_greedy", {"b": ("zh", "你好世界")},
                                 {"b": ("你好世界", None)},
                                 {"model_name": "teacher_zh", "method": "greedy", "num_parameters": 2_500_000})
    student = make_decode_dir(tmp_path / "student" / "decode_test_greedy", REFS, HYPS,
                              {"model_name": "student", "method": "greedy", "num_parameters": 800_000,
                               "predicts_language": True})
    return [teacher_en, teacher_zh, student]


def test_compare_table(tmp_path):
    comparison = compare([score_decode_dir(d) for d in _compare_dirs(tmp_path)])
    assert comparison.languages == ["en", "zh"]
    teacher_en, teacher_zh, student = comparison.rows
    assert teacher_en.rates == {"en": pytest.approx(1 / 3)} and teacher_en.average is None
    assert teacher_en.lid_accuracy is None and teacher_zh.lid_accuracy is None
    assert student.average == pytest.approx((5 / 7 + 1 / 4) / 2)
    assert student.lid_accuracy == pytest.approx(2 / 3)


def test_compare_markdown_cli(tmp_path):
    dirs = _compare_dirs(tmp_path)
    result = CliRunner().invoke(score_command, ["--compare", "--markdown", *map(str, dirs)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "| Model | Params | en %WER | zh %CER | Avg %ER | %LID |",
        "|:---|---:|---:|---:|---:|---:|",
        "| teacher_en | 2.5M | 33.33 | — | — | — |",
        "| teacher_zh | 2.5M | — | 0.00 | — | — |",
        "| student | 800.0K | 71.43 | 25.00 | 48.21 | 66.67 |",
    ]
    assert all((d / "score.json").is_file() for d in dirs)


def test_compare_over_conditions_one_table_each_then_every_model_on_every_condition(tmp_path):
    dirs = _compare_dirs(tmp_path)
    meta = {"model_name": "student", "method": "greedy", "num_parameters": 800_000, "predicts_language": True}
    noisy_hyps = {**HYPS, "u2": ("word", "de")}  # one more error in English
    noisy = make_decode_dir(tmp_path / "student" / "decode_test_noisy_greedy", REFS, noisy_hyps, meta)
    noisy_en = make_decode_dir(tmp_path / "teacher_en" / "decode_test_noisy_greedy", {"a": ("en", "the cat sat")},
                               {"a": ("a bat sat", "en")}, {"model_name": "teacher_en", "method": "greedy"})
    result = CliRunner().invoke(score_command, ["--compare", "--markdown", *map(str, [*dirs, noisy, noisy_en])],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("**test**") < out.index("**test_noisy**") < out.index("**every condition**")
    summary = out[out.index("**every condition**"):].splitlines()[2:]
    assert summary == [
        "| Model | test avg %ER | test_noisy avg %ER |",
        "|:---|---:|---:|",
        "| teacher_en | 33.33 (en) | 66.67 (en) |",
        "| teacher_zh | 0.00 (zh) | — |",
        "| student | 48.21 | 55.36 |",  # (6/7 + 1/4) / 2 on test_noisy
    ]


def test_compare_labels_same_model_by_decode_dir(tmp_path):
    greedy = make_decode_dir(tmp_path / "student" / "decode_test_greedy", REFS, HYPS)
    beam = make_decode_dir(tmp_path / "student" / "decode_test_beam", REFS, HYPS)
    labels = [row.label for row in compare([score_decode_dir(greedy), score_decode_dir(beam)]).rows]
    assert labels == ["student (decode_test_greedy)", "student (decode_test_beam)"]


def test_language_without_hypotheses_is_blank(tmp_path):
    """A model with no hypothesis at all for a language gets a blank cell, not 100% deletions."""
    d = make_decode_dir(tmp_path / "m" / "decode_test_greedy", REFS, {"u1": ("the cat sat", "en")})
    row = compare([score_decode_dir(d)]).rows[0]
    assert row.rates == {"en": pytest.approx(4 / 7)} and row.average == pytest.approx(4 / 7)


def test_format_params():
    assert [format_params(n) for n in (None, 999, 45_600, 12_345_678, 1_500_000_000)] == \
        ["—", "999", "45.6K", "12.3M", "1.5B"]


def test_cli_prints_table(decode_dir):
    result = CliRunner().invoke(score_command, [str(decode_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "71.43" in result.stdout and "25.00" in result.stdout and "66.67" in result.stdout


# ---------------------------------------------------------------------------- bad input


def run_mlkd_score(monkeypatch, *args: str | Path):
    """`mlkd score ARGS...` through the root command, which maps errors to exit codes."""
    monkeypatch.setitem(cli_module.COMMANDS, "score", "mlkd_cli.commands.score:score")
    return CliRunner().invoke(cli_module.cli, ["score", *map(str, args)], catch_exceptions=False)


def _break(decode_dir: Path, name: str, content: str) -> Path:
    (decode_dir / name).write_text(content)
    return decode_dir / name


@pytest.mark.parametrize("name,content,where", [
    ("hyp.text", "u1 a\nu1 b\n", "hyp.text:2: duplicate key u1"),
    ("hyp.text", "u1 a\n\nu2 b\n", "hyp.text:2: blank line"),
    ("ref.text", "u1 a\r\n", "ref.text:1: Windows line endings"),
    ("ref.utt2lang", "u1 en\nu2 en de\n", "ref.utt2lang:2: expected 'UTT LANG'"),
    ("ref.utt2lang", "u1 klingonish\n", "ref.utt2lang:1: unknown language 'klingonish'"),
    ("hyps.jsonl", '{"id": "u1", "language": "en"}\n{"id": "u2", \n', "hyps.jsonl:2: not valid JSON"),
    ("hyps.jsonl", '{"text": "a"}\n', 'hyps.jsonl:1: expected a JSON object with a string "id"'),
    ("stats.json", "{", "stats.json: not valid JSON"),
])
def test_malformed_input_names_file_and_line(monkeypatch, decode_dir, name, content, where):
    _break(decode_dir, name, content)
    result = run_mlkd_score(monkeypatch, decode_dir)
    assert result.exit_code == 1
    assert f"Error: {decode_dir / where}" in result.output
    assert "fix:" in result.output


def test_invalid_utf8(monkeypatch, decode_dir):
    (decode_dir / "ref.text").write_bytes(b"u1 ok\nu2 caf\xe9\n")
    result = run_mlkd_score(monkeypatch, decode_dir)
    assert result.exit_code == 1 and f"Error: {decode_dir / 'ref.text'}:2: not valid UTF-8" in result.output


def test_missing_inputs(monkeypatch, tmp_path, decode_dir):
    result = run_mlkd_score(monkeypatch, tmp_path / "nowhere")
    assert result.exit_code == 1 and f"Error: {tmp_path / 'nowhere'}: no such decode directory" in result.output

    (decode_dir / "ref.text").unlink()
    result = run_mlkd_score(monkeypatch, decode_dir)
    assert result.exit_code == 1
    assert f"Error: {decode_dir / 'ref.text'}: no such file;" in result.output and "--ref" in result.output

    result = run_mlkd_score(monkeypatch, decode_dir, "--ref", tmp_path / "text")
    assert result.exit_code == 1 and f"Error: {tmp_path / 'text'}: no such file;" in result.output

    (decode_dir / "hyp.text").unlink()
    result = run_mlkd_score(monkeypatch, decode_dir)
    assert result.exit_code == 1 and f"Error: {decode_dir / 'hyp.text'}: no such file;" in result.output


def test_reference_of_another_set(monkeypatch, tmp_path, decode_dir):
    (tmp_path / "text").write_text("other1 a b\nother2 c\n")
    result = run_mlkd_score(monkeypatch, decode_dir, "--ref", tmp_path / "text")
    assert result.exit_code == 1
    assert f"Error: {tmp_path / 'text'}: no utterance id in common with {decode_dir / 'hyp.text'}" in result.output
    (tmp_path / "text").write_text("")
    result = run_mlkd_score(monkeypatch, decode_dir, "--ref", tmp_path / "text")
    assert result.exit_code == 1 and f"Error: {tmp_path / 'text'}: no utterances" in result.output


def test_library_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="no such decode directory"):
        score_decode_dir(tmp_path / "missing")


@pytest.mark.parametrize("args", [["--markdown"], ["--compare", "--ref", "text"]])
def test_usage_errors(decode_dir, args):
    result = CliRunner().invoke(score_command, [*args, str(decode_dir)])
    assert result.exit_code == 2
