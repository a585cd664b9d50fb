"""Transcript normalisation for corpora written with case and punctuation (CommonVoice, FLEURS raw text).

Written here because none of the libraries mlkd uses normalises text for any language:
lhotse's normalisers are per corpus, and an English-centred one (Whisper's) would rewrite
other languages' words. This one only folds case and removes punctuation and symbols, which
every script-based language shares; numbers are kept as they are (spelling them out needs a
language-specific verbaliser).
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})


def _is_punctuation_or_symbol(char: str) -> bool:
    return char != "'" and unicodedata.category(char)[0] in "PS"


def normalize_transcript(text: str) -> str:
    """``"Don’t stop — it's “fine”!"`` → ``"don't stop it's fine"``.

    NFC, lower case, punctuation and symbols (Unicode P* and S*) become spaces, an
    apostrophe survives only inside a word (``l'uomo``, ``don't``), whitespace collapses.
    """
    text = unicodedata.normalize("NFC", text).lower().translate(_APOSTROPHES)
    text = "".join(" " if _is_punctuation_or_symbol(c) else c for c in text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())
