"""Figures of bench/augment_teachers.sh: each teacher's clean dev CER, greedy CER on test and
test_noisy, with and without augmentation, and the augmented / not augmented ratios.
Usage: python bench/augment_teachers.py WORK LANG..."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mlkd_cli.score import score_decode_dir


def figures(exp: Path) -> dict[str, float]:
    dev = json.loads((exp / "final_metrics.json").read_text())["cer"]
    rates = {"dev": dev}
    for condition in ("test", "test_noisy"):
        report = score_decode_dir(exp / f"decode_{condition}_ctc-greedy")
        rates[condition] = report.overall.chars.rate
    return rates


def main(work: Path, langs: list[str]) -> None:
    print(f"{'teacher':12} {'arm':6} {'dev CER':>8} {'test':>8} {'test_noisy':>11}")
    for lang in langs:
        arms = {arm: figures(work / arm / f"teacher_{lang}") for arm in ("noaug", "aug")}
        for arm, rates in arms.items():
            print(f"{'teacher_' + lang:12} {arm:6} " + " ".join(f"{100 * rates[k]:8.2f}" for k in ("dev", "test"))
                  + f" {100 * rates['test_noisy']:11.2f}")
        ratio = {k: arms["aug"][k] / arms["noaug"][k] for k in arms["aug"]}
        print(f"{'teacher_' + lang:12} {'ratio':6} " + " ".join(f"{ratio[k]:8.3f}" for k in ("dev", "test"))
              + f" {ratio['test_noisy']:11.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
