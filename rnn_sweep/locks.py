"""Lock files that keep two processes out of one run or sweep directory.

A lock is a file created with ``O_EXCL`` holding ``host pid``: of two processes
starting together exactly one wins. A lock left by a dead process on this host
(a killed run) is stale and taken over; one from another host cannot be checked
and is respected. A sweep's lock also counts its workers: every worker process
registers ``<sweep dir>/.workers/<host>-<pid>``, and a lock whose holder died is
still held while any registered worker on this host is alive (a worker of a
killed sweep must never race a rerun).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
from pathlib import Path

log = logging.getLogger("rnn_sweep.locks")
WORKERS_DIR = ".workers"


class Locked(RuntimeError):
    """Another live process holds the lock."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) runs nothing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class DirLock:
    """An exclusive lock file ``<directory>/<name>``.

    Args:
        directory: the run or sweep directory.
        name: the lock file's name.
        what: what the lock guards, for messages (``sweep``, ``run``).
        hint: how to get past a live lock, appended to the message.
    """

    def __init__(self, directory: str | os.PathLike, name: str, what: str, hint: str) -> None:
        self.path = Path(directory) / name
        self.what, self.hint = what, hint
        self.owner = f"{socket.gethostname()} {os.getpid()}"

    def acquire(self) -> None:
        """Take the lock, or raise Locked naming the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._remove_if_stale():
                    raise Locked(self._held_message()) from None
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self.owner + "\n")
            return
        raise Locked(self._held_message())

    def release(self) -> None:
        """Remove the lock if this process still holds it."""
        try:
            if self.path.read_text().strip() == self.owner:
                self.path.unlink()
        except FileNotFoundError:
            pass

    def holder(self) -> tuple[str, int] | None:
        """(host, pid) of the holder; None when unlocked; pid -1 while being written or garbage."""
        try:
            host, pid = self.path.read_text().split()
            return host, int(pid)
        except FileNotFoundError:
            return None
        except ValueError:
            return ("?", -1)

    def live_workers(self) -> list[int]:
        """Pids of registered workers on this host that are still alive."""
        host = socket.gethostname()
        alive = []
        for entry in sorted((self.path.parent / WORKERS_DIR).glob(f"{host}-*")):
            try:
                pid = int(entry.name.rsplit("-", 1)[1])
            except ValueError:
                continue
            if pid != os.getpid() and pid_alive(pid):
                alive.append(pid)
            else:
                entry.unlink(missing_ok=True)
        return alive

    def _remove_if_stale(self) -> bool:
        holder = self.holder()
        if holder is None:
            return True  # released meanwhile: try again
        host, pid = holder
        if host != socket.gethostname() or pid < 0 or pid_alive(pid) or self.live_workers():
            return False
        log.warning("removing stale %s lock %s (process %d is gone)", self.what, self.path, pid)
        self.path.unlink(missing_ok=True)
        return True

    def _held_message(self) -> str:
        holder = self.holder()
        workers = self.live_workers()
        if holder and holder[0] == socket.gethostname() and holder[1] > 0 and not pid_alive(holder[1]) and workers:
            who = f"worker process(es) {', '.join(map(str, workers))} of a killed {self.what}"
        else:
            who = f"process {holder[1]} on {holder[0]}" if holder else "another process"
        return (f"another {self.what} ({who}) is running in {self.path.parent}; {self.hint} "
                f"(if that process is gone, delete {self.path})")


def register_worker(sweep_dir: str | os.PathLike) -> None:
    """Mark this process as a live worker of the sweep in ``sweep_dir`` (until it exits)."""
    path = Path(sweep_dir) / WORKERS_DIR / f"{socket.gethostname()}-{os.getpid()}"
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    atexit.register(path.unlink, missing_ok=True)
