"""The `slurm_cluster` fixture: a real single-node SLURM cluster runs batch jobs, dependencies and steps."""

from __future__ import annotations



def test_sbatch_wrap_writes_output(slurm_cluster, tmp_path):
    out = tmp_path / "hello.out"
    job = slurm_cluster.sbatch("--chdir", str(tmp_path), "-o", str(out), "--wrap", "echo hello from $SLURM_JOB_ID")
    assert slurm_cluster.wait(job) == "COMPLETED"
    assert out.read_text() == f"hello from {job}\n"


def test_afterok_on_failing_job_is_cancelled(slurm_cluster, tmp_path):
    failing = slurm_cluster.sbatch("--chdir", str(tmp_path), "-o", str(tmp_path / "fail.out"), "--wrap", "exit 3")
    marker = tmp_path / "dependent_ran"
    dependent = slurm_cluster.sbatch("--chdir", str(tmp_path), "-o", str(tmp_path / "dep.out"),
                                     f"--dependency=afterok:{failing}", "--kill-on-invalid-dep=yes",
                                     "--wrap", f"touch {marker}")
    assert slurm_cluster.wait(failing) == "FAILED"
    assert slurm_cluster.wait(dependent) == "CANCELLED"
    info = slurm_cluster.run("scontrol", "show", "job", "-o", dependent).stdout
    assert "Reason=DependencyNeverSatisfied" in info
    assert "ExitCode=3:0" in slurm_cluster.run("scontrol", "show", "job", "-o", failing).stdout
    assert not marker.exists() and not (tmp_path / "dep.out").exists()


def test_srun_two_tasks(slurm_cluster, tmp_path):
    out = tmp_path / "tasks.out"
    job = slurm_cluster.sbatch("--chdir", str(tmp_path), "-n", "2", "-o", str(out),
                               "--wrap", "srun -n 2 bash -c 'echo task $SLURM_PROCID of $SLURM_NTASKS'")
    assert slurm_cluster.wait(job) == "COMPLETED"
    assert sorted(out.read_text().splitlines()) == ["task 0 of 2", "task 1 of 2"]
