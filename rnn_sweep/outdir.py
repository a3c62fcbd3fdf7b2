"""The aggregator's output directory: it writes and replaces only its own files.

An ``--out`` directory may hold anything else (a paper's figures, notes): those
files are never opened, replaced or deleted. The aggregator's own files have
fixed names (:func:`own_names`); each is written to a temporary file beside it
and renamed over the old one, so a crash never leaves half a table, and a
symbolic link with one of these names is replaced itself, never the file it
points to. Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

TABLES = ("runs", "curves", "grid", "levels", "boundary")  # <name>.csv
WARNINGS_FILE = "warnings.txt"
FIGURES = ("grid", "boundary", "curves", "onset", "truncation")  # <name>.<format>
FORMATS = ("png", "pdf", "svg", "eps")


class OutDirError(OSError):
    """The output directory cannot hold the aggregation; the message says why, in one line."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno N]" prefix
        return str(self.args[0])


def own_names(formats: Iterable[str] = FORMATS) -> list[str]:
    """Every file name the aggregator may write (and so replace) in its output directory."""
    return [*(f"{t}.csv" for t in TABLES), WARNINGS_FILE, *(f"{f}.{x}" for f in FIGURES for x in formats)]


def prepare(out: Path) -> None:
    """Create ``out`` if needed and prove the aggregator can write its files there.

    Raises:
        OutDirError: ``out`` is an existing non-directory, cannot be created or
            written (read-only, ``/proc``, a parent that is a file), or holds a
            non-file (e.g. a directory) under one of the aggregator's own names.
    """
    if out.exists() and not out.is_dir():
        raise OutDirError(f"--out={str(out)!r} is invalid: it exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutDirError(f"--out={str(out)!r} is invalid: cannot create it ({err.strerror})") from None
    probe = out / f".rnn-sweep-aggregate.{os.getpid()}.probe"
    try:
        with open(probe, "w") as f:
            f.write("ok\n")
    except OSError as err:
        raise OutDirError(f"--out={str(out)!r} is invalid: cannot write there ({err.strerror})") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    blocked = [n for n in own_names() if (out / n).exists() and not (out / n).is_file()]
    if blocked:
        raise OutDirError(f"--out={str(out)!r} is invalid: {', '.join(blocked)} there is not a file "
                          "(the aggregator writes a file of that name; rename it or choose another --out)")


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def remove_stale(out: Path, written: Iterable[Path]) -> list[Path]:
    """Delete the aggregator's own figure files that this aggregation did not write
    (a figure the sweep no longer supports, a format not asked for); nothing else."""
    keep = {Path(p).name for p in written}
    stale = [out / f"{f}.{x}" for f in FIGURES for x in FORMATS if f"{f}.{x}" not in keep]
    removed = []
    for path in stale:
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)
    return removed
