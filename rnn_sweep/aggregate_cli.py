"""``rnn-sweep-aggregate``: a sweep directory -> tidy tables and figures.

Thin on purpose: argument checking here, the work in :mod:`rnn_sweep.aggregate`
(tables) and :mod:`rnn_sweep.plots` (figures). No TensorFlow, no Hydra, so it
runs on a laptop against a copy of a cluster sweep, or on a sweep still running.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnn_sweep.aggregate import DEFAULT_MARGIN, DEFAULT_SMOOTH, aggregate, write_tables

PROG = "rnn-sweep-aggregate"
FORMATS = ("png", "pdf", "svg", "eps")
DEFAULT_FORMATS = "png,pdf"
OUT_NAME = "aggregate"  # default output: SWEEP_DIR/aggregate/

EPILOG = """\
outputs (in --out):
  runs.csv     one row per run: varying config fields, status, losses, analytic
               baselines, nearest level, learned fraction and learn-onset step
               per dependency, wall time
  curves.csv   run_id, varying config fields, epoch, step, loss
  grid.csv     per (config cell, dependency): mean/spread over seeds of the
               learned fraction, onset, and the level most runs reached
  levels.csv   the analytic loss levels of each data rule in the sweep
  warnings.txt runs skipped or partly read, with the reason (also on stderr)
  grid, curves, truncation (when style varies), onset: figures, one file per format

exit status: 0 aggregated (possibly with warnings), 1 nothing could be
aggregated (empty directory, no readable run), 2 bad arguments.

examples:
  rnn-sweep-aggregate outputs/sweeps/quickstart
  rnn-sweep-aggregate outputs/sweeps/2026-01-01_12-00-00 --out figs --format png,svg
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Aggregate a sweep (or a partial, still-running one) into tidy tables and figures: "
                    "where, and when, each dependency gets learned.")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="sweep directory; searched recursively for runs "
                   "(directories holding summary.json or losses.csv)")
    p.add_argument("--out", metavar="DIR", help=f"output directory (default: SWEEP_DIR/{OUT_NAME})")
    p.add_argument("--format", default=DEFAULT_FORMATS, metavar="LIST",
                   help=f"comma-separated figure formats among {', '.join(FORMATS)} (default: {DEFAULT_FORMATS})")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="a loss within this fraction of the gap "
                   f"to the next level counts as clearly on a level (default: {DEFAULT_MARGIN})")
    p.add_argument("--smooth", type=int, default=DEFAULT_SMOOTH, help="rolling-median window, in logged blocks, "
                   f"for the learn-onset step (default: {DEFAULT_SMOOTH})")
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


def run(sweep_dir: str | Path, out: str | Path | None = None, formats: tuple[str, ...] = ("png", "pdf"),
        margin: float = DEFAULT_MARGIN, smooth: int = DEFAULT_SMOOTH, figures: bool = True) -> int:
    """Aggregate ``sweep_dir`` into ``out``; print what was written and every warning.

    Returns the exit status: 0 aggregated, 1 nothing could be aggregated.
    Raises UsageError when ``sweep_dir`` is not a directory or an option is out of range.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UsageError(f"SWEEP_DIR={str(sweep_dir)!r} is invalid: not an existing directory")
    if not 0 < margin < 1:
        raise UsageError(f"--margin={margin} is invalid: must be in (0, 1)")
    if smooth < 1:
        raise UsageError(f"--smooth={smooth} is invalid: must be an integer >= 1")
    out = Path(out) if out is not None else sweep_dir / OUT_NAME
    agg = aggregate(sweep_dir, margin=margin, smooth=smooth, skip=(out,))
    for w in agg.warnings:
        print(f"{PROG}: warning: {w}", file=sys.stderr)
    if agg.runs.empty:
        print(f"{PROG}: nothing to aggregate in {sweep_dir}", file=sys.stderr)
        return 1
    written = write_tables(agg, out)
    if figures:
        from rnn_sweep.plots import FIGURES, make_figures  # matplotlib only when figures are wanted

        for files in make_figures(agg, out, formats).values():
            written += files
        # A figure this sweep no longer supports (or an old format) must not linger beside fresh ones.
        for stale in (out / f"{name}.{fmt}" for name in FIGURES for fmt in FORMATS):
            if stale not in written and stale.exists():
                stale.unlink()
    status = agg.runs["status"].value_counts().to_dict()
    plural = "s" if len(agg.runs) != 1 else ""
    print(f"aggregated {len(agg.runs)} run{plural} ({', '.join(f'{n} {s}' for s, n in status.items())}) "
          f"from {sweep_dir} -> {out}: {', '.join(p.name for p in written)}")
    return 0


def main(argv: list[str] | None = None) -> None:
    """Console script entry point."""
    args = build_parser().parse_args(argv)
    try:
        code = run(args.sweep_dir, args.out, parse_formats(args.format), args.margin, args.smooth,
                   figures=not args.no_figures)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
