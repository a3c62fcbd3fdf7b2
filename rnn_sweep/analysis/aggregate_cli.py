"""``rnn-sweep-aggregate``: one or more sweep directories -> tidy tables and figures.

Thin on purpose: argument checking here, the work in :mod:`rnn_sweep.analysis.tables`
(tables), :mod:`rnn_sweep.analysis.plots` (figures) and :mod:`rnn_sweep.analysis.outdir` (what
may be written in ``--out``). No TensorFlow, no Hydra, so it runs on a laptop
against a copy of a cluster sweep, or on a sweep still running.

What it may touch in ``--out`` is :mod:`rnn_sweep.analysis.outdir`'s rule: only files it
provably wrote (its manifest ``.rnn-sweep-aggregate.json`` records their size
and hash); any other file under a name it would write refuses the aggregation
before any run is read (exit 2, one line naming the files). One aggregation
per ``--out`` at a time (a lock file; a second is refused, exit 2); tables and
figures are staged and moved into place as one set, so a full disk (exit 1, one
line naming the path) or Ctrl-C (exit 130, one line) leaves the last complete
set as it was. Module-level imports are the standard library only: Ctrl-C while
pandas or matplotlib load is still one line, not a traceback.
"""

from __future__ import annotations

import _signal  # the C module: ``signal`` itself imports enum, long enough for a Ctrl-C to land inside
import sys

PROG = "rnn-sweep-aggregate"
INTERRUPTED = f"{PROG}: interrupted; the output folder keeps its last complete set; rerun to aggregate"


def _interrupted_while_importing(signum, frame) -> None:
    """Ctrl-C while this module's own imports load: nothing is read or written yet, so one line and
    exit 130 at once (a KeyboardInterrupt inside an import would surface as a traceback)."""
    print(INTERRUPTED, file=sys.stderr)
    sys.stderr.flush()
    import os

    os._exit(130)


# Only in the console script's own process: a program that imports this module (the sweep's callback)
# keeps its own Ctrl-C handling.
if (sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1].startswith(PROG)
        and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler):
    _signal.signal(_signal.SIGINT, _interrupted_while_importing)  # main() restores the default handler

import argparse  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from rnn_sweep.analysis import outdir  # noqa: E402
from rnn_sweep.analysis.outdir import FORMATS  # noqa: E402

DEFAULT_FORMATS = "png,pdf"
OUT_NAME = "aggregate"  # default output: SWEEP_DIR/aggregate/
# First line of a run's losses.csv: this version's data grid, or an older version's blocks of updates.
RUN_HEADERS = ("epoch,data_start,data_end,loss", "epoch,step,loss")
PNG_DPI = 130  # ~1100 px across a page-wide figure; plots.PNG_DPI (not imported: matplotlib loads slowly)

EPILOG = """\
outputs (in --out, as one set; only files it wrote itself are ever replaced or
removed there, and anything else is left alone):
  runs.csv     one row per run: source directory, varying config fields, status,
               losses (final_loss over a stated data window), analytic
               baselines, nearest level, learned fraction, onset (data steps)
               and onset status per dependency, wall time
  curves.csv   run_id, varying config fields, epoch, data_start, data_end,
               data_mid, updates, loss: one row per block of the data grid
  grid.csv     per (config cell, dependency): mean, std and range over seeds
               of the learned fraction, share of seeds that learned (exact
               Clopper-Pearson 95% interval), median onset (censored runs counted)
  boundary.csv per (setting, state size, dependency, threshold 0.5/0.9): the
               smallest num_steps from which the learned fraction stays above
               it, for the seeds' mean and for every seed (inf: never)
  levels.csv   the analytic loss levels of each data rule
  warnings.txt runs and folders skipped or partly read, with the reason (also
               on stderr)
  grid, boundary, curves, onset, truncation (when style varies): figures, one
               file per format
  reservoir.csv/.<fmt>  trained minus the reservoir control per (n, d, lag),
               paired by seed (when the sweep has model.train_recurrent=false)
  styles.csv/.<fmt>     true BPTT at n against TF style at 2n, paired by seed,
               at equal data and equal compute (when the style varies)
  .rnn-sweep-aggregate.json  the record of these files (name, size, SHA-256):
               a file under one of these names that it does not list (yours, or
               an older version's output) refuses the aggregation, naming it
  .rnn-sweep-aggregate.lock  while an aggregation runs: a second one into the
               same --out is refused

data steps: time steps of the training sequence consumed, over the whole batch
(one epoch = data.length), so runs with different n compare on one axis.
onset: the first data point from which a dependency's learned fraction at the
held-out checkpoints (checkpoints.csv) stays >= --onset-threshold to the end,
linearly interpolated between the checkpoints around it; a run that does not
end above it is censored (later than its end) and kept in every statistic.
A losses.csv written by an older version (blocks of updates) is not read: the
run is named in the warnings, to be rerun.

exit status: 0 aggregated (possibly with warnings), 1 nothing could be
aggregated (no readable run) or the output could not be written (the last
complete set is kept), 2 bad arguments or refused (an --out that is a file,
cannot be written, holds files it did not write under its names, or is in use
by another aggregation), 130 interrupted (Ctrl-C; the last set is kept).

examples:
  rnn-sweep-aggregate outputs/sweeps/quickstart
  rnn-sweep-aggregate outputs/sweeps/quickstart outputs/sweeps/truncation_styles --out figs
  rnn-sweep-aggregate outputs/sweeps/r2rt_grid --out figs --format png,svg
"""


def _defaults() -> tuple[float, float]:
    """(margin, onset threshold) defaults; from rnn_sweep.analysis.stats, imported only when needed (NumPy loads slowly)."""
    from rnn_sweep.analysis.stats import DEFAULT_MARGIN, DEFAULT_ONSET_THRESHOLD

    return DEFAULT_MARGIN, DEFAULT_ONSET_THRESHOLD


def build_parser() -> argparse.ArgumentParser:
    margin, threshold = _defaults()
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Aggregate one or more sweeps (partial, still-running ones too) into tidy tables and figures: "
                    "where, and when, each dependency gets learned.")
    p.add_argument("sweep_dirs", metavar="SWEEP_DIR", nargs="+", help="sweep directories; each is searched "
                   "recursively for runs (directories holding summary.json or losses.csv) and their runs pooled")
    p.add_argument("--out", metavar="DIR", help=f"output directory (default with one SWEEP_DIR: SWEEP_DIR/{OUT_NAME}; "
                   "required with several)")
    p.add_argument("--format", default=DEFAULT_FORMATS, metavar="LIST",
                   help=f"comma-separated figure formats among {', '.join(FORMATS)} (default: {DEFAULT_FORMATS})")
    p.add_argument("--margin", type=float, default=margin, help="a loss within this fraction of the gap "
                   f"to the next level counts as clearly on a level (default: {margin})")
    p.add_argument("--onset-threshold", type=float, default=threshold, help="learned fraction (probe at the "
                   "held-out checkpoints) from which a dependency counts as learned: its onset is where it stays at "
                   f"or above this to the end (default: {threshold})")
    p.add_argument("--dpi", type=int, default=PNG_DPI, help=f"PNG resolution (default: {PNG_DPI})")
    p.add_argument("--no-figures", action="store_true", help="write the tables only")
    return p


class UsageError(ValueError):
    """A bad argument or a refused output directory; the message names it and what is allowed."""


class WriteError(OSError):
    """The output could not be written (disk full, ...); the message names the path."""

    def __str__(self) -> str:
        return str(self.args[0])


def parse_formats(text: str) -> tuple[str, ...]:
    """'png,pdf' -> ('png', 'pdf'); raises UsageError for an unknown format."""
    formats = tuple(f.strip().lower().lstrip(".") for f in str(text).split(",") if f.strip())
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats or not isinstance(text, str):
        raise UsageError(f"--format={text!r} is invalid: comma-separated values among {', '.join(FORMATS)}")
    return formats


def _check_args(dirs: list[Path], out: str | Path | None, margin: float, threshold: float, dpi: int) -> Path:
    """Raise UsageError for a bad argument; return the output directory."""
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"SWEEP_DIR={str(d)!r} is invalid: not an existing directory")
    same = {d.resolve() for d in dirs}
    if len(same) < len(dirs):
        raise UsageError(f"SWEEP_DIR is invalid: the same directory is given twice ({' '.join(map(str, dirs))})")
    if not 0 < margin < 1:
        raise UsageError(f"--margin={margin} is invalid: must be in (0, 1)")
    if not 0 < threshold <= 1:  # NaN fails too
        raise UsageError(f"--onset-threshold={threshold} is invalid: must be in (0, 1]")
    if not 10 <= dpi <= 1200:
        raise UsageError(f"--dpi={dpi} is invalid: must be an integer in 10..1200")
    if out is None and len(dirs) > 1:
        raise UsageError("--out is required with several SWEEP_DIRs (where should the pooled tables go?)")
    return Path(out) if out is not None else dirs[0] / OUT_NAME


def _is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a run's records (a losses.csv with its header, or a run lock), by content:
    a stray file of that name in the user's home is not a run."""
    losses = path / "losses.csv"
    try:
        if losses.is_file():
            with open(losses, errors="replace") as f:
                if f.readline().startswith(RUN_HEADERS):
                    return True
    except OSError:
        pass
    return (path / ".run.lock").is_file() or ((path / "summary.json").is_file() and (path / ".hydra").is_dir())


def _run_dir_around(path: Path) -> Path | None:
    """The run directory that is ``path`` or holds it, if any."""
    return next((p for p in [path, *path.parents] if _is_run_dir(p)), None)


def check_out(dirs: list[Path], out: Path, names: list[str] | tuple[str, ...] = outdir.candidates()) -> None:
    """Refuse an output directory before anything is read or written (UsageError, one line).

    ``out`` must not be a SWEEP_DIR itself or another sweep (its tables would sit
    among the runs, and rnn-sweep would refuse to resume that sweep), nor lie in
    a run directory; and :func:`rnn_sweep.analysis.outdir.check` must accept it for the
    files ``names`` (the default: the tables, which every aggregation writes;
    figures are checked once it is known which ones the runs give).
    """
    real = Path(os.path.realpath(out))
    where = f"--out={str(out)!r} is invalid"
    for d in dirs:
        if real == d.resolve():
            raise UsageError(f"{where}: it is the SWEEP_DIR {str(d)!r} itself, and its tables would sit among the "
                             f"runs; use a folder inside it (the default: {str(d / OUT_NAME)!r}) or elsewhere")
    if (real / "multirun.yaml").exists() or (real / ".sweep.lock").exists():
        raise UsageError(f"{where}: it is a sweep directory (it holds multirun.yaml or .sweep.lock); "
                         "use a folder inside it or elsewhere")
    run_dir = _run_dir_around(real)
    if run_dir is not None:
        raise UsageError(f"{where}: it is in the run directory {str(run_dir)!r}, which holds only its run's "
                         "records; choose a folder outside it")
    try:
        outdir.check(out, names)
    except outdir.OutDirError as err:
        raise UsageError(str(err)) from None


def run(sweep_dirs: str | Path | list[str | Path], out: str | Path | None = None,
        formats: tuple[str, ...] = ("png", "pdf"), margin: float | None = None, onset_threshold: float | None = None,
        figures: bool = True, dpi: int = PNG_DPI) -> int:
    """Aggregate ``sweep_dirs`` into ``out``; print what was written and every warning.

    Returns the exit status: 0 aggregated, 1 nothing could be aggregated.

    Raises:
        UsageError: a bad argument, or an output directory refused (checked before
            any run is read; see :func:`check_out` and :mod:`rnn_sweep.analysis.outdir`).
        WriteError: the output could not be written (disk full, ...); ``out``
            keeps its last complete set.
    """
    defaults = _defaults()
    margin = defaults[0] if margin is None else margin
    threshold = defaults[1] if onset_threshold is None else onset_threshold
    dirs = [Path(d) for d in ([sweep_dirs] if isinstance(sweep_dirs, (str, Path)) else sweep_dirs)]
    out = _check_args(dirs, out, margin, threshold, dpi)
    check_out(dirs, out)
    created = not out.exists()
    try:
        outdir.prepare(out)
        with outdir.OutputSet(out) as output:
            return _aggregate_into(output, dirs, out, formats, margin, threshold, figures, dpi)
    except outdir.OutDirError as err:
        raise UsageError(str(err)) from None
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # made for nothing (nothing to aggregate, refused, failed): leave no trace


def _aggregate_into(output: outdir.OutputSet, dirs: list[Path], out: Path, formats: tuple[str, ...],
                    margin: float, threshold: float, figures: bool, dpi: int) -> int:
    """Read the runs and write one complete set into ``out`` (under ``output``'s lock)."""
    from rnn_sweep.analysis.tables import aggregate

    # The output is not searched for runs, unless it holds a sweep given to read.
    skip = () if any(out.resolve() == d.resolve() or out.resolve() in d.resolve().parents for d in dirs) else (out,)
    agg = aggregate(dirs, margin=margin, onset_threshold=threshold, skip=skip)
    _print_warnings([*agg.warnings, *output.notes])
    if agg.runs.empty:
        print(f"{PROG}: nothing to aggregate in {' '.join(map(str, dirs))}", file=sys.stderr)
        return 1
    try:
        written = _write_set(agg, output.stage(), formats, figures, dpi)
        removed = output.commit(written)
    except outdir.OutDirError:
        raise
    except OSError as err:
        name = Path(err.filename).name if getattr(err, "filename", None) else None
        path = out / name if name and not name.startswith(".") else out
        state = ("its set is incomplete until the next aggregation replaces it" if output.moving
                 else f"nothing in {out} was changed")
        raise WriteError(f"cannot write {path}: {err.strerror or err} ({state})") from None
    _report(agg, dirs, out, written, removed)
    return 0


def _write_set(agg, staging: Path, formats: tuple[str, ...], figures: bool, dpi: int) -> list[Path]:
    """Every table and figure of ``agg`` into the staging folder; the files written."""
    from rnn_sweep.analysis.tables import write_tables

    written = write_tables(agg, staging)
    if figures:
        from rnn_sweep.run.runtime import collector_paused

        with collector_paused():  # matplotlib and seaborn only when figures are wanted
            from rnn_sweep.analysis.plots import make_figures

        for files in make_figures(agg, staging, formats, dpi).values():
            written += files
    from rnn_sweep.analysis.plot_questions import write_questions
    from rnn_sweep.analysis.questions import run_dirs_of

    # reservoir.* when the sweep has the control, styles.* when it has true BPTT at n and TF at 2n
    written += write_questions(agg.runs, run_dirs_of(agg.runs), staging, formats if figures else ())
    return written


MAX_SHOWN = 20  # warning lines on stderr; all of them are in warnings.txt


def _print_warnings(warnings: list[str]) -> None:
    for w in warnings[:MAX_SHOWN]:
        print(f"{PROG}: warning: {w}", file=sys.stderr)
    if len(warnings) > MAX_SHOWN:
        print(f"{PROG}: warning: ... and {len(warnings) - MAX_SHOWN} more (all in warnings.txt)", file=sys.stderr)


def _report(agg, dirs: list[Path], out: Path, written: list[Path], removed: list[str]) -> None:
    """What was aggregated (stdout) and, on stderr, one line on what was skipped."""
    counts = agg.runs["status"].value_counts().to_dict()
    order = ["completed", "diverged", "failed", "incomplete"]
    status = {k: counts[k] for k in [*order, *sorted(set(counts) - set(order))] if k in counts}
    plural = "s" if len(agg.runs) != 1 else ""
    warned = f"; {len(agg.warnings)} warning{'s' if len(agg.warnings) != 1 else ''} (see warnings.txt)" \
        if agg.warnings else ""
    gone = f"; removed its stale {', '.join(removed)}" if removed else ""
    print(f"aggregated {len(agg.runs)} run{plural} ({', '.join(f'{n} {s}' for s, n in status.items())}{warned}) "
          f"from {' '.join(map(str, dirs))} -> {out}: {', '.join(p.name for p in written)}{gone}")
    skipped = sum(": skipped" in w or "not searched" in w for w in agg.warnings)
    if agg.warnings:
        print(f"{PROG}: {len(agg.warnings)} warning(s), {skipped} of them about runs or folders skipped or not "
              f"searched: all in {out / outdir.WARNINGS_FILE}", file=sys.stderr)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args.sweep_dirs, args.out, parse_formats(args.format), args.margin, args.onset_threshold,
                   figures=not args.no_figures, dpi=args.dpi)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except WriteError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1


_CTRL_C: list[int] = []  # set once this process got SIGINT (see _unwind)


def _unwind(signum, frame) -> None:
    """Ctrl-C from main() on: unwind (locks released), and remember it. A KeyboardInterrupt raised
    inside a C extension's import (numpy's) comes out as an ImportError of that extension."""
    _CTRL_C.append(signum)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Console script entry point (exit status: see the epilog)."""
    previous = _signal.getsignal(_signal.SIGINT)
    if previous in (_interrupted_while_importing, _signal.default_int_handler):
        _signal.signal(_signal.SIGINT, _unwind)
    try:
        code = _main(argv)
    except KeyboardInterrupt:
        code = None
    except Exception:
        if not _CTRL_C:
            raise
        code = None  # the interrupt surfaced as another error (e.g. numpy's ImportError)
    finally:
        if _signal.getsignal(_signal.SIGINT) is _unwind:
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    if code is None:
        print(INTERRUPTED, file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
