"""What a pack costs: K=8 runs as one program against one run of the same shape, and one
run against the article's code (benchmarks/article_port.py), whole process each.

    .venv/bin/python benchmarks/bench_pack.py                 # n=5 d=4, 3 epochs, 3 repeats
    .venv/bin/python benchmarks/bench_pack.py --num-steps 10 --state-size 16 --epochs 1

Every measurement is a fresh process, start to exit (imports, trace, compile,
data, training, evaluation, records), interleaved over ``--repeats`` rounds so
load from other processes hits each alike; medians are reported. Measured:

* ``port``: the article's code ported to tf.compat.v1, one run;
* ``one run``: ``rnn-sweep`` with the shape (a pack of one);
* ``8 seeds``: ``rnn-sweep train.replicas=8`` (seeds 0..7 as one pack);
* ``8 learning rates``: ``train_pack`` of 8 runs with lr 0.02..0.3 (seed 0).
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

REPO = Path(__file__).resolve().parents[1]
PY = Path(sys.executable)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
LRS = (0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3)


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - t0


def lr_pack_child(n: int, d: int, epochs: int, out: str) -> None:
    """In this process: train_pack of len(LRS) runs that differ only in the learning rate."""
    from rnn_sweep.task.config import RunConfig
    from rnn_sweep.run.train import train_pack

    cfgs = []
    for lr in LRS:
        cfg = RunConfig(num_steps=n, state_size=d)
        cfg.train.epochs, cfg.train.progress, cfg.train.optimizer.lr = epochs, False, lr
        cfgs.append(cfg)
    train_pack(cfgs, [Path(out) / f"lr={lr}" for lr in LRS])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num-steps", type=int, default=5)
    ap.add_argument("--state-size", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lr-pack-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.lr_pack_child:
        lr_pack_child(a.num_steps, a.state_size, a.epochs, a.lr_pack_child)
        return
    shape = [f"num_steps={a.num_steps}", f"state_size={a.state_size}", f"train.epochs={a.epochs}",
             "train.progress=false"]
    cmds = {
        "port": [str(PY), "benchmarks/article_port.py", f"--num-steps={a.num_steps}",
                 f"--state-size={a.state_size}", f"--epochs={a.epochs}"],
        "one run": [str(PY.parent / "rnn-sweep"), *shape],
        "8 seeds": [str(PY.parent / "rnn-sweep"), *shape, "train.replicas=8"],
        "8 learning rates": [str(PY), __file__, f"--num-steps={a.num_steps}", f"--state-size={a.state_size}",
                             f"--epochs={a.epochs}"],
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    load0 = os.getloadavg()
    for _ in range(a.repeats):
        for name, cmd in cmds.items():
            with tempfile.TemporaryDirectory() as tmp:
                extra = [f"hydra.run.dir={tmp}"] if "rnn-sweep" in cmd[0] else \
                    [f"--lr-pack-child={tmp}"] if name == "8 learning rates" else []
                times[name].append(wall(cmd + extra))
            print(f"  {name}: {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"n={a.num_steps} d={a.state_size} epochs={a.epochs}, 1M steps/epoch; median of {a.repeats} "
          f"(whole process); load average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end\n")
    print("| measurement | wall (s) | vs one run | port / this |")
    print("|---|---|---|---|")
    for name, t in med.items():
        print(f"| {name} | {t:.2f} | {t / med['one run']:.2f}x | {med['port'] / t:.2f}x |")
    print("\n" + json.dumps({"times": times}))


if __name__ == "__main__":
    main()
