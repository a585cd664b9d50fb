"""Language-balanced sampling of multilingual training data with lhotse's ``CutSet.mux``."""

from __future__ import annotations

import logging
from typing import Optional

from lhotse import CutSet

from mlkd_cli.data.manifests import has_transcript

logger = logging.getLogger("mlkd")


def language_weights(hours: dict[str, float], alpha: float) -> dict[str, float]:
    """Sampling probability per language ∝ hours^α: α = 0 draws every language equally often,
    α = 1 as often as the data has it."""
    raw = {lang: h**alpha for lang, h in hours.items()}
    total = sum(raw.values())
    return {lang: w / total for lang, w in raw.items()}


def language_mix(cuts: CutSet, alpha: float, seed: int, unlabeled_share: Optional[float] = None) -> CutSet:
    """An endless stream that draws each next cut's language by :func:`language_weights`.

    Every language's cuts repeat without end, so the small ones are upsampled instead of
    running out; with a single language and no untranscribed cuts, the cuts are returned
    unchanged (plain epochs). With ``unlabeled_share``, that share of the cuts comes from the
    untranscribed ones (languages weighted among them the same way), the rest from the
    transcribed ones; without it, untranscribed cuts count as their language's data.
    """
    groups: dict[tuple[str, bool], list] = {}
    for cut in cuts:
        untranscribed = unlabeled_share is not None and not has_transcript(cut)
        groups.setdefault((cut.supervisions[0].language, untranscribed), []).append(cut)
    if len(groups) < 2:
        return cuts
    weights: dict[tuple[str, bool], float] = {}
    for untranscribed in (False, True):
        mine = {lang: sum(c.duration for c in group) / 3600 for (lang, u), group in groups.items() if u == untranscribed}
        share = 1.0 if unlabeled_share is None else (unlabeled_share if untranscribed else 1 - unlabeled_share)
        if mine and share > 0:
            weights.update({(lang, untranscribed): share * w for lang, w in language_weights(mine, alpha).items()})
    keys = sorted(weights)
    logger.info("language sampling (alpha %.2f): %s", alpha, "  ".join(
        f"{lang}{' untranscribed' if u else ''} {weights[lang, u]:.1%}" for lang, u in keys))
    streams = [CutSet.from_cuts(groups[key]).repeat() for key in keys]
    return CutSet.mux(*streams, weights=[weights[key] for key in keys], seed=seed)
