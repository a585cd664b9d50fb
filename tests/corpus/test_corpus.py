"""The embedded demo corpus: text cleaning, eSpeak synthesis and the Kaldi data dirs it writes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_cli
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.recipes.corpus import build, espeak, splits, text
from mlkd_cli.recipes.corpus.build import SPLIT_VARIANTS, build_corpus
from mlkd_cli.recipes.corpus.text import Sentence, clean_sentence, normalize, split_sentences

LANGS = ["en", "ru"]
SPLITS = ["train", "dev", "test"]
KALDI_FILES = ["wav.scp", "text", "utt2spk", "spk2utt", "utt2lang"]


def read_table(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(" ", 1)) for line in path.read_text(encoding="utf-8").splitlines()]


def snapshot(corpus: Path) -> dict[str, bytes]:
    """Every file of a corpus, with the corpus path removed from wav.scp."""
    files = {}
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and p.name not in ("stage.json", ".stage.lock")):
        data = path.read_bytes()
        files[str(path.relative_to(corpus))] = data.replace(str(corpus).encode(), b"OUT")
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "demo"
    build_corpus(out, LANGS, "tiny", seed=3, num_jobs=2)
    return out


# --- text -------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang, raw, expected", [
    ("en", "Don't panic -- it's only a TEST!", "don't panic it's only a test"),
    ("en", "\"Hello,\" she said; 'quoted' words...", "hello she said quoted words"),
    ("de", "Größe, Übermut und Spaß: daß!", "größe übermut und spaß daß"),
    ("de", "Geht's gut?", "geht s gut"),
    ("es", "¿Qué año? ¡Mañana, niño!", "qué año mañana niño"),
    ("it", "L'uomo è già qui, perché?", "l'uomo è già qui perché"),
    ("fr", "L'été à Paris, c'est génial!", "l'été à paris c'est génial"),
    ("ru", "Ёлка — это «ель», не так ли?", "елка это ель не так ли"),
    ("pl", "Żółć gęślą jaźń!", "żółć gęślą jaźń"),
    ("cs", "Příliš žluťoučký kůň úpěl ďábelské ódy.", "příliš žluťoučký kůň úpěl ďábelské ódy"),
])
def test_normalize(lang, raw, expected):
    assert normalize(raw, lang) == expected


@pytest.mark.parametrize("lang, raw", [
    ("ru", "Я очень люблю Linux и свободу."),  # Latin word in Russian
    ("en", "I have 3 cats and a dog."),  # digit
    ("en", "Visit www.debian.org for more news."),  # URL
    ("en", "The NASA people went home early."),  # acronym, spelled out by eSpeak
    ("en", "Old MacDonald had a big farm."),  # eSpeak says "mac donald"
    ("cs", "Lze to lehce vyléčit UNIXem."),  # capitals inside a word
    ("en", "Call it a feature :-) and move on."),  # eSpeak says "colon"
    ("en", "Consider the flea!--incomparably the bravest."),  # eSpeak says "exclamation"
    ("en", ": How would you disambiguate these?"),  # leading punctuation is read aloud
    ("en", "Mr Smith went to the market."),  # eSpeak says "mister"
    ("en", "He met Mr. Smith at the station."),  # abbreviation with a period
    ("en", "Go home now."),  # fewer than 4 words
    ("en", " ".join(["word"] * 21) + "."),  # more than 20 words
    ("en", "and then he left the room."),  # a fragment
    ("en", "Pay me $5 & go away now."),  # symbols eSpeak reads aloud
    ("de", "Das Café ist heute geschlossen."),  # é is not German
    ("de", "Geht's dir heute gut?"),  # apostrophe is not part of German words
])
def test_clean_sentence_rejects(lang, raw):
    assert clean_sentence(raw, lang) is None


def test_clean_sentence_keeps_spoken_text():
    assert clean_sentence("Don't count your chickens before they hatch.", "en") == Sentence(
        "Don't count your chickens before they hatch.", "don't count your chickens before they hatch")
    assert clean_sentence("Nichts ist so beständig wie der Wandel, sagt man.", "de").transcript == (
        "nichts ist so beständig wie der wandel sagt man")


def test_italian_ascii_accents_restored():
    sentence = clean_sentence("E' piu' facile cosi', perche' no, un po' alla volta?", "it")
    assert sentence.spoken == "È più facile così, perché no, un po' alla volta?"
    assert sentence.transcript == "è più facile così perché no un po alla volta"


@pytest.mark.parametrize("entry", [
    "A dream will always triumph over reality.\n\t\t-- Stanislaw Lem\n",
    "A dream will always triumph over reality.\n― Stanislaw Lem, Solaris\n",
    "A dream will always triumph over reality.\n—Stanislaw Lem\n\t\tin a letter\n",
    "A dream will always triumph over reality.\nStanislaw Lem\n",
    "A dream will always triumph over reality.\n\t\tSolaris, page ten\n",
])
def test_attribution_dropped(entry):
    assert split_sentences(entry, "en") == ["A dream will always triumph over reality."]


def test_split_sentences_joins_lines_and_merges_abbreviations():
    entry = "The first sentence runs\nover two lines. The second is short!\nHe met Mr. Smith there."
    assert split_sentences(entry, "en") == [
        "The first sentence runs over two lines.", "The second is short!", "He met Mr. Smith there."]


def test_read_entries_legacy_encoding(tmp_path):
    path = tmp_path / "koi"
    path.write_bytes("Первая мысль.\r\n%\r\nВторая мысль.\r\n".encode("koi8-r"))
    assert [e.strip() for e in text.read_entries(path, "koi8-r")] == ["Первая мысль.", "Вторая мысль."]


def test_fortune_files_prefers_nonempty_u8(tmp_path):
    (tmp_path / "pl").mkdir()
    for name, content in [("a", "x"), ("a.u8", ""), ("a.dat", "x"), ("b", "x"), ("b.u8", "x")]:
        (tmp_path / "pl" / name).write_text(content)
    (tmp_path / "outside").write_text("x")
    (tmp_path / "pl" / "link").symlink_to(tmp_path / "outside")
    assert [p.name for p in text.fortune_files("pl", tmp_path)] == ["a", "b.u8"]


def test_missing_fortunes_name_the_package(tmp_path):
    with pytest.raises(DataError, match="apt-get install fortunes-fr"):
        text.fortune_files("fr", tmp_path)


@pytest.mark.parametrize("lang", LANGS)
def test_loaded_sentences_are_clean(lang):
    sentences = text.load_sentences(lang)
    assert len(sentences) > 10000
    assert len({s.transcript for s in sentences}) == len(sentences)
    letters = set(text.LANGUAGES[lang].alphabet + "' ")
    for s in sentences:
        assert set(s.transcript) <= letters and 4 <= len(s.transcript.split()) <= 20
        assert not any(c.isdigit() for c in s.spoken)


# --- eSpeak -----------------------------------------------------------------------------------


def test_espeak_synthesizes_16k_int16():
    engine = espeak.engine()
    assert {"m3", "klatt2"} <= set(engine.variants())
    audio = engine.synthesize("Hello there, my friend.", espeak.Voice("en-us", "m3", 50, 50, 175, 100))
    assert audio.dtype == np.int16 and 0.8 < len(audio) / espeak.SAMPLE_RATE < 4
    with pytest.raises(DataError, match="no voice variant"):
        engine.check_voice(espeak.Voice("en-us", "no-such-variant", 50, 50, 175, 100))


def test_missing_library_says_how_to_install(monkeypatch):
    monkeypatch.setattr(espeak, "LIBRARY", "libespeak-ng-missing.so.1")
    with pytest.raises(DataError, match="apt-get install espeak-ng"):
        espeak.Engine()


# --- the corpus -------------------------------------------------------------------------------


def test_data_dirs_complete(corpus):
    assert (corpus / "corpus.json").is_file()
    for split in SPLITS:
        for name in KALDI_FILES:
            assert (corpus / split / name).is_file()
    assert not [p for p in corpus.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("split", SPLITS)
def test_files_sorted_unique_and_consistent(corpus, split):
    tables = {name: read_table(corpus / split / name) for name in KALDI_FILES}
    for name, rows in tables.items():
        keys = [k.encode() for k, _ in rows]
        assert keys == sorted(keys) and len(set(keys)) == len(keys), name
    utts = [k for k, _ in tables["text"]]
    for name in ("wav.scp", "utt2spk", "utt2lang"):
        assert [k for k, _ in tables[name]] == utts
    utt2spk = dict(tables["utt2spk"])
    spk2utt = {spk: ids.split() for spk, ids in tables["spk2utt"]}
    assert sorted(u for ids in spk2utt.values() for u in ids) == utts
    assert all(utt2spk[u] == spk for spk, ids in spk2utt.items() for u in ids)
    for utt, lang in tables["utt2lang"]:
        assert utt.isascii() and utt.startswith(utt2spk[utt] + "-") and utt2spk[utt].startswith(lang + "-")
    assert {lang for _, lang in tables["utt2lang"]} == set(LANGS)
    for utt, transcript in tables["text"]:
        lang = dict(tables["utt2lang"])[utt]
        assert normalize(transcript, lang) == transcript and 4 <= len(transcript.split()) <= 20


def test_wavs_are_16k_mono_speech(corpus):
    for split in SPLITS:
        for utt, path in read_table(corpus / split / "wav.scp"):
            assert Path(path).is_absolute() and Path(path).is_relative_to(corpus)
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert 0.5 < info.duration < 15, utt
            audio, _ = sf.read(path, dtype="int16")
            assert np.sqrt(np.mean(audio.astype(float) ** 2)) > 300, utt


def test_splits_share_no_speaker_variant_or_sentence(corpus):
    speakers = {s: {spk for spk, _ in read_table(corpus / s / "spk2utt")} for s in SPLITS}
    sentences = {s: {t for _, t in read_table(corpus / s / "text")} for s in SPLITS}
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not speakers[a] & speakers[b] and not sentences[a] & sentences[b]
        assert not set(SPLIT_VARIANTS[a]) & set(SPLIT_VARIANTS[b])


def test_summary_matches_data(corpus):
    summary = json.loads((corpus / "corpus.json").read_text())
    assert summary["langs"] == LANGS and summary["seed"] == 3 and summary["size"] == "tiny"
    for split in SPLITS:
        utt2lang = read_table(corpus / split / "utt2lang")
        for lang in LANGS:
            stats = summary["splits"][split][lang]
            assert stats["utterances"] == sum(1 for _, lg in utt2lang if lg == lang) > 0
            wavs = [Path(w) for u, w in read_table(corpus / split / "wav.scp") if dict(utt2lang)[u] == lang]
            assert stats["hours"] == pytest.approx(sum(sf.info(w).duration for w in wavs) / 3600, abs=1e-3)
    assert summary["splits"]["train"]["en"]["utterances"] >= 8


@pytest.mark.slow  # a whole second build (~20 s on 2 cores): `make test-slow`
def test_same_seed_same_corpus_whatever_num_jobs(corpus):
    before = snapshot(corpus)
    build_corpus(corpus, LANGS, "tiny", seed=3, num_jobs=1, force=True)  # also replaces an existing corpus
    assert snapshot(corpus) == before


def test_rebuild_skips_a_complete_corpus_of_the_same_settings(corpus, caplog):
    """Re-running the recipe keeps the files (and their dates: `mlkd prepare` stays up to date)."""
    dates = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file() and not p.name.startswith(".")}
    with caplog.at_level(logging.INFO, logger="mlkd"):
        summary = build_corpus(corpus, LANGS, "tiny", seed=3, num_jobs=1)
    assert "up to date" in caplog.text
    assert summary == json.loads((corpus / "corpus.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file() and not p.name.startswith(".")} == dates


@pytest.mark.slow  # a whole second build: `make test-slow`
def test_a_missing_wav_rebuilds_the_corpus(corpus):
    wav = next((corpus / "wav").rglob("*.wav"))
    wav.unlink()
    build_corpus(corpus, LANGS, "tiny", seed=3, num_jobs=1)
    assert wav.is_file()


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    few = text.load_sentences("en")[:5]
    monkeypatch.setattr(build.text, "load_sentences", lambda lang: few)
    with pytest.raises(DataError, match="too few"):
        build_corpus(tmp_path / "out", ["en"], "tiny", seed=0, num_jobs=1)
    assert list(tmp_path.iterdir()) == []


def test_refuses_foreign_nonempty_dir(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="no corpus.json"):
        build_corpus(tmp_path, ["en"], "tiny")


def test_make_corpus_is_an_mlkd_command_with_its_options_and_one_error_line(tmp_path):
    assert "make-corpus" in run_cli("--help").output
    shown = run_cli("make-corpus", "--help")
    assert shown.exit_code == 0
    for option in ("--langs", "--unseen-langs", "--size", "--train-hours", "--dev-minutes", "--test-minutes",
                   "--unlabeled-hours", "--teacher-hours", "--unseen-minutes", "--espeak-only", "--seed",
                   "-j, --num-jobs", "-f, --force"):
        assert option in shown.output, option
    result = run_cli("make-corpus", "--langs", "en xx", "--size", "tiny", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: unsupported language 'xx'; choose from: en de es it fr ru pl cs"]
    assert list(tmp_path.iterdir()) == []


def test_the_untranscribed_pool_has_new_sentences_and_voices_and_no_text(corpus):
    pool = corpus / splits.UNLABELED
    assert not (pool / "text").exists() and (pool / build.WITHHELD_TEXT).is_file()
    utts = [u for u, _ in read_table(pool / "utt2spk")]
    assert utts == [u for u, _ in read_table(pool / build.WITHHELD_TEXT)] and len(utts) >= 4
    assert {lang for _, lang in read_table(pool / "utt2lang")} == set(LANGS)
    variants = {spk.split("-")[1].split("p")[0] for spk, _ in read_table(pool / "spk2utt")}
    assert variants <= set(SPLIT_VARIANTS[splits.UNLABELED])
    withheld = {t for _, t in read_table(pool / build.WITHHELD_TEXT)}
    for split in SPLITS:
        assert not withheld & {t for _, t in read_table(corpus / split / "text")}
        assert not set(SPLIT_VARIANTS[splits.UNLABELED]) & set(SPLIT_VARIANTS[split])


def test_unseen_languages_only_in_their_own_splits(corpus):
    summary = json.loads((corpus / "corpus.json").read_text())
    assert summary["unseen_langs"] == ["pl", "cs"]
    for split in splits.UNSEEN_SPLITS:
        assert {lang for _, lang in read_table(corpus / split / "utt2lang")} == {"pl", "cs"}
        assert set(summary["splits"][split]) == {"pl", "cs"}
    for split in SPLITS:
        assert {lang for _, lang in read_table(corpus / split / "utt2lang")} == set(LANGS)


def test_sizes_without_pool_teacher_set_or_unseen_languages_leave_those_splits_out(tmp_path):
    size = splits.corpus_size("tiny", unlabeled_hours=0, unseen_minutes=0, teacher_hours=0)
    build_corpus(tmp_path / "c", ["en"], size, seed=1, num_jobs=1)
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if p.is_dir()) == [
        "dev", "noise", "noise_test", "test", "test_engine", "test_noisy", "train", "wav"]
    with pytest.raises(ConfigError, match="--unlabeled-hours must be 0 or more"):
        splits.corpus_size("tiny", unlabeled_hours=-1)


def test_noisy_test_is_the_test_set_in_rooms_with_unseen_noise_at_low_snr(corpus):
    from mlkd_cli.recipes.corpus.noise import TEST_SNR, TRAIN_COLOURS
    from mlkd_cli.data.audio_sets import load_audio_set

    for name in ("text", "utt2spk", "utt2lang"):
        assert read_table(corpus / "test_noisy" / name) == read_table(corpus / "test" / name)
    clean = dict(read_table(corpus / "test" / "wav.scp"))
    conditions = [line.split() for line in (corpus / "test_noisy" / "conditions").read_text().splitlines()]
    assert sorted(c[0] for c in conditions) == sorted(clean)
    train_types = {cut.recording_id.split("-")[0] for cut in load_audio_set(corpus / "noise", "noise")}
    test_types = {cut.recording_id.split("-")[0] for cut in load_audio_set(corpus / "noise_test", "noise")}
    assert train_types == set(TRAIN_COLOURS) and not train_types & test_types and "hum" in test_types
    assert all(TEST_SNR[0] <= float(snr) <= TEST_SNR[1] and kind in test_types for _, _, kind, snr in conditions)
    for utt, path in read_table(corpus / "test_noisy" / "wav.scp"):
        noisy, _ = sf.read(path)
        original, _ = sf.read(clean[utt])
        assert len(noisy) == len(original) and not np.allclose(noisy, original, atol=0.01)


def test_engine_test_speaks_the_test_sentences_with_a_held_out_engine(corpus):
    test_text = read_table(corpus / "test" / "text")
    engine_text = read_table(corpus / "test_engine" / "text")
    utt2lang = dict(read_table(corpus / "test_engine" / "utt2lang"))
    test_langs = dict(read_table(corpus / "test" / "utt2lang"))
    assert set(utt2lang.values()) == set(LANGS) & set(build.HELD_OUT_VOICES)
    for lang in set(utt2lang.values()):
        assert sorted(t for u, t in engine_text if utt2lang[u] == lang) == \
            sorted(t for u, t in test_text if test_langs[u] == lang)
    for speaker, _ in read_table(corpus / "test_engine" / "spk2utt"):
        lang = speaker.split("-")[0]
        engine, names = build.HELD_OUT_VOICES[lang]
        assert speaker.split("-")[1].split(".")[:2] in [[engine, name] for name in names]
    # where the held-out engine is not Festival, Festival speaks some of the teachers' training speakers:
    # other people
    train_speakers = [spk for spk, _ in read_table(corpus / splits.TEACHER / "spk2utt")]
    for lang, (engine, voices) in build.TRAIN_ENGINE_VOICES.items():
        if lang in LANGS:
            others = [s for s in train_speakers if s.startswith(f"{lang}-{engine}.")]
            assert others and all(s.split(".")[1] in voices for s in others)


def test_espeak_only_corpus_has_no_other_engine(tiny_corpus):
    """`--espeak-only` (the shared test corpus): no Festival speakers in training, no test_engine."""
    summary = json.loads((tiny_corpus / "corpus.json").read_text())
    assert summary["other_engines"] is False and summary["synthesizer"].startswith("eSpeak NG")
    assert not (tiny_corpus / "test_engine").exists() and (tiny_corpus / "test_noisy").is_dir()
    assert not [s for s, _ in read_table(tiny_corpus / "train" / "spk2utt") if "festival" in s]


def test_a_teacher_set_has_its_own_sentences_more_speakers_and_the_training_engines(tmp_path):
    """With teacher_hours, teacher_train draws its sentences after every other split (dev and test
    stay as they were), has more speakers than train, and takes the Festival training voices from
    train (so train, and the pool after it, are spoken by other speakers)."""
    size = splits.corpus_size("tiny", unseen_minutes=0, teacher_hours=150 / 3600)
    teach = build_corpus(tmp_path / "teach", ["en"], size, seed=1, num_jobs=2)
    plain_size = splits.corpus_size("tiny", unseen_minutes=0, teacher_hours=0)
    plain = build_corpus(tmp_path / "plain", ["en"], plain_size, seed=1, num_jobs=2)
    files = {name: snapshot(tmp_path / name) for name in ("teach", "plain")}
    for split in ("dev", "test"):
        teach_split, plain_split = ({k: v for k, v in files[name].items() if k.startswith(f"{split}/")}
                                    for name in ("teach", "plain"))
        assert teach_split and teach_split == plain_split
    texts = {split: {t for _, t in read_table(tmp_path / "teach" / split / "text")} for split in SPLITS}
    texts["unlabeled"] = {t for _, t in read_table(tmp_path / "teach" / "unlabeled" / build.WITHHELD_TEXT)}
    teacher_texts = {t for _, t in read_table(tmp_path / "teach" / splits.TEACHER / "text")}
    assert all(not teacher_texts & other for other in texts.values())
    teacher_speakers = [s for s, _ in read_table(tmp_path / "teach" / splits.TEACHER / "spk2utt")]
    train_speakers = [s for s, _ in read_table(tmp_path / "teach" / "train" / "spk2utt")]
    assert len(teacher_speakers) > len(train_speakers)
    assert any(s.startswith("en-festival.") for s in teacher_speakers)
    assert not any(s.startswith("en-festival.") for s in train_speakers)
    assert any(s.startswith("en-festival.") for s, _ in read_table(tmp_path / "plain" / "train" / "spk2utt"))
    assert teach["splits"][splits.TEACHER]["en"]["hours"] >= 150 / 3600
    assert splits.TEACHER in teach["engines"] and splits.TEACHER not in plain["splits"]
    with pytest.raises(ConfigError, match="--teacher-hours must be 0 or more"):
        splits.corpus_size("tiny", teacher_hours=-1)


def test_the_demo_sizes_are_the_teachers_world_and_the_same_hour_setting():
    demo, same = splits.SIZES["demo"], splits.SIZES["demo-same-hour"]
    assert (demo.teacher_hours, demo.train_hours, demo.unlabeled_hours) == (3.0, 0.25, 2.0)
    assert (same.teacher_hours, same.train_hours, same.unlabeled_hours) == (0.0, 1.0, 2.0)
    assert (demo.dev_minutes, demo.test_minutes) == (same.dev_minutes, same.test_minutes) == (8.0, 8.0)
