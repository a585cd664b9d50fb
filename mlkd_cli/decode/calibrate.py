"""`mlkd calibrate-lid`: the threshold below which a model's language decision becomes ``unknown``.

The model decodes the dev inputs (plain decode dirs, reused when up to date); their utterances
in the model's languages bound the false rejections, those in other languages (e.g. the demo
corpus's dev_unseen) show how much unseen speech the threshold catches, and pick the score
when asked to (``auto``). Never calibrate on test data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from mlkd_cli.decode.decoder import DecodeConfig, load_for_decoding
from mlkd_cli.decode.inputs import resolve_inputs
from mlkd_cli.decode.rejection import SCORES, Rejection, flagged_share, rejection_score, threshold_for, write_calibration
from mlkd_cli.decode.stage import run_decode
from mlkd_cli.errors import ConfigError

logger = logging.getLogger("mlkd")


def calibrate_lid(model_dir: Path, inputs: list[str], max_false_reject: float = 0.005, score: str = "auto",
                  output_dir: Optional[Path] = None, argv: Optional[list[str]] = None) -> dict:
    """Calibrate and write ``lid_calibration.json`` (into ``output_dir``, else the model dir); its content."""
    if not 0 <= max_false_reject < 1:
        raise ConfigError(f"--max-false-reject {max_false_reject}: must be in [0, 1)")
    if score not in ("auto", *SCORES):
        raise ConfigError(f"--score {score}: choose auto, {', '.join(SCORES)}")
    loaded = load_for_decoding(model_dir)
    if not loaded.languages:
        raise ConfigError(f"{model_dir}: the model does not predict the language (a teacher or a plain student); "
                          "calibrate a language-adaptive model (`mlkd finetune`, or `mlkd distill` without --plain-student)")
    trained: dict[str, list[float]] = {kind: [] for kind in SCORES}
    unseen: dict[str, list[float]] = {kind: [] for kind in SCORES}
    decode_dirs = []
    for spec in inputs:
        resolved = resolve_inputs([spec])
        summary = run_decode(model_dir, resolved, DecodeConfig(), argv=argv, output_dir=output_dir,
                             apply_calibration=False)
        if any(r.language_energy is None or r.confidence is None for r in summary.results):
            logger.info("%s: decoded by an earlier mlkd, without the scores rejection needs; decoding again",
                        summary.out_dir)
            summary = run_decode(model_dir, resolved, DecodeConfig(), argv=argv, output_dir=output_dir,
                                 apply_calibration=False, force=True)
        decode_dirs.append(str(summary.out_dir))
        ref_langs = {item.id: item.ref_lang for item in summary.items}
        for result in summary.results:
            lang = ref_langs.get(result.id)
            if lang is None:
                continue  # no reference language: neither bound
            side = trained if lang in loaded.languages else unseen
            for kind in SCORES:
                side[kind].append(rejection_score(kind, result.language_posteriors, result.confidence,
                                                  result.language_energy))
    if not trained["lid"]:
        raise ConfigError(f"{', '.join(inputs)}: no utterance in a language of the model ({', '.join(loaded.languages)}) "
                          "with a reference language (utt2lang); give the dev set")
    candidates = {}
    for kind in SCORES:
        threshold = threshold_for(trained[kind], max_false_reject)
        candidates[kind] = {"threshold": threshold, "trained_flagged": flagged_share(trained[kind], threshold),
                            "unseen_flagged": flagged_share(unseen[kind], threshold)}
    if score == "auto":  # the score that catches most unseen speech on dev; without any, the LID posterior
        score = max(SCORES, key=lambda k: (candidates[k]["unseen_flagged"] or 0.0, k == "lid"))
    chosen = candidates[score]
    report = {"max_false_reject": max_false_reject, "inputs": list(inputs), "decode_dirs": decode_dirs,
              "trained_utts": len(trained["lid"]), "unseen_utts": len(unseen["lid"]), "candidates": candidates}
    path = write_calibration(output_dir or model_dir, loaded.weights, Rejection(chosen["threshold"], score), report)
    unseen_part = (f"{100 * chosen['unseen_flagged']:.1f}% of {len(unseen['lid'])} unseen-language"
                   if unseen["lid"] else "no unseen-language utterances to check it on;")
    logger.info("%s score below %.4f is unknown: flags %.2f%% of %d trained-language dev utterances, %s -> %s",
                score, chosen["threshold"], 100 * chosen["trained_flagged"], len(trained["lid"]), unseen_part, path)
    return {"score": score, "threshold": chosen["threshold"], **report}
