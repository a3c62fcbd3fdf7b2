"""Where the per-shape cost of a run goes: trace, XLA compile, first epoch, evaluation compile.

Each shape runs in a fresh process (nothing cached), 1M steps, batch 200, d=16 by default:

    .venv/bin/python benchmarks/compile_cost.py                      # TF n=5,10,20; true n=10
    .venv/bin/python benchmarks/compile_cost.py --shapes tf:5 true:10 --state-size 4
    PYTHONPATH=/path/to/old/checkout .venv/bin/python benchmarks/compile_cost.py   # "before"

Per shape: ``trace`` = building the epoch's graph (``get_concrete_function``);
``compile`` = first call minus a warm call on the same data (XLA compilation);
``epoch`` = the warm call; ``eval compile`` = first minus second call of the
held-out forward pass. Works with the pre-pack API (one run: ``init_params(seed)``,
``zero_state(batch)``) so the same script measures the code before issue 12.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time


def _args(be, cfg, n: int):
    """(params, opt_state, hp, xs, ys, state, eval xs) for a pack of one, in whichever API the code has."""
    import tensorflow as tf

    from rnn_sweep.task import data
    from rnn_sweep.model import optimizers as optim

    if hasattr(data, "pack_epoch_steps"):  # time-major steps, n a runtime tensor (this release)
        params = {k: tf.constant(v) for k, v in be.init_params([0]).items()}
        hp = optim.stacked_hyperparams([cfg.train.optimizer])
        xs, ys = data.pack_epoch_steps(cfg.data, cfg.data.length, 200, [0], 0)
        ev = data.pack_epoch_steps(cfg.data, cfg.data.eval_length, 200, [0], 1)[0]
        return params, hp, xs, ys, be.zero_state(1, 200), ev
    packed = len(inspect.signature(be.zero_state).parameters) == 2
    xs, ys = data.epoch_windows(cfg.data, cfg.data.length, 200, n, data.rng_for(0, 0, 0))
    ev = data.epoch_windows(cfg.data, cfg.data.eval_length, 200, n, data.rng_for(0, 1, 0))[0]
    if packed:
        params = {k: tf.constant(v) for k, v in be.init_params([0]).items()}
        hp = optim.stacked_hyperparams([cfg.train.optimizer])
        return params, hp, xs[:, None], ys[:, None], be.zero_state(1, 200), ev[:, None]
    params = {k: tf.constant(v) for k, v in be.init_params(0).items()}
    hp = {k: tf.constant(v, tf.float32) for k, v in optim.hyperparams(cfg.train.optimizer).items()}
    return params, hp, xs, ys, be.zero_state(200), ev


def child(style: str, n: int, d: int, xla: bool = True) -> dict:
    """Measure one shape in this (fresh) process."""
    t0 = time.perf_counter()
    from rnn_sweep.run.runtime import import_tf

    import_tf()
    import tensorflow as tf

    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim
    from rnn_sweep.task.config import RunConfig
    from rnn_sweep.model.backends import build_backend

    t_import = time.perf_counter() - t0
    cfg = RunConfig(num_steps=n, state_size=d)
    be = build_backend(cfg.model, d)
    params, hp, xs, ys, state, ev = _args(be, cfg, n)
    opt_state = optim.init_state("adagrad", params, hp)
    stepwise = "num_steps" in inspect.signature(engine.epoch_fn).parameters
    fn = engine.epoch_fn(be, "adagrad", style, xla, n) if stepwise else engine.epoch_fn(be, "adagrad", style, xla)
    t = [time.perf_counter()]
    if stepwise:
        segment = ()  # a release whose epochs run in segments takes (first, stop) updates too
        if "first" in inspect.signature(fn.program.python_function).parameters:
            segment = (tf.constant(0), tf.constant(fn.updates(int(xs.shape[0]))))
        fn.program.get_concrete_function(params, opt_state, hp, xs, ys, tf.constant(n), state, *segment)
    else:
        fn.get_concrete_function(params, opt_state, hp, xs, ys, state)
    t.append(time.perf_counter())
    for _ in range(2):
        out = fn(params, opt_state, hp, xs, ys, state)
        out[2].numpy()
        t.append(time.perf_counter())
    predict = engine.predict_fn(be, xla=xla if stepwise else False)
    for _ in range(2):
        predict(out[0], ev, state).numpy()
        t.append(time.perf_counter())
    first, warm = t[2] - t[1], t[3] - t[2]
    return {"style": style, "n": n, "d": d, "import_s": t_import, "trace_s": t[1] - t[0],
            "compile_s": first - warm, "epoch_s": warm, "eval_compile_s": (t[4] - t[3]) - (t[5] - t[4]),
            "eval_s": t[5] - t[4], "per_shape_s": (t[1] - t[0]) + first + (t[4] - t[3])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=["tf:5", "tf:10", "tf:20", "true:10"], help="style:num_steps")
    ap.add_argument("--state-size", type=int, default=16)
    ap.add_argument("--no-xla", action="store_true", help="compile the epochs as plain graphs (train.xla=false)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        style, n = args.child.split(":")
        print(json.dumps(child(style, int(n), args.state_size, not args.no_xla)))
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    print(f"xla={not args.no_xla}; load average at start: {os.getloadavg()}\n")
    print("| style | n | d | trace (s) | XLA compile (s) | warm epoch (s) | eval compile (s) | "
          "trace + first epoch + first eval (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in args.shapes:
        out = subprocess.run([sys.executable, __file__, "--child", shape, "--state-size", str(args.state_size),
                              *(["--no-xla"] if args.no_xla else [])],
                             capture_output=True, text=True, env=env, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {r['style']} | {r['n']} | {r['d']} | {r['trace_s']:.2f} | {r['compile_s']:.2f} | "
              f"{r['epoch_s']:.3f} | {r['eval_compile_s']:.2f} | {r['per_shape_s']:.2f} |", flush=True)
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
