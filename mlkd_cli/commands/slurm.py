"""`mlkd slurm --name NAME [resources] EXP_DIR -- MLKD_ARGS...`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click


@click.command(context_settings={"show_default": True, "ignore_unknown_options": True})
@click.option("--name", required=True, help="Job name; the script is EXP_DIR/slurm/NAME.sbatch.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML with the resources below (e.g. conf/slurm/gpu.yaml); options override it.")
@click.option("--partition")
@click.option("--time", "time_limit", help="Time limit: MM, HH:MM:SS, D-HH, D-HH:MM:SS..., e.g. 4:00:00.")
@click.option("--cpus-per-task", type=int)
@click.option("--mem", help="Memory per node: MB, or with a K/M/G/T suffix, e.g. 16G.")
@click.option("--gpus-per-node", type=int)
@click.option("--nodes", type=int)
@click.option("--ntasks-per-node", type=int, help="Processes per node (several train data-parallel).")
@click.option("--account")
@click.option("--qos")
@click.option("--array", "items", help='Space-separated items, e.g. "en de es": an array job, {item} in the arguments takes each.')
@click.option("--after", multiple=True, help="Job id that must succeed first (afterok, in the script); repeatable.")
@click.option("--submit", is_flag=True, help="Submit with sbatch and print the job id.")
@click.option("--dry-run", is_flag=True, help="Only write the script (the default).")
@click.argument("exp_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("mlkd_args", nargs=-1, type=click.UNPROCESSED, required=True)
def slurm(name: str, config_file: Path | None, partition, time_limit, cpus_per_task, mem, gpus_per_node, nodes,
          ntasks_per_node, account, qos, items: str | None, after: tuple[str, ...], submit: bool, dry_run: bool,
          exp_dir: Path, mlkd_args: tuple[str, ...]) -> None:
    """Write an sbatch script running `mlkd MLKD_ARGS` into EXP_DIR/slurm/ (and submit it).

    Every value is checked before anything is written: MLKD_ARGS must start with an mlkd
    command, and no value may carry a newline into the script's #SBATCH lines.

    \b
    Examples:
      jid=$(mlkd slurm --name prepare --config conf/slurm/cpu.yaml --submit exp -- prepare data/corpus/train data)
      mlkd slurm --name teachers --array "en de es" --after $jid --config conf/slurm/gpu.yaml --submit exp \\
        -- train-teacher --data data --lang {item} exp/teacher_{item}
    """
    from mlkd_cli.config import load_yaml
    from mlkd_cli.errors import ConfigError
    from mlkd_cli.cli import COMMANDS  # the root command only; its subcommands load lazily
    from mlkd_cli.slurm import SlurmConfig, check_command, resource_problem, submit as sbatch, write_job

    if submit and dry_run:
        raise ConfigError("--submit and --dry-run contradict each other; pick one")
    overrides = {"partition": partition, "time": time_limit, "cpus_per_task": cpus_per_task, "mem": mem,
                 "gpus_per_node": gpus_per_node, "nodes": nodes, "ntasks_per_node": ntasks_per_node,
                 "account": account, "qos": qos}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key, value in overrides.items():
        problem = resource_problem(key, value)
        if problem:
            raise ConfigError(f"--{key.replace('_', '-')} {problem}")
    config = load_yaml(SlurmConfig, config_file) if config_file else SlurmConfig()
    config = dataclasses.replace(config, **overrides)
    args = list(mlkd_args[1:] if mlkd_args and mlkd_args[0] == "--" else mlkd_args)
    check_command(args, list(COMMANDS))
    script = write_job(exp_dir, name, args, config, items.split() if items else None, after)
    if submit:
        click.echo(sbatch(script))
    else:
        click.echo(str(script))
