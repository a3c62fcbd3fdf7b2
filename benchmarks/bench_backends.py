"""Warm epoch time of every backend and cell at the article's setting.

    .venv/bin/python benchmarks/bench_backends.py                 # 1M steps, n=5, d=4, batch 200
    .venv/bin/python benchmarks/bench_backends.py --repeats 7 --cells rnn

One epoch = the article's 1,000,000 steps cut into 200 rows -> 1000 windows of
n=5 (one training step each). Every backend trains through the same path
``train()`` uses: the compiled epoch of :mod:`rnn_sweep.model.engine` for scratch,
static and dynamic (with and without XLA), ``model.fit`` for keras. The first
call includes tracing/compilation; it is followed by ``--repeats`` warm epochs on
the same data, whose minimum and median are reported (the machine is shared, so
the minimum is the least disturbed measurement). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

BACKENDS = ("scratch", "static", "dynamic", "keras")


def measure(backend_name: str, cell: str, xla: bool, repeats: int, windows) -> dict:
    """First (compiling) and warm epoch times of one backend, cell and XLA choice."""
    import tensorflow as tf

    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim
    from rnn_sweep.task.config import RunConfig, validate
    from rnn_sweep.model.backends import build_backend

    cfg = RunConfig()
    cfg.model.backend, cfg.model.cell, cfg.train.xla = backend_name, cell, xla
    validate(cfg)
    xs, ys = windows
    be = build_backend(cfg.model, cfg.state_size)
    params = {k: tf.constant(v) for k, v in be.init_params([0]).items()}  # a pack of one
    hp = optim.stacked_hyperparams([cfg.train.optimizer])
    opt_state = optim.init_state(cfg.train.optimizer.name, params, hp)
    fn = be.make_epoch_fn(cfg) if hasattr(be, "make_epoch_fn") else engine.epoch_fn(be, "adagrad", "tf", xla, cfg.num_steps)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        params, opt_state, losses, _ = fn(params, opt_state, hp, xs, ys, be.zero_state(1, cfg.train.batch_size))
        losses = losses.numpy()  # wait for the result
        times.append(time.perf_counter() - t0)
    warm = times[1:]
    return {"backend": backend_name, "cell": cell, "xla": xla, "first": times[0], "min": min(warm),
            "median": statistics.median(warm), "steps": len(losses), "last_loss": float(losses[-100:].mean())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="warm epochs per backend (default 5)")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--cells", default="rnn,gru,lstm")
    ap.add_argument("--no-eager-graph", action="store_true",
                    help="skip the functional backends' non-XLA (plain tf.function) rows")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from rnn_sweep.task import data
    from rnn_sweep.task.config import RunConfig
    from rnn_sweep.run.runtime import import_tf

    import_tf()
    cfg = RunConfig()  # the article: 1M steps, batch 200, n=5, d=4
    windows = data.pack_epoch_steps(cfg.data, cfg.data.length, cfg.train.batch_size, [0], 0)
    rows = []
    for name in args.backends.split(","):
        for cell in args.cells.split(","):
            if name == "scratch" and cell != "rnn":
                continue
            modes = [True] if name == "keras" or args.no_eager_graph else [True, False]
            for xla in modes:
                rows.append(measure(name, cell, xla, args.repeats, windows))
                print(f"  measured {rows[-1]}", file=sys.stderr, flush=True)
    print(f"\nWarm epoch time, 1M steps (1000 windows of n=5, batch 200, d=4), min / median of "
          f"{args.repeats} warm epochs after one compiling epoch:\n")
    print("| backend | cell | compile | first epoch (s) | warm min (s) | warm median (s) | ms/step (min) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        how = ("model.fit, Keras' choice (no XLA under op determinism)" if r["backend"] == "keras"
               else "XLA" if r["xla"] else "tf.function, no XLA")
        print(f"| {r['backend']} | {r['cell']} | {how} | {r['first']:.2f} | {r['min']:.3f} | {r['median']:.3f} "
              f"| {1000 * r['min'] / r['steps']:.3f} |")


if __name__ == "__main__":
    main()
