"""Festival and flite synthesis through their command-line programs (Debian main voices).

Every call runs one fresh process in its own temporary directory, with the text in a file
and a Scheme snippet or flags for the voice and its prosody, so the audio depends only on
(text, voice): byte-identical across calls and processes. ``synthesize_many`` speaks a
speaker's sentences in one Festival process (as text2wave would, one after the other, each
with its own seed): the same bytes without a start-up per sentence. The voices' own output
gains are replaced by one level, ``TARGET_RMS`` times the voice's volume: the packaged gains
range over a factor of seven and some clip. Not every voice can change its pitch or speed
(``VoiceInfo``); Festival's HTS back end reads only the speed from its parameters and the
Russian voice concatenates recorded units without prosody modification.
"""

from __future__ import annotations

import functools
import os
import random
import re
import shutil
import subprocess
import tempfile
import unicodedata
import zlib
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from mlkd_cli.contracts import SAMPLING_RATE as SAMPLE_RATE
from mlkd_cli.errors import DataError

TARGET_RMS = 2500.0  # int16 RMS at volume 1.0, about eSpeak's level at amplitude 90
MIN_RMS = 30.0  # raw int16 RMS below which an utterance counts as silent
TIMEOUT = 300  # seconds; a hung synthesizer must not hang the corpus build
FESTIVAL, FLITE = "festival", "flite"
PROGRAMS = {FESTIVAL: "text2wave", FLITE: "flite"}
# Ranges a speaker's prosody is drawn from (factors; volume scales TARGET_RMS).
STRETCH, PITCH, VOLUME = (0.85, 1.2), (0.85, 1.2), (0.5, 1.0)


@dataclass(frozen=True)
class VoiceInfo:
    """What one installed voice speaks, needs and can vary."""

    language: str  # ISO 639-1 code
    package: str  # Debian package that installs it
    encoding: str  # what its text analysis reads; UTF-8 bytes would be spoken as garbage
    model: str  # "diphone", "hts", "clunits" (Festival) or "clustergen", "diphone" (flite)
    pitch: bool  # whether its F0 follows SynthVoice.pitch
    stretch: bool = True  # whether its durations follow SynthVoice.stretch
    base_stretch: float = 1.0  # flite's own duration_stretch, which --setf replaces
    # Festival: a sentence sounds the same after others in one process (the Czech voices' pauses
    # depend on what they spoke before, whatever the seed), so synthesize_many may batch it
    batches: bool = True


VOICES: dict[tuple[str, str], VoiceInfo] = {
    (FESTIVAL, "kal_diphone"): VoiceInfo("en", "festvox-kallpc16k", "ascii", "diphone", pitch=True),
    (FESTIVAL, "ked_diphone"): VoiceInfo("en", "festvox-kdlpc16k", "ascii", "diphone", pitch=True),
    (FESTIVAL, "cmu_us_slt_arctic_hts"): VoiceInfo("en", "festvox-us-slt-hts", "ascii", "hts", pitch=False),
    (FLITE, "kal"): VoiceInfo("en", "flite", "ascii", "diphone", pitch=True, base_stretch=1.1),
    (FLITE, "kal16"): VoiceInfo("en", "flite", "ascii", "diphone", pitch=True, base_stretch=1.1),
    (FLITE, "awb"): VoiceInfo("en", "flite", "ascii", "clustergen", pitch=True),
    (FLITE, "rms"): VoiceInfo("en", "flite", "ascii", "clustergen", pitch=False),
    (FLITE, "slt"): VoiceInfo("en", "flite", "ascii", "clustergen", pitch=True),
    (FESTIVAL, "pc_diphone"): VoiceInfo("it", "festvox-itapc16k", "latin-1", "diphone", pitch=True),
    (FESTIVAL, "lp_diphone"): VoiceInfo("it", "festvox-italp16k", "latin-1", "diphone", pitch=True),
    (FESTIVAL, "msu_ru_nsh_clunits"): VoiceInfo("ru", "festvox-ru", "utf-8", "clunits", pitch=False,
                                                stretch=False),
    (FESTIVAL, "czech_dita"): VoiceInfo("cs", "festvox-czech-dita", "iso-8859-2", "diphone", pitch=True,
                                       batches=False),
    (FESTIVAL, "czech_krb"): VoiceInfo("cs", "festvox-czech-krb", "iso-8859-2", "diphone", pitch=True,
                                       batches=False),
    (FESTIVAL, "czech_machac"): VoiceInfo("cs", "festvox-czech-machac", "iso-8859-2", "diphone", pitch=True,
                                       batches=False),
    (FESTIVAL, "czech_ph"): VoiceInfo("cs", "festvox-czech-ph", "iso-8859-2", "diphone", pitch=True,
                                       batches=False),
}


def _engine_voices() -> dict[str, dict[str, tuple[str, ...]]]:
    table: dict[str, dict[str, tuple[str, ...]]] = {}
    for (engine, name), info in VOICES.items():
        voices = table.setdefault(info.language, {})
        voices[engine] = voices.get(engine, ()) + (name,)
    return table


ENGINE_VOICES: dict[str, dict[str, tuple[str, ...]]] = _engine_voices()  # language -> engine -> voice names
# language -> Debian packages its voices need
PACKAGES: dict[str, tuple[str, ...]] = {
    lang: tuple(sorted({p for (e, _), i in VOICES.items() if i.language == lang for p in (e, i.package)}))
    for lang in ENGINE_VOICES
}

# Typographic punctuation in ASCII: the Russian voice segfaults on «, and reads – as a word.
_ASCII_PUNCTUATION = str.maketrans({
    **dict.fromkeys("«»„“”‟", '"'), **dict.fromkeys("‘’‚‛‹›", "'"),
    **dict.fromkeys("‐‑–—―", "-"), "…": "...", "¡": "", "¿": "", "\u00a0": " ",
})
_KEPT_PUNCTUATION = set(".,;:!?'\"()-")
_MISSING_DIPHONE = re.compile(r"^UniSyn: using default diphone \S+ for \S+\n?", re.MULTILINE)

# Evaluated after the voice is selected. Its own gain (kal x2.6, Czech x1.8) would clip, so it
# goes (_level sets the level); the hook scales every F0 target, which all diphone voices
# follow, where their own F0 settings are scattered over per-voice variables.
_FESTIVAL_SETUP = """\
(set! after_synth_hooks nil)
(define (mlkd_scale_f0 utt)
  (mapcar (lambda (target) (item.set_feat target 'f0 (* {pitch} (item.feat target 'f0))))
          (utt.relation.items utt 'Target))
  utt)
(set! after_analysis_hooks
      (cond ((null after_analysis_hooks) (list mlkd_scale_f0))
            ((consp after_analysis_hooks) (append after_analysis_hooks (list mlkd_scale_f0)))
            (t (list after_analysis_hooks mlkd_scale_f0))))
"""


@dataclass(frozen=True)
class SynthVoice:
    """One synthetic speaker: a Festival or flite voice and its prosody factors."""

    engine: str  # FESTIVAL or FLITE
    voice: str  # the engine's voice name, e.g. "kal_diphone"
    stretch: float = 1.0  # duration factor, > 1 is slower
    pitch: float = 1.0  # F0 factor
    volume: float = 1.0  # linear gain on TARGET_RMS

    def __post_init__(self) -> None:
        info = VOICES.get((self.engine, self.voice))
        if info is None:
            raise ValueError(f"unknown {self.engine} voice {self.voice!r}")
        if min(self.stretch, self.pitch, self.volume) <= 0:
            raise ValueError(f"prosody factors must be positive: {self}")
        if (self.pitch != 1 and not info.pitch) or (self.stretch != 1 and not info.stretch):
            raise ValueError(f"{self.name} cannot change its {'pitch' if self.pitch != 1 else 'speed'}")

    @property
    def info(self) -> VoiceInfo:
        return VOICES[(self.engine, self.voice)]

    @property
    def name(self) -> str:
        """Engine and voice, e.g. ``festival.kal_diphone``."""
        return f"{self.engine}.{self.voice}"

    @property
    def tag(self) -> str:
        """ASCII speaker id part: name and prosody in hundredths, e.g. ``flite.slt.s105p092v070``."""
        s, p, v = (round(x * 100) for x in (self.stretch, self.pitch, self.volume))
        return f"{self.name}.s{s:03d}p{p:03d}v{v:03d}"


def draw_voice(engine: str, voice: str, rng: random.Random) -> SynthVoice:
    """A speaker of ``voice``, prosody drawn from STRETCH, PITCH and VOLUME (to 0.01; 1.0 where fixed)."""
    info = VOICES[(engine, voice)]
    # Always three draws, so a voice's capabilities do not shift later speakers' draws.
    stretch, pitch, volume = (round(rng.uniform(*r), 2) for r in (STRETCH, PITCH, VOLUME))
    return SynthVoice(engine, voice, stretch if info.stretch else 1.0, pitch if info.pitch else 1.0, volume)


def synthesize(text: str, voice: SynthVoice) -> np.ndarray:
    """Speak ``text`` with ``voice``; 16 kHz int16 samples."""
    data = _speakable(text, voice)
    with tempfile.TemporaryDirectory(prefix="mlkd-festival-") as tmp:
        work = Path(tmp)
        (work / "utt.txt").write_bytes(data)
        command = _festival_command(voice, data, work) if voice.engine == FESTIVAL else _flite_command(voice)
        try:
            # HOME: no ~/.festivalrc may change the voice.
            run = subprocess.run(command, cwd=work, env={**os.environ, "HOME": tmp}, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT)
        except FileNotFoundError:
            raise DataError(f"{command[0]} not found; install it: apt-get install {voice.engine}") from None
        except subprocess.TimeoutExpired:
            raise DataError(f"{voice.name} took over {TIMEOUT} s to speak {text!r}") from None
        # Both programs exit 0 after most errors (Festival prints "SIOD ERROR", "LTS_Ruleset: no
        # rule matches" for letters it skips), so any output is a failure, but for a diphone the
        # Czech voices lack: it becomes a short pause.
        message = _MISSING_DIPHONE.sub("", run.stdout.decode("utf-8", "replace")).strip()
        if run.returncode or message or not (work / "utt.wav").is_file():
            detail = message.splitlines()[0] if message else f"exit status {run.returncode}"
            raise DataError(f"{voice.name} failed to speak {text!r}: {detail}"
                            f" (voice in Debian package {voice.info.package})")
        samples, rate = sf.read(work / "utt.wav", dtype="int16")
    return _level(samples, rate, text, voice)


def synthesize_many(texts: Sequence[str], voice: SynthVoice) -> list[np.ndarray | DataError]:
    """``synthesize`` of each text, or the DataError it raises: the same audio.

    A Festival voice speaks them all in one process: its start-up (about a quarter of a second
    of CPU) is most of the cost of a short sentence. Each sentence gets text2wave's treatment
    (``tts_file``, the utterances' waves joined in one RIFF file) and its own seed, so the bytes
    equal text2wave's (tested). A sentence the batch did not speak cleanly (any message in its
    part of the output, no file) is spoken again alone, which gives its error. flite starts in
    milliseconds, and a voice that remembers earlier sentences (``VoiceInfo.batches``) would
    change: they speak each sentence alone.
    """
    if voice.engine != FESTIVAL or not voice.info.batches or len(texts) < 2:
        return [_or_error(text, voice) for text in texts]
    spoken: dict[int, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="mlkd-festival-") as tmp:
        work = Path(tmp)
        script = [_festival_voice(voice), _BATCH_SAY]
        for i, text in enumerate(texts):
            try:
                data = _speakable(text, voice)
            except DataError:
                continue
            (work / f"{i}.txt").write_bytes(data)
            script.append(f'(format stderr "{_BATCH_MARK} {i}\\n")\n'
                          f'(mlkd_say {zlib.crc32(data) % 2**31} "{i}.txt" "{i}.wav")\n')
        (work / "batch.scm").write_text("".join(script), encoding="ascii")
        try:
            run = subprocess.run(["festival", "-b", "batch.scm"], cwd=work,
                                 env={**os.environ, "HOME": tmp}, stdin=subprocess.DEVNULL, capture_output=True,
                                 timeout=TIMEOUT + 10 * len(texts))
        except (FileNotFoundError, subprocess.TimeoutExpired):
            run = None
        if run is not None and not run.stdout.strip():
            for i, message in _batch_parts(run.stderr.decode("utf-8", "replace")).items():
                wav = work / f"{i}.wav"
                if not message and wav.is_file():
                    samples, rate = sf.read(wav, dtype="int16")
                    try:
                        spoken[i] = _level(samples, rate, texts[i], voice)
                    except DataError:
                        pass
    return [spoken[i] if i in spoken else _or_error(text, voice) for i, text in enumerate(texts)]


_BATCH_MARK = "mlkd-sentence"
# text2wave's main loop for one sentence: tts_file through its hooks, the waves joined into one
# RIFF file whose header is written last (volume 1, no resampling: text2wave's defaults).
_BATCH_SAY = """\
(define (mlkd_save utt)
  (if (eq? mlkd_samples 0)
      (wave.save.header mlkd_fp (utt.wave utt) 'riff nil (list (list "numsamples" 0))))
  (set! mlkd_samples (+ mlkd_samples (get_param 'num_samples (wave.info (utt.wave utt)) 0)))
  (wave.save.data.fp (utt.wave utt) mlkd_fp 'riff nil)
  (set! mlkd_last utt))
(set! tts_hooks (list utt.synth mlkd_save))
(define (mlkd_say seed text wav)
  (srand seed)
  (set! mlkd_fp (fopen wav "wb"))
  (set! mlkd_samples 0)
  (tts_file text (tts_find_text_mode text auto-text-mode-alist))
  (fseek mlkd_fp 0 0)
  (wave.save.header mlkd_fp (utt.wave mlkd_last) 'riff nil (list (list "numsamples" mlkd_samples)))
  (fclose mlkd_fp))
"""


def _batch_parts(output: str) -> dict[int, str]:
    """Festival's stderr of a batch, by sentence: what it printed while speaking each (missing
    diphones, which become pauses, left out)."""
    parts: dict[int, str] = {}
    current = None
    for line in output.splitlines(keepends=True):
        if line.startswith(_BATCH_MARK + " "):
            current = int(line.split()[1])
            parts[current] = ""
        elif current is not None:
            parts[current] += line
    return {i: _MISSING_DIPHONE.sub("", text).strip() for i, text in parts.items()}


def _or_error(text: str, voice: SynthVoice) -> np.ndarray | DataError:
    try:
        return synthesize(text, voice)
    except DataError as e:
        return e


def _speakable(text: str, voice: SynthVoice) -> bytes:
    """``text`` in the voice's encoding; a DataError if nothing in it can be spoken."""
    data = encode_text(text, voice.info.encoding)
    if not re.search(r"[^\W\d_]", data.decode(voice.info.encoding)):
        raise DataError(f"{voice.name} has nothing to speak in {text!r}")
    return data


def encode_text(text: str, encoding: str) -> bytes:
    """``text`` in ``encoding``, with typographic punctuation in ASCII.

    A letter the encoding lacks loses its accents (é -> e in ASCII) or, failing that, becomes
    a space, like any symbol but plain punctuation: voices crash or spell out what they do not
    know. Combining marks (Russian stress accents) are dropped.
    """
    out = []
    for char in unicodedata.normalize("NFC", text).translate(_ASCII_PUNCTUATION):
        if unicodedata.combining(char):
            continue
        if not (char.isalnum() or char.isspace() or char in _KEPT_PUNCTUATION):
            char = " "
        try:
            out.append(char.encode(encoding))
        except UnicodeEncodeError:
            base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
            out.append(base.encode(encoding, errors="ignore") or b" ")
    return b"".join(out)


def _festival_command(voice: SynthVoice, data: bytes, work: Path) -> list[str]:
    # the seed makes the Czech voices' random pause lengths depend on the text alone
    setup = _festival_voice(voice) + f"(srand {zlib.crc32(data) % 2**31})\n"
    (work / "setup.scm").write_text(setup, encoding="ascii")
    return [PROGRAMS[FESTIVAL], "-eval", "setup.scm", "-o", "utt.wav", "utt.txt"]


def _festival_voice(voice: SynthVoice) -> str:
    """Scheme that selects the voice and sets its prosody."""
    setup = f"(voice_{voice.voice})\n" + _FESTIVAL_SETUP.format(pitch=f"{voice.pitch:.4f}")
    if voice.info.model == "hts":  # HTS keeps its own durations; it reads a speed, "-r"
        setup += f'(set! hts_engine_params (cons (list "-r" {1 / voice.stretch:.6f}) hts_engine_params))\n'
    else:
        setup += f"(Parameter.set 'Duration_Stretch (* {voice.stretch:.4f} (Parameter.get 'Duration_Stretch)))\n"
    return setup


def _flite_command(voice: SynthVoice) -> list[str]:
    # flite silently falls back to its default voice for a name it lacks.
    if voice.voice not in installed_voices(FLITE):
        raise DataError(f"flite has no voice {voice.voice!r}; install it: apt-get install flite")
    stretch = voice.info.base_stretch * voice.stretch
    return [PROGRAMS[FLITE], "-voice", voice.voice, "--setf", f"duration_stretch={stretch:.4f}",
            "--setf", f"f0_shift={voice.pitch:.4f}", "-f", "utt.txt", "-o", "utt.wav"]


def _level(samples: np.ndarray, rate: int, text: str, voice: SynthVoice) -> np.ndarray:
    """Resample to 16 kHz, scale to TARGET_RMS times the volume and round to int16."""
    audio = samples.astype(np.float64)
    if rate != SAMPLE_RATE:
        g = gcd(rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g)
    rms = float(np.sqrt(np.mean(audio ** 2))) if audio.size else 0.0
    if rms < MIN_RMS:
        raise DataError(f"{voice.name} spoke {text!r} as silence (RMS {rms:.1f})")
    audio *= TARGET_RMS * voice.volume / rms
    return np.clip(np.rint(audio), -32768, 32767).astype(np.int16)


@functools.lru_cache(maxsize=None)
def installed_voices(engine: str) -> frozenset[str]:
    """The voice names ``engine`` has here (empty if its program is missing)."""
    if shutil.which(PROGRAMS[engine]) is None:
        return frozenset()
    command = ["festival", "-b", "(print (voice.list))"] if engine == FESTIVAL else ["flite", "-lv"]
    listing = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT).stdout
    return frozenset(re.findall(r"[\w-]+", listing.split(":")[-1]))  # flite: "Voices available: ..."


def check_engines(langs: Iterable[str]) -> str:
    """Raise DataError unless every voice of ``langs`` is installed; the engines' versions.

    Languages without voices here need nothing.
    """
    langs = set(langs)
    needed = {key: info for key, info in VOICES.items() if info.language in langs}
    engines = sorted({engine for engine, _ in needed})
    installed = {engine: installed_voices(engine) for engine in engines}
    missing = set()
    for (engine, name), info in needed.items():
        if not installed[engine]:  # the program itself is missing
            missing.add(engine)
        if name not in installed[engine]:
            missing.add(info.package)
    if missing:
        packages = " ".join(sorted(missing))
        raise DataError(f"Festival/flite voices are missing (Debian packages {packages}); "
                        f"install them: apt-get install {packages}")
    return ", ".join(_version(engine) for engine in engines)


def _version(engine: str) -> str:
    run = subprocess.run([engine, "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    found = re.search(r"(?:System: |flite-)([\d.]+)", run.stdout + run.stderr)
    return f"{'Festival' if engine == FESTIVAL else 'flite'} {found.group(1) if found else 'unknown version'}"
