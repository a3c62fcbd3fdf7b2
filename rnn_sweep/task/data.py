"""The synthetic binary sequence, the article's batching, and seeded streams.

Everything is vectorised NumPy: an epoch of 1,000,000 steps is generated in a
few milliseconds (the article's Python loop takes seconds).
"""

from __future__ import annotations

import numpy as np

from rnn_sweep.task.config import DataConfig

TRAIN_STREAM = 0
EVAL_STREAM = 1  # the final held-out evaluation
CHECKPOINT_STREAM = 2  # the held-out data every checkpoint of a run measures (the same each time)


def rng_for(seed: int, stream: int, epoch: int = 0) -> np.random.Generator:
    """An independent, reproducible generator per (seed, stream, epoch)."""
    return np.random.default_rng([seed, stream, epoch])


def lagged_inputs(x_full: np.ndarray, length: int, rule: DataConfig) -> list[np.ndarray]:
    """X_{t-lag} for t = 0..length-1, for each dependency.

    ``pad``: ``x_full`` holds max(lag) inputs before the ``length`` visible ones.
    ``wrap``: ``x_full`` is the visible sequence and index t-lag < 0 wraps to the
    end, exactly like the article's ``X[i-3]`` with negative i.
    """
    if rule.boundary == "wrap":
        return [np.roll(x_full, dep.lag) for dep in rule.dependencies]
    pad = len(x_full) - length
    return [x_full[pad - dep.lag: pad - dep.lag + length] for dep in rule.dependencies]


def max_lag(rule: DataConfig) -> int:
    return max((d.lag for d in rule.dependencies), default=0)


def generate_full(rule: DataConfig, length: int, rng: np.random.Generator):
    """Like :func:`generate`, also returning the lagged inputs X_{t-lag} per dependency.

    Draws float32 uniforms and works in float32/int8 views: half the memory traffic
    of float64, which is most of the cost of an epoch's data.
    """
    extra = 0 if rule.boundary == "wrap" else max_lag(rule)
    x_full = (rng.random(length + extra, dtype=np.float32) < np.float32(rule.input_prob)).view(np.int8)
    u = rng.random(length, dtype=np.float32)
    lagged = lagged_inputs(x_full, length, rule)
    p = np.full(length, rule.base_prob, dtype=np.float32)
    for xl, dep in zip(lagged, rule.dependencies):
        p += np.float32(dep.effect) * xl
    y = (u <= p).view(np.int8)  # the article's test: Y_t = 1 iff u_t <= P(Y_t=1)
    return x_full[extra:], y, p, lagged


def generate(rule: DataConfig, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one sequence of ``length`` steps.

    Returns:
        x: int8 [length] inputs, y: int8 [length] targets, p: float32 [length]
        true P(Y_t=1) (used by the probe and the analytic checks).
    """
    x, y, p, _ = generate_full(rule, length, rng)
    return x, y, p


def to_rows(seq: np.ndarray, batch_size: int) -> np.ndarray:
    """Cut a sequence into ``batch_size`` contiguous rows (the article's gen_batch).

    Returns an array [batch_size, len(seq) // batch_size]; the tail is dropped.
    """
    cols = len(seq) // batch_size
    return seq[: cols * batch_size].reshape(batch_size, cols)


def to_windows(rows: np.ndarray, num_steps: int) -> np.ndarray:
    """Split rows [B, C] into consecutive windows [C // num_steps, B, num_steps].

    Window i is ``rows[:, i*num_steps:(i+1)*num_steps]``; leftover columns are
    dropped, as in the article.
    """
    b, c = rows.shape
    w = c // num_steps
    return rows[:, : w * num_steps].reshape(b, w, num_steps).transpose(1, 0, 2)


def epoch_windows(rule: DataConfig, length: int, batch_size: int, num_steps: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of training data as windows: (x, y), each int8 [W, B, num_steps]."""
    x, y, _ = generate(rule, length, rng)
    return to_windows(to_rows(x, batch_size), num_steps), to_windows(to_rows(y, batch_size), num_steps)


def steps_major(rows: list[np.ndarray]) -> np.ndarray:
    """Per-replica rows [B, C] -> one time-major array [C, K, B] (the engine's layout)."""
    return np.ascontiguousarray(np.stack(rows, axis=0).transpose(2, 0, 1))


def windows_to_steps(windows: np.ndarray) -> np.ndarray:
    """Windows [W, K, B, n] -> the same steps time-major, [W*n, K, B]."""
    w, k, b, n = windows.shape
    return np.ascontiguousarray(windows.transpose(0, 3, 1, 2).reshape(w * n, k, b))


def epoch_rows(rule: DataConfig, length: int, batch_size: int, seeds: list[int],
               epoch: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each distinct seed's training rows for ``epoch``: {seed: (x, y)}, each int8 [B, C], C = length // B.

    What a run with that seed alone draws (``to_rows`` of :func:`generate` on
    ``rng_for(seed, TRAIN_STREAM, epoch)``), drawn once however many members of a pack
    share the seed (runs that differ in n or learning rate see the same data).
    """
    out = {}
    for s in dict.fromkeys(seeds):
        x, y, _ = generate(rule, length, rng_for(s, TRAIN_STREAM, epoch))
        out[s] = (to_rows(x, batch_size), to_rows(y, batch_size))
    return out


def pack_epoch_steps(rule: DataConfig, length: int, batch_size: int, seeds: list[int],
                     epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """A pack's training data for ``epoch``: (x, y), each int8 [C, K, B] time-major, C = length // B.

    Replica k's rows ``[:, k, :].T`` are exactly what a run with seed ``seeds[k]``
    alone draws (``to_rows`` of :func:`generate` on ``rng_for(seeds[k],
    TRAIN_STREAM, epoch)``); its windows of n are columns [i*n, (i+1)*n), the
    last C mod n columns unused (the article's batching). The data do not depend
    on n, so one compiled program can serve every n.
    """
    drawn = {s: generate(rule, length, rng_for(s, TRAIN_STREAM, epoch))[:2]
             for s in dict.fromkeys(seeds)}  # members with one seed (a learning-rate pack) share one draw
    return (steps_major([to_rows(drawn[s][0], batch_size) for s in seeds]),
            steps_major([to_rows(drawn[s][1], batch_size) for s in seeds]))
