"""Writes EXP/RESULTS.md for local/run.sh and prints it: the command, date, commit, machine, each
stage's wall time and the comparison table, so that a run's timing is never a separate step.
  python local/results.py --exp EXP --times EXP/stage_times.tsv --command "local/run.sh ..." [--compare TABLE.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

STAGES = {"0": "corpus", "1": "prepare", "2": "teachers", "3": "distill", "4": "finetune", "5": "baselines",
          "6": "decode", "7": "score"}


def machine() -> str:
    """Cores, CPU model, torch and its CPU capability, whether bf16 is native, the memory allocator, GPUs."""
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    bf16 = "native" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "emulated (presets fall back to fp32)"
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    allocator = "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "glibc malloc"
    return (f"{len(os.sched_getaffinity(0))} CPU cores ({model}), torch {torch.__version__}, CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}, bf16 {bf16}, {allocator}; "
            + (", ".join(gpus) if gpus else "no GPU"))


def commit() -> str:
    """The checkout's commit (and whether it has local changes), else the installed mlkd's version."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" with local changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        from mlkd_cli.version import __version__

        return f"mlkd {__version__} (not a git checkout)"


def duration(seconds: int) -> str:
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}"


def stage_table(times: Path) -> str:
    """The latest wall time of each stage (an earlier run's where this one skipped the stage). A stage
    that ran beside others (the baseline beside stages 2-4) adds only the time the run waited for it
    to the total."""
    latest: dict[str, tuple[int, str, int | None]] = {}
    for line in times.read_text().splitlines() if times.is_file() else []:
        stage, seconds, finished, *beside = line.split("\t")
        waited = int(beside[0].removeprefix("beside:")) if beside and beside[0].startswith("beside:") else None
        latest[stage] = (int(seconds), finished, waited)
    def name(stage: str, waited: int | None) -> str:
        return STAGES[stage] + ("" if waited is None else f" (beside stages 2-4, then waited {duration(waited)})")

    rows = [f"| {stage} {name(stage, waited)} | {duration(s)} | {finished} |"
            for stage, (s, finished, waited) in sorted(latest.items())]
    total = sum(s if waited is None else waited for s, _, waited in latest.values())
    return "\n".join(["| stage | wall time | finished |", "|---|---:|---|", *rows, f"| total | {duration(total)} | |"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", type=Path, required=True)
    parser.add_argument("--times", type=Path, required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--compare", type=Path, help="the Markdown tables of `mlkd score --compare --markdown`")
    args = parser.parse_args()
    if args.compare and args.compare.is_file():
        scored = dt.datetime.fromtimestamp(args.compare.stat().st_mtime, dt.timezone.utc)
        results = f"Scored {scored:%Y-%m-%d %H:%M} UTC (stage 7).\n\n{args.compare.read_text().strip()}"
    else:
        results = "(stage 7 has not run: no scores yet)"
    text = "\n".join([
        f"# Results of `{args.command}`",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- commit: {commit()}",
        f"- machine: {machine()}",
        "",
        "## Stage wall times",
        "",
        stage_table(args.times),
        "",
        "## Greedy CER (%) on the test conditions",
        "",
        results,
        "",
    ])
    (args.exp / "RESULTS.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
