"""`mlkd prepare SRC... OUT_DIR`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlkd_cli.data.tokenizer import TOKENIZER_TYPES


@click.command(context_settings={"show_default": True})
@click.argument("sources", nargs=-1, required=True, metavar="[NAME=]SRC...")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--train-set", default="train", help="Name of the set whose text trains the tokenizer.")
@click.option("--tokenizer", "tokenizer_type", type=click.Choice(TOKENIZER_TYPES), default="char",
              help="Token unit: characters learn from an hour of speech per language; BPE needs far more.")
@click.option("--vocab-size", default=500, help="Tokenizer vocabulary size (bpe/unigram).")
@click.option("--allow-mixed-rates/--refuse-mixed-rates", default=True,
              help="Recordings at several sample rates in one directory: resample them all to 16 kHz (one info "
                   "line per set), or refuse the directory.")
@click.option("--normalize-text", is_flag=True,
              help="Lower-case transcripts and remove punctuation (CommonVoice, FLEURS raw text, subtitles).")
@click.option("-j", "--num-jobs", default=1, help="Parallel feature extraction jobs.")
@click.option("-f", "--force", is_flag=True, help="Redo everything, even over a directory prepared from other inputs.")
def prepare(sources: tuple[str, ...], out_dir: Path, train_set: str, tokenizer_type: str, vocab_size: int,
            allow_mixed_rates: bool, normalize_text: bool, num_jobs: int, force: bool) -> None:
    """Validate SRC... and write manifests, fbank features and a tokenizer to OUT_DIR.

    Each SRC is a Kaldi data dir (wav.scp, text, utt2spk, utt2lang, ...) or an lhotse
    cuts/recordings manifest. A source's set name is its directory name, or NAME in
    NAME=SRC; sources with the same name are combined into one set (e.g. several languages'
    train dirs into `train`). A source without transcripts (a Kaldi dir without text,
    supervisions without text) is an untranscribed set, for `mlkd distill --unlabeled-set`.

    \b
    Example:
      mlkd prepare data/corpus/train data/corpus/dev data/corpus/test data/corpus/unlabeled data
    """
    from mlkd_cli.data.prepare import PrepareConfig, prepare as run_prepare
    from mlkd_cli.data.tokenizer import TokenizerConfig

    config = PrepareConfig(
        train_set=train_set,
        tokenizer=TokenizerConfig(type=tokenizer_type, vocab_size=vocab_size),
        allow_mixed_rates=allow_mixed_rates,
        normalize_text=normalize_text,
    )
    run_prepare(list(sources), out_dir, config, num_jobs=num_jobs, force=force, argv=["mlkd", *sys.argv[1:]])
