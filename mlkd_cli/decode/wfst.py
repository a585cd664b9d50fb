"""WFST decoding of CTC output: graphs built with kaldifst, pruned search with kaldi-decoder.

A graph is T (CTC topology) alone, T∘L (a word lexicon derived from training text through
the tokenizer) or T∘L∘G (plus a word n-gram LM), built as icefall's ``prepare_lang_fst.py``
does with kaldifst: LG = min(det*(L∘G)) with the ``#0`` back-off symbol passed through L,
then det*(T∘LG) with the disambiguation symbols kept through determinization and erased
afterwards.

Labels: input labels are token id + 1 (0 is epsilon; kaldi-decoder's ``DecodableCtc``
scores label i with column i - 1). T's output labels are token ids (the blank outputs
epsilon); a graph with a lexicon outputs word ids, listed in its ``words.txt``. While the
graph is built, disambiguation symbol ``#k`` is token id ``num_tokens + k``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional, Sequence

import numpy as np

from mlkd_cli.decode.ngram import BOS, EOS, estimate_kneser_ney
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.log import native_stderr_logged
from mlkd_cli.stage import Stage, new_record

if TYPE_CHECKING:
    import kaldi_decoder
    import kaldifst

logger = logging.getLogger("mlkd")

GRAPH_VERSION = 1  # bump when graph construction changes, so that cached graphs rebuild
GRAPH_FILE = "graph.fst"
INFO_FILE = "graph.json"
WORDS_FILE = "words.txt"
ARPA_FILE = "lm.arpa"
EPS = "<eps>"
DISAMBIG0 = "#0"
WORD_START = "\u2581"  # ▁, SentencePiece's word-start mark
RESERVED_WORD = re.compile(r"^(<eps>|<s>|</s>|#\d+)$")

Lexicon = dict[str, tuple[int, ...]]
Encode = Callable[[str], Sequence[int]]


@dataclasses.dataclass(frozen=True)
class Graph:
    """A decoding graph, its output labels' symbols (``symbols[label]``) and its token count."""

    fst: kaldifst.StdVectorFst
    symbols: list[str]
    has_words: bool
    num_tokens: int
    path: Path

    def text(self, labels: Sequence[int]) -> str:
        """Words joined by spaces, or tokens joined with ``▁`` read as a space."""
        pieces = [self.symbols[i] for i in labels]
        if self.has_words:
            return " ".join(pieces)
        return "".join(pieces).replace(WORD_START, " ").strip()


# ------------------------------------------------------------------- graph construction


def ctc_topology(num_tokens: int) -> kaldifst.StdVectorFst:
    """Standard CTC topology: one state per token, every state final, blank = token 0.

    Entering state k from another state outputs token k (the blank outputs epsilon); the
    self-loop on k outputs nothing, so repeats collapse unless a blank separates them.
    """
    import kaldifst

    fst = kaldifst.StdVectorFst()
    for _ in range(num_tokens):
        fst.set_final(state=fst.add_state(), weight=0)
    fst.start = 0
    for src in range(num_tokens):
        for dst in range(num_tokens):
            arc = kaldifst.StdArc(ilabel=dst + 1, olabel=0 if src == dst else dst, weight=0, nextstate=dst)
            fst.add_arc(state=src, arc=arc)
    return fst


def make_lexicon(texts: Sequence[str], encode: Encode, num_tokens: int) -> Lexicon:
    """Every whitespace-separated word of ``texts`` → its token ids, sorted by word."""
    words = sorted({w for t in texts for w in t.split()})
    reserved = [w for w in words if RESERVED_WORD.match(w)]
    if reserved:
        logger.warning("lexicon: leaving out reserved symbol(s) used as words: %s", ", ".join(reserved))
    lexicon = {w: tuple(int(t) for t in encode(w)) for w in words if not RESERVED_WORD.match(w)}
    if not lexicon:
        raise DataError("lexicon: the training text has no words; pass the language's training transcripts")
    for word, pron in lexicon.items():
        if not pron or not all(0 < t < num_tokens for t in pron):
            raise DataError(
                f"lexicon: word {word!r} encodes to token ids {list(pron)}, not non-blank ids below {num_tokens}; "
                "use the tokenizer that wrote tokens.txt"
            )
    return lexicon


def disambiguate(lexicon: Lexicon, num_tokens: int) -> tuple[list[tuple[str, tuple[int, ...]]], int]:
    """Kaldi's ``add_lex_disambig``: end each pronunciation that is a prefix of another or is
    shared by several words with its own ``#k`` (token id ``num_tokens + k``, k >= 1).

    Returns the (word, pronunciation) entries and the number of disambiguation symbols
    including ``#0``.
    """
    prefixes = {pron[:i] for pron in lexicon.values() for i in range(1, len(pron))}
    uses = Counter(lexicon.values())
    last_k: Counter[tuple[int, ...]] = Counter()
    entries = []
    for word, pron in lexicon.items():
        if pron in prefixes or uses[pron] > 1:
            last_k[pron] += 1
            pron = pron + (num_tokens + last_k[pron],)
        entries.append((word, pron))
    return entries, 1 + max(last_k.values(), default=0)


def lexicon_fst(entries: list[tuple[str, tuple[int, ...]]], word_ids: dict[str, int]) -> kaldifst.StdVectorFst:
    """L: token ids → word ids, a closure over the words (no silence); the word is output on
    its first token."""
    import kaldifst

    fst = kaldifst.StdVectorFst()
    start = fst.add_state()
    fst.start = start
    fst.set_final(state=start, weight=0)
    for word, pron in entries:
        src = start
        for i, token in enumerate(pron):
            dst = start if i == len(pron) - 1 else fst.add_state()
            olabel = word_ids[word] if i == 0 else 0
            fst.add_arc(state=src, arc=kaldifst.StdArc(ilabel=token, olabel=olabel, weight=0, nextstate=dst))
            src = dst
    return fst


def grammar_fst(arpa: Path, words_txt: Path) -> kaldifst.StdVectorFst:
    """G from an ARPA file with kaldilm: back-off arcs read ``#0``, ``<s>``/``</s>`` become epsilon."""
    import kaldifst
    import kaldilm

    with native_stderr_logged("kaldilm"):
        text = kaldilm.arpa2fst(
            input_arpa=str(arpa), disambig_symbol=DISAMBIG0, read_symbol_table=str(words_txt), max_arpa_warnings=0
        )
    return kaldifst.compile(s=text, acceptor=False)


def compose_graph(
    topo: kaldifst.StdVectorFst,
    lexicon: kaldifst.StdVectorFst,
    grammar: Optional[kaldifst.StdVectorFst],
    num_tokens: int,
    num_disambig: int,
    word_disambig0: int,
) -> kaldifst.StdVectorFst:
    """det*(T ∘ min(det*(L ∘ G))) with disambiguation symbols erased at the end (T ∘ L without G).

    Changes ``topo`` and ``lexicon`` in place.
    """
    import kaldifst

    if grammar is not None:
        kaldifst.add_self_loops(lexicon, isyms=[num_tokens], osyms=[word_disambig0])
        kaldifst.arcsort(lexicon, sort_type="olabel")
        kaldifst.arcsort(grammar, sort_type="ilabel")
        lexicon = kaldifst.compose(lexicon, grammar)
        kaldifst.determinize_star(lexicon)
        kaldifst.minimize_encoded(lexicon)
    kaldifst.arcsort(lexicon, sort_type="ilabel")
    # T passes the disambiguation symbols through (input num_tokens + k + 1, output num_tokens + k).
    disambig = range(num_tokens, num_tokens + num_disambig)
    for state in range(topo.num_states):
        for d in disambig:
            topo.add_arc(state=state, arc=kaldifst.StdArc(ilabel=d + 1, olabel=d, weight=0, nextstate=state))
    kaldifst.arcsort(topo, sort_type="olabel")
    graph = kaldifst.compose(topo, lexicon)
    kaldifst.determinize_star(graph)
    for state in kaldifst.StateIterator(graph):
        for arc in kaldifst.ArcIterator(graph, state):
            if arc.ilabel > num_tokens:
                arc.ilabel = 0
    kaldifst.arcsort(graph, sort_type="ilabel")
    return graph


def _build_word_graph(
    out: Path, num_tokens: int, lexicon: Lexicon, texts: Sequence[str], lm_order: Optional[int]
) -> tuple[kaldifst.StdVectorFst, dict]:
    """T∘L or T∘L∘G, writing words.txt (``<eps>``, the words, ``#0 <s> </s>``) and lm.arpa to ``out``."""
    symbols = [EPS, *lexicon, DISAMBIG0, BOS, EOS]
    word_ids = {w: i for i, w in enumerate(symbols)}
    (out / WORDS_FILE).write_text("".join(f"{w} {i}\n" for i, w in enumerate(symbols)), encoding="utf-8")
    entries, num_disambig = disambiguate(lexicon, num_tokens)
    grammar = None
    if lm_order is not None:
        sentences = [[w for w in t.split() if w in lexicon] for t in texts]
        (out / ARPA_FILE).write_text(estimate_kneser_ney(sentences, lm_order).to_arpa(), encoding="utf-8")
        grammar = grammar_fst(out / ARPA_FILE, out / WORDS_FILE)
    lex = lexicon_fst(entries, word_ids)
    graph = compose_graph(ctc_topology(num_tokens), lex, grammar, num_tokens, num_disambig, word_ids[DISAMBIG0])
    return graph, {"num_words": len(lexicon), "num_disambig": num_disambig, "num_sentences": len(texts)}


def _digest(values: Sequence[str]) -> str:
    h = hashlib.sha256()
    for v in values:
        h.update(v.encode() + b"\n")
    return h.hexdigest()


def build_or_load_graph(
    cache_dir: str | Path,
    tokens: Sequence[str],
    texts: Optional[Sequence[str]] = None,
    encode: Optional[Encode] = None,
    lm_order: Optional[int] = None,
) -> Graph:
    """The decoding graph for ``tokens`` (index = token id, 0 = blank), cached in ``cache_dir``.

    Without ``texts``: T alone, outputs token ids. With ``texts`` (one language's training
    transcripts) and ``encode`` (the tokenizer's text → ids): T∘L over their words, plus an
    n-gram LM of order ``lm_order`` estimated on them (T∘L∘G). ``cache_dir`` belongs to the
    graph: it holds graph.fst, graph.json (facts), words.txt and lm.arpa, and is rebuilt by
    the stage protocol when the tokens, the lexicon, the LM text or order change.
    """
    cache_dir = Path(cache_dir)
    if len(tokens) < 2:
        raise ConfigError(f"{cache_dir}: a decoding graph needs the blank and at least one token; got {len(tokens)}")
    if lm_order is not None and (texts is None or lm_order < 1):
        raise ConfigError(f"{cache_dir}: an n-gram LM needs an order >= 1 (got {lm_order}) and training texts")
    if texts is not None and encode is None:
        raise ConfigError(f"{cache_dir}: building a lexicon from texts needs the tokenizer's encode function")
    texts = list(texts) if texts is not None else None
    lexicon = make_lexicon(texts, encode, len(tokens)) if texts is not None and encode is not None else None
    inputs = {"tokens": {"path": "tokens", "digest": _digest(tokens)},
              "lexicon": {"path": "lexicon", "digest": _digest([f"{w} {p}" for w, p in (lexicon or {}).items()])}}
    if lm_order is not None:
        inputs["lm_text"] = {"path": "text", "digest": _digest(texts or [])}
    record = new_record("graph", inputs, {"version": GRAPH_VERSION, "lm_order": lm_order})
    with Stage(cache_dir, record, on_change="redo").run() as out:
        if out is not None:
            start = time.perf_counter()
            if lexicon is None:
                graph, info = ctc_topology(len(tokens)), {}
            else:
                graph, info = _build_word_graph(out, len(tokens), lexicon, texts or [], lm_order)
            graph.write(str(out / GRAPH_FILE))
            info.update(num_tokens=len(tokens), lm_order=lm_order, num_states=graph.num_states,
                        seconds=round(time.perf_counter() - start, 3))
            (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            logger.info("graph: built %s (%d states) in %.1f s", cache_dir / GRAPH_FILE, graph.num_states, info["seconds"])
    return _load(cache_dir, tokens, has_words=lexicon is not None)


def _load(cache_dir: Path, tokens: Sequence[str], has_words: bool) -> Graph:
    import kaldifst

    symbols = list(tokens)
    if has_words:
        lines = (cache_dir / WORDS_FILE).read_text(encoding="utf-8").splitlines()
        symbols = [line.rsplit(" ", 1)[0] for line in lines]
    fst = kaldifst.StdVectorFst.read(str(cache_dir / GRAPH_FILE))
    return Graph(fst, symbols, has_words, len(tokens), cache_dir / GRAPH_FILE)


# ------------------------------------------------------------------------------ search


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Pruning of kaldi-decoder's FasterDecoder, and the weight of the acoustic scores
    against the graph's (LM) costs."""

    beam: float = 16.0
    max_active: int = 7000
    min_active: int = 20
    acoustic_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.beam > 0 or not self.acoustic_scale > 0:
            raise ConfigError(f"WFST search: beam ({self.beam}) and acoustic_scale ({self.acoustic_scale}) must be > 0")
        if not 0 < self.min_active <= self.max_active:
            raise ConfigError(
                f"WFST search: need 0 < min_active ({self.min_active}) <= max_active ({self.max_active})"
            )


class Hypothesis(NamedTuple):
    labels: list[int]  # output labels of the best path: word ids or token ids
    text: str
    cost: float  # graph cost - acoustic_scale * log-likelihood of the best path; inf if none


def decode_batch(
    graph: Graph, log_probs: Sequence[np.ndarray], config: SearchConfig = SearchConfig()
) -> list[Hypothesis]:
    """Best path through ``graph`` for each (T, V) CTC log-probability matrix."""
    import kaldi_decoder

    options = kaldi_decoder.FasterDecoderOptions(
        beam=config.beam, max_active=config.max_active, min_active=config.min_active
    )
    decoder = kaldi_decoder.FasterDecoder(graph.fst, options)
    return [_decode_one(decoder, graph, x, config.acoustic_scale) for x in log_probs]


def decode(graph: Graph, log_probs: np.ndarray, config: SearchConfig = SearchConfig()) -> Hypothesis:
    """Best path through ``graph`` for one (T, V) CTC log-probability matrix."""
    return decode_batch(graph, [log_probs], config)[0]


def _decode_one(
    decoder: kaldi_decoder.FasterDecoder, graph: Graph, log_probs: np.ndarray, acoustic_scale: float
) -> Hypothesis:
    import kaldi_decoder
    import kaldifst

    if log_probs.ndim != 2 or log_probs.shape[1] != graph.num_tokens:
        raise ConfigError(
            f"{graph.path}: log-probabilities of shape {log_probs.shape} do not match the graph's "
            f"{graph.num_tokens} tokens; build the graph from the model's tokens.txt"
        )
    if len(log_probs) == 0:  # DecodableCtc reads element (0, 0) of its matrix
        return Hypothesis([], "", math.inf)
    decoder.decode(kaldi_decoder.DecodableCtc(np.ascontiguousarray(log_probs * acoustic_scale, dtype=np.float32)))
    found, best = decoder.get_best_path()
    if not found:
        return Hypothesis([], "", math.inf)
    _, _, labels, weight = kaldifst.get_linear_symbol_sequence(best)
    return Hypothesis(list(labels), graph.text(labels), weight.value1 + weight.value2)
