"""The ``mlkd`` root command: logging, lazy subcommands, and errors mapped to exit codes."""

from __future__ import annotations

import importlib
import logging
import sys

import click

from mlkd_cli.errors import MlkdError
from mlkd_cli.version import __version__

# Subcommand name -> "module:function". Modules import torch/lhotse, so they are loaded
# only when their command runs; `mlkd --help` stays instant.
COMMANDS = {
    "prepare": "mlkd_cli.commands.prepare:prepare",
    "train-teacher": "mlkd_cli.commands.train_teacher:train_teacher",
    "distill": "mlkd_cli.commands.distill:distill",
    "finetune": "mlkd_cli.commands.finetune:finetune",
    "decode": "mlkd_cli.commands.decode:decode",
    "score": "mlkd_cli.commands.score:score",
    "export": "mlkd_cli.commands.export:export",
    "slurm": "mlkd_cli.commands.slurm:slurm",
    "upgrade-model": "mlkd_cli.commands.upgrade_model:upgrade_model",
    "teacher-info": "mlkd_cli.commands.teacher_info:teacher_info",
    "calibrate-lid": "mlkd_cli.commands.calibrate_lid:calibrate_lid",
    "make-corpus": "mlkd_cli.commands.make_corpus:make_corpus",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MlkdError as e:
            logging.getLogger("mlkd").debug("failed", exc_info=True)
            click.echo(f"Error: {e}", err=True)
            sys.exit(1)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="mlkd")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """Multilingual ASR by knowledge distillation: prepare, train-teacher, distill, finetune, decode, score."""
    from mlkd_cli.log import setup_console_logging

    setup_console_logging(logging.DEBUG if verbose else logging.INFO)
