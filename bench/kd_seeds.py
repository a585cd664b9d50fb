"""Mean ± standard deviation over seeds of test CER and of the KD ratios (see bench/kd_seeds.sh).

    python bench/kd_seeds.py --teachers EXP... -- LABEL:MODEL_DIR...

Every model dir holds decode_test_ctc-greedy; models of one label are the seeds of one
system (``baseline``: the no-KD baseline, ``baseline_pl``: the pseudo-label baseline). Ratios
are taken per seed (student of seed s / baseline of seed s), then averaged.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

from mlkd_cli.score import score_decode_dir


def cer_by_language(model: Path) -> dict[str, float]:
    report = score_decode_dir(model / "decode_test_ctc-greedy")
    return {lang: s.chars.rate for lang, s in report.languages.items()}


def mean_sd(values: list[float], scale: float = 1.0) -> str:
    mean = statistics.mean(values) * scale
    sd = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {sd:.3f}" if scale == 1 else f"{mean:.2f} ± {sd:.2f}"


def average(cers: dict[str, float]) -> float:
    return sum(cers.values()) / len(cers)


def main(argv: list[str]) -> None:
    split = argv.index("--")
    teachers = {lang: rate for t in argv[argv.index("--teachers") + 1:split]
                for lang, rate in cer_by_language(Path(t)).items()}
    systems: dict[str, list[dict[str, float]]] = defaultdict(list)
    for spec in argv[split + 1:]:
        label, _, path = spec.partition(":")
        systems[label].append(cer_by_language(Path(path)))
    langs = sorted(teachers)
    print("test CER (%), mean ± sd over seeds; teachers: "
          + "  ".join(f"{lang} {100 * teachers[lang]:.2f}" for lang in langs) + f"  avg {100 * average(teachers):.2f}")
    references = [name for name in ("baseline", "baseline_pl") if name in systems]
    print("| system | seeds | " + " | ".join(langs) + " | avg | " + " | ".join(f"/ {name}" for name in references)
          + " | / teachers |")
    print("|:---|---:|" + "---:|" * (len(langs) + 2 + len(references)))
    for label, runs in systems.items():
        cells = [mean_sd([r[lang] for r in runs], 100) for lang in langs]
        avgs = [average(r) for r in runs]
        ratios = [mean_sd([a / average(b) for a, b in zip(avgs, systems[name])]) for name in references]
        vs_teachers = [a / average(teachers) for a in avgs]
        print(f"| {label} | {len(runs)} | " + " | ".join(cells) + f" | {mean_sd(avgs, 100)} | "
              + " | ".join(ratios) + f" | {mean_sd(vs_teachers)} |")
    if "plain" in systems and "nopool" in systems:
        pool = [average(a) / average(b) for a, b in zip(systems["plain"], systems["nopool"])]
        print(f"student with the pool / without it: {mean_sd(pool)}")


if __name__ == "__main__":
    main(sys.argv[1:])
