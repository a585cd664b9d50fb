"""Clean sentences from the Debian fortune collections, and transcript normalisation.

A sentence is kept as two strings: the text eSpeak speaks (original punctuation helps its
prosody) and the normalised transcript. Filtering rejects every sentence whose words the
synthesizer would not read as written (digits, acronyms, abbreviations, symbols, foreign
letters), so both strings always say the same words.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from mlkd_cli.errors import ConfigError, DataError

FORTUNE_ROOT = Path("/usr/share/games/fortunes")
MIN_WORDS, MAX_WORDS = 4, 20
LATIN = "abcdefghijklmnopqrstuvwxyz"
# Punctuation eSpeak does not read aloud; any other symbol rejects the sentence.
PUNCTUATION = set(".,;:!?¡¿\"'()[]-–—…«»„“”‘’‚‹›")
ATTRIBUTION = re.compile(r"^\s*(--|―|—)")
SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'»”’)]))\s+")
INNER_PERIOD = re.compile(r"(?<!\.)\.(?!\.)\s*\S")  # a lone "." with text after it: an abbreviation
# Punctuation eSpeak reads aloud: at the start, or glued to what follows ("a:b" is "a colon b").
SPOKEN_PUNCTUATION = re.compile(r"^\s*[:;,.!?]|[!?,][^\s\"'»”“’)\]…!?.,]|\.[^\W\d_]|[:;]\S")
URL = re.compile(r"https?:|www\.|@", re.IGNORECASE)


@dataclass(frozen=True)
class Language:
    """What makes a sentence speakable in one language, and where its text comes from."""

    alphabet: str  # lower-case letters a transcript may contain
    single_letter_words: str  # one-letter words; any other lone letter is spelled out by eSpeak
    abbreviations: frozenset[str]  # eSpeak expands these (with or without a period); not words
    fortune_dir: str  # under FORTUNE_ROOT
    package: str  # Debian package that installs the fortunes
    legacy_encoding: str  # for files that are not UTF-8
    apostrophes: bool = False  # intra-word apostrophes are part of words ("don't", "l'uomo")
    fold: tuple[tuple[str, str], ...] = ()  # letter mappings applied by normalize()
    exclude: tuple[str, ...] = ()  # fortune files that are not prose


def _abbr(words: str) -> frozenset[str]:
    return frozenset(words.split())


LANGUAGES: dict[str, Language] = {
    "en": Language(LATIN, "ai", _abbr("mr mrs ms dr st jr sr prof sgt capt lt vs etc inc ltd"),
                   "", "fortunes", "latin-1", apostrophes=True, exclude=("ascii-art",)),
    "de": Language(LATIN + "äöüß", "", _abbr("dr prof nr hr fr bzw usw ca evtl ggf vgl"),
                   "de", "fortunes-de", "latin-1"),
    "es": Language(LATIN + "áéíóúüñ", "aeouy", _abbr("sr sra srta dr dra ud uds etc pág"),
                   "es", "fortunes-es", "latin-1"),
    "it": Language(LATIN + "àèéìíîòóùú", "aeioè", _abbr("sig sigg dott ecc ing avv"),
                   "it", "fortunes-it", "latin-1", apostrophes=True),
    "fr": Language(LATIN + "àâæçéèêëîïôœùûüÿ", "aày", _abbr("m mme mlle dr etc"),
                   "fr", "fortunes-fr", "latin-1", apostrophes=True),
    # ё is folded into е: Russian text mostly writes е for both, so transcripts stay consistent.
    "ru": Language("абвгдежзийклмнопрстуфхцчшщъыьэюя", "авиксуяож",
                   _abbr("ул св гр тов проф акад др пр см стр тыс млн руб коп"),
                   "ru", "fortunes-ru", "koi8-r", fold=(("ё", "е"),)),
    "pl": Language(LATIN + "ąćęłńóśźż", "aiouwz", _abbr("np itd itp tzn tj dr prof ul św ks"),
                   "pl", "fortunes-pl", "iso-8859-2"),
    "cs": Language(LATIN + "áčďéěíňóřšťúůýž", "aikosuvz", _abbr("např tzv atd apod resp tj dr prof ing sv mj"),
                   "cs", "fortunes-cs", "iso-8859-2"),
}


class Sentence(NamedTuple):
    spoken: str  # what eSpeak reads
    transcript: str  # normalize(spoken)


def language(lang: str) -> Language:
    if lang not in LANGUAGES:
        raise ConfigError(f"unsupported language {lang!r}; choose from: {' '.join(LANGUAGES)}")
    return LANGUAGES[lang]


def normalize(text: str, lang: str) -> str:
    """Lower-case, drop punctuation, keep the language's letters (and word-internal apostrophes)."""
    spec = language(lang)
    text = unicodedata.normalize("NFC", text).lower().replace("’", "'")
    for src, dst in spec.fold:
        text = text.replace(src, dst)
    kept = "".join(c if c in spec.alphabet or c == "'" else " " for c in text)
    words = (w.strip("'") for w in kept.split())
    if not spec.apostrophes:
        words = (part for w in words for part in w.split("'"))
    return " ".join(w for w in words if w)


def fix_italian_accents(text: str) -> str:
    """Old ASCII Italian writes "perche'" and "e'" for "perché" and "è"; restore the accents."""

    def accent(m: re.Match) -> str:
        word, vowel = m.group(1), m.group(2)
        if word.lower() == "p" and vowel == "o":  # "po'" is a true apostrophe
            return m.group(0)
        acute = vowel.lower() == "e" and re.search(r"(ch|^n|^s)$", word, re.IGNORECASE)
        mark = "\u0301" if acute else "\u0300"
        return unicodedata.normalize("NFC", word + vowel + mark)

    return re.sub(r"\b(\w*?)([aeiouAEIOU])'(?!\w)", accent, text)


def split_sentences(entry: str, lang: str) -> list[str]:
    """Sentences of one fortune entry, without attribution lines; pieces cut at an abbreviation are merged."""
    text = " ".join(_content_lines(entry.splitlines()))
    pieces = [p for p in SENTENCE_END.split(text) if p]
    abbreviations = language(lang).abbreviations
    sentences: list[str] = []
    for piece in pieces:
        if sentences and _ends_with_abbreviation(sentences[-1], abbreviations):
            sentences[-1] += " " + piece
        else:
            sentences.append(piece)
    return [" ".join(s.split()) for s in sentences]


def _ends_with_abbreviation(sentence: str, abbreviations: frozenset[str]) -> bool:
    m = re.search(r"(\w+)\.$", sentence)
    return bool(m) and (len(m.group(1)) == 1 or m.group(1).lower() in abbreviations)


def _content_lines(lines: list[str]) -> list[str]:
    """Drop attribution lines ("-- Author" and everything after), and a lone author line at the end."""
    for i, line in enumerate(lines):
        if ATTRIBUTION.match(line):
            lines = lines[:i]
            break
    lines = [line for line in lines if line.strip()]
    if len(lines) > 1 and _is_author_line(lines[-1], lines[-2]):
        lines = lines[:-1]
    return lines


def _is_author_line(line: str, previous: str) -> bool:
    words = line.split()
    if len(words) > 6 or line.rstrip().endswith(tuple(".!?:;,\"»…")):
        return False
    capitalized = all(w[:1].isupper() for w in words) and previous.rstrip().endswith(tuple(".!?\"»…"))
    return line.startswith(("\t", "    ")) or capitalized


def clean_sentence(sentence: str, lang: str) -> Sentence | None:
    """The sentence to speak and its transcript, or None if eSpeak would not read it as written."""
    spec = language(lang)
    spoken = unicodedata.normalize("NFC", sentence).replace("`", "'").replace("’", "'")
    if lang == "it":
        spoken = fix_italian_accents(spoken)
    first_letter = re.search(r"[^\W\d_]", spoken)
    if not first_letter or not first_letter.group().isupper() or _unspeakable(spoken, spec):
        return None  # a fragment, or words eSpeak would not read as written
    transcript = normalize(spoken, lang)
    words = transcript.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    if not spec.apostrophes and "'" in re.sub(r"(?<!\w)'|'(?!\w)", "", spoken):
        return None
    if any(len(w) == 1 and w not in spec.single_letter_words or w in spec.abbreviations for w in words):
        return None
    return Sentence(spoken, transcript)


def _unspeakable(text: str, spec: Language) -> bool:
    folded = text.lower()
    for src, dst in spec.fold:
        folded = folded.replace(src, dst)
    if any(not (c in spec.alphabet or c.isspace() or c in PUNCTUATION) for c in folded):
        return True  # digits, symbols, letters of another alphabet
    if URL.search(text) or SPOKEN_PUNCTUATION.search(text) or INNER_PERIOD.search(text):
        return True
    # Capitals inside a word: acronyms and roman numerals are spelled out, "McDonald" is two words.
    return any(c.isupper() for w in re.findall(r"[^\W\d_]+", text) for c in w[1:])


def fortune_files(lang: str, root: Path = FORTUNE_ROOT) -> list[Path]:
    """The language's fortune text files: UTF-8 ``.u8`` variants where present and non-empty, no links out."""
    spec = language(lang)
    directory = root / spec.fortune_dir
    if not directory.is_dir():
        raise DataError(f"no {lang} fortunes in {directory}; install them: apt-get install {spec.package}")
    files = []
    for path in sorted(directory.iterdir()):
        if path.suffix in (".dat", ".u8") or path.name in spec.exclude or not path.is_file():
            continue
        if path.resolve().parent != directory.resolve():
            continue  # e.g. the Italian collections linked into the English directory
        u8 = path.with_name(path.name + ".u8")
        files.append(u8 if u8.is_file() and u8.stat().st_size else path)
    if not files:
        raise DataError(f"no {lang} fortunes in {directory}; install them: apt-get install {spec.package}")
    return files


def read_entries(path: Path, legacy_encoding: str) -> list[str]:
    """Entries of a fortune file (separated by lines holding a single ``%``).

    A file is UTF-8 unless over 1% of its characters fail to decode, which marks an old
    8-bit file; a stray bad byte only costs its sentence (U+FFFD is in no alphabet).
    """
    data = path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    if text.count("\ufffd") > len(text) // 100:
        text = data.decode(legacy_encoding)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [e for e in re.split(r"^%\s*$", text, flags=re.MULTILINE) if e.strip()]


@functools.lru_cache(maxsize=None)
def load_sentences(lang: str, root: Path = FORTUNE_ROOT) -> tuple[Sentence, ...]:
    """Every clean sentence of a language, in file order, unique by transcript."""
    spec = language(lang)
    seen: set[str] = set()
    sentences = []
    for path in fortune_files(lang, root):
        for entry in read_entries(path, spec.legacy_encoding):
            for raw in split_sentences(entry, lang):
                sentence = clean_sentence(raw, lang)
                if sentence and sentence.transcript not in seen:
                    seen.add(sentence.transcript)
                    sentences.append(sentence)
    return tuple(sentences)
