"""A throw-away single-node SLURM cluster for the integration test (Debian packages, as root).

The cluster keeps its state and logs in one private folder and talks on free ports. Its
configuration must sit at ``/etc/slurm/slurm.conf``: Snakemake's SLURM job step strips
``SLURM_*`` variables (``SLURM_CONF`` included) before calling ``srun``, so clients inside jobs
only find the default location. An existing ``slurm.conf`` that this module did not write is
never overwritten (the cluster then refuses to start). The node declares one stand-in GPU
(``gres.conf`` with ``File=/dev/null``) so that GPU requests are scheduled, and two partitions,
``cpu`` and ``gpu``, like the ones ``profiles/slurm`` names. Accounting is off, so completed jobs
are kept in ``slurmctld``'s memory (``MinJobAge``) and :meth:`Cluster.jobs` reads them back
with ``scontrol``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
PARTITIONS = ("cpu", "gpu")
MUNGE_PID = Path("/run/munge/munged.pid")
ETC = Path("/etc/slurm")
MARKER = "# written by tests/slurm_cluster.py"


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here (the message says why)."""


class ForeignSlurmConfig(SlurmUnavailable):
    """The machine has its own /etc/slurm configuration, which this module leaves alone."""


def _run(cmd: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def install_slurm() -> None:
    """Install SLURM and munge from the distribution's packages unless already there."""
    if all(shutil.which(b) for b in ("sbatch", "squeue", "scontrol")) and all(
        Path(p).exists() for p in ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged")
    ):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("installing and starting SLURM needs root; not running as root")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable("apt-get not found: cannot install SLURM from Debian's packages")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
        proc = _run(cmd, env=env)
        if proc.returncode != 0:
            raise SlurmUnavailable(
                f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}"
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _munge_works() -> bool:
    if shutil.which("munge") is None or shutil.which("unmunge") is None:
        return False
    cred = _run(["munge", "-n"], timeout=10)
    if cred.returncode != 0:
        return False
    return _run(["unmunge"], input=cred.stdout, timeout=10).returncode == 0


def _wait(condition, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    tails = "\n".join(
        f"--- {p} ---\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists()
    )
    raise SlurmUnavailable(f"{what} did not happen within {timeout:.0f} s\n{tails}")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie left for init to reap is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Cluster:
    """A running single-node cluster; stop it with :meth:`stop`."""

    root: Path
    host: str
    cpus: int
    mem_mb: int
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return ETC / "slurm.conf"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose SLURM clients (sbatch, squeue, scontrol) talk to this cluster."""
        env = dict(os.environ if base is None else base)
        env.pop("SLURM_CONF", None)
        return env

    def scontrol(self, *args: str) -> str:
        proc = _run(["scontrol", *args], timeout=30, env=self.env())
        if proc.returncode != 0:
            raise RuntimeError(f"scontrol {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller remembers (``scontrol show job``), one dict per job."""
        out = self.scontrol("show", "job", "--oneliner", "--details")
        records = []
        for line in out.splitlines():
            if not line.strip() or line.startswith("No jobs"):
                continue
            record: dict[str, str] = {}
            key = None
            for token in line.split():
                if "=" in token:
                    key, _, value = token.partition("=")
                    record[key] = value
                elif key is not None:  # a value with spaces (e.g. Reason)
                    record[key] += " " + token
            records.append(record)
        return records

    def node_state(self) -> str:
        """The node's state(s) as ``sinfo`` reports them, e.g. ``idle``."""
        proc = _run(["sinfo", "-h", "-N", "-o", "%T"], timeout=10, env=self.env())
        return ",".join(sorted(set(proc.stdout.split()))) or "unknown"

    def logs(self) -> str:
        """The daemons' log tails (for failure messages)."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.root / "log" / name
            if path.exists():
                parts.append(f"--- {name} ---\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop the daemons this cluster started, by their PIDs."""
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
            if _alive(pid):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        for name in ("slurm.conf", "gres.conf"):
            path = ETC / name
            if path.exists() and path.read_text().startswith(MARKER):
                path.unlink()


def _slurm_conf(root: Path, host: str, cpus: int, mem_mb: int) -> str:
    ctld_port, d_port = _free_port(), _free_port()
    partitions = "\n".join(
        f"PartitionName={p} Nodes={host} Default={'YES' if i == 0 else 'NO'} "
        "MaxTime=INFINITE State=UP"
        for i, p in enumerate(PARTITIONS)
    )
    return f"""\
{MARKER} for {root}
ClusterName=tumorsegci
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
SlurmUser=root
StateSaveLocation={root}/state/ctld
SlurmdSpoolDir={root}/state/d
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MinJobAge=86400
GresTypes=gpu
NodeName={host} CPUs={cpus} Boards=1 SocketsPerBoard=1 CoresPerSocket={cpus} ThreadsPerCore=1 \
RealMemory={mem_mb} Gres=gpu:1 State=UNKNOWN
{partitions}
"""


def start_cluster(root: Path, cpus: int | None = None, mem_mb: int = 16000) -> Cluster:
    """Configure and start munge (if not already answering), slurmctld and slurmd.

    ``root`` is an empty folder for the cluster's state and logs. ``cpus``
    defaults to the machine's CPU count. Waits until the node is idle; on failure stops what it
    started and raises :class:`SlurmUnavailable` with the daemons' logs.
    """
    if os.geteuid() != 0:
        raise SlurmUnavailable("starting SLURM daemons needs root; not running as root")
    host = _run(["hostname", "-s"], timeout=10).stdout.strip() or socket.gethostname()
    cpus = cpus or os.cpu_count() or 1
    cluster = Cluster(root=root, host=host, cpus=cpus, mem_mb=mem_mb)
    for sub in ("state/ctld", "state/d", "run", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ETC.mkdir(parents=True, exist_ok=True)
    for name in ("slurm.conf", "gres.conf"):
        path = ETC / name
        if path.exists() and not path.read_text().startswith(MARKER):
            raise ForeignSlurmConfig(
                f"{path} exists and was not written by this test: not overwriting the SLURM "
                "configuration of this machine"
            )
    try:
        (ETC / "gres.conf").write_text(
            f"{MARKER}\nAutoDetect=off\nNodeName={host} Name=gpu File=/dev/null\n"
        )
        cluster.conf.write_text(_slurm_conf(root, host, cpus, mem_mb))
        if not _munge_works():
            for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
                Path(d).mkdir(parents=True, exist_ok=True)
                shutil.chown(d, "munge", "munge")
            proc = _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], timeout=30)
            if proc.returncode != 0:
                raise SlurmUnavailable(f"munged did not start: {proc.stderr.strip()}")
            pid = _read_pid(MUNGE_PID)
            if pid is not None:
                cluster.pids["munged"] = pid
            _wait(_munge_works, 15, "munge answering", [Path("/var/log/munge/munged.log")])
        logs = [root / "log" / "slurmctld.log", root / "log" / "slurmd.log"]
        for daemon, pidfile in (
            ("slurmctld", root / "run" / "slurmctld.pid"),
            ("slurmd", root / "run" / "slurmd.pid"),
        ):
            proc = _run([f"/usr/sbin/{daemon}"], timeout=60, env=cluster.env())
            if proc.returncode != 0:
                raise SlurmUnavailable(
                    f"{daemon} did not start ({proc.returncode}): {proc.stderr.strip()}\n"
                    + cluster.logs()
                )
            _wait(lambda p=pidfile: _read_pid(p) is not None, 20, f"{daemon} pid file", logs)
            cluster.pids[daemon] = _read_pid(pidfile)
        _wait(lambda: cluster.node_state() == "idle", 60, "node idle", logs)
    except BaseException:
        cluster.stop()
        raise
    return cluster
