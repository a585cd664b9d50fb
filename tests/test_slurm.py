"""`mlkd slurm`: job scripts (quoting, arrays, resources) and job graphs on a real SLURM."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli
from mlkd_cli.cli import COMMANDS
from mlkd_cli.config import load_yaml
from mlkd_cli.errors import ConfigError
from mlkd_cli.slurm import SlurmConfig, job_script

JOB_COMMANDS = ", ".join(name for name in COMMANDS if name != "slurm")
CONF = Path(__file__).resolve().parents[1] / "conf" / "slurm"
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


@pytest.mark.parametrize("args, message", [
    (["--partition", "gpu\ntouch x"], "--partition 'gpu\\ntouch x' must not contain spaces or control characters"),
    (["--account", "a\rb"], "--account 'a\\rb' must not contain spaces or control characters"),
    (["--qos", "high prio"], "--qos 'high prio' must not contain spaces or control characters"),
    (["--time", "4h"], ("--time '4h' is not a SLURM time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, "
                        "infinite or UNLIMITED")),
    (["--time", "1:2:3:4"], "--time '1:2:3:4' is not a SLURM time"),
    (["--mem", "16GB"], "--mem '16GB' is not SLURM memory: a number of MB or one with a K, M, G or T suffix"),
    (["--mem", "16G\n#SBATCH --qos=x"], "--mem '16G\\n#SBATCH --qos=x' must not contain spaces or control characters"),
    (["--nodes", "0"], "--nodes must be at least 1, got 0"),
    (["--name", "a\nb"], "--name 'a\\nb': a job name is letters, digits, '_', '-' or '.'"),
    (["--array", "en \x01de"], "--array item '\\x01de' must not contain control characters"),
    (["--after", "12\ntouch x"], "--after '12\\ntouch x' is not a job id (digits, or JOBID_TASK for one array task)"),
    (["--after", "afterok:12"], "--after 'afterok:12' is not a job id"),
])
def test_a_value_that_would_break_the_script_is_one_error_and_nothing_is_written(tmp_path, args, message):
    result = run_cli("slurm", "--name", "job", *args, tmp_path / "exp", "--", "decode", "m", "cuts.jsonl.gz")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(f"Error: {message}")
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("mlkd_args, message", [
    (["slurm", "--name", "x"],
     "a job cannot run `mlkd slurm` itself; after -- give the command it runs, e.g. -- decode ..."),
    (["decoed", "m"], f"after -- comes the mlkd command the job runs ({JOB_COMMANDS}); got 'decoed'"),
    (["-v"], f"after -- comes the mlkd command the job runs ({JOB_COMMANDS}); got nothing"),
])
def test_the_job_must_run_an_mlkd_command(tmp_path, mlkd_args, message):
    result = run_cli("slurm", "--name", "job", tmp_path / "exp", "--", *mlkd_args)
    assert result.exit_code == 1 and result.output.splitlines()[-1] == f"Error: {message}"
    assert not (tmp_path / "exp").exists()


def test_verbose_may_precede_the_command(tmp_path):
    result = run_cli("slurm", "--name", "job", tmp_path / "exp", "--", "-v", "score", "--help")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "exp" / "slurm" / "job.sbatch").read_text().splitlines()[-1].endswith(" -v score --help")


@pytest.mark.parametrize("yaml, message", [
    ("time: 4:00:00\n", ("slurm time must be text, got 14400; quote it in the YAML (unquoted, YAML reads "
                         "4:00:00 as the number 14400)")),
    ("time: '90 min'\n", "slurm time '90 min' must not contain spaces or control characters"),
    ("mem: 2X\n", "slurm mem '2X' is not SLURM memory"),
    ("partition: \"gpu\\ntouch x\"\n", "slurm partition 'gpu\\ntouch x' must not contain spaces or control characters"),
    ("cpus_per_task: '4'\n", "slurm cpus_per_task must be a whole number, got '4'"),
    ("gpus_per_node: -1\n", "slurm gpus_per_node must be at least 0, got -1"),
])
def test_yaml_values_are_checked_and_the_error_names_file_and_key(tmp_path, yaml, message):
    config = tmp_path / "res.yaml"
    config.write_text(yaml)
    with pytest.raises(ConfigError) as error:
        load_yaml(SlurmConfig, config)
    assert str(error.value).startswith(f"{config}: {message}")
    result = run_cli("slurm", "--name", "job", "--config", config, tmp_path / "exp", "--", "score", "--help")
    assert result.exit_code == 1 and result.output.splitlines()[-1].startswith(f"Error: {config}: {message}")
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("time, mem", [("30", "16G"), ("30:00", "500M"), ("4:00:00", "4096"), ("2-12", "1T"),
                                       ("2-12:30", "512k"), ("2-12:30:15", "0"), ("infinite", "8g"), ("UNLIMITED", "")])
def test_every_slurm_time_and_memory_format_is_accepted(time, mem):
    config = SlurmConfig(time=time, mem=mem)
    assert (config.time, config.mem) == (time, mem)


def test_dependencies_are_in_the_script_also_in_a_dry_run(tmp_path):
    result = run_cli("slurm", "--name", "then", "--after", "41", "--after", "42_3", "--dry-run", tmp_path / "exp",
                     "--", "score", "--help")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "exp" / "slurm" / "then.sbatch").read_text().splitlines()
    assert "#SBATCH --dependency=afterok:41:42_3" in lines and "#SBATCH --kill-on-invalid-dep=yes" in lines


def test_a_path_with_spaces_or_hash_is_quoted_on_sbatch_lines(tmp_path):
    script = job_script("t", ["score", "--help"], SlurmConfig(partition="a\\b"), tmp_path / 'a b#"c', tmp_path)
    assert f'#SBATCH --output="{tmp_path}/a b#\\"c/t.%j.out"' in script.splitlines()
    assert '#SBATCH --partition="a\\\\b"' in script.splitlines()


@pytest.mark.parametrize("exp", ["exp%j", "exp\\1", "exp\n1"])
def test_an_experiment_dir_slurm_would_expand_is_refused(tmp_path, exp):
    result = run_cli("slurm", "--name", "job", tmp_path / exp, "--", "score", "--help")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (f"Error: log dir {str(tmp_path / exp / 'slurm' / 'log')!r} must not "
                                             "contain control characters, '%' or '\\' (SLURM expands them in log "
                                             "file names); choose another EXP_DIR")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, directives", [
    ("gpu", ["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=8", "--partition=gpu", "--time=1-00:00:00",
             "--mem=32G", "--gpus-per-node=1"]),
    ("cpu", ["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=4", "--partition=cpu", "--time=4:00:00",
             "--mem=8G"]),
])
def test_the_shipped_resource_files_load_and_make_a_script(tmp_path, name, directives):
    result = run_cli("slurm", "--name", name, "--config", CONF / f"{name}.yaml", "--dry-run", tmp_path / "exp",
                     "--", "decode", "exp/student", "data/manifests/test_cuts.jsonl.gz")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "exp" / "slurm" / f"{name}.sbatch").read_text()
    sbatch = [line.removeprefix("#SBATCH ") for line in text.splitlines() if line.startswith("#SBATCH --")]
    assert sbatch[3:] == directives  # after job-name, output, error; no account/qos (empty), no GPU on cpu


def test_job_graph_on_a_real_cluster_and_a_failure_cancels_dependents(slurm_cluster, tmp_path, monkeypatch):
    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    exp = tmp_path / "exp dir #1"  # quoted on the #SBATCH lines, or sbatch would cut the log path
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


@pytest.mark.slow  # srun (test_slurm_cluster) and data-parallel training (test_data_parallel) are fast tests
def test_two_task_srun_trains_data_parallel(slurm_cluster, prepared, tmp_path, monkeypatch):
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
