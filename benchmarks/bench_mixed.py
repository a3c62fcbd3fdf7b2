"""Where a pack's time goes, and what packing every n of a state size into one pack gains.

    .venv/bin/python benchmarks/bench_mixed.py            # ~3 min on 2 cores
    .venv/bin/python benchmarks/bench_mixed.py --quick    # smoke run (tiny data)

1. **loop vs arithmetic**: one TF-style pack, n = 5, warm epoch of the article's data
   (1M steps, batch 200), K = 3 vs K = 60 replicas, d = 2 and 32. Fitting t = a + b K
   gives the per-pack cost a (the sequential loop's per-iteration overhead, the same for
   any K) and the per-replica cost b (arithmetic). Packing 20 n's of one state size into
   one pack can at best save 19 a per epoch.
2. **a lockstep program for every n**: one program advancing every replica one cell per
   iteration, each in its own phase (forward n_k cells, backward n_k cells, update; n a
   per-replica [K] tensor; :func:`lockstep_epoch`, checked exact against today's program
   first) vs today's program called once per n (what ``Pack`` does with its groups). The
   lockstep loop runs ~2C iterations once instead of 20 times, but every iteration
   evaluates the cell's vector-Jacobian product for every replica.
3. **packs of one n vs one pack of every n**: 20 n x 3 seeds of one state size, one epoch
   with 10 held-out checkpoints, trained as 20 packs of 3 (the old plan) and as one pack
   of 60 (rnn_sweep.run.pack.Pack groups the members by n), interleaved, same process.

Prints a markdown table per part; the machine's load is printed with each.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def _epoch_seconds(d: int, k: int, n: int, columns: int, reps: int = 2) -> float:
    import tensorflow as tf

    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim
    from rnn_sweep.model.backends import build_backend
    from rnn_sweep.task.config import ModelConfig, OptimizerConfig

    be = build_backend(ModelConfig(backend="scratch", cell="rnn"), d)
    params = {name: tf.constant(v) for name, v in be.init_params(list(range(k))).items()}
    hp = optim.stacked_hyperparams([OptimizerConfig(name="adagrad", lr=0.1)] * k)
    rng = np.random.default_rng(0)
    xs, ys = (rng.integers(0, 2, (columns, k, 200)).astype(np.int8) for _ in range(2))
    fn = engine.epoch_fn(be, "adagrad", "tf", True, n)
    best = float("inf")
    for _ in range(reps + 1):  # the first call compiles
        t0 = time.perf_counter()
        out = fn.with_step_losses(params, optim.init_state("adagrad", params, hp), hp, xs, ys, be.zero_state(k, 200))
        np.asarray(out[2])
        best = min(best, time.perf_counter() - t0) if _ else float("inf")
    return best


def _predict_seconds(d: int, k: int, columns: int, reps: int = 2) -> float:
    import tensorflow as tf

    from rnn_sweep.model import engine
    from rnn_sweep.model.backends import build_backend
    from rnn_sweep.task.config import ModelConfig

    be = build_backend(ModelConfig(backend="scratch", cell="rnn"), d)
    params = {name: tf.constant(v) for name, v in be.init_params(list(range(k))).items()}
    xs = np.random.default_rng(0).integers(0, 2, (columns, k, 200)).astype(np.int8)
    fn = engine.predict_fn(be, xla=True)
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        np.asarray(fn(params, xs, be.zero_state(k, 200)))
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def part_loop(columns: int) -> None:
    print(f"\n### 1. Per-pack loop cost vs per-replica arithmetic (n = 5, warm epoch; load {load()})\n")
    print("| d | K=3 (s) | K=60 (s) | per pack a (s) | per replica b (s) |\n|---|---|---|---|---|")
    for d in (2, 32):
        t3, t60 = _epoch_seconds(d, 3, 5, columns), _epoch_seconds(d, 60, 5, columns)
        b = (t60 - t3) / 57
        print(f"| {d} | {t3:.3f} | {t60:.3f} | {t3 - 3 * b:.3f} | {b:.4f} |", flush=True)


def lockstep_epoch(d: int, xla: bool = True):
    """The design measured against per-n groups: ONE program advancing every replica one cell per
    iteration, each in its own phase (forward n_k cells, backward n_k cells, Adagrad update), n a
    per-replica [K] tensor. Scratch cell, TF style. Returns f(params, acc, lr, xs, ys, n) ->
    (params, acc, position losses [C, K]); a replica idles once its C // n_k windows are done.
    """
    import tensorflow as tf

    from rnn_sweep.model.backends import build_backend
    from rnn_sweep.task.config import ModelConfig

    be = build_backend(ModelConfig(backend="scratch", cell="rnn"), d)

    def epoch(params, acc, lr, xs, ys, n):
        c, k, b = xs.shape
        size = 32  # the window buffer, as today's program
        ks = tf.range(k)
        windows = c // n
        iters = tf.reduce_max(2 * n * windows)

        def body(i, params, acc, state, buf, ds, grads, pos):
            w, j = i // (2 * n), i % (2 * n)
            active, fwd = w < windows, j < n
            slot = tf.where(fwd, j, 2 * n - 1 - j)
            t = tf.minimum(w * n + slot, c - 1)
            idx = tf.stack([t, ks], axis=1)
            x = tf.one_hot(tf.cast(tf.gather_nd(xs, idx), tf.int32), 2)
            y = tf.cast(tf.gather_nd(ys, idx), tf.int32)
            sidx = tf.stack([slot, ks], axis=1)
            s_in = tf.where(fwd[:, None, None], state, tf.gather_nd(buf, sidx))
            ds_in = tf.where((fwd | tf.equal(j, n))[:, None, None], tf.zeros_like(ds), ds)
            scale = tf.where(fwd | ~active, 0.0, 1.0 / tf.cast(n, tf.float32))[:, None, None]
            step, g, (ds_out,) = be.cell_vjp(params, x[..., 1], y, (tf.transpose(s_in, [0, 2, 1]),),  # the cell's
                                             (tf.transpose(ds_in, [0, 2, 1]),), scale)  # [K, d, B] layout
            ds_out = tf.transpose(ds_out, [0, 2, 1])
            s1 = tf.tanh(tf.einsum("kbi,kid->kbd", x, params["W"][:, :2])
                         + tf.einsum("kbi,kid->kbd", s_in, params["W"][:, 2:]) + params["b"][:, None, :])
            state = tf.where((fwd & active)[:, None, None], s1, state)
            buf = tf.tensor_scatter_nd_update(buf, sidx, s_in)
            pos = tf.tensor_scatter_nd_update(pos, idx, tf.where(fwd & active, step, tf.gather_nd(pos, idx)))
            grads = {name: grads[name] + g[name] for name in grads}
            update = active & tf.equal(j, 2 * n - 1)

            def mask(v):
                return tf.reshape(update, [-1] + [1] * (v.shape.rank - 1))

            new_acc = {name: acc[name] + tf.square(grads[name]) for name in acc}
            new = {name: params[name] - tf.reshape(lr, mask(params[name]).shape) * grads[name]
                   * tf.math.rsqrt(new_acc[name]) for name in params}
            params = {name: tf.where(mask(v), new[name], v) for name, v in params.items()}
            acc = {name: tf.where(mask(v), new_acc[name], v) for name, v in acc.items()}
            grads = {name: tf.where(mask(v), tf.zeros_like(v), v) for name, v in grads.items()}
            return i + 1, params, acc, state, buf, ds_out, grads, pos

        state = tf.zeros([k, b, d])
        init = (tf.constant(0), params, acc, state, tf.zeros([size, k, b, d]), state,
                {name: tf.zeros_like(v) for name, v in params.items()}, tf.zeros([c, k]))
        out = tf.while_loop(lambda i, *_: i < iters, body, init)
        return out[1], out[2], out[7]

    return tf.function(epoch, jit_compile=xla, autograph=False)


def _check_lockstep() -> None:
    """The prototype is exact: its members equal today's program run per n (tiny data)."""
    import tensorflow as tf

    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim
    from rnn_sweep.model.backends import build_backend
    from rnn_sweep.task.config import ModelConfig, OptimizerConfig

    ns, d, c, b = [1, 3, 7, 10], 3, 23, 4
    be = build_backend(ModelConfig(backend="scratch", cell="rnn"), d)
    init = be.init_params(list(range(len(ns))))
    rng = np.random.default_rng(1)
    xs, ys = (rng.integers(0, 2, (c, len(ns), b)).astype(np.int8) for _ in range(2))
    params = {k: tf.constant(v) for k, v in init.items()}
    acc = {k: tf.fill(v.shape, 0.1) for k, v in params.items()}
    got, _, pos = lockstep_epoch(d, xla=False)(params, acc, tf.fill([len(ns)], 0.1), xs, ys, tf.constant(ns))
    for k, n in enumerate(ns):
        one = {name: tf.constant(v[k:k + 1]) for name, v in init.items()}
        hp = optim.stacked_hyperparams([OptimizerConfig(name="adagrad", lr=0.1)])
        fn = engine.epoch_fn(be, "adagrad", "tf", False, n)
        ref, _, _, steps, _ = fn.with_step_losses(one, optim.init_state("adagrad", one, hp), hp, xs[:, k:k + 1],
                                                  ys[:, k:k + 1], be.zero_state(1, b))
        np.testing.assert_allclose(pos.numpy()[:len(steps), k], steps.numpy()[:, 0], rtol=1e-5)
        for name in ref:
            np.testing.assert_allclose(got[name].numpy()[k], ref[name].numpy()[0], rtol=1e-4, atol=1e-6)


def part_lockstep(columns: int, reps: int = 2) -> None:
    """20 n x 3 seeds of one state size: the lockstep program (K = 60) vs today's program per n
    (20 calls of K = 3, as Pack runs its groups), warm epochs, interleaved."""
    import tensorflow as tf

    _check_lockstep()
    print(f"\n### 2. One lockstep program for every n vs one call per n (20 n x 3 seeds, warm epoch; "
          f"load {load()})\n")
    print("| d | per-n calls, K=3 each (s) | lockstep, K=60 (s) | lockstep / per-n |\n|---|---|---|---|")
    ns = [n for n in range(1, 21) for _ in range(3)]
    for d in (2, 32):
        rng = np.random.default_rng(0)
        xs, ys = (rng.integers(0, 2, (columns, 60, 200)).astype(np.int8) for _ in range(2))
        from rnn_sweep.model.backends import build_backend
        from rnn_sweep.task.config import ModelConfig

        be = build_backend(ModelConfig(backend="scratch", cell="rnn"), d)
        params = {k: tf.constant(v) for k, v in be.init_params(list(range(60))).items()}
        acc = {k: tf.fill(v.shape, 0.1) for k, v in params.items()}
        fn = lockstep_epoch(d)
        args = (params, acc, tf.fill([60], 0.1), xs, ys, tf.constant(ns))
        np.asarray(fn(*args)[2])  # compile
        per_n, lock = [], []
        for _ in range(reps):
            per_n.append(sum(_epoch_seconds(d, 3, n, columns, reps=1) for n in range(1, 21)))
            t0 = time.perf_counter()
            np.asarray(fn(*args)[2])
            lock.append(time.perf_counter() - t0)
        print(f"| {d} | {min(per_n):.2f} | {min(lock):.2f} | {min(lock) / min(per_n):.2f} |", flush=True)


def _grid_cfgs(d: int, length: int, ns, seeds):
    from rnn_sweep.task.config import from_dict

    return [from_dict({"num_steps": n, "state_size": d, "seed": s,
                       "data": {"length": length, "eval_length": max(length // 5, 2000)},
                       "train": {"checkpoints": 10, "progress": False}}) for n in ns for s in seeds]


def _train(cfgs) -> float:
    from rnn_sweep.run.pack import Pack

    t0 = time.perf_counter()
    pack = Pack(cfgs)
    pack.train_epoch(0, checkpoints=10)
    pack.heldout_predictions()
    return time.perf_counter() - t0


def part_packs(length: int, repeats: int) -> None:
    print(f"\n### 3. 20 n x 3 seeds of one state size, 1 epoch + 10 checkpoints + evaluation (load {load()})\n")
    print("| d | 20 packs of 3 (s) | 1 pack of 60 (s) | ratio |\n|---|---|---|---|")
    for d in (2, 32):
        cfgs = _grid_cfgs(d, length, range(1, 21), (0, 1, 2))
        _train(cfgs[:3]), _train(cfgs)  # compile both shapes first
        old, new = [], []
        for _ in range(repeats):
            old.append(sum(_train(cfgs[i:i + 3]) for i in range(0, len(cfgs), 3)))
            new.append(_train(cfgs))
        print(f"| {d} | {min(old):.2f} | {min(new):.2f} | {min(old) / min(new):.2f}x |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny data: check that the script runs")
    args = ap.parse_args()
    from rnn_sweep.run.runtime import import_tf

    import_tf(1)
    columns, length = (100, 20_000) if args.quick else (5000, 1_000_000)
    print(f"bench_mixed: {os.cpu_count()} cores, load {load()}")
    part_loop(columns)
    part_lockstep(columns, 1 if args.quick else 2)
    part_packs(length, 1 if args.quick else 2)


if __name__ == "__main__":
    main()
