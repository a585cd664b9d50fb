"""A real single-node SLURM cluster on this machine, for tests: the `slurm_cluster` fixture.

Starts a private munged (own key and socket) and slurmctld + slurmd in the foreground, all
configured from a temp dir (slurm.conf, state, spool, logs), on free TCP ports, so that it
neither needs nor disturbs a system SLURM/munge. Tests call sbatch/squeue/scontrol/srun with
`cluster.env` (SLURM_CONF points at the private config) and wait with `cluster.wait(job_id)`.

Use it from a test module with `from slurm_cluster import slurm_cluster  # noqa: F401` (the
`from conftest import ...` style of the other tests), or list it in conftest.py's `pytest_plugins`. The Debian packages are installed when
missing and running as root; otherwise the fixture fails and names the apt-get command.
Accounting storage is off (no slurmdbd), so `sacct` does not work; final job states come
from `scontrol show job` (kept for MinJobAge) and from the jobcomp/filetxt log.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "srun")
# Job states after which a job never runs again (scontrol's JobState names).
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
                "BOOT_FAIL", "DEADLINE"}
START_TIMEOUT_S = 60
# The daemons live in /usr/sbin, which a non-root PATH often lacks.
PATH = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])


def _missing_packages() -> list[str]:
    missing = []
    for p in PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            missing.append(p)
    return missing


def ensure_slurm_installed() -> None:
    """Install the SLURM/munge packages when missing (as root, with apt-get); else fail with the command."""
    if all(shutil.which(b, path=PATH) for b in BINARIES):
        return
    missing = _missing_packages() if shutil.which("dpkg-query") else list(PACKAGES)
    cmd = f"apt-get install --no-install-recommends {' '.join(missing or PACKAGES)}"
    if os.geteuid() == 0 and shutil.which("apt-get") and missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env,
                           check=True, capture_output=True)
        except subprocess.CalledProcessError as e:
            pytest.fail(f"could not install {' '.join(missing)} ({e}); {e.stderr.decode(errors='replace')[-2000:]}")
    absent = [b for b in BINARIES if not shutil.which(b, path=PATH)]
    if absent:
        pytest.fail(f"SLURM tests need {', '.join(absent)}; install them with: sudo {cmd}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line(name: str) -> str:
    """This host's NodeName line: `slurmd -C` (real CPUs, sockets, cores, memory), NodeAddr on loopback."""
    r = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, env={**os.environ, "PATH": PATH})
    first = r.stdout.splitlines()[0] if r.returncode == 0 and r.stdout.startswith("NodeName=") else ""
    if first:
        fields = [f for f in first.split() if not f.startswith(("NodeName=", "Boards="))]
    else:
        mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        fields = [f"CPUs={os.cpu_count() or 1}", f"RealMemory={mem_kib // 1024}"]
    return f"NodeName={name} NodeAddr=127.0.0.1 {' '.join(fields)} State=UNKNOWN"


def write_slurm_conf(root: Path, node: str, user: str) -> Path:
    node_line = _node_line(node)
    cpus = int(re.search(r"CPUs=(\d+)", node_line).group(1))
    mem = int(re.search(r"RealMemory=(\d+)", node_line).group(1))
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=mlkdtest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/log/jobcomp.txt
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU={max(1, min(1024, mem // cpus))}
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=3600
SlurmdTimeout=300
{node_line}
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    node: str
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        """Run a SLURM client command (sbatch, squeue, ...) against this cluster."""
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, check=check, **kw)

    def sbatch(self, *args: str) -> str:
        """`sbatch --parsable ARGS`; return the job id."""
        r = self.run("sbatch", "--parsable", *args, check=False)
        assert r.returncode == 0, f"sbatch {' '.join(args)} failed: {r.stderr}"
        return r.stdout.strip().split(";")[0]

    def job_state(self, job_id: str) -> str | None:
        """JobState from `scontrol show job` (kept MinJobAge s), else the jobcomp log; None if unknown."""
        r = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        m = re.search(r"\bJobState=(\S+)", r.stdout)
        if m:
            return m.group(1)
        comp = self.root / "log" / "jobcomp.txt"
        if comp.exists():
            for line in reversed(comp.read_text().splitlines()):
                if f"JobId={job_id} " in line:
                    m = re.search(r"\bJobState=(\S+)", line)
                    return m.group(1) if m else None
        return None

    def wait(self, job_id: str, timeout: float = 120, poll: float = 0.5) -> str:
        """Wait until the job reaches a final state; return that state (e.g. COMPLETED, FAILED, CANCELLED)."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in FINAL_STATES:
                return state
            time.sleep(poll)
        raise TimeoutError(f"job {job_id} still {state} after {timeout}s:\n{self.logs()}")

    def logs(self, tail: int = 30) -> str:
        out = []
        for f in sorted((self.root / "log").glob("*.log")):
            out.append(f"== {f}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-tail:]))
        return "\n".join(out)


def _start(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    # Own session: everything a daemon forks can be killed as its process group at the end.
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:  # Leftovers of this daemon's own process group (slurmscriptd, slurmstepd, job tasks).
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)


def start_cluster(root: Path) -> SlurmCluster:
    ensure_slurm_installed()
    root.chmod(0o700)
    for d in ("munge", "state", "spool", "log", "run"):
        (root / d).mkdir(mode=0o700, exist_ok=True)
    (root / "munge").chmod(0o711)  # munged warns unless clients can reach its socket
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    conf = write_slurm_conf(root, node, user)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_"))}
    env["SLURM_CONF"] = str(conf)
    env["PATH"] = PATH
    cluster = SlurmCluster(root=root, conf=conf, node=node, env=env)

    key = root / "munge" / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    key.chmod(0o400)  # munged refuses keys readable by others
    sock = root / "munge" / "munge.socket"
    try:
        cluster.procs.append(_start(
            ["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={sock}",
             f"--pid-file={root}/run/munged.pid", f"--seed-file={root}/munge/munged.seed",
             f"--log-file={root}/log/munged.log"], root / "log" / "munged.out", env))
        _wait_for(lambda: sock.exists(), "munged socket", cluster)
        cluster.procs.append(_start(["slurmctld", "-D", "-i", "-f", str(conf)], root / "log" / "slurmctld.out", env))
        _wait_for(lambda: cluster.run("scontrol", "ping", check=False).stdout.count("UP") > 0, "slurmctld", cluster)
        cluster.procs.append(_start(["slurmd", "-D", "-N", node, "-f", str(conf)], root / "log" / "slurmd.out", env))
        _wait_for(lambda: cluster.run("sinfo", "-h", "-n", node, "-o", "%t", check=False).stdout.strip() == "idle",
                  "node idle", cluster)
    except BaseException:
        _stop(cluster.procs)
        raise
    return cluster


def _wait_for(ok, what: str, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        dead = [p.args[0] for p in cluster.procs if p.poll() is not None]
        if dead:
            pytest.fail(f"{', '.join(dead)} exited while waiting for {what}:\n{cluster.logs()}")
        if ok():
            return
        time.sleep(0.2)
    pytest.fail(f"SLURM test cluster: timed out waiting for {what}:\n{cluster.logs()}")


def stop_cluster(cluster: SlurmCluster) -> None:
    jobs = cluster.run("squeue", "-h", "-o", "%i", check=False).stdout.split()
    if jobs:
        cluster.run("scancel", *jobs, check=False)
    _stop(cluster.procs)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM cluster (private munged + slurmctld + slurmd); stopped at session end."""
    # pytest's temp dirs are short enough for the munge socket path (UNIX sockets: < 108 bytes).
    root = tmp_path_factory.mktemp("slurm")
    cluster = start_cluster(root)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
