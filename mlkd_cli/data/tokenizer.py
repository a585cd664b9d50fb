"""One multilingual SentencePiece tokenizer over all training text.

Layout of a tokenizer directory (``data/lang_<type><size>``):
  tokenizer.model      the SentencePiece model
  tokens.txt           ``symbol id`` per line, every id 0..V-1, blank ``<blk>`` = 0
  tokens.<lang>.txt    the subset of tokens that language's training text uses
  train_text.txt       the language-balanced text the model was trained on
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from mlkd_cli.contracts import BLANK, BLANK_ID, TOKENS_FILE, read_token_table, write_tokens
from mlkd_cli.errors import ConfigError, DataError

logger = logging.getLogger("mlkd")

UNK = "<unk>"
MODEL_FILE = "tokenizer.model"
TOKENIZER_TYPES = ("bpe", "unigram", "char")


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    type: str = "bpe"
    vocab_size: int = 500

    def __post_init__(self) -> None:
        if self.type not in TOKENIZER_TYPES:
            raise ConfigError(f"tokenizer type {self.type!r} is not one of {', '.join(TOKENIZER_TYPES)}")
        if self.type != "char" and self.vocab_size < 8:
            raise ConfigError(f"tokenizer vocab_size {self.vocab_size} is too small; use at least 8")

    @property
    def dir_name(self) -> str:
        return "lang_char" if self.type == "char" else f"lang_{self.type}{self.vocab_size}"


def balanced_text(texts_by_lang: dict[str, list[str]]) -> list[str]:
    """Repeat each language's sentences so that every language brings about as many characters.

    Without balancing, the largest language takes most of the merges and the others are
    split into characters.
    """
    chars = {lang: sum(len(t) for t in texts) for lang, texts in texts_by_lang.items()}
    most = max(chars.values())
    lines = []
    for lang, texts in sorted(texts_by_lang.items()):
        lines.extend(texts * max(1, round(most / max(chars[lang], 1))))
    return lines


def train_tokenizer(texts_by_lang: dict[str, list[str]], out_dir: Path, config: TokenizerConfig) -> Path:
    """Train the SentencePiece model in ``out_dir`` and write its token tables."""
    import sentencepiece as spm

    empty = sorted(lang for lang, texts in texts_by_lang.items() if not texts)
    if not texts_by_lang or empty:
        raise DataError(f"no training text for language(s) {', '.join(empty) or '(none)'}: the tokenizer needs some")
    out_dir.mkdir(parents=True, exist_ok=True)
    text_file = out_dir / "train_text.txt"
    text_file.write_text("\n".join(balanced_text(texts_by_lang)) + "\n", encoding="utf-8")
    num_chars = len({c for texts in texts_by_lang.values() for t in texts for c in t if not c.isspace()})
    vocab_size = num_chars + 3 if config.type == "char" else config.vocab_size  # + <blk> <unk> ▁
    try:
        spm.SentencePieceTrainer.train(
            input=str(text_file),
            model_prefix=str(out_dir / "tokenizer"),
            model_type=config.type,
            vocab_size=vocab_size,
            character_coverage=1.0,  # every character of every language (CJK included)
            user_defined_symbols=[BLANK],
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            input_sentence_size=10_000_000,
            shuffle_input_sentence=True,
            hard_vocab_limit=False,
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise DataError(f"{text_file}: SentencePiece training failed ({e}); try a smaller --vocab-size") from None
    tokenizer = Tokenizer(out_dir)
    if tokenizer.vocab_size < vocab_size:
        logger.warning("tokenizer: the training text supports only %d of the %d tokens asked for", tokenizer.vocab_size, vocab_size)
    write_tokens([tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)], out_dir / TOKENS_FILE)
    for lang, texts in texts_by_lang.items():
        used = {BLANK_ID} | {i for t in texts for i in tokenizer.encode(t)}
        write_tokens({i: tokenizer.id_to_piece(i) for i in used}, out_dir / f"tokens.{lang}.txt")
    return out_dir


class Tokenizer:
    """Text ↔ token ids with the blank at id 0, loaded from a tokenizer directory."""

    blank_id = BLANK_ID

    def __init__(self, lang_dir: str | Path):
        import sentencepiece as spm

        self.lang_dir = Path(lang_dir)
        model = self.lang_dir / MODEL_FILE
        if not model.is_file():
            raise DataError(f"{model}: tokenizer model not found; create it with `mlkd prepare`")
        self._sp = spm.SentencePieceProcessor(model_file=str(model))
        if self._sp.id_to_piece(BLANK_ID) != BLANK:
            raise DataError(f"{model}: token {BLANK_ID} is {self._sp.id_to_piece(BLANK_ID)!r}, not {BLANK}; "
                            "rebuild it with `mlkd prepare`")

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode([i for i in ids if i != self.blank_id])

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(i)

    def language_tokens(self, lang: str) -> list[int]:
        """Token ids that ``lang``'s training text uses (always including the blank)."""
        path = self.lang_dir / f"tokens.{lang}.txt"
        if not path.is_file():
            known = sorted(p.name[len("tokens.") : -len(".txt")] for p in self.lang_dir.glob("tokens.*.txt"))
            raise DataError(f"{path}: no token inventory for language {lang!r}; known languages: {', '.join(known)}")
        return sorted(read_token_table(path))

    @staticmethod
    def unk_ratio(ids: list[int]) -> float:
        return sum(i == 1 for i in ids) / max(len(ids), 1)
