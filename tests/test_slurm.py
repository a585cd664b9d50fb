"""`mlkd slurm`: job scripts (quoting, arrays, resources) and job graphs on a real SLURM."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from conftest import run_cli
from slurm_cluster import slurm_cluster  # noqa: F401
from mlkd_cli.slurm import SlurmConfig, job_script

NASTY = ["plain", "with space", "it's", 'say "hi"', "$HOME", "a;b", "*"]


def fake_srun(tmp_path: Path) -> dict:
    """A PATH whose srun prints each argument on its own line, and whose scontrol names a host."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/usr/bin/env bash\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\necho node1\n")
    for f in bin_dir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "node1"}


def test_arguments_survive_quoting_and_items_substitute(tmp_path):
    script = tmp_path / "job.sbatch"
    script.write_text(job_script("t", ["decode", *NASTY, "exp/teacher_{item}", "{item}"], SlurmConfig(), tmp_path,
                                 tmp_path / "dir with space", items=["en", "d e"], executable="mlkd"))
    (tmp_path / "dir with space").mkdir()
    env = {**fake_srun(tmp_path), "SLURM_ARRAY_TASK_ID": "1"}
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["mlkd", "decode", *NASTY, "exp/teacher_d e", "d e"]


def test_resources_and_logs_inside_the_experiment_dir(tmp_path):
    cfg = tmp_path / "gpu.yaml"
    cfg.write_text("partition: gpu\ngpus_per_node: 4\nntasks_per_node: 4\ntime: '4:00:00'\naccount: speech\n")
    result = run_cli("slurm", "--name", "distill", "--config", cfg, "--nodes", "2", "--qos", "high", tmp_path / "exp",
                     "--", "distill", "--data", "data", "exp/teacher_en", "exp/student_kd")
    assert result.exit_code == 0, result.output
    script = (tmp_path / "exp" / "slurm" / "distill.sbatch").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=4", "#SBATCH --ntasks-per-node=4",
                 "#SBATCH --nodes=2", "#SBATCH --time=4:00:00", "#SBATCH --account=speech", "#SBATCH --qos=high",
                 f"#SBATCH --output={(tmp_path / 'exp' / 'slurm' / 'log').resolve()}/distill.%j.out",
                 "export MASTER_ADDR="):
        assert line in script, line
    assert "srun " in script and "distill --data data exp/teacher_en exp/student_kd" in script
    assert result.output.strip() == str((tmp_path / "exp" / "slurm" / "distill.sbatch").resolve())


def test_job_graph_on_a_real_cluster_and_a_failure_cancels_dependents(slurm_cluster, tmp_path, monkeypatch):  # noqa: F811
    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    exp = tmp_path / "exp"
    ok = run_cli("slurm", "--name", "ok", "--submit", exp, "--", "score", "--help")
    assert ok.exit_code == 0, ok.output
    first = ok.output.strip()
    then = run_cli("slurm", "--name", "then", "--after", first, "--array", "a b", "--submit", exp, "--", "score", "--help")
    assert then.exit_code == 0, then.output
    bad = run_cli("slurm", "--name", "bad", "--submit", exp, "--", "score", str(tmp_path / "missing"))
    after_bad = run_cli("slurm", "--name", "never", "--after", bad.output.strip(), "--submit", exp,
                        "--", "score", "--help")
    assert slurm_cluster.wait(first) == "COMPLETED"
    assert slurm_cluster.wait(then.output.strip()) == "COMPLETED"
    assert slurm_cluster.wait(bad.output.strip()) == "FAILED"
    assert slurm_cluster.wait(after_bad.output.strip()) == "CANCELLED"
    logs = sorted(p.name for p in (exp / "slurm" / "log").iterdir())
    assert any(name.startswith("then.") and name.endswith("_0.out") for name in logs)
    assert not any(name.startswith("never.") for name in logs)
    bad_log = next((exp / "slurm" / "log").glob("bad.*.out")).read_text()
    assert "Error:" in bad_log and "missing" in bad_log


def test_two_task_srun_trains_data_parallel(slurm_cluster, prepared, tmp_path, monkeypatch):  # noqa: F811
    from conftest import TINY_MODEL, TINY_TRAIN

    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    exp = tmp_path / "teacher_en"
    job = run_cli("slurm", "--name", "ddp", "--ntasks-per-node", "2", "--cpus-per-task", "1", "--submit", tmp_path,
                  "--", "train-teacher", "--data", prepared, "--lang", "en", "--model-config", TINY_MODEL,
                  "--train-config", TINY_TRAIN, "--max-steps", "10", exp)
    assert job.exit_code == 0, job.output
    state = slurm_cluster.wait(job.output.strip(), timeout=300)
    log = next((tmp_path / "slurm" / "log").glob("ddp.*.out")).read_text()
    assert state == "COMPLETED", log
    assert "world size 2" in (exp / "log" / "train.0.log").read_text() and (exp / "log" / "train.1.log").is_file()
    assert (exp / "final.pt").is_file()
