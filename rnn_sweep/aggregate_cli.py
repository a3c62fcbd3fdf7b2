"""``rnn-sweep-aggregate``: one or more sweep directories -> tidy tables and figures.

Thin on purpose: argument checking here, the work in :mod:`rnn_sweep.aggregate`
(tables) and :mod:`rnn_sweep.plots` (figures). No TensorFlow, no Hydra, so it
runs on a laptop against a copy of a cluster sweep, or on a sweep still running.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnn_sweep import outdir
from rnn_sweep.aggregate import DEFAULT_MARGIN, DEFAULT_SMOOTH, aggregate, write_tables
from rnn_sweep.outdir import FORMATS
from rnn_sweep.runtime import collector_paused

PROG = "rnn-sweep-aggregate"
DEFAULT_FORMATS = "png,pdf"
OUT_NAME = "aggregate"  # default output: SWEEP_DIR/aggregate/
PNG_DPI = 130  # ~1100 px across a page-wide figure; plots.PNG_DPI (not imported: matplotlib loads slowly)

EPILOG = """\
outputs (in --out; only these files are ever written or replaced there, anything
else in --out is left alone):
  runs.csv     one row per run: source directory, varying config fields, status,
               losses, analytic baselines, nearest level, learned fraction and
               learn-onset (data steps) per dependency, wall time
  curves.csv   run_id, varying config fields, epoch, step, data_steps, loss
  grid.csv     per (config cell, dependency): mean/spread over seeds of the
               learned fraction, onset, and the level most runs reached
  boundary.csv per (setting, state size, dependency, threshold 0.5/0.9): the
               smallest num_steps from which the learned fraction stays above it
  levels.csv   the analytic loss levels of each data rule
  warnings.txt runs skipped or partly read, with the reason (also on stderr)
  grid, boundary, curves, onset, truncation (when style varies): figures, one
               file per format

data steps: time steps of the training sequence consumed, over the whole batch
(one epoch = data.length), so runs with different n compare on one axis.
onset: where the trailing (causal) rolling median of the block losses crosses
the midpoint between two analytic levels for the last time (it stays below to
the end), linearly interpolated between blocks.

exit status: 0 aggregated (possibly with warnings), 1 nothing could be
aggregated (no readable run) or the output could not be written, 2 bad arguments
(including an --out that is a file, cannot be created or cannot be written).

examples:
  rnn-sweep-aggregate outputs/sweeps/quickstart
  rnn-sweep-aggregate outputs/sweeps/quickstart outputs/sweeps/truncation_styles --out figs
  rnn-sweep-aggregate outputs/sweeps/r2rt_grid --out figs --format png,svg
"""


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="a loss within this fraction of the gap "
                   f"to the next level counts as clearly on a level (default: {DEFAULT_MARGIN})")
    p.add_argument("--smooth", type=int, default=DEFAULT_SMOOTH, help="trailing rolling-median window, in logged "
                   f"blocks, for the learn-onset; 1 = raw block losses (default: {DEFAULT_SMOOTH})")
    p.add_argument("--dpi", type=int, default=PNG_DPI, help=f"PNG resolution (default: {PNG_DPI})")
    p.add_argument("--no-figures", action="store_true", help="write the tables only")
    return p


class UsageError(ValueError):
    """A bad argument; the message names it and what is allowed."""


def parse_formats(text: str) -> tuple[str, ...]:
    """'png,pdf' -> ('png', 'pdf'); raises UsageError for an unknown format."""
    formats = tuple(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--format={text!r} is invalid: comma-separated values among {', '.join(FORMATS)}")
    return formats


def _check_args(dirs: list[Path], out: str | Path | None, margin: float, smooth: int, dpi: int) -> Path:
    """Raise UsageError for a bad argument; return the output directory."""
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"SWEEP_DIR={str(d)!r} is invalid: not an existing directory")
    same = {d.resolve() for d in dirs}
    if len(same) < len(dirs):
        raise UsageError(f"SWEEP_DIR is invalid: the same directory is given twice ({' '.join(map(str, dirs))})")
    if not 0 < margin < 1:
        raise UsageError(f"--margin={margin} is invalid: must be in (0, 1)")
    if smooth < 1:
        raise UsageError(f"--smooth={smooth} is invalid: must be an integer >= 1")
    if not 10 <= dpi <= 1200:
        raise UsageError(f"--dpi={dpi} is invalid: must be an integer in 10..1200")
    if out is None and len(dirs) > 1:
        raise UsageError("--out is required with several SWEEP_DIRs (where should the pooled tables go?)")
    return Path(out) if out is not None else dirs[0] / OUT_NAME


def run(sweep_dirs: str | Path | list[str | Path], out: str | Path | None = None,
        formats: tuple[str, ...] = ("png", "pdf"), margin: float = DEFAULT_MARGIN, smooth: int = DEFAULT_SMOOTH,
        figures: bool = True, dpi: int = PNG_DPI) -> int:
    """Aggregate ``sweep_dirs`` into ``out``; print what was written and every warning.

    Returns the exit status: 0 aggregated, 1 nothing could be aggregated or the
    output could not be written (disk full, ...). Raises UsageError for a bad
    argument, including an output directory that cannot be used (checked before
    any run is read).
    """
    dirs = [Path(d) for d in ([sweep_dirs] if isinstance(sweep_dirs, (str, Path)) else sweep_dirs)]
    out = _check_args(dirs, out, margin, smooth, dpi)
    created = not out.exists()
    try:
        outdir.prepare(out)
    except outdir.OutDirError as err:
        raise UsageError(str(err)) from None
    # The output is not searched for runs, unless it holds a sweep given to read.
    skip = () if any(out.resolve() == d.resolve() or out.resolve() in d.resolve().parents for d in dirs) else (out,)
    agg = aggregate(dirs, margin=margin, smooth=smooth, skip=skip)
    for w in agg.warnings:
        print(f"{PROG}: warning: {w}", file=sys.stderr)
    if agg.runs.empty:
        print(f"{PROG}: nothing to aggregate in {' '.join(map(str, dirs))}", file=sys.stderr)
        if created and not any(out.iterdir()):
            out.rmdir()  # made for nothing: leave no trace
        return 1
    try:
        written = write_tables(agg, out)
        if figures:
            with collector_paused():  # matplotlib and seaborn only when figures are wanted
                from rnn_sweep.plots import make_figures

            for files in make_figures(agg, out, formats, dpi).values():
                written += files
            # A figure this sweep no longer supports (or an old format) must not linger beside fresh ones.
            outdir.remove_stale(out, written)
    except OSError as err:
        print(f"{PROG}: error: cannot write into {out}: {err.strerror or err}", file=sys.stderr)
        return 1
    _report(agg, dirs, out, written)
    return 0


def _report(agg, dirs: list[Path], out: Path, written: list[Path]) -> None:
    """One line: how many runs, by status, and how many warnings (each was printed above)."""
    counts = agg.runs["status"].value_counts().to_dict()
    order = ["completed", "diverged", "failed", "incomplete"]
    status = {k: counts[k] for k in [*order, *sorted(set(counts) - set(order))] if k in counts}
    plural = "s" if len(agg.runs) != 1 else ""
    warned = f"; {len(agg.warnings)} warning{'s' if len(agg.warnings) != 1 else ''} (see warnings.txt)" \
        if agg.warnings else ""
    print(f"aggregated {len(agg.runs)} run{plural} ({', '.join(f'{n} {s}' for s, n in status.items())}{warned}) "
          f"from {' '.join(map(str, dirs))} -> {out}: {', '.join(p.name for p in written)}")


def main(argv: list[str] | None = None) -> None:
    """Console script entry point."""
    args = build_parser().parse_args(argv)
    try:
        code = run(args.sweep_dirs, args.out, parse_formats(args.format), args.margin, args.smooth,
                   figures=not args.no_figures, dpi=args.dpi)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
