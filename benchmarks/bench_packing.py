"""Wall time of issue 12's grid slice: packed sweeps (the default launcher) vs one run per job.

    .venv/bin/python benchmarks/bench_packing.py                 # the slice on the article's data
    .venv/bin/python benchmarks/bench_packing.py --quick         # data=small (100k steps per epoch)
    .venv/bin/python benchmarks/bench_packing.py --cores         # also both through hydra/launcher=cores

The slice: num_steps 1,5,10,20 x state_size 4,32 x seed 0,1 (16 runs, 1 epoch of
1M steps, as in ``experiment=r2rt_grid``) = 8 packs of 2 seeds. Each launcher runs
the same sweep from scratch into its own temporary sweep directory through the
real ``rnn-sweep`` console script, aggregation off, so only the runs are timed:

* ``hydra/launcher=basic``: Hydra's basic launcher, one run per job -- what main
  did before the packing launcher (later runs of a shape reuse its compiled program);
* the default, ``hydra/launcher=rnn_sweep``: every job validated first, then
  8 packs, each trained by one call (``rnn_sweep.run.train.train_pack`` when the engine
  has it, else its runs one after the other in the process: the table says which).

Runs alternate (basic, packed, basic, packed, ...) over ``--repeats`` so load from
other processes hits both alike; the table shows medians, the load average before
and after, and every run's results are checked (16 completed runs, same held-out
losses to 1e-5 across launchers) before a time is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "rnn-sweep"
GRID = ["num_steps=1,5,10,20", "state_size=4,32", "seed=0,1"]
RUNS = 16
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}


def engine_path() -> str:
    """How a pack trains in this checkout (see rnn_sweep.launch.hydra_jobs.train_members)."""
    import rnn_sweep.run.train as T

    return "train_pack (one program per pack)" if hasattr(T, "train_pack") else "runs one by one in the process"


def run_sweep(sweep_dir: Path, data: str, launcher: list[str]) -> tuple[float, dict[str, float]]:
    """Run the slice into ``sweep_dir``; return wall seconds and held-out loss per run directory."""
    args = [str(BIN), "-m", *GRID, f"data={data}", "train.epochs=1", "train.progress=false",
            f"hydra.sweep.dir={sweep_dir}", "hydra.callbacks.aggregate.enabled=false", *launcher]
    t0 = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(launcher)}):\n{out.stderr[-3000:]}")
    summaries = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")}
    statuses = sorted(s["status"] for s in summaries.values())
    if statuses != ["completed"] * RUNS:
        sys.exit(f"expected {RUNS} completed runs in {sweep_dir}, found {statuses}")
    return wall, {name: s["heldout_loss"] for name, s in summaries.items()}


def same_results(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-5 for k in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="data=small (100k steps/epoch) instead of r2rt (1M)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cores", action="store_true", help="also time both through hydra/launcher=cores")
    a = ap.parse_args()
    data = "small" if a.quick else "r2rt"
    variants = {"basic (one run per job)": ["hydra/launcher=basic"], "packed, in-process (default)": []}
    if a.cores:
        variants["joblib, one run per dispatch"] = ["hydra/launcher=joblib", "hydra.launcher.batch_size=1"]
        variants["packed, joblib (hydra/launcher=cores)"] = ["hydra/launcher=cores"]
    load0 = os.getloadavg()
    print(f"sweep: {' '.join(GRID)} data={data} train.epochs=1 ({RUNS} runs); {os.cpu_count()} cores; "
          f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} before; packs train as: {engine_path()}")
    walls: dict[str, list[float]] = {name: [] for name in variants}
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.repeats):
            for k, (name, launcher) in enumerate(variants.items()):
                wall, res = run_sweep(Path(tmp) / f"{rep}-{k}", data, launcher)
                walls[name].append(wall)
                results.setdefault(name, res)
                if not same_results(res, results[name]) or not same_results(res, next(iter(results.values()))):
                    sys.exit(f"{name}: held-out losses differ from the other launchers' (beyond 1e-5)")
    base = statistics.median(next(iter(walls.values())))
    print("| launcher | wall s (median) | runs/min | speedup vs basic |\n|---|---|---|---|")
    for name, ws in walls.items():
        w = statistics.median(ws)
        print(f"| {name} | {w:.1f} | {RUNS * 60 / w:.1f} | {base / w:.2f}x |")
    load1 = os.getloadavg()
    print(f"repeats: {a.repeats}; load average after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; "
          "every variant: 16 completed runs, held-out losses equal to 1e-5")


if __name__ == "__main__":
    main()
