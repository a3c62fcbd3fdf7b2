"""Wall time of one fixed sweep: in-process (the default launcher) vs joblib on every core (cores).

    .venv/bin/python benchmarks/bench_launchers.py            # 8 runs on the article's data
    .venv/bin/python benchmarks/bench_launchers.py --quick    # 8 runs on data=small

Both go through rnn-sweep's packing launcher (docs/sweeps.md): in-process, and
``hydra/launcher=cores`` (packs per joblib worker); benchmarks/bench_packing.py compares
packed with one-run-per-job. Each launcher runs the same sweep from scratch into its own temporary sweep
directory (aggregation off, so only the runs are timed), through the real
``rnn-sweep`` console script; the speedup is basic / joblib wall time. Both
include process start, TensorFlow import and compilation, which a sweep pays:
the basic launcher once per sweep, joblib once per worker. Results are checked
(every run completed) before a time is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "rnn-sweep"
GRID = ["num_steps=5,10", "state_size=4,16", "seed=0,1"]


def run_sweep(sweep_dir: Path, data: str, epochs: int, launcher: list[str]) -> float:
    """Run the fixed sweep; return its wall time in seconds."""
    args = [str(BIN), "-m", *GRID, f"data={data}", f"train.epochs={epochs}", "train.progress=false",
            f"hydra.sweep.dir={sweep_dir}", "hydra.callbacks.aggregate.enabled=false", *launcher]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(launcher) or 'basic'}):\n{out.stderr[-3000:]}")
    statuses = [json.loads(p.read_text())["status"] for p in sweep_dir.glob("*/summary.json")]
    if statuses != ["completed"] * 8:
        sys.exit(f"expected 8 completed runs in {sweep_dir}, found {statuses}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="data=small (100k steps/epoch) instead of r2rt (1M)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--n-jobs", type=int, default=-1, help="joblib workers (-1 = every core)")
    ap.add_argument("--batch-size", default=None, help="joblib batch_size (default: the preset's)")
    a = ap.parse_args()
    data = "small" if a.quick else "r2rt"
    cores = os.cpu_count()
    print(f"sweep: {' '.join(GRID)} data={data} train.epochs={a.epochs} (8 runs); "
          f"{cores} cores, load average {os.getloadavg()[0]:.2f} before")
    with tempfile.TemporaryDirectory() as tmp:
        basic = run_sweep(Path(tmp) / "basic", data, a.epochs, [])
        extra = [f"hydra.launcher.batch_size={a.batch_size}"] if a.batch_size else []
        joblib = run_sweep(Path(tmp) / "joblib", data, a.epochs,
                           ["hydra/launcher=cores", f"hydra.launcher.n_jobs={a.n_jobs}", *extra])
    print("| launcher | wall s | runs/min |\n|---|---|---|")
    print(f"| in-process (default, packed) | {basic:.1f} | {8 * 60 / basic:.1f} |")
    print(f"| cores (joblib, packed), n_jobs={a.n_jobs}, batch_size={a.batch_size or 'preset'} | {joblib:.1f} | {8 * 60 / joblib:.1f} |")
    print(f"speedup (in-process / cores): {basic / joblib:.2f}x; load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
