"""A private single-node Slurm cluster for tests (Debian's slurm-wlm, root only).

Everything lives under one directory: munge key/socket, slurm.conf, state,
spool, logs and pid files, so the machine's own services (if any) are not
touched. ``SlurmCluster.env()`` is the environment a client (sbatch, squeue,
submitit) needs: ``SLURM_CONF`` and a PATH with a stand-in ``sacct``.

There is no ``sacct`` without slurmdbd; submitit polls it to learn about jobs
that died before writing their result. The stand-in answers from
``squeue --states=all`` in sacct's ``JobID|State|NodeList`` format, so such a
failure ends the sweep instead of hanging it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged")

SACCT_STANDIN = """#!/bin/sh
# Test stand-in for sacct (no slurmdbd): job states from squeue, sacct's parsable format.
echo 'JobID|State|NodeList'
exec squeue --states=all --noheader --format='%i|%T|%N'
"""


def unavailable_reason() -> str | None:
    """Why a private cluster cannot be started here, or None if it can (installing if needed)."""
    if os.geteuid() != 0:
        return "the private Slurm cluster needs root (munged/slurmd as root, apt-get install slurm-wlm)"
    if shutil.which("slurmctld") and shutil.which("munged"):
        return None
    if not shutil.which("apt-get"):
        return "slurm-wlm is not installed and apt-get is not available to install it"
    return None


def ensure_installed(timeout: int = 600) -> None:
    """``apt-get install slurm-wlm`` (which pulls munge) when slurmctld is missing."""
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=timeout, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge"],
                   check=True, env=env, timeout=timeout, capture_output=True)


def _node_line(hostname: str) -> str:
    """This machine's NodeName line from ``slurmd -C`` (RealMemory included), at 127.0.0.1."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
    fields = [f for f in line.split() if not f.startswith("NodeName=")]
    return f"NodeName={hostname} NodeAddr=127.0.0.1 " + " ".join(fields) + " State=UNKNOWN"


class SlurmCluster:
    """slurmctld + slurmd + munged with private paths under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.bin = self.root / "bin"
        self.munge_socket = self.root / "munge" / "munge.socket"

    def env(self) -> dict[str, str]:
        """Environment for Slurm clients (and the Hydra app that submits jobs)."""
        return {**os.environ, "SLURM_CONF": str(self.conf),
                "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"}

    def _write_files(self) -> None:
        for sub in ("munge", "state", "spool", "log", "run", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        r = self.root
        self.conf.write_text("\n".join([
            "ClusterName=rnnsweeptest",
            f"SlurmctldHost={self.host}",
            "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "SlurmUser=root", "SlurmdUser=root",
            "SlurmctldPort=16817", "SlurmdPort=16818",
            f"StateSaveLocation={r}/state", f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldLogFile={r}/log/slurmctld.log", f"SlurmdLogFile={r}/log/slurmd.log",
            f"SlurmctldPidFile={r}/run/slurmctld.pid", f"SlurmdPidFile={r}/run/slurmd.pid",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
            "MailProg=/bin/true", "MinJobAge=600", "ReturnToService=2",
            "SchedulerType=sched/backfill",
            _node_line(self.host),
            f"PartitionName=test Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))
        sacct = self.bin / "sacct"
        sacct.write_text(SACCT_STANDIN)
        os.chmod(sacct, 0o755)

    def start(self, timeout: float = 60) -> None:
        """Start munged, slurmctld and slurmd; return when the node is idle."""
        self._write_files()
        m = self.root / "munge"
        subprocess.run(["munged", f"--socket={self.munge_socket}", f"--key-file={m}/munge.key",
                        f"--pid-file={m}/munged.pid", f"--seed-file={m}/munged.seed",
                        f"--log-file={m}/munged.log", "--force"], check=True, capture_output=True)
        env = self.env()
        subprocess.run(["slurmctld", "-c"], check=True, env=env, capture_output=True)
        subprocess.run(["slurmd"], check=True, env=env, capture_output=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout
            if state.strip() == "idle":
                return
            time.sleep(0.2)
        raise RuntimeError(f"Slurm node never became idle (last state {state.strip()!r}); "
                           f"see {self.root / 'log'}")

    def stop(self, timeout: float = 30) -> None:
        """Cancel every job, wait for the queue to drain, then stop the daemons."""
        env = self.env()
        if self.conf.exists():
            subprocess.run(["scancel", "--full", "--partition=test"], env=env, capture_output=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                q = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True)
                if q.returncode != 0 or not q.stdout.strip():
                    break
                time.sleep(0.3)
        for pid_file in (self.root / "run" / "slurmd.pid", self.root / "run" / "slurmctld.pid",
                         self.root / "munge" / "munged.pid"):
            _terminate(pid_file, timeout)


def _terminate(pid_file: Path, timeout: float) -> None:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[-1].startswith("Z"):
                    return  # a zombie has exited; its parent will reap it
        except FileNotFoundError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
