"""Language-balanced sampling of multilingual training data with lhotse's ``CutSet.mux``."""

from __future__ import annotations

import logging

from lhotse import CutSet

logger = logging.getLogger("mlkd")


def language_weights(hours: dict[str, float], alpha: float) -> dict[str, float]:
    """Sampling probability per language ∝ hours^α: α = 0 draws every language equally often,
    α = 1 as often as the data has it."""
    raw = {lang: h**alpha for lang, h in hours.items()}
    total = sum(raw.values())
    return {lang: w / total for lang, w in raw.items()}


def language_mix(cuts: CutSet, alpha: float, seed: int) -> CutSet:
    """An endless stream that draws each next cut's language by :func:`language_weights`.

    Every language's cuts repeat without end, so the small ones are upsampled instead of
    running out; with a single language the cuts are returned unchanged (plain epochs).
    """
    by_lang: dict[str, list] = {}
    for cut in cuts:
        by_lang.setdefault(cut.supervisions[0].language, []).append(cut)
    if len(by_lang) < 2:
        return cuts
    langs = sorted(by_lang)
    weights = language_weights({lang: sum(c.duration for c in by_lang[lang]) / 3600 for lang in langs}, alpha)
    logger.info("language sampling (alpha %.2f): %s", alpha, "  ".join(f"{lang} {weights[lang]:.1%}" for lang in langs))
    streams = [CutSet.from_cuts(by_lang[lang]).repeat() for lang in langs]
    return CutSet.mux(*streams, weights=[weights[lang] for lang in langs], seed=seed)
