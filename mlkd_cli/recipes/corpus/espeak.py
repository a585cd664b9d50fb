"""In-process eSpeak NG synthesis through ctypes.

The library keeps its state in globals, so there is one engine per process (``engine()``).
That state carries over from one utterance to the next (the same text spoken twice in a
process gives different samples), so reproducible output needs a fresh process for each
fixed sequence of utterances: ``mlkd_cli.recipes.corpus.build`` runs one speaker per worker process.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from mlkd_cli.contracts import SAMPLING_RATE as SAMPLE_RATE
from mlkd_cli.errors import DataError

LIBRARY = "libespeak-ng.so.1"
INSTALL_HINT = "install it: apt-get install espeak-ng"
ESPEAK_RATE = 22050

# eSpeak voice names per ISO 639-1 code.
LANGUAGE_VOICES = {
    "en": "en-us",
    "de": "de",
    "es": "es",
    "it": "it",
    "fr": "fr-fr",
    "ru": "ru",
    "pl": "pl",
    "cs": "cs",
}

# Constants from speak_lib.h (eSpeak NG 1.51).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an eSpeak voice, a variant and prosody settings."""

    language: str  # eSpeak voice name, e.g. "en-us"
    variant: str  # file name in espeak-ng-data/voices/!v, e.g. "m3"
    pitch: int  # base pitch, 0-100 (eSpeak default 50)
    pitch_range: int  # pitch range, 0-100 (default 50)
    rate: int  # words per minute, 80-450 (default 175)
    volume: int  # amplitude, 0-200 (default 100)

    @property
    def name(self) -> str:
        return f"{self.language}+{self.variant}"


class Engine:
    """The process's eSpeak NG instance, synthesizing into memory."""

    def __init__(self) -> None:
        try:
            self._lib = ctypes.CDLL(LIBRARY)
        except OSError:
            raise DataError(f"eSpeak NG library {LIBRARY} not found; {INSTALL_HINT}") from None
        self._declare()
        if self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_DONT_EXIT) != ESPEAK_RATE:
            raise DataError(f"eSpeak NG could not start (its espeak-ng-data is missing or broken); {INSTALL_HINT}")
        self._chunks: list[bytes] = []
        self._callback = _SynthCallback(self._collect)  # kept referenced for the library's lifetime
        self._lib.espeak_SetSynthCallback(self._callback)
        self._voice_name = ""
        data = ctypes.c_char_p()
        self.version = "eSpeak NG " + self._lib.espeak_Info(ctypes.byref(data)).decode()
        self.data_dir = Path(data.value.decode())

    def _declare(self) -> None:
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p

    def _collect(self, wav, num_samples: int, events) -> int:
        if num_samples > 0:
            self._chunks.append(ctypes.string_at(wav, num_samples * 2))
        return 0

    def variants(self) -> list[str]:
        """The voice variant ids this installation has."""
        return sorted(p.name for p in (self.data_dir / "voices" / "!v").iterdir() if p.is_file())

    def check_voice(self, voice: Voice) -> None:
        """Raise DataError unless this installation has the voice and its variant."""
        if voice.variant not in self.variants():  # eSpeak would silently ignore it
            raise DataError(f"eSpeak NG has no voice variant {voice.variant!r} in {self.data_dir}; {INSTALL_HINT}")
        self._set_voice(voice)

    def _set_voice(self, voice: Voice) -> None:
        if voice.name != self._voice_name:
            if self._lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
                raise DataError(f"eSpeak NG has no voice {voice.language!r} in {self.data_dir}; {INSTALL_HINT}")
            self._voice_name = voice.name
        for param, value in ((_RATE, voice.rate), (_VOLUME, voice.volume), (_PITCH, voice.pitch), (_RANGE, voice.pitch_range)):
            self._lib.espeak_SetParameter(param, value, 0)

    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        """Speak ``text`` with ``voice``; 16 kHz int16 samples."""
        self._set_voice(voice)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        if self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != _EE_OK:
            raise DataError(f"eSpeak NG failed to speak {text!r} with voice {voice.name!r}")
        samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16)
        resampled = resample_poly(samples.astype(np.float32), SAMPLE_RATE // 50, ESPEAK_RATE // 50)
        return np.clip(np.rint(resampled), -32768, 32767).astype(np.int16)


@functools.lru_cache(maxsize=None)
def engine() -> Engine:
    """The process-wide eSpeak NG engine, started on first use."""
    return Engine()
