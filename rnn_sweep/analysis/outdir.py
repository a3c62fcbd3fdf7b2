"""The aggregator's output directory: it replaces or deletes only files it provably wrote.

A file name is not ownership. ``--out`` may hold anything (a paper's figures,
notes, an older ``grid.png``), so the aggregator keeps a record of what it wrote
there, the manifest ``.rnn-sweep-aggregate.json``: for every file, its name,
size and SHA-256. A file counts as the aggregator's only while it is a regular
file whose size and hash match the manifest. Before anything in ``--out`` is
written or removed:

* every file the aggregation would write that exists and is not the
  aggregator's refuses the whole aggregation (:class:`OutDirError`, one line
  naming the files; nothing is written or removed), and so does one of its own
  files that would be removed as stale but was changed since. The tables and
  ``warnings.txt`` are checked before any run is read; the figures once they
  are drawn (which ones a sweep gives depends on its runs: a user's
  ``truncation.png`` is in the way only of a sweep that varies the style). A
  sweep's callback checks every name it may write before its jobs train;
* a manifest that is not one the aggregator writes (malformed JSON, another
  schema, a directory, a symbolic link) is the user's file: refused, never
  replaced. A folder aggregated by a version without the manifest has no record,
  so its ``runs.csv``, ``grid.png``... are not provably ours either: the refusal
  names them, and the user deletes or moves them (or picks another ``--out``).

One aggregation at a time: :class:`OutputSet` holds ``.rnn-sweep-aggregate.lock``
(:class:`rnn_sweep.run.locks.DirLock`, ``O_EXCL``) in ``--out``; a second one is
refused naming the holder. Its files are written as a set: first into a staging
folder ``.rnn-sweep-aggregate.<pid>.tmp`` inside ``--out`` (a full disk or Ctrl-C
there leaves ``--out`` untouched and the folder is removed), then moved into
place. The move is a few renames with Ctrl-C held off; the manifest is replaced
before it (listing old and new versions as ``pending``: every file present is
provably ours whichever version it is) and after it (the new set, complete).
A crash between the two leaves a manifest marked incomplete, which the next
aggregation repairs. A staging folder left by a killed aggregation is removed
by the next one when the stale lock it takes over names the same process.
Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rnn_sweep.run.locks import DirLock, Locked

TABLES = ("runs", "curves", "grid", "levels", "boundary")  # <name>.csv, always written
QUESTION_TABLES = ("reservoir", "styles")  # <name>.csv, when the sweep can answer it (rnn_sweep.analysis.plot_questions)
WARNINGS_FILE = "warnings.txt"
FIGURES = ("grid", "boundary", "curves", "onset", "truncation", "reservoir", "styles")  # <name>.<format>
FORMATS = ("png", "pdf", "svg", "eps")
MANIFEST = ".rnn-sweep-aggregate.json"
LOCK = ".rnn-sweep-aggregate.lock"
WRITTEN_BY = "rnn-sweep-aggregate"
MANIFEST_VERSION = 1


class OutDirError(OSError):
    """The output directory cannot take the aggregation; the message says why, in one line."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno N]" prefix
        return str(self.args[0])


def own_names(formats: Iterable[str] = FORMATS) -> list[str]:
    """Every file name the aggregator may write in its output directory."""
    return [*(f"{t}.csv" for t in (*TABLES, *QUESTION_TABLES)), WARNINGS_FILE,
            *(f"{f}.{x}" for f in FIGURES for x in formats)]


def candidates(formats: Iterable[str] = (), figures: bool = True) -> list[str]:
    """The files one aggregation may write: the tables and warnings.txt (always written), and with figures
    each figure in each format (which figures depends on the runs: known only once they are read)."""
    return own_names(formats) if figures else own_names(())


def staging_name(pid: int) -> str:
    """The staging folder of the aggregation run by process ``pid``."""
    return f".rnn-sweep-aggregate.{pid}.tmp"


def _where(out: Path) -> str:
    return f"--out={str(out)!r} is invalid"


def digest(path: Path, sync: bool = False) -> dict:
    """``{"size", "sha256"}`` of a regular file; ``sync``: fsync it too (a file about to be recorded
    must be on disk before its record, or a power cut leaves a record of a file that is not there)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
        if sync:
            os.fsync(f.fileno())
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


@dataclass
class Manifest:
    """What the aggregator recorded in an output directory (empty when it never wrote there)."""

    files: dict[str, dict] = field(default_factory=dict)  # name -> {"size", "sha256"}: the last complete set
    pending: dict[str, dict] = field(default_factory=dict)  # the set being moved in (non-empty: interrupted)

    def versions(self, name: str) -> list[dict]:
        return [v[name] for v in (self.files, self.pending) if name in v]

    def to_json(self, complete: bool) -> str:
        body = {"written_by": WRITTEN_BY, "version": MANIFEST_VERSION, "complete": complete,
                "files": self.files, "pending": self.pending}
        return json.dumps(body, indent=1, sort_keys=True) + "\n"


def _entry_ok(name, entry) -> bool:
    return (name in own_names() and isinstance(entry, dict) and set(entry) == {"size", "sha256"}
            and isinstance(entry["size"], int) and not isinstance(entry["size"], bool) and entry["size"] >= 0
            and isinstance(entry["sha256"], str) and len(entry["sha256"]) == 64)


def read_manifest(out: Path) -> Manifest:
    """The manifest in ``out`` (empty if there is none).

    Raises:
        OutDirError: a file of that name exists that the aggregator did not write
            (not a regular file, a symbolic link, unreadable, another content).
    """
    path = out / MANIFEST
    if not os.path.lexists(path):
        return Manifest()
    hint = "the aggregator keeps its record of the files it wrote there; move it away or choose another --out"
    if path.is_symlink() or not path.is_file():
        raise OutDirError(f"{_where(out)}: {MANIFEST} there is not a regular file ({hint})")
    try:
        body = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise OutDirError(f"{_where(out)}: {MANIFEST} there is not a manifest the aggregator wrote "
                          f"({type(err).__name__}; {hint})") from None
    tables = [body.get(k) for k in ("files", "pending")] if isinstance(body, dict) else []
    if not (isinstance(body, dict) and body.get("written_by") == WRITTEN_BY
            and body.get("version") == MANIFEST_VERSION and all(isinstance(t, dict) for t in tables)
            and all(_entry_ok(n, e) for t in tables for n, e in t.items())):
        raise OutDirError(f"{_where(out)}: {MANIFEST} there is not a manifest the aggregator wrote ({hint})")
    return Manifest(dict(body["files"]), dict(body["pending"]))


def is_own(path: Path, manifest: Manifest) -> bool:
    """Whether ``path`` is a regular file whose size and hash match a version the manifest records."""
    versions = manifest.versions(path.name)
    if not versions or path.is_symlink() or not path.is_file():
        return False
    size = path.stat().st_size
    if all(v["size"] != size for v in versions):
        return False
    found = digest(path)
    return any(v == found for v in versions)


def foreign(out: Path, names: Iterable[str], manifest: Manifest) -> list[str]:
    """Those of ``names`` present in ``out`` that are not the aggregator's, each with why."""
    found = []
    for name in names:
        path = out / name
        if not os.path.lexists(path) or is_own(path, manifest):
            continue
        if path.is_symlink():
            why = "a symbolic link"
        elif not path.is_file():
            why = "not a file"
        elif manifest.versions(name):
            why = "changed since the aggregator wrote it"
        else:
            why = f"not in {MANIFEST}"
        found.append(f"{name} ({why})")
    return found


def refuse_foreign(out: Path, names: Iterable[str], manifest: Manifest, doing: str = "replace") -> None:
    """Raise OutDirError naming every file of ``names`` in ``out`` that the aggregator would ``doing`` and
    did not provably write."""
    theirs = foreign(out, names, manifest)
    if theirs:
        raise OutDirError(f"{_where(out)}: it holds files the aggregator would {doing} but did not write: "
                          f"{', '.join(theirs)}; move or delete them (if an older version of rnn-sweep-aggregate "
                          "wrote them, it kept no record), or choose another --out")


def check(out: Path, names: Iterable[str] = candidates()) -> Manifest:
    """Everything about ``out`` that can refuse an aggregation, without writing anything.

    Args:
        out: the output directory (it need not exist yet).
        names: the files the aggregation will (or may) write there.

    Raises:
        OutDirError: ``out`` exists and is not a directory, its manifest is not the
            aggregator's, or a file of ``names`` there is not its own.
    """
    if out.exists() and not out.is_dir():
        raise OutDirError(f"{_where(out)}: it exists and is not a directory")
    if not out.exists():
        return Manifest()
    manifest = read_manifest(out)
    blocked = [n for n in own_names() if (out / n).exists() and not (out / n).is_file()]
    if blocked:
        raise OutDirError(f"{_where(out)}: {', '.join(blocked)} there is not a file "
                          "(the aggregator writes a file of that name; rename it or choose another --out)")
    refuse_foreign(out, names, manifest)
    return manifest


def prepare(out: Path) -> None:
    """Create ``out`` if needed and prove the aggregator can write there.

    Raises:
        OutDirError: ``out`` is an existing non-directory, cannot be created or
            written (read-only, ``/proc``, a parent that is a file).
    """
    if out.exists() and not out.is_dir():
        raise OutDirError(f"{_where(out)}: it exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutDirError(f"{_where(out)}: cannot create it ({err.strerror})") from None
    probe = out / f".rnn-sweep-aggregate.{os.getpid()}.probe"
    try:
        with open(probe, "x") as f:
            f.write("ok\n")
    except FileExistsError:  # never ours to remove: a name is not ownership
        raise OutDirError(f"{_where(out)}: {probe.name} exists there (the name of the aggregator's write test); "
                          "delete it or choose another --out") from None
    except OSError as err:
        raise OutDirError(f"{_where(out)}: cannot write there ({err.strerror})") from None
    else:
        probe.unlink()


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    Raises:
        OSError: whatever the writer raised, with ``filename`` = ``path`` (a writer
            such as matplotlib's may name no file, or the temporary one).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold off Ctrl-C for a few renames; one that came meanwhile is raised at the end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


class OutputSet:
    """One aggregation's files in ``out``, written as a set under the output lock.

    Use as a context manager: entering takes the lock (:class:`OutDirError` naming
    the holder if another aggregation has it) and runs :func:`check` on the files
    every aggregation writes (the tables); :meth:`stage`
    gives the staging folder to write into; :meth:`commit` moves what was written
    there into place; leaving removes the staging folder and releases the lock,
    whatever happened (a full disk, Ctrl-C).

    Args:
        out: the output directory (it must exist: :func:`prepare`).
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.lock = DirLock(self.out, LOCK, "aggregation", "wait for it to finish or choose another --out")
        self.staging: Path | None = None
        self.moving = False  # files are being moved into place: out holds a partial set until the next run
        self.notes: list[str] = []  # things the caller should tell the user (an interrupted set repaired)

    def __enter__(self) -> OutputSet:
        try:
            before = self.lock.holder()
            self.lock.acquire()
        except Locked as err:
            time.sleep(0.1)  # a lock just created holds its owner a moment later
            holder = self.lock.holder()
            if holder is not None and holder[1] == -1:
                raise OutDirError(f"{_where(self.out)}: {LOCK} there is not a lock the aggregator wrote "
                                  "(it names no process); move it away or choose another --out") from None
            raise OutDirError(f"--out={str(self.out)!r} is in use: {err}") from None
        except OSError as err:  # e.g. a folder of the lock's name
            raise OutDirError(f"{_where(self.out)}: cannot take the output lock {LOCK} there "
                              f"({err.strerror or err}); move that entry away or choose another --out") from None
        try:
            self._remove_leftover(before)
            manifest = check(self.out)
        except BaseException:
            self.lock.release()
            raise
        if manifest.pending:
            self.notes.append(f"the last aggregation into {self.out} was stopped while moving its files into "
                              "place; this one replaces them")
        return self

    def _remove_leftover(self, before: tuple | None) -> None:
        """The staging folder of a killed aggregation whose stale lock this one just took over."""
        if before is None or before[0] != socket.gethostname() or before[1] in (-1, os.getpid()):
            return
        left = self.out / staging_name(before[1])
        if left.is_dir() and not left.is_symlink():
            shutil.rmtree(left, ignore_errors=True)
            self.notes.append(f"removed {left}, left by aggregation process {before[1]}, which was killed")

    def stage(self) -> Path:
        """Create and return the (empty) staging folder inside ``out``."""
        staging = self.out / staging_name(os.getpid())
        try:
            staging.mkdir()
        except FileExistsError:
            raise OutDirError(f"--out={str(self.out)!r} is invalid: {staging.name} exists there (the aggregator's "
                              "staging folder name); delete it or choose another --out") from None
        self.staging = staging
        return staging

    def commit(self, written: Iterable[Path]) -> list[str]:
        """Move the files ``written`` (in the staging folder) into ``out`` as one set; return what was removed.

        Own files of an earlier aggregation that this one did not write (a figure
        the sweep no longer supports, a format not asked for) are removed; a file
        that is not provably the aggregator's is never touched: the commit is
        refused (:class:`OutDirError`) before anything moves.
        """
        assert self.staging is not None, "stage() first"
        new = {Path(p).name: digest(self.staging / Path(p).name, sync=True) for p in written}
        manifest = read_manifest(self.out)
        refuse_foreign(self.out, new, manifest)
        stale = [n for n in own_names() if n not in new and manifest.versions(n) and os.path.lexists(self.out / n)]
        refuse_foreign(self.out, stale, manifest, doing="remove as stale")
        current = {n: digest(self.out / n) for n in [*new, *stale] if os.path.lexists(self.out / n)}
        pending, final = self.staging / "manifest.pending", self.staging / "manifest.final"
        _write_synced(pending, Manifest(current, new).to_json(complete=False))
        _write_synced(final, Manifest(new, {}).to_json(complete=True))
        with sigint_deferred():  # renames only: no disk space needed, over in milliseconds
            os.replace(pending, self.out / MANIFEST)
            self.moving = True
            for name in new:
                os.replace(self.staging / name, self.out / name)
            for name in stale:
                (self.out / name).unlink()
            os.replace(final, self.out / MANIFEST)
            self.moving = False
            _fsync_dir(self.out)
        return stale

    def __exit__(self, *exc) -> None:
        with sigint_deferred():  # a second Ctrl-C must not leave the staging folder behind
            if self.staging is not None and self.staging.is_dir():
                shutil.rmtree(self.staging, ignore_errors=True)
            self.lock.release()


def _write_synced(path: Path, text: str) -> None:
    with open(path, "x") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
