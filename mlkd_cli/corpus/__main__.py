"""``python -m mlkd_cli.corpus OUT_DIR``: synthesize the demo corpus."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import click

from mlkd_cli.corpus.build import DEFAULT_LANGS, SIZES, build_corpus, corpus_size
from mlkd_cli.corpus.text import LANGUAGES
from mlkd_cli.errors import MlkdError
from mlkd_cli.log import setup_console_logging


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--langs", default=" ".join(DEFAULT_LANGS),
              help=f"Languages (ISO 639-1), separated by spaces or commas; supported: {' '.join(LANGUAGES)}.")
@click.option("--size", type=click.Choice(list(SIZES)), default="demo",
              help="tiny: ~12/4/4 utterances per language (tests); demo: 1 h / 8 min / 8 min per language.")
@click.option("--train-hours", type=float, help="Training audio per language (overrides --size).")
@click.option("--dev-minutes", type=float, help="Dev audio per language (overrides --size).")
@click.option("--test-minutes", type=float, help="Test audio per language (overrides --size).")
@click.option("--seed", type=int, default=0, help="Seed for sentences and speakers; same seed, same corpus.")
@click.option("-j", "--num-jobs", type=int, default=2, help="Synthesis processes (the output does not depend on it).")
@click.option("-f", "--force", is_flag=True, help="Synthesize again even if OUT_DIR holds this corpus already.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(out_dir: Path, langs: str, size: str, train_hours: float | None, dev_minutes: float | None,
         test_minutes: float | None, seed: int, num_jobs: int, force: bool, verbose: bool) -> None:
    """Synthesize OUT_DIR/{train,dev,test}: Kaldi data dirs of eSpeak NG speech in every language.

    Sentences come from the Debian fortune collections; dev and test use held-out voices
    and sentences. OUT_DIR/corpus.json describes what was made.
    """
    setup_console_logging(logging.DEBUG if verbose else logging.INFO)
    try:
        build_corpus(out_dir, [lang for lang in re.split(r"[\s,]+", langs) if lang],
                     corpus_size(size, train_hours, dev_minutes, test_minutes), seed, num_jobs, force,
                     argv=["python", "-m", "mlkd_cli.corpus", *sys.argv[1:]])
    except MlkdError as e:
        logging.getLogger("mlkd").debug("failed", exc_info=True)
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
