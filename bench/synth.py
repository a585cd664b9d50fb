"""Speed of the demo corpus synthesizer: seconds of audio per second of wall time.

Usage: python bench/synth.py [--size tiny|demo] [-j N] [--langs "en de es it ru"] OUT_DIR
"""

from __future__ import annotations

import argparse
import time

from mlkd_cli.recipes.corpus.build import build_corpus
from mlkd_cli.recipes.corpus.splits import DEFAULT_LANGS, SIZES
from mlkd_cli.recipes.corpus.text import load_sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--langs", default=" ".join(DEFAULT_LANGS))
    parser.add_argument("-j", "--num-jobs", type=int, default=2)
    args = parser.parse_args()
    langs = args.langs.split()

    start = time.perf_counter()
    for lang in langs:
        load_sentences(lang)
    text_seconds = time.perf_counter() - start

    start = time.perf_counter()
    summary = build_corpus(args.out_dir, langs, args.size, seed=0, num_jobs=args.num_jobs)
    wall = time.perf_counter() - start
    audio = sum(stats["hours"] * 3600 for split in summary["splits"].values() for stats in split.values())
    print(f"sentences: {text_seconds:.1f} s for {len(langs)} languages")
    print(f"synthesis: {audio:.0f} s of audio in {wall:.1f} s with {args.num_jobs} jobs = {audio / wall:.0f}x real time")


if __name__ == "__main__":
    main()
