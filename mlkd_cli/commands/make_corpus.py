"""`mlkd make-corpus OUT_DIR`: the embedded demo corpus (mlkd_cli.recipes.corpus)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from mlkd_cli.recipes.corpus.splits import DEFAULT_LANGS, DEFAULT_UNSEEN, SIZES, corpus_size
from mlkd_cli.recipes.corpus.text import LANGUAGES


@click.command(context_settings={"show_default": True})
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--langs", default=" ".join(DEFAULT_LANGS),
              help=f"Languages (ISO 639-1), separated by spaces or commas; supported: {' '.join(LANGUAGES)}.")
@click.option("--unseen-langs", default=" ".join(DEFAULT_UNSEEN),
              help="Languages spoken only in dev_unseen/test_unseen (language-ID rejection); those in --langs are left out.")
@click.option("--size", type=click.Choice(list(SIZES)), default="demo",
              help="tiny: ~12/4/4 utterances per language, ~17 for the teachers (tests); demo: per language 3 h for the teachers "
                   "(teacher_train), 15 min transcribed for the student (train), 2 h untranscribed, 8 min each of "
                   "dev and test, 4 min per unseen language in dev_unseen and test_unseen; demo-same-hour: the "
                   "earlier setting, 1 h of train for teachers and student alike, no teacher_train.")
@click.option("--train-hours", type=float, help="Training audio per language (overrides --size).")
@click.option("--dev-minutes", type=float, help="Dev audio per language (overrides --size).")
@click.option("--test-minutes", type=float, help="Test audio per language (overrides --size).")
@click.option("--unlabeled-hours", type=float, help="Untranscribed audio per language (overrides --size; 0: none).")
@click.option("--teacher-hours", type=float,
              help="The teachers' own training audio per language, teacher_train (overrides --size; 0: none).")
@click.option("--unseen-minutes", type=float,
              help="Audio per unseen language in dev_unseen and in test_unseen (overrides --size; 0: none).")
@click.option("--espeak-only", is_flag=True,
              help="eSpeak NG alone: no Festival speakers in training and no test_engine (for machines without "
                   "Festival and flite; faster).")
@click.option("--seed", type=int, default=0, help="Seed for sentences and speakers; same seed, same corpus.")
@click.option("-j", "--num-jobs", type=int, default=2, help="Synthesis processes (the output does not depend on it).")
@click.option("-f", "--force", is_flag=True, help="Synthesize again even if OUT_DIR holds this corpus already.")
def make_corpus(out_dir: Path, langs: str, unseen_langs: str, size: str, train_hours: float | None,
                dev_minutes: float | None, test_minutes: float | None, unlabeled_hours: float | None,
                unseen_minutes: float | None, teacher_hours: float | None, espeak_only: bool, seed: int,
                num_jobs: int, force: bool) -> None:
    """Synthesize OUT_DIR/{train,dev,test}: Kaldi data dirs of eSpeak NG speech in every language.

    Sentences come from the Debian fortune collections; dev and test use held-out voices
    and sentences. OUT_DIR/teacher_train is the teachers' own training data, OUT_DIR/unlabeled
    untranscribed audio (new sentences, voices of its own; no text file), OUT_DIR/{dev,test}_unseen speech in languages left out of training,
    OUT_DIR/test_noisy and OUT_DIR/test_engine test conditions, OUT_DIR/noise for augmentation.
    OUT_DIR/corpus.json describes what was made.

    \b
    Example:
      mlkd make-corpus --langs "en de" --size tiny data/corpus
    """
    from mlkd_cli.recipes.corpus.build import build_corpus  # numpy, lhotse: only when it runs

    build_corpus(out_dir, _split(langs),
                 corpus_size(size, train_hours, dev_minutes, test_minutes, unlabeled_hours, unseen_minutes,
                             teacher_hours),
                 seed, num_jobs, force, argv=["mlkd", *sys.argv[1:]],
                 unseen_langs=_split(unseen_langs), other_engines=not espeak_only)


def _split(langs: str) -> list[str]:
    return [lang for lang in re.split(r"[\s,]+", langs) if lang]
