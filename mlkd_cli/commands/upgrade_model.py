"""`mlkd upgrade-model MODEL_DIR...`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(context_settings={"show_default": True})
@click.argument("model_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The prepared data dir the models were trained on  [default: the one their config.yaml names]")
def upgrade_model(model_dirs: tuple[Path, ...], data_dir: Path | None) -> None:
    """Make model dirs of an older mlkd self-contained: copy their tokenizer and training
    text from the data dir into them, so they decode, export and teach without it.

    \b
    Example:
      mlkd upgrade-model exp/teacher_* exp/student exp/baseline
    """
    from mlkd_cli.experiment.upgrade import upgrade_model_dir

    for model_dir in model_dirs:
        if upgrade_model_dir(model_dir, data_dir):
            click.echo(f"{model_dir}: upgraded")
        else:
            click.echo(f"{model_dir}: up to date")
