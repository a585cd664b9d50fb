"""Figures of bench/augment.sh: training throughput with and without augmentation, and greedy
CER of every model on test, test_noisy and test_engine, with the ratios bench/README.md records."""

from __future__ import annotations

import sys
from pathlib import Path

from common import train_speed

from mlkd_cli.score import score_decode_dir

CONDITIONS = ("test", "test_noisy", "test_engine")


def cer(model: Path, condition: str) -> dict[str, float]:
    """CER per language of the model's greedy decode of ``condition``."""
    report = score_decode_dir(model / f"decode_{condition}_ctc-greedy")
    return {lang: s.chars.rate for lang, s in report.languages.items() if s.num_missing < s.num_utts}


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def main(work: Path) -> None:
    runs = sorted(p.parent for p in work.glob("*/*/metrics.jsonl"))
    print("training throughput (s of audio per s, mean over logged windows):")
    for run in runs:
        try:
            print(f"  {run.parent.name:6} {run.name:12} {train_speed(run):7.1f}")
        except ZeroDivisionError:  # fewer than two logged windows (a smoke run)
            print(f"  {run.parent.name:6} {run.name:12}       —")
    print("\ngreedy CER (%), mean over the condition's languages:")
    table = {}
    for run in runs:
        if (run / "decode_test_ctc-greedy").is_dir():  # student_kd is fine-tuned, not decoded
            table[f"{run.parent.name}/{run.name}"] = {c: cer(run, c) for c in CONDITIONS}
    print(f"  {'model':22}" + "".join(f"{c:>24}" for c in CONDITIONS))
    for name, rates in table.items():
        cells = "".join(f"{100 * mean(r.values()):8.2f} ({' '.join(f'{k} {100 * v:.1f}' for k, v in sorted(r.items()))})"
                        .rjust(24) if r else "—".rjust(24) for r in rates.values())
        print(f"  {name:22}{cells}")

    def ratio(a: str, b: str, condition: str) -> str:
        x, y = table[a][condition], table[b][condition]
        shared = sorted(set(x) & set(y))
        return f"{mean(x[k] for k in shared) / mean(y[k] for k in shared):.3f}" if shared else "—"

    print("\nratios (mean CER over the languages both decode):")
    for condition in CONDITIONS:
        print(f"  {condition:12} student aug / noaug {ratio('aug/student', 'noaug/student', condition)}"
              f"   student / baseline (aug) {ratio('aug/student', 'aug/baseline', condition)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
