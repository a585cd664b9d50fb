"""local/run.sh end to end on tiny data: here, and as a SLURM job graph with the same results.

The local run goes the README's "your data" way (per-language Kaldi dirs merged by
`mlkd prepare train=... train=...`, then `local/run.sh --stage 2`); the SLURM run prepares
the multilingual dirs in stage 1. Both must end with the same models.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def recipe(tmp: Path, name: str, env: dict, *extra: str) -> subprocess.CompletedProcess:
    venv_bin = str(Path(sys.executable).parent)
    args = ["bash", "local/run.sh", "--size", "tiny", "--preset", "tiny", "--langs", "en de", "--nj", "1",
            "--corpus", str(tmp / "corpus"), "--data", str(tmp / f"data_{name}"), "--exp", str(tmp / f"exp_{name}"),
            *extra]
    return subprocess.run(args, cwd=ROOT, env={**env, "PATH": f"{venv_bin}:{env['PATH']}"}, capture_output=True,
                          text=True, timeout=900)


def mlkd(env: dict, *args: str | Path) -> subprocess.CompletedProcess:
    venv_bin = str(Path(sys.executable).parent)
    return subprocess.run(["mlkd", *map(str, args)], cwd=ROOT, env={**env, "PATH": f"{venv_bin}:{env['PATH']}"},
                          capture_output=True, text=True, timeout=600)


SPLITS = ("train", "teacher_train", "unlabeled", "dev", "test")


def split_by_language(corpus: Path, out: Path, langs: tuple[str, ...]) -> None:
    """<lang>/<split> Kaldi dirs, as a user's own corpus may come (corpus ids start with the language)."""
    for split in SPLITS:
        for lang in langs:
            (out / lang / split).mkdir(parents=True)
            for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2lang"):
                if not (corpus / split / name).is_file():  # the pool has no text
                    continue
                lines = (corpus / split / name).read_text().splitlines(keepends=True)
                (out / lang / split / name).write_text("".join(line for line in lines if line.startswith(f"{lang}-")))


def finals(exp: Path) -> dict[str, dict]:
    return {d: json.loads((exp / d / "final_metrics.json").read_text())
            for d in ("teacher_en", "teacher_de", "student_kd", "student", "baseline", "baseline_pl")}


@pytest.mark.slow  # about 3 minutes: `make test-slow`
def test_tiny_recipe_here_and_as_a_slurm_job_graph_agree(slurm_cluster, tmp_path):
    env = {**os.environ, "MLKD_CMD": "local"}
    assert recipe(tmp_path, "local", env, "--stop-stage", "0").returncode == 0  # the shared corpus
    langs = ("en", "de")
    split_by_language(tmp_path / "corpus", tmp_path / "own", langs)
    sources = [f"{split}={tmp_path / 'own' / lang / split}" for split in SPLITS for lang in langs]
    prepared = mlkd(env, "prepare", "--tokenizer", "char", "--train-set", "teacher_train", *sources,
                    tmp_path / "data_local")
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    local = recipe(tmp_path, "local", env, "--stage", "2")
    assert local.returncode == 0, local.stderr[-3000:]
    again = recipe(tmp_path, "local", env, "--stop-stage", "0")  # a re-run keeps the corpus (and its dates)
    assert again.returncode == 0 and "corpus is up to date" in again.stderr
    assert "Avg" in local.stdout and "student" in local.stdout and "baseline" in local.stdout
    env = {**os.environ, **slurm_cluster.env, "MLKD_CMD": "slurm",
           "MLKD_SLURM_OPTS": "--partition debug --gpus-per-node 0 --cpus-per-task 1 --mem 2G"}
    submitted = recipe(tmp_path, "slurm", env, "--stage", "1")
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    jobs = re.findall(r"\[slurm job (\d+)\]", submitted.stderr)
    # prepare, teachers, distill, finetune, 2 baselines, calibrate, the teachers' and the other models' decodes
    # of test, test_noisy and test_engine, the student's beam decodes, score, compare
    assert len(jobs) == 16
    prepare, teachers = jobs[0], jobs[1]
    script = (tmp_path / "exp_slurm" / "slurm" / "baseline.sbatch").read_text()
    assert f"#SBATCH --dependency=afterok:{prepare}\n" in script  # beside the student's chain, not after it
    script = (tmp_path / "exp_slurm" / "slurm" / "decode-teachers.sbatch").read_text()
    assert f"#SBATCH --dependency=afterok:{teachers}\n" in script
    for job in jobs:
        assert slurm_cluster.wait(job, timeout=600) == "COMPLETED", slurm_cluster.logs()
    ours, theirs = finals(tmp_path / "exp_local"), finals(tmp_path / "exp_slurm")
    for name in ours:
        assert ours[name].keys() == theirs[name].keys()
        for key, value in ours[name].items():
            # the local run trains side by side on 1 thread per command, the SLURM jobs on torch's default
            # threads: float sums in another order differ in the 6th digit
            expected = pytest.approx(value, rel=1e-4) if isinstance(value, float) else value
            assert theirs[name][key] == expected, (name, key)
    table = (tmp_path / "exp_slurm" / "slurm" / "log" / f"compare.{jobs[-1]}.out").read_text()
    assert "student" in table and "baseline" in table
    # resubmitting the graph: every training stage is up to date, nothing retrains
    again = recipe(tmp_path, "slurm", env, "--stage", "2", "--stop-stage", "5")
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = re.findall(r"\[slurm job (\d+)\]", again.stderr)
    for job in rerun:
        assert slurm_cluster.wait(job, timeout=300) == "COMPLETED"
    logs = [p.read_text() for job in rerun for p in (tmp_path / "exp_slurm" / "slurm" / "log").glob(f"*.{job}*.out")]
    assert len(logs) == 6 and all("up to date" in log for log in logs)  # 2 teachers, distill, finetune, 2 baselines
    assert finals(tmp_path / "exp_slurm") == theirs


@pytest.mark.parametrize("args, message", [
    (["--langs", "en", "de"], "unexpected argument 'de'; options take one value each, so quote lists"),
    (["--lang", "en"], "unknown option --lang"),
    (["--stage"], "option --stage needs a value"),
])
def test_recipe_options_are_checked_before_anything_runs(tmp_path, args, message):
    result = subprocess.run(["bash", "local/run.sh", "--corpus", str(tmp_path / "corpus"), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and message in result.stderr
    assert list(tmp_path.iterdir()) == []
