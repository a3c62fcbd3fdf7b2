"""Epoch time of TF-style BPTT(n, n) vs true BPTT(n, 1) at a few n.

True BPTT does about n times the arithmetic of TF style (every loss unrolls its
own n cells); the batched implementation should not cost more wall time than
that. Each (style, n) is compiled once (first call, reported apart), then timed
over ``--repeats`` warm epochs of fresh data (median).

    .venv/bin/python benchmarks/bench_truncation.py --num-steps 2 5 10 20 --state-size 16

Prints a markdown table: n, style, compile+first epoch (s), warm epoch (s),
updates per epoch, true/tf ratio of warm epoch times, and that ratio divided by n.
"""

from __future__ import annotations

import argparse
import statistics
import time

from rnn_sweep.task.config import DataConfig, OptimizerConfig


def time_style(backend, style: str, n: int, args) -> tuple[float, float, int]:
    """(first epoch incl. compile, median warm epoch, updates) for one style and n."""
    import tensorflow as tf

    from rnn_sweep.task import data
    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim

    params = {k: tf.constant(v) for k, v in backend.init_params([0]).items()}  # a pack of one
    hp = optim.stacked_hyperparams([OptimizerConfig()])
    opt_state = optim.init_state("adagrad", params, hp)
    fn = engine.epoch_fn(backend, "adagrad", style, not args.no_xla, n)
    times = []
    for epoch in range(args.repeats + 1):
        xs, ys = data.pack_epoch_steps(DataConfig(), args.length, args.batch_size, [0], epoch)
        t0 = time.perf_counter()
        params, opt_state, losses, _ = fn(params, opt_state, hp, xs, ys, backend.zero_state(1, args.batch_size))
        losses.numpy()  # wait for the computation
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times[1:]), int(losses.shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-steps", type=int, nargs="+", default=[2, 5, 10, 20])
    parser.add_argument("--state-size", type=int, default=16)
    parser.add_argument("--backend", default="scratch", help="a functional backend: scratch, static, dynamic")
    parser.add_argument("--length", type=int, default=1_000_000, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2, help="warm epochs timed after the first")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--no-xla", action="store_true")
    args = parser.parse_args()

    from rnn_sweep.task.config import ModelConfig
    from rnn_sweep.run.runtime import import_tf

    import_tf(args.threads)
    from rnn_sweep.model.backends import build_backend

    backend = build_backend(ModelConfig(backend=args.backend), args.state_size)
    print(f"backend={args.backend} d={args.state_size} length={args.length} batch={args.batch_size} "
          f"xla={not args.no_xla} repeats={args.repeats}\n")
    print("| n | style | compile + first epoch (s) | warm epoch (s) | updates/epoch | true/tf | (true/tf)/n |")
    print("|---|---|---|---|---|---|---|")
    for n in args.num_steps:
        warm = {}
        for style in ("tf", "true"):
            first, warm[style], updates = time_style(backend, style, n, args)
            ratio = warm["true"] / warm["tf"] if style == "true" else None
            extra = f"{ratio:.2f} | {ratio / n:.2f}" if ratio else " | "
            print(f"| {n} | {style} | {first:.2f} | {warm[style]:.3f} | {updates} | {extra} |", flush=True)


if __name__ == "__main__":
    main()
