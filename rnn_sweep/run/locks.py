"""Lock files that keep two processes out of one run or sweep directory.

A lock is a file created with ``O_EXCL`` holding ``host pid start``: of two
processes starting together exactly one wins. ``start`` is the process's start
time (``/proc/<pid>/stat`` field 22, clock ticks since boot): a pid the kernel
has since given to another process is not the holder, so a reused pid never
keeps a lock forever. A lock left by a dead process on this host (a killed run)
is stale and taken over; one from another host cannot be checked and is
respected. Lock files of older versions (``host pid``) are read as before,
without the start-time check.

A sweep's lock also counts its workers: every worker process registers
``<sweep dir>/.workers/<host>-<pid>`` (holding its start time), and a lock
whose holder died is still held while any registered worker on this host is
alive (a worker of a killed sweep must never race a rerun). Entries of dead
workers are removed whenever a sweep takes the lock.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
from pathlib import Path

log = logging.getLogger("rnn_sweep.run.locks")
WORKERS_DIR = ".workers"


class Locked(RuntimeError):
    """Another live process holds the lock."""


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` from field 3 (state) on, or None where it cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, field 22 of its stat), None where unknown."""
    fields = _stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` exists on this host (zombies count as gone).

    With ``start`` (a :func:`process_start` value recorded earlier), a process
    that started at another time is a different one that got the same pid: gone.
    """
    if pid <= 0:
        return False  # 0 and negative pids name process groups, never a holder
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc here: trust the signal
    if fields[0] == "Z":  # a zombie (killed, not yet reaped) runs nothing
        return False
    return start is None or len(fields) <= 19 or fields[19] == start


def _owner_line() -> str:
    start = process_start(os.getpid())
    return f"{socket.gethostname()} {os.getpid()}" + (f" {start}" if start else "")


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
        self.owner = _owner_line()

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

    def holder(self) -> tuple[str, int, str | None] | None:
        """(host, pid, start time or None) of the holder; None when unlocked; pid -1 while being written or garbage."""
        try:
            fields = self.path.read_text().split()
        except FileNotFoundError:
            return None
        try:
            if len(fields) in (2, 3):
                return fields[0], int(fields[1]), (fields[2] if len(fields) == 3 else None)
        except ValueError:
            pass
        return ("?", -1, None)

    def live_workers(self) -> list[int]:
        """Pids of registered workers on this host that are still alive; entries of dead ones are removed."""
        return live_workers(self.path.parent)

    def _holder_alive(self, holder: tuple[str, int, str | None]) -> bool:
        host, pid, start = holder
        return host != socket.gethostname() or pid < 0 or pid_alive(pid, start)

    def _remove_if_stale(self) -> bool:
        holder = self.holder()
        if holder is None:
            return True  # released meanwhile: try again
        if self._holder_alive(holder) or self.live_workers():
            return False
        log.warning("removing stale %s lock %s (process %d is gone)", self.what, self.path, holder[1])
        self.path.unlink(missing_ok=True)
        return True

    def _held_message(self) -> str:
        holder = self.holder()
        workers = self.live_workers()
        if holder and not self._holder_alive(holder) and workers:
            who = f"worker process(es) {', '.join(map(str, workers))} of a killed {self.what}"
        else:
            who = f"process {holder[1]} on {holder[0]}" if holder else "another process"
        return (f"another {self.what} ({who}) is running in {self.path.parent}; {self.hint} "
                f"(if that process is gone, delete {self.path})")


def live_workers(sweep_dir: str | os.PathLike) -> list[int]:
    """Pids of the live registered workers of the sweep in ``sweep_dir`` (this host); dead entries are removed.

    An entry holds its worker's start time (an empty entry, from an older
    version, is checked by pid alone); an entry whose pid now belongs to a
    process that started at another time is dead.
    """
    host = socket.gethostname()
    folder = Path(sweep_dir) / WORKERS_DIR
    alive = []
    for entry in sorted(folder.glob(f"{host}-*")):
        try:
            pid = int(entry.name.rsplit("-", 1)[1])
            start = entry.read_text().strip() or None
        except (ValueError, OSError):
            continue
        if pid != os.getpid() and pid_alive(pid, start):
            alive.append(pid)
        else:
            entry.unlink(missing_ok=True)
    try:
        folder.rmdir()  # only when empty: nothing of a live worker is touched
    except OSError:
        pass
    return alive


def register_worker(sweep_dir: str | os.PathLike) -> None:
    """Mark this process as a live worker of the sweep in ``sweep_dir`` (until it exits)."""
    path = Path(sweep_dir) / WORKERS_DIR / f"{socket.gethostname()}-{os.getpid()}"
    if path.exists():
        return
    for _ in range(3):  # another process may remove the folder while it is empty (live_workers)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.write_text((process_start(os.getpid()) or "") + "\n")
            break
        except FileNotFoundError:
            continue
    atexit.register(path.unlink, missing_ok=True)
