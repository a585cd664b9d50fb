"""sbatch job scripts for any mlkd command, written into the experiment directory.

A script runs one `mlkd` command under `srun` (one task per process: several tasks train
data-parallel, the trainer reads SLURM's variables), logs into ``EXP_DIR/slurm/log/`` and
can be an array over items (e.g. languages) that replace ``{item}`` in the arguments.
Dependencies are ``afterok`` with ``--kill-on-invalid-dep=yes``, so a failed job cancels
its dependents; resubmitting a graph is safe because finished stages are "up to date".
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from mlkd_cli.errors import ConfigError, StageError
from mlkd_cli.fsutil import atomic_write_text

ITEM = "{item}"


@dataclasses.dataclass(frozen=True)
class SlurmConfig:
    """Resources of a job; any field may come from a YAML file (``--config``)."""

    partition: str = ""
    time: str = ""  # e.g. 4:00:00
    cpus_per_task: int = 2
    mem: str = ""  # e.g. 16G
    gpus_per_node: int = 0
    nodes: int = 1
    ntasks_per_node: int = 1  # processes per node (one per GPU for data-parallel training)
    account: str = ""
    qos: str = ""

    def __post_init__(self) -> None:
        for name in ("cpus_per_task", "nodes", "ntasks_per_node"):
            if getattr(self, name) < 1:
                raise ConfigError(f"slurm {name} must be at least 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0:
            raise ConfigError(f"slurm gpus_per_node must be >= 0, got {self.gpus_per_node}")


def quote_arg(arg: str) -> str:
    """Shell-quote ``arg``, leaving each ``{item}`` as the array item's value."""
    return '"$item"'.join(shlex.quote(part) if part else "" for part in arg.split(ITEM)) or "''"


def job_script(name: str, mlkd_args: list[str], config: SlurmConfig, log_dir: Path, workdir: Path,
               items: list[str] | None = None, executable: str | None = None) -> str:
    """The text of an sbatch script that runs ``mlkd MLKD_ARGS`` (per array item)."""
    if not re.fullmatch(r"[\w.-]+", name):
        raise ConfigError(f"job name {name!r} must be letters, digits, '_', '-' or '.'")
    log = log_dir / (f"{name}.%A_%a.out" if items else f"{name}.%j.out")
    directives = {
        "job-name": name, "output": str(log), "error": str(log), "nodes": config.nodes,
        "ntasks-per-node": config.ntasks_per_node, "cpus-per-task": config.cpus_per_task,
        "partition": config.partition, "time": config.time, "mem": config.mem,
        "gpus-per-node": config.gpus_per_node or "", "account": config.account, "qos": config.qos,
        "array": f"0-{len(items) - 1}" if items else "",
    }
    lines = ["#!/usr/bin/env bash"]
    lines += [f"#SBATCH --{key}={value}" for key, value in directives.items() if value != ""]
    lines += ["set -euo pipefail", f"cd {shlex.quote(str(workdir))}"]
    if items:
        lines += [f"items=({' '.join(shlex.quote(i) for i in items)})", 'item="${items[$SLURM_ARRAY_TASK_ID]}"']
    # Rendezvous for data-parallel training: the first node of the allocation hosts it.
    lines += ['export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
              'export MASTER_PORT="${MASTER_PORT:-$((29500 + SLURM_JOB_ID % 1000))}"']
    mlkd = executable or shutil.which("mlkd") or f"{sys.executable} -m mlkd_cli"
    command = " ".join([*(shlex.quote(p) for p in mlkd.split()), *(quote_arg(a) for a in mlkd_args)])
    lines.append(f"srun {command}")
    return "\n".join(lines) + "\n"


def write_job(exp_dir: Path, name: str, mlkd_args: list[str], config: SlurmConfig,
              items: list[str] | None = None) -> Path:
    """Write ``EXP_DIR/slurm/<name>.sbatch`` (logs go to ``EXP_DIR/slurm/log/``); return its path."""
    slurm_dir = (exp_dir / "slurm").resolve()
    (slurm_dir / "log").mkdir(parents=True, exist_ok=True)
    path = slurm_dir / f"{name}.sbatch"
    atomic_write_text(path, job_script(name, mlkd_args, config, slurm_dir / "log", Path.cwd(), items))
    path.chmod(0o755)
    return path


def submit(script: Path, after: list[str], env: dict | None = None) -> str:
    """``sbatch`` the script after the ``after`` jobs succeed; return the job id."""
    if shutil.which("sbatch", path=(env or {}).get("PATH")) is None:
        raise StageError("sbatch not found: run on a SLURM login node, or write the script only with --dry-run")
    cmd = ["sbatch", "--parsable"]
    if after:
        cmd += [f"--dependency=afterok:{':'.join(after)}", "--kill-on-invalid-dep=yes"]
    result = subprocess.run([*cmd, str(script)], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise StageError(f"{script}: sbatch failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().split(";")[0]
