"""Time ``rnn-sweep-aggregate`` (tables + figures) on a fake sweep of the real file schema.

The fake sweep has the shape of ``conf/experiment/r2rt_grid.yaml`` by default:
num_steps 1..20 x state_size 2,4,8,16,32 x 3 seeds = 300 runs of one epoch of
1M steps, batch 200, each run a directory with summary.json, losses.csv (a block
every 10,000 time steps: 100 per run at every n) and checkpoints.csv (the
untrained network and 10 checkpoints), written in the format ``rnn_sweep.run.train``
writes. Loss curves fall from the know-nothing level to lag 3 and (for larger n
and d) to lags 3+8, with noise; learned fractions rise along with them.

    .venv/bin/python benchmarks/bench_aggregate.py                       # 300 runs, png+pdf
    .venv/bin/python benchmarks/bench_aggregate.py --num-steps 30 --state-sizes 2 4 8 16 32 --seeds 4 --keep /tmp/big

Prints one markdown table: runs, reading + tables (s), figures (s), total
command wall time (s, a fresh interpreter: imports included), and the ratio of
the total to reading alone (the baseline measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LEVELS = [("none", [], 0.6616), ("lag 3", [3], 0.5192), ("lags 3+8", [3, 8], 0.4545)]


def fake_run(run_dir: Path, n: int, d: int, seed: int, rng: np.random.Generator, style: str = "tf") -> None:
    """One run directory: losses.csv, checkpoints.csv and summary.json, like rnn_sweep.run.train writes them."""
    length, batch, grid = 1_000_000, 200, 50  # 50 positions = 10,000 time steps per block
    positions = (length // batch) // n * n
    ends = np.minimum(np.arange(grid, positions + grid, grid), positions)
    starts = ends - np.diff(np.concatenate([[0], ends]))
    data = ends * batch
    learns8 = n > 8 - math.log2(d) or d >= 16
    center3, center8 = 2e5 / d ** 0.5 * (1 + n / 10), 6e5 / d ** 0.5
    rise3 = 1 / (1 + np.exp(-(data - center3) / 5e4))
    rise8 = 1 / (1 + np.exp(-(data - center8) / 8e4)) if learns8 else 0.15 * data / length
    loss = 0.6616 - (0.6616 - 0.5192) * rise3 - (0.5192 - 0.4545) * rise8 + rng.normal(0, 0.004, len(data))
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"0,{s * batch},{e * batch},{float(v)!r},{-(-e // n)},{0.01 * e:.4f}"
             for s, e, v in zip(starts, ends, loss)]
    (run_dir / "losses.csv").write_text("epoch,data_start,data_end,loss,updates,elapsed_s\n" + "\n".join(lines) + "\n")
    updates = positions // n
    cps = [0] + [round(updates * (k + 1) / 10) for k in range(10)]
    cp_lines = []
    for u in cps:
        x = u * n * batch
        f3 = 1 / (1 + math.exp(-(x - center3) / 5e4)) if u else 0.0
        f8 = (1 / (1 + math.exp(-(x - center8) / 8e4)) if learns8 else 0.15 * x / length) if u else 0.0
        cp_lines.append(f"0,{x},{u},{0.6616 - 0.2 * f3!r},{f3 + rng.normal(0, 0.02)!r},{f8 + rng.normal(0, 0.02)!r}")
    (run_dir / "checkpoints.csv").write_text("epoch,data_steps,updates,heldout_loss,learned_3,learned_8\n"
                                             + "\n".join(cp_lines) + "\n")
    cfg = {"data": {"input_prob": 0.5, "base_prob": 0.5, "length": length, "eval_length": 200_000,
                    "boundary": "pad", "dependencies": [{"lag": 3, "effect": 0.5}, {"lag": 8, "effect": -0.25}]},
           "model": {"backend": "scratch", "cell": "rnn"},
           "train": {"epochs": 1, "batch_size": batch, "log_every": 100, "log_data_steps": grid * batch,
                     "checkpoints": 10, "checkpoint_eval_length": 20_000, "final_fraction": 0.1,
                     "log_updates": False, "xla": True, "threads": 0, "progress": False, "replicas": 1,
                     "diverge_loss": 10.0, "optimizer": {"name": "adagrad", "lr": 0.1, "initial_accumulator": 0.1}},
           "truncation": {"style": style, "update_every": None}, "num_steps": n, "state_size": d, "seed": seed}
    learned = {"3": float(min(1.0, 0.2 + 0.2 * d ** 0.5 + rng.normal(0, 0.05))),
               "8": float(min(1.0, (0.9 if learns8 else 0.15) + rng.normal(0, 0.05)))}
    total = int(positions * batch)
    summary = {"status": "completed", "backend": "scratch", "cell": "rnn", "style": style, "num_steps": n,
               "state_size": d, "seed": seed, "final_loss": float(loss[-10:].mean()),
               "final_loss_window": {"fraction": 0.1, "data_start": total - total // 10, "data_end": total},
               "heldout_loss": float(loss[-1]), "heldout_optimal_loss": 0.4545, "learned_fraction": learned,
               "levels": [{"name": a, "lags": b, "loss": c} for a, b, c in LEVELS], "steps": updates,
               "data_steps": total, "epochs_completed": 1, "diverged_at_step": None, "diverged_at_data_steps": None,
               "timings": {"total_s": 1.0}, "versions": {}, "config": cfg, "error": None}
    (run_dir / "summary.json").write_text(json.dumps(summary))


def make_sweep(root: Path, ns, sizes, seeds: int, styles=("tf",)) -> int:
    """Write a fake sweep under ``root``; returns the number of runs."""
    rng = np.random.default_rng(0)
    count = 0
    for style in styles:
        for n in ns:
            for d in sizes:
                for s in range(seeds):
                    fake_run(root / f"num_steps={n},seed={s},state_size={d},truncation={style}", n, d, s, rng, style)
                    count += 1
    return count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-steps", type=int, default=20, help="n = 1..this")
    p.add_argument("--state-sizes", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--styles", nargs="+", default=["tf"])
    p.add_argument("--format", default="png,pdf")
    p.add_argument("--keep", type=Path, help="build the sweep here and keep it (default: a temporary directory)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "sweep"
        runs = make_sweep(root, range(1, args.num_steps + 1), args.state_sizes, args.seeds, args.styles)
        from rnn_sweep.analysis.tables import aggregate
        from rnn_sweep.analysis.plots import make_figures

        t0 = time.perf_counter()
        agg = aggregate(root)
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        make_figures(agg, Path(tmp) / "figs", tuple(args.format.split(",")))
        t_figs = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = subprocess.run([str(Path(sys.executable).parent / "rnn-sweep-aggregate"), str(root), "--out",
                              str(Path(tmp) / "cli"), "--format", args.format], capture_output=True, text=True)
        t_cli = time.perf_counter() - t0
        if out.returncode != 0:
            sys.exit(f"rnn-sweep-aggregate failed: {out.stderr[-500:]}")
    print("| runs | read + tables (s) | figures (s) | rnn-sweep-aggregate total (s) | total / read |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {runs} | {t_read:.2f} | {t_figs:.2f} | {t_cli:.2f} | {t_cli / t_read:.1f} |")


if __name__ == "__main__":
    main()
