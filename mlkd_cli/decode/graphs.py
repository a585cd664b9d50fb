"""The WFST search of `mlkd decode`: one graph per language, from the model's training text.

Graphs are cached under ``<MODEL_DIR>/graph/<lang>_<kind>/`` and rebuilt only when the
tokens, the text or the options change. Kinds: ``ctc`` (the CTC topology alone, shared by
every language), ``lexicon`` (words of the language's training text) and ``lm`` (those words
and a Kneser-Ney n-gram of the same text).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from mlkd_cli.data.prepare import PreparedData
from mlkd_cli.decode.wfst import Graph, SearchConfig, build_or_load_graph, decode
from mlkd_cli.errors import ConfigError

logger = logging.getLogger("mlkd")

GRAPH_KINDS = ("ctc", "lexicon", "lm")


def wfst_search(model_dir: Path, data_dir: Path, tokenizer, kind: str, lm_order: int,
                search: SearchConfig) -> Callable[[np.ndarray, Optional[str]], str]:
    """A search function (log-probs, language) → text that builds each graph on first use."""
    if kind not in GRAPH_KINDS:
        raise ConfigError(f"graph {kind!r} is not one of {', '.join(GRAPH_KINDS)}")
    tokens = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    graphs: dict[str, Graph] = {}
    texts: dict[str, list[str]] = {}

    def training_texts(lang: str) -> list[str]:
        if not texts:
            data = PreparedData(data_dir)
            for cut in data.cuts(data.config.train_set):
                sup = cut.supervisions[0]
                texts.setdefault(sup.language, []).append(sup.text)
        if lang not in texts:
            raise ConfigError(f"no {lang!r} training text in {data_dir} to build a {kind} graph from; use --graph ctc")
        return texts[lang]

    def graph(lang: Optional[str]) -> Graph:
        key = "all" if kind == "ctc" else lang
        if key not in graphs:
            if key is None:
                raise ConfigError("a lexicon or LM graph needs the language; this model does not tell it, pass --lang")
            name = "ctc" if kind == "ctc" else f"{lang}_{kind}{lm_order if kind == 'lm' else ''}"
            graphs[key] = build_or_load_graph(
                model_dir / "graph" / name, tokens,
                texts=None if kind == "ctc" else training_texts(lang),
                encode=None if kind == "ctc" else tokenizer.encode,
                lm_order=lm_order if kind == "lm" else None)
        return graphs[key]

    return lambda log_probs, lang: decode(graph(lang), log_probs, search).text
