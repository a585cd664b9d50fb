"""Rejection of speech in languages a model was not trained on: it decodes as ``unknown``.

A language-adaptive model always names one of its languages; speech in another language
gets the nearest one. A rejection rule flags an utterance ``unknown`` when its score falls
below a threshold calibrated on dev data (`mlkd calibrate-lid`): the largest threshold that
flags at most ``max_false_reject`` of the dev utterances in trained languages. Scores:

- ``lid``: the language-ID posterior of the predicted language;
- ``lid-x-ctc``: that times the CTC confidence of the transcript (mean posterior of the
  greedy path's emitted tokens), since speech of an unseen language is also transcribed
  with low confidence;
- ``energy``: the log-sum-exp of the language-ID logits (Liu et al., 2020, "Energy-based
  out-of-distribution detection"): unlike the posterior it keeps how strongly any trained
  language was recognised, not only which one won.

The calibration lives beside the decodes (``lid_calibration.json`` in the model dir, or
the --output-dir), tied to the weights' digest; `mlkd decode` applies it when present.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Optional, Sequence

from mlkd_cli.errors import ConfigError
from mlkd_cli.fsutil import atomic_write_text, file_digest

CALIBRATION = "lid_calibration.json"
SCORES = ("lid", "lid-x-ctc", "energy")


def rejection_score(kind: str, posteriors: dict[str, float], confidence: Optional[float],
                    energy: Optional[float]) -> float:
    """The score of one utterance: high for speech in a trained language."""
    if kind == "energy":
        return -math.inf if energy is None else energy
    lid = max(posteriors.values())
    if kind == "lid":
        return lid
    return lid * (confidence or 0.0)


@dataclasses.dataclass(frozen=True)
class Rejection:
    """Flag ``unknown`` below ``threshold`` of the ``score``."""

    threshold: float
    score: str = "lid"

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ConfigError(f"rejection score {self.score!r} is not one of {', '.join(SCORES)}")

    def rejects(self, posteriors: dict[str, float], confidence: Optional[float], energy: Optional[float]) -> bool:
        return rejection_score(self.score, posteriors, confidence, energy) < self.threshold


def threshold_for(trained_scores: Sequence[float], max_false_reject: float) -> float:
    """The largest threshold that flags at most ``max_false_reject`` of ``trained_scores``
    (scores strictly below it are flagged)."""
    if not trained_scores:
        raise ConfigError("no dev utterance in a language the model was trained on: nothing to calibrate on")
    ordered = sorted(trained_scores)
    allowed = math.floor(max_false_reject * len(ordered))
    return ordered[allowed]


def flagged_share(scores: Sequence[float], threshold: float) -> Optional[float]:
    return sum(s < threshold for s in scores) / len(scores) if scores else None


def write_calibration(out_dir: Path, weights: Path, rejection: Rejection, report: dict) -> Path:
    path = Path(out_dir) / CALIBRATION
    record = {"score": rejection.score, "threshold": rejection.threshold, "weights": str(weights.resolve()),
              "weights_digest": file_digest(weights), **report}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def read_calibration(out_dir: Path, weights: Path, weights_digest: str) -> Optional[Rejection]:
    """The calibrated rule in ``out_dir``; None when there is none; an error when it is for other weights
    (``weights_digest``: the digest of the weights decoding with)."""
    path = Path(out_dir) / CALIBRATION
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("weights_digest") != weights_digest:
        raise ConfigError(f"{path}: calibrated for other weights than {weights} (the model was trained again); "
                          f"re-run `mlkd calibrate-lid {weights.parent} DEV...`, or delete it to decode without rejection")
    return Rejection(float(record["threshold"]), record["score"])
