"""The WFST search of `mlkd decode`: one graph per language, from the model dir's training text.

Graphs are cached under ``<GRAPH_ROOT>/<lang>_<kind>/`` (by default ``<MODEL_DIR>/graph``)
and rebuilt only when the tokens, the text or the options change. Kinds: ``ctc`` (the CTC
topology alone, shared by every language), ``lexicon`` (words of the language's training
text) and ``lm`` (those words and a Kneser-Ney n-gram of the same text).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from mlkd_cli.decode.wfst import Graph, SearchConfig, build_or_load_graph, decode
from mlkd_cli.errors import ConfigError
from mlkd_cli.experiment.model_dir import ModelDir

logger = logging.getLogger("mlkd")

GRAPH_KINDS = ("ctc", "lexicon", "lm")


def wfst_search(loaded: ModelDir, graph_root: Path, kind: str, lm_order: int,
                search: SearchConfig) -> Callable[[np.ndarray, Optional[str]], str]:
    """A search function (log-probs, language) → text that builds each graph on first use."""
    if kind not in GRAPH_KINDS:
        raise ConfigError(f"graph {kind!r} is not one of {', '.join(GRAPH_KINDS)}")
    tokenizer = loaded.tokenizer
    tokens = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    graphs: dict[str, Graph] = {}

    def graph(lang: Optional[str]) -> Graph:
        key = "all" if kind == "ctc" else lang
        if key not in graphs:
            if key is None:
                raise ConfigError("a lexicon or LM graph needs the language; this model does not tell it, pass --lang")
            name = "ctc" if kind == "ctc" else f"{lang}_{kind}{lm_order if kind == 'lm' else ''}"
            graphs[key] = build_or_load_graph(
                graph_root / name, tokens,
                texts=None if kind == "ctc" else loaded.training_text(lang),
                encode=None if kind == "ctc" else tokenizer.encode,
                lm_order=lm_order if kind == "lm" else None)
        return graphs[key]

    return lambda log_probs, lang: decode(graph(lang), log_probs, search).text
