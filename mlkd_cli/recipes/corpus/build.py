"""Build the embedded demo corpus: Kaldi data dirs of eSpeak NG speech reading fortune sentences.

Each language's sentences are shuffled with the seed and consumed in order by dev, then
test, then train, then the untranscribed pool, then the teachers' own training set, so the
splits share no sentence and dev/test do not change when only the training size does.

The demo size models mlkd's use case: existing monolingual teachers trained on data of their
own (``teacher_train``: hours per language, more speakers, Festival voices where Debian has
them), a student with a few transcribed minutes per language (``train``) and hours of
untranscribed audio (``unlabeled``). The ``demo-same-hour`` size is the earlier setting, where
teachers and student learn from the same hour. A speaker is one eSpeak voice variant with
one pitch, pitch range, speed and amplitude; dev and test speakers use variants never heard
in training, the pool's speakers variants of their own. The pool (``unlabeled``) has no
``text`` file: its transcripts are kept aside in ``text.withheld`` for analysis only. The
unseen languages (``dev_unseen``, ``test_unseen``) are speech in languages no model is
trained on, for language-ID rejection. Every
speaker is synthesized in a fresh worker process, which makes the audio independent of
``num_jobs`` (see ``espeak``). The corpus is built in a staging directory and published
when complete (mlkd_cli.stage).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import multiprocessing
import random
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import soundfile as sf

from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.fsutil import atomic_write_text
from mlkd_cli.log import progress_bar
from mlkd_cli.recipes.corpus import espeak, festival, noise, text
from mlkd_cli.recipes.corpus.splits import (DEFAULT_LANGS, DEFAULT_UNSEEN, ENGINE, NOISY, SPLITS, TEACHER, UNLABELED,
                                            UNSEEN_SPLITS, CorpusSize, corpus_size)
from mlkd_cli.stage import Stage, new_record

logger = logging.getLogger("mlkd")

# Festival and flite voices (Debian main). English has both, so Festival speaks a share of its
# training speakers (the teachers' set's, when there is one) and flite is held out; Italian,
# Russian and Czech have Festival only, held out.
# Festival's kal and slt are the same people as flite's kal and slt: English training uses
# kal and ked, test_engine other people (awb, rms, slt).
TRAIN_ENGINE_VOICES = {"en": (festival.FESTIVAL, ("kal_diphone", "ked_diphone"))}
TRAIN_ENGINE_EVERY = 4  # every 4th training speaker of those languages, starting with the first
HELD_OUT_VOICES = {"en": (festival.FLITE, ("awb", "rms", "slt")),
                   "it": (festival.FESTIVAL, ("pc_diphone", "lp_diphone")),
                   "ru": (festival.FESTIVAL, ("msu_ru_nsh_clunits",)),
                   "cs": (festival.FESTIVAL, ("czech_dita", "czech_krb", "czech_machac", "czech_ph"))}
DRAW_ORDER = ("dev", "test", "train", UNLABELED, TEACHER)  # the order in which splits take sentences
WITHHELD_TEXT = "text.withheld"  # the pool's transcripts: never read by mlkd
# Voice variants (file names in espeak-ng-data/voices/!v) per split; dev and test are held out.
SPLIT_VARIANTS = {
    "train": (
        "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "klatt", "klatt2", "klatt3", "klatt6",
        "Alex", "Alicia", "Andy", "Annie", "Diogo", "Gene2", "Michael", "Nguyen", "Storm", "adam",
        "aunty", "belinda", "benjamin", "david", "edward", "grandpa", "linda", "marcelo", "max",
        "michel", "norbert", "pablo", "quincy", "rob", "shelby", "steph", "travis",
    ),
    "dev": ("m7", "f4", "klatt4", "Gene"),
    "test": ("m8", "f5", "klatt5", "Mario"),
    UNLABELED: (
        "Andrea", "Denis", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mike", "anika", "antonio", "boris",
        "caleb", "ed", "edward2", "grandma", "gustave", "iven", "iven2", "john", "paul", "pedro", "robert",
        "sandro", "steph2", "victor", "zac",
    ),
}
SPLIT_VARIANTS["dev_unseen"], SPLIT_VARIANTS["test_unseen"] = SPLIT_VARIANTS["dev"], SPLIT_VARIANTS["test"]
SPLIT_VARIANTS[TEACHER] = SPLIT_VARIANTS["train"]  # far more speakers of them, and Festival's
# eSpeak parameter ranges a speaker is drawn from (pitch and range 0-100, words per minute,
# amplitude 0-200; above 90 some variants clip).
PITCH, PITCH_RANGE, RATE, AMPLITUDE = (25, 75), (20, 80), (140, 200), (50, 90)
UTTS_PER_SPEAKER = {"train": 6, "dev": 3, "test": 3, UNLABELED: 6, TEACHER: 6, "dev_unseen": 3, "test_unseen": 3,
                    ENGINE: 3}
MEAN_UTT_SECONDS = 3.5  # only sizes the batches sent to the workers
LICENCE = (
    "Sentences come from the Debian fortune collections (packages named in text_source; terms in "
    "/usr/share/doc/<package>/copyright, mostly BSD-style or GPL-2+); audio is synthesized with "
    "eSpeak NG (GPL-3+), Festival and flite (BSD-style; voices: English kal, ked, slt BSD-style, "
    "Italian GPL-2+, Russian BSD-like); test_noisy mixes in lugaru-data ambience (CC-BY-SA-3.0). "
    "For demos and tests; check those terms before redistributing."
)


@dataclass(frozen=True)
class Utterance:
    id: str
    speaker: str
    lang: str
    transcript: str
    seconds: float
    folder: str = ""  # of its wav under wav/; "": the language's

    @property
    def wav(self) -> str:
        return f"{self.folder or self.lang}/{self.id}.wav"


@dataclass(frozen=True)
class SpeakerJob:
    """One speaker's utterances, synthesized in order by one fresh worker process."""

    speaker: str
    voice: espeak.Voice | festival.SynthVoice
    utt_ids: tuple[str, ...]
    sentences: tuple[text.Sentence, ...]
    wav_dir: Path

    def wav(self, utt_id: str) -> Path:
        return self.wav_dir / f"{utt_id}.wav"


def build_corpus(out_dir: str | Path, langs: Sequence[str] = DEFAULT_LANGS, size: str | CorpusSize = "demo",
                 seed: int = 0, num_jobs: int = 2, force: bool = False, argv: list[str] | None = None,
                 unseen_langs: Sequence[str] = DEFAULT_UNSEEN, other_engines: bool = True) -> dict:
    """Synthesize ``out_dir/{train,dev,test}`` (all ``langs`` in each), the untranscribed pool
    ``out_dir/unlabeled``, the teachers' set ``out_dir/teacher_train``, ``out_dir/{dev,test}_unseen``
    (``unseen_langs`` not in ``langs``) and ``out_dir/corpus.json``; splits the size gives no audio
    are left out.

    Returns the summary written to ``corpus.json``. Through the stage protocol: a complete
    corpus of the same languages, size and seed is left as it is (its files keep their
    dates, so `mlkd prepare` on it stays up to date); one made with other settings is
    replaced only with ``force``; an interrupted build leaves the previous corpus intact.
    """
    out_dir = Path(out_dir).absolute()
    langs = list(dict.fromkeys(langs))
    if not langs:
        raise ConfigError(f"no language given; choose from: {' '.join(text.LANGUAGES)}")
    size = corpus_size(size) if isinstance(size, str) else size
    unseen = [lang for lang in dict.fromkeys(unseen_langs) if lang not in langs] if size.unseen_minutes else []
    for lang in langs + unseen:
        text.language(lang)
    if num_jobs < 1:
        raise ConfigError(f"--num-jobs must be at least 1, got {num_jobs}")
    _check_out_dir(out_dir)
    record = new_record("make-corpus", {}, _request(langs, unseen, seed, size, other_engines), argv)
    with Stage(out_dir, record, force=force, intact=lambda: _wavs_present(out_dir)).run() as tmp:
        if tmp is None:
            return json.loads((out_dir / "corpus.json").read_text(encoding="utf-8"))
        held_out = HELD_OUT_VOICES if other_engines else {}
        plan = {lang: [s for s in DRAW_ORDER if size.seconds(s)] + ([ENGINE] if lang in held_out else [])
                for lang in langs}
        plan.update({lang: list(UNSEEN_SPLITS) for lang in unseen})
        sentences = {lang: _shuffled_sentences(lang, seed) for lang in plan}
        utts, version = _synthesize(sentences, plan, size, seed, num_jobs, tmp, other_engines)
        test_noise = noise.write_noise_sets(tmp, tmp / "wav" / "noise", out_dir / "wav" / "noise", seed)
        utts[NOISY], conditions = _noisy_test(utts["test"], test_noise, tmp, seed)
        atomic_write_text(tmp / NOISY / "conditions", "".join(
            f"{c.utterance} {c.room} {c.noise} {c.snr}\n" for c in sorted(conditions)))
        summary = _summary(langs, unseen, seed, size, utts, {lang: len(s) for lang, s in sentences.items()}, version,
                           sorted(test_noise), other_engines)
        for split, split_utts in utts.items():
            _write_data_dir(tmp / split, split_utts, out_dir, transcribed=split != UNLABELED)
        atomic_write_text(tmp / "corpus.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    logger.info("wrote %s", out_dir)
    return summary


def _synthesize(sentences: dict[str, list[text.Sentence]], plan: dict[str, list[str]], size: CorpusSize, seed: int,
                num_jobs: int, tmp: Path, other_engines: bool) -> tuple[dict[str, list[Utterance]], str]:
    """The splits ``plan`` gives each language, wavs under ``tmp/wav``; the utterances and the
    synthesizers' versions. test_engine speaks the test split's sentences, all of them."""
    utts: dict[str, list[Utterance]] = {}
    engine_split = (TEACHER if size.teacher_hours else "train") if other_engines else None
    with _worker_pool(num_jobs) as pool, progress_bar() as progress:
        version = pool.submit(_check_voices, list(sentences), [lang for lang in plan if ENGINE in plan[lang]],
                              other_engines).result()
        for lang, splits in plan.items():
            task = progress.add_task(f"{lang} (s of audio)", total=round(sum(size.seconds(s) for s in splits)))
            position = 0
            spoken: dict[str, list[text.Sentence]] = {}
            for split in splits:
                if split == ENGINE:
                    done, _ = _synthesize_split(pool, 4 * num_jobs, lang, split, spoken["test"], math.inf, seed, tmp,
                                                lambda s: progress.advance(task, s), engine_split)
                else:
                    done, used = _synthesize_split(pool, 4 * num_jobs, lang, split, sentences[lang][position:],
                                                   size.seconds(split), seed, tmp, lambda s: progress.advance(task, s),
                                                   engine_split)
                    spoken[split] = sentences[lang][position:position + used]
                    position += used
                utts.setdefault(split, []).extend(done)
                logger.info("%s %s: %d utterances, %.1f min", lang, split, len(done), _seconds(done) / 60)
    return utts, version


def _noisy_test(test: list[Utterance], test_noise: dict, tmp: Path, seed: int) -> tuple[list[Utterance], list[noise.Condition]]:
    """The test utterances (same ids and transcripts) reverberated with noise_test noise added."""
    from lhotse import Recording

    test = sorted(test, key=lambda u: u.id)
    clean = [Recording.from_file(tmp / "wav" / u.wav, recording_id=u.id).to_cut() for u in test]
    noisy, conditions = noise.noisy_copies(clean, test_noise, seed)
    out = []
    for utt, cut in zip(test, noisy):
        copy = replace(utt, folder=f"{NOISY}/{utt.lang}")
        (tmp / "wav" / copy.wav).parent.mkdir(parents=True, exist_ok=True)
        noise.write_wav(cut, tmp / "wav" / copy.wav)
        out.append(copy)
    return out, conditions


def _check_out_dir(out_dir: Path) -> None:
    if any(c.isspace() for c in str(out_dir)):
        raise ConfigError(f"output path {out_dir} contains whitespace, which wav.scp cannot hold; choose another")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is not a directory; choose another output directory")
    if out_dir.is_dir() and any(not p.name.startswith(".") for p in out_dir.iterdir()) \
            and not (out_dir / "corpus.json").is_file():
        raise ConfigError(f"{out_dir} is not empty and holds no corpus.json; choose a new directory or remove it")


def _request(langs: list[str], unseen: list[str], seed: int, size: CorpusSize, other_engines: bool) -> dict:
    """What a corpus is made from: the first entries of its corpus.json."""
    return {"langs": langs, "unseen_langs": unseen, "seed": seed, "size": size.name, "other_engines": other_engines,
            "target_per_language": {k: v for k, v in asdict(size).items() if k != "name"}}


def _wavs_present(out_dir: Path) -> bool:
    """Every wav that the corpus's wav.scp files name exists."""
    scps = [out_dir / split / "wav.scp" for split in SPLITS]
    scps += [scp for scp in out_dir.glob("*/wav.scp") if scp not in scps]
    return all(scp.is_file() for scp in scps) and all(
        Path(line.split(maxsplit=1)[1]).is_file() for scp in scps for line in scp.read_text().splitlines())


def _shuffled_sentences(lang: str, seed: int) -> list[text.Sentence]:
    sentences = list(text.load_sentences(lang))
    random.Random(f"{seed}:{lang}:sentences").shuffle(sentences)
    logger.info("%s: %d clean sentences", lang, len(sentences))
    return sentences


def _worker_pool(num_jobs: int) -> Executor:
    """Processes forked from a clean server (never from this process), one task each.

    A worker that dies (a crash in the library) fails the build with BrokenProcessPool.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(num_jobs, mp_context=ctx, max_tasks_per_child=1)


def _check_voices(langs: list[str], held_out: list[str], other_engines: bool) -> str:
    """Worker task: fail early unless every voice and variant exists; return the synthesizers' versions."""
    engine = espeak.engine()
    variants = sorted({v for vs in SPLIT_VARIANTS.values() for v in vs})
    for lang in langs:
        for variant in variants:
            engine.check_voice(espeak.Voice(espeak.LANGUAGE_VOICES[lang], variant, 50, 50, 175, 100))
    others = sorted(set(held_out) | (set(langs) & set(TRAIN_ENGINE_VOICES) if other_engines else set()))
    return f"{engine.version}; {festival.check_engines(others)}" if others else engine.version


def _synthesize_speaker(job: SpeakerJob) -> list[int | None]:
    """Worker task: write one speaker's wavs; their lengths in samples (None: Festival or flite
    could not speak the sentence, which is left out)."""
    if isinstance(job.voice, festival.SynthVoice):
        spoken = festival.synthesize_many([sentence.spoken for sentence in job.sentences], job.voice)
    else:
        spoken = [espeak.engine().synthesize(sentence.spoken, job.voice) for sentence in job.sentences]
    lengths: list[int | None] = []
    for utt_id, audio in zip(job.utt_ids, spoken):
        if isinstance(audio, DataError):
            logger.warning("%s; sentence left out", audio)
            lengths.append(None)
            continue
        sf.write(job.wav(utt_id), audio, espeak.SAMPLE_RATE, subtype="PCM_16", format="WAV")
        lengths.append(len(audio))
    return lengths


def _speakers(lang: str, split: str, seed: int,
              engine_split: str | None = "train") -> Iterator[tuple[str, espeak.Voice | festival.SynthVoice]]:
    """Endless distinct speakers of one language and split: eSpeak voices cycling through the
    split's variants, with a share of Festival voices in ``engine_split`` where the language has
    them; test_engine: the language's held-out engine's voices."""
    rng = random.Random(f"{seed}:{lang}:{split}:speakers")
    if split == ENGINE:
        engine, names = HELD_OUT_VOICES[lang]
        for k in itertools.count():
            voice = festival.draw_voice(engine, names[k % len(names)], rng)
            yield f"{lang}-{voice.tag}-{k:03d}", voice  # k: the Russian voice varies in volume only
    variants = list(SPLIT_VARIANTS[split])
    rng.shuffle(variants)
    other = TRAIN_ENGINE_VOICES.get(lang) if split == engine_split else None
    seen = set()
    variant = itertools.cycle(variants)
    for k in itertools.count():
        if other and k % TRAIN_ENGINE_EVERY == 0:
            voice = festival.draw_voice(other[0], other[1][k // TRAIN_ENGINE_EVERY % len(other[1])], rng)
            speaker = f"{lang}-{voice.tag}"
        else:
            voice = espeak.Voice(espeak.LANGUAGE_VOICES[lang], next(variant), rng.randint(*PITCH),
                                 rng.randint(*PITCH_RANGE), rng.randint(*RATE), rng.randint(*AMPLITUDE))
            speaker = (f"{lang}-{voice.variant}p{voice.pitch:02d}r{voice.pitch_range:02d}s{voice.rate:03d}"
                       f"a{voice.volume:03d}")
        if speaker not in seen:
            seen.add(speaker)
            yield speaker, voice


def _synthesize_split(pool: Executor, max_batch: int, lang: str, split: str, sentences: list[text.Sentence],
                      target_seconds: float, seed: int, tmp: Path,
                      advance: Callable[[float], None], engine_split: str | None) -> tuple[list[Utterance], int]:
    """Speak ``sentences`` in order until the split has ``target_seconds`` of audio (``math.inf``:
    all of them); the utterances and how many sentences they used.

    Speakers are synthesized in batches of at most ``max_batch``; utterances past the target
    are deleted, so the result does not depend on the batch size.
    """
    every = math.isinf(target_seconds)
    wav_dir = tmp / "wav" / lang
    wav_dir.mkdir(parents=True, exist_ok=True)
    per_speaker = UTTS_PER_SPEAKER[split]
    speakers = _speakers(lang, split, seed, engine_split)
    done: list[Utterance] = []
    total = 0.0
    start = used = 0
    while total < target_seconds:
        needed = max_batch if every else math.ceil((target_seconds - total) / (MEAN_UTT_SECONDS * per_speaker))
        batch = []
        for _ in range(min(needed, max_batch)):
            if start >= len(sentences):
                break
            speaker, voice = next(speakers)
            chunk = tuple(sentences[start:start + per_speaker])
            ids = tuple(f"{speaker}-{start + i:05d}" for i in range(len(chunk)))
            batch.append(SpeakerJob(speaker, voice, ids, chunk, wav_dir))
            start += len(chunk)
        if not batch and every:
            break
        if not batch:
            raise DataError(f"only {len(sentences)} {lang} sentences left for {split}, too few for "
                            f"{target_seconds / 60:.0f} min of audio; ask for less audio or add fortunes")
        for job, lengths in zip(batch, pool.map(_synthesize_speaker, batch)):
            for utt_id, sentence, length in zip(job.utt_ids, job.sentences, lengths):
                if total >= target_seconds:
                    if length is not None:
                        job.wav(utt_id).unlink()
                    continue
                used = int(utt_id.rsplit("-", 1)[1]) + 1
                if length is None:
                    continue
                seconds = length / espeak.SAMPLE_RATE
                done.append(Utterance(utt_id, job.speaker, lang, sentence.transcript, seconds))
                total += seconds
                advance(seconds)
    return done, used


def _seconds(utts: list[Utterance]) -> float:
    return sum(u.seconds for u in utts)


def _write_data_dir(path: Path, utts: list[Utterance], out_dir: Path, transcribed: bool = True) -> None:
    """Kaldi files sorted in byte order (ids are ASCII), wav paths pointing into ``out_dir``;
    untranscribed: the transcripts go to ``text.withheld`` instead of ``text``."""
    utts = sorted(utts, key=lambda u: u.id)
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(u.speaker, []).append(u.id)
    files = {
        "wav.scp": [f"{u.id} {out_dir / 'wav' / u.wav}" for u in utts],
        "text" if transcribed else WITHHELD_TEXT: [f"{u.id} {u.transcript}" for u in utts],
        "utt2spk": [f"{u.id} {u.speaker}" for u in utts],
        "utt2lang": [f"{u.id} {u.lang}" for u in utts],
        "spk2utt": [f"{spk} {' '.join(ids)}" for spk, ids in sorted(spk2utt.items())],
    }
    for name, lines in files.items():
        atomic_write_text(path / name, "".join(line + "\n" for line in lines))


def _summary(langs: list[str], unseen: list[str], seed: int, size: CorpusSize, utts: dict[str, list[Utterance]],
             available: dict[str, int], version: str, noise_types: list[str], other_engines: bool) -> dict:
    def stats(split: str, lang: str) -> dict:
        mine = [u for u in utts[split] if u.lang == lang]
        return {"utterances": len(mine), "speakers": len({u.speaker for u in mine}),
                "hours": round(_seconds(mine) / 3600, 4)}

    return {
        **_request(langs, unseen, seed, size, other_engines),
        "splits": {split: {lang: stats(split, lang) for lang in (unseen if split in UNSEEN_SPLITS else langs)
                           if any(u.lang == lang for u in utts[split])}
                   for split in utts},
        "speakers": {
            "approach": "held-out variants: dev and test speakers use eSpeak voice variants never used in training; "
                        "the untranscribed pool's speakers variants of their own; the teachers' set more speakers "
                        "of the training variants",
            "variants": {split: list(SPLIT_VARIANTS[split]) for split in utts if split in SPLIT_VARIANTS},
            "pitch": PITCH, "pitch_range": PITCH_RANGE, "words_per_minute": RATE, "amplitude": AMPLITUDE,
            "utterances_per_speaker": UTTS_PER_SPEAKER,
        },
        "sentences_available": available,
        "text_source": {lang: {"dir": str(text.FORTUNE_ROOT / text.LANGUAGES[lang].fortune_dir),
                               "package": text.LANGUAGES[lang].package} for lang in langs + unseen},
        "synthesizer": version,
        "voices": {lang: espeak.LANGUAGE_VOICES[lang] for lang in langs + unseen},
        "engines": {
            TEACHER if size.teacher_hours else "train": {
                lang: f"every {TRAIN_ENGINE_EVERY}th speaker: {engine} {', '.join(names)}"
                for lang, (engine, names) in TRAIN_ENGINE_VOICES.items() if lang in langs and other_engines},
            ENGINE: {lang: f"{engine} {', '.join(names)} (held out of training)"
                     for lang, (engine, names) in HELD_OUT_VOICES.items() if lang in langs and other_engines},
            "prosody": {"stretch": festival.STRETCH, "pitch": festival.PITCH, "volume": festival.VOLUME},
        },
        "sample_rate": espeak.SAMPLE_RATE,
        "noise": {
            "noise": f"training noise: {', '.join(noise.TRAIN_COLOURS)} ({noise.RECORDINGS_PER_TYPE} x "
                     f"{noise.NOISE_SECONDS:.0f} s each)",
            "noise_test": f"test noise types: {', '.join(noise_types)}",
            NOISY: f"test utterances in {noise.TEST_ROOMS} simulated rooms (pyroomacoustics, seed + "
                   f"{noise.TEST_ROOM_SEED}) with noise_test noise at {noise.TEST_SNR[0]:g}-{noise.TEST_SNR[1]:g} dB "
                   "SNR (per utterance: test_noisy/conditions)",
            "ambient": noise.AMBIENT_SOURCE if "ambient" in noise_types else "lugaru-data not installed: none",
        },
        "licence": LICENCE,
    }
