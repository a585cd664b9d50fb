"""sbatch job scripts for any mlkd command, written into the experiment directory.

A script runs one `mlkd` command under `srun` (one task per process: several tasks train
data-parallel, the trainer reads SLURM's variables), logs into ``EXP_DIR/slurm/log/`` and
can be an array over items (e.g. languages) that replace ``{item}`` in the arguments.
Dependencies are ``afterok`` with ``--kill-on-invalid-dep=yes``, written into the script, so
a failed job cancels its dependents; resubmitting a graph is safe because finished stages
are "up to date".

Every value that lands on an ``#SBATCH`` line is checked first: a newline in it would end
the directive and run the rest as a shell command.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from mlkd_cli.errors import ConfigError, StageError
from mlkd_cli.fsutil import atomic_write_text

ITEM = "{item}"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LOG_UNSAFE = re.compile(r"[\x00-\x1f\x7f%\\]")
BLANK = re.compile(r"[\s\x00-\x1f\x7f]")
TIME = re.compile(r"[0-9]+(:[0-9]+){0,2}|[0-9]+-[0-9]+(:[0-9]+){0,2}|(?i:infinite|unlimited)")
MEMORY = re.compile(r"[0-9]+[KMGTkmgt]?")
JOB_ID = re.compile(r"[0-9]+(_[0-9]+)?")
# Characters sbatch reads literally on an #SBATCH line; anything else is double-quoted
# (sbatch splits at spaces, and '#' starts a comment).
PLAIN_DIRECTIVE = re.compile(r"[\w.,:/%=+@-]+", re.ASCII)
FORMATS = {
    "time": (TIME, "a SLURM time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, infinite or UNLIMITED"),
    "mem": (MEMORY, "SLURM memory: a number of MB or one with a K, M, G or T suffix, e.g. 16G, 500M, 4096, 1T"),
}
MINIMUM = {"cpus_per_task": 1, "gpus_per_node": 0, "nodes": 1, "ntasks_per_node": 1}
ROOT_FLAGS = ("-v", "--verbose")  # options of `mlkd` itself that may precede the command


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
        for field in dataclasses.fields(self):
            problem = resource_problem(field.name, getattr(self, field.name))
            if problem:
                raise ConfigError(f"slurm {field.name} {problem}")


def resource_problem(key: str, value: object) -> str | None:
    """Why ``value`` cannot be the SlurmConfig field ``key`` (phrased to follow its name), or None."""
    if key in MINIMUM:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be a whole number, got {value!r}"
        return f"must be at least {MINIMUM[key]}, got {value}" if value < MINIMUM[key] else None
    if not isinstance(value, str):
        why = " (unquoted, YAML reads 4:00:00 as the number 14400)" if key == "time" else ""
        return f"must be text, got {value!r}; quote it in the YAML{why}"
    if BLANK.search(value):
        return f"{value!r} must not contain spaces or control characters"
    pattern, what = FORMATS.get(key, (None, ""))
    if value and pattern and not pattern.fullmatch(value):
        return f"{value!r} is not {what}"
    return None


def quote_arg(arg: str) -> str:
    """Shell-quote ``arg``, leaving each ``{item}`` as the array item's value."""
    return '"$item"'.join(shlex.quote(part) if part else "" for part in arg.split(ITEM)) or "''"


def directive_value(value: str) -> str:
    """``value`` as sbatch reads it back from an ``#SBATCH`` line (double-quoted unless plain)."""
    if PLAIN_DIRECTIVE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_command(mlkd_args: Sequence[str], commands: Sequence[str]) -> None:
    """Raise ConfigError unless ``mlkd_args`` run one of ``commands`` (mlkd's, from the CLI)."""
    command = next((a for a in mlkd_args if a not in ROOT_FLAGS), None)
    if command == "slurm":
        raise ConfigError("a job cannot run `mlkd slurm` itself; after -- give the command it runs, e.g. -- decode ...")
    if command not in commands:
        choices = ", ".join(c for c in commands if c != "slurm")
        raise ConfigError(f"after -- comes the mlkd command the job runs ({choices}); "
                          f"got {repr(command) if command else 'nothing'}")


def check_job(name: str, mlkd_args: Sequence[str], log_dir: Path, items: Sequence[str] | None,
              after: Sequence[str]) -> None:
    """Raise ConfigError unless every value of the job can be written into its script."""
    if not re.fullmatch(r"[\w.-]+", name):
        raise ConfigError(f"--name {name!r}: a job name is letters, digits, '_', '-' or '.'")
    for item in items or []:
        if CONTROL.search(item):
            raise ConfigError(f"--array item {item!r} must not contain control characters")
    for job in after:
        if not JOB_ID.fullmatch(job):
            raise ConfigError(f"--after {job!r} is not a job id (digits, or JOBID_TASK for one array task)")
    if LOG_UNSAFE.search(str(log_dir)):
        raise ConfigError(f"log dir {str(log_dir)!r} must not contain control characters, '%' or '\\' "
                          "(SLURM expands them in log file names); choose another EXP_DIR")


def job_script(name: str, mlkd_args: list[str], config: SlurmConfig, log_dir: Path, workdir: Path,
               items: list[str] | None = None, executable: str | None = None, after: Sequence[str] = ()) -> str:
    """The text of an sbatch script that runs ``mlkd MLKD_ARGS`` (per array item) after the ``after`` jobs."""
    check_job(name, mlkd_args, log_dir, items, after)
    log = log_dir / (f"{name}.%A_%a.out" if items else f"{name}.%j.out")
    directives = {
        "job-name": name, "output": str(log), "error": str(log), "nodes": config.nodes,
        "ntasks-per-node": config.ntasks_per_node, "cpus-per-task": config.cpus_per_task,
        "partition": config.partition, "time": config.time, "mem": config.mem,
        "gpus-per-node": config.gpus_per_node or "", "account": config.account, "qos": config.qos,
        "array": f"0-{len(items) - 1}" if items else "",
        "dependency": f"afterok:{':'.join(after)}" if after else "", "kill-on-invalid-dep": "yes" if after else "",
    }
    lines = ["#!/usr/bin/env bash"]
    lines += [f"#SBATCH --{key}={directive_value(str(value))}" for key, value in directives.items() if value != ""]
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
              items: list[str] | None = None, after: Sequence[str] = ()) -> Path:
    """Write ``EXP_DIR/slurm/<name>.sbatch`` (logs go to ``EXP_DIR/slurm/log/``); return its path."""
    slurm_dir = (exp_dir / "slurm").resolve()
    text = job_script(name, mlkd_args, config, slurm_dir / "log", Path.cwd(), items, after=after)
    (slurm_dir / "log").mkdir(parents=True, exist_ok=True)
    path = slurm_dir / f"{name}.sbatch"
    atomic_write_text(path, text)
    path.chmod(0o755)
    return path


def submit(script: Path, env: dict | None = None) -> str:
    """``sbatch`` the script (its dependencies are in it); return the job id."""
    if shutil.which("sbatch", path=(env or {}).get("PATH")) is None:
        raise StageError("sbatch not found: run on a SLURM login node, or write the script only with --dry-run")
    result = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise StageError(f"{script}: sbatch failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().split(";")[0]
