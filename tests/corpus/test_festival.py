"""Festival and flite synthesis: voices, text encoding, prosody control and reproducibility.

Needs the Debian packages in festival.PACKAGES (installed by the install script).
"""

from __future__ import annotations

import multiprocessing
import random
import re

import numpy as np
import pytest

from mlkd_cli.errors import DataError
from mlkd_cli.recipes.corpus import festival
from mlkd_cli.recipes.corpus.festival import FESTIVAL, FLITE, SynthVoice, VoiceInfo, synthesize

# One short sentence per language (as text.Sentence.spoken has them), with its word count.
SENTENCES = {
    "en": ("\"Don't panic,\" said the old man at the door.", 9),
    "it": ("L'uomo è già qui, perché non entra?", 7),
    "ru": ("«Ёлка» — это зелёное дерево в лесу.", 6),
    "cs": ("Příliš žluťoučký kůň úpěl ďábelské ódy.", 6),
}


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


def median_f0(audio: np.ndarray, rate: int = festival.SAMPLE_RATE) -> float:
    """Median F0 of the loud, periodic 40 ms frames, by autocorrelation (60-400 Hz)."""
    x = audio.astype(np.float64)
    frame, lo, hi = rate // 25, rate // 400, rate // 60
    f0s = []
    for start in range(0, len(x) - frame, rate // 100):
        w = x[start:start + frame] - x[start:start + frame].mean()
        if rms(w) < 0.3 * rms(x):
            continue
        ac = np.correlate(w, w, "full")[frame - 1:] / np.dot(w, w)
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5:
            f0s.append(rate / lag)
    return float(np.median(f0s))


def test_voice_tables_match_the_installation():
    for lang, engines in festival.ENGINE_VOICES.items():
        for engine, voices in engines.items():
            assert set(voices) <= festival.installed_voices(engine)
            packages = {engine} | {festival.VOICES[(engine, v)].package for v in voices}
            assert packages <= set(festival.PACKAGES[lang])
    assert set(festival.ENGINE_VOICES) == {"en", "it", "ru", "cs"}
    assert festival.ENGINE_VOICES["en"][FLITE] == ("kal", "kal16", "awb", "rms", "slt")
    assert re.fullmatch(r"Festival [\d.]+, flite [\d.]+", festival.check_engines(["en", "de"]))


@pytest.mark.parametrize("text, encoding, expected", [
    ("Příliš „žluťoučký“ kůň…", "iso-8859-2", "Příliš \"žluťoučký\" kůň...".encode("iso-8859-2")),
    ("«Ёлка» — сто́ит", "utf-8", "\"Ёлка\" - стоит".encode()),
    ("Un caffè più forte", "latin-1", "Un caffè più forte".encode("latin-1")),
    ("A café in Zürich – 3 km² ok", "ascii", b"A cafe in Zurich - 3 km2 ok"),
    ("Say Ёлка & go", "ascii", b"Say" + b" " * 8 + b"go"),
])
def test_encode_text(text, encoding, expected):
    assert festival.encode_text(text, encoding) == expected


@pytest.mark.parametrize("engine, voice", [
    (FESTIVAL, "kal_diphone"), (FLITE, "slt"), (FESTIVAL, "pc_diphone"), (FESTIVAL, "msu_ru_nsh_clunits"),
    (FESTIVAL, "czech_machac"),
])
def test_each_language_speaks_a_sentence_quietly(engine, voice, capfd):
    text, words = SENTENCES[festival.VOICES[(engine, voice)].language]
    audio = synthesize(text, SynthVoice(engine, voice, volume=0.8))
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert 0.2 < len(audio) / festival.SAMPLE_RATE / words < 1.0  # seconds per word
    assert rms(audio) == pytest.approx(0.8 * festival.TARGET_RMS, rel=0.01)
    assert capfd.readouterr() == ("", "")


def _synthesize_bytes(voice: SynthVoice) -> bytes:
    return synthesize(SENTENCES["cs"][0], voice).tobytes()


def test_output_is_reproducible_across_calls_and_processes():
    voice = SynthVoice(FESTIVAL, "czech_dita", stretch=1.1, pitch=0.9, volume=0.7)  # the Czech voices use rand
    first = _synthesize_bytes(voice)
    assert _synthesize_bytes(voice) == first
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_synthesize_bytes, (voice,)) == first


@pytest.mark.parametrize("engine, voice", [
    (FESTIVAL, "ked_diphone"), (FESTIVAL, "cmu_us_slt_arctic_hts"), (FLITE, "awb"),
])
def test_stretch_pitch_and_volume_change_the_audio(engine, voice):
    text = SENTENCES["en"][0]
    base = synthesize(text, SynthVoice(engine, voice))
    slow = synthesize(text, SynthVoice(engine, voice, stretch=1.25))
    assert len(slow) / len(base) == pytest.approx(1.25, abs=0.03)
    quiet = synthesize(text, SynthVoice(engine, voice, volume=0.5))
    assert rms(quiet) / rms(base) == pytest.approx(0.5, abs=0.01)
    if festival.VOICES[(engine, voice)].pitch:
        high = synthesize(text, SynthVoice(engine, voice, pitch=1.25))
        assert median_f0(high) / median_f0(base) == pytest.approx(1.25, abs=0.08)


def test_voices_accept_only_the_prosody_they_can_change():
    with pytest.raises(ValueError, match="pitch"):
        SynthVoice(FESTIVAL, "cmu_us_slt_arctic_hts", pitch=1.1)
    with pytest.raises(ValueError, match="speed"):
        SynthVoice(FESTIVAL, "msu_ru_nsh_clunits", stretch=1.1)
    with pytest.raises(ValueError, match="unknown"):
        SynthVoice(FLITE, "kal_diphone")
    rng = random.Random(3)
    drawn = [festival.draw_voice(FESTIVAL, "msu_ru_nsh_clunits", rng) for _ in range(5)]
    assert {(v.stretch, v.pitch) for v in drawn} == {(1.0, 1.0)}
    assert len({v.tag for v in drawn}) == 5 and all(re.fullmatch(r"[\w.]+", v.tag) for v in drawn)
    again = festival.draw_voice(FLITE, "slt", random.Random(3))
    assert again == festival.draw_voice(FLITE, "slt", random.Random(3))
    assert festival.STRETCH[0] <= again.stretch <= festival.STRETCH[1] and again.pitch != 1.0


def test_missing_voices_and_programs_name_the_package(monkeypatch):
    installed = {FESTIVAL: festival.installed_voices(FESTIVAL) - {"kal_diphone"}, FLITE: frozenset()}
    monkeypatch.setattr(festival, "installed_voices", installed.get)
    with pytest.raises(DataError, match=r"apt-get install festvox-kallpc16k flite$"):
        festival.check_engines(["en", "ru"])
    with pytest.raises(DataError, match="apt-get install flite"):
        synthesize("Hello there.", SynthVoice(FLITE, "slt"))
    monkeypatch.setitem(festival.VOICES, (FESTIVAL, "nosuch_diphone"), VoiceInfo("en", "festvox-nosuch", "ascii",
                                                                                   "diphone", pitch=True))
    with pytest.raises(DataError, match="nosuch_diphone failed to speak 'Hello there.'.*festvox-nosuch"):
        synthesize("Hello there.", SynthVoice(FESTIVAL, "nosuch_diphone"))
    monkeypatch.setitem(festival.PROGRAMS, FESTIVAL, "no-such-text2wave")
    with pytest.raises(DataError, match="apt-get install festival"):
        synthesize("Hello there.", SynthVoice(FESTIVAL, "kal_diphone"))


def test_silence_is_an_error():
    voice = SynthVoice(FESTIVAL, "kal_diphone")
    with pytest.raises(DataError, match=r"nothing to speak in '\.\.\. !'"):
        synthesize("... !", voice)
    with pytest.raises(DataError, match="festival.kal_diphone spoke 'Hush.' as silence"):
        festival._level(np.zeros(8000, np.int16), 16000, "Hush.", voice)


OTHER_SENTENCE = {"en": "The cat sat on the mat.", "ru": "Мы идём домой.", "cs": "Dobrý den, jak se máte?"}


@pytest.mark.parametrize("voice", [SynthVoice(FESTIVAL, "kal_diphone", stretch=1.1, pitch=0.9, volume=0.7),
                                   SynthVoice(FESTIVAL, "msu_ru_nsh_clunits"),
                                   SynthVoice(FESTIVAL, "czech_dita", stretch=1.05)])
def test_one_process_speaks_a_speakers_sentences_as_separate_calls_do(voice):
    """The same bytes as text2wave one sentence at a time, also for a sentence spoken after others
    (a Czech voice, which remembers them, is not batched); a sentence with nothing to speak is its
    DataError, and the others are unaffected."""
    lang = voice.info.language
    first, second = SENTENCES[lang][0], OTHER_SENTENCE[lang]
    spoken = festival.synthesize_many([first, second, "1234", first], voice)
    alone = synthesize(first, voice)
    assert np.array_equal(spoken[0], alone) and np.array_equal(spoken[3], alone)
    assert np.array_equal(spoken[1], synthesize(second, voice))
    assert isinstance(spoken[2], DataError) and "has nothing to speak in '1234'" in str(spoken[2])


def test_a_sentence_with_a_message_in_a_batch_is_spoken_alone_for_its_own_error(monkeypatch):
    voice = SynthVoice(FESTIVAL, "kal_diphone")
    calls = []
    real = festival.synthesize
    monkeypatch.setattr(festival, "synthesize", lambda text, v: calls.append(text) or real(text, v))
    monkeypatch.setattr(festival, "_BATCH_SAY", festival._BATCH_SAY + """\
(define mlkd_say_real mlkd_say)
(define (mlkd_say seed text wav)
  (if (string-equal text "1.txt") (format stderr "SIOD ERROR: made up\\n"))
  (mlkd_say_real seed text wav))
""")
    texts = [SENTENCES["en"][0], OTHER_SENTENCE["en"], "A third one."]
    spoken = festival.synthesize_many(texts, voice)
    assert calls == [texts[1]] and all(isinstance(a, np.ndarray) for a in spoken)
    assert np.array_equal(spoken[2], real(texts[2], voice))
