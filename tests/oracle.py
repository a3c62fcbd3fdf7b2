"""A plain-NumPy oracle for the vanilla RNN: forward pass and truncated BPTT.

Independent of TensorFlow and Keras: every gradient is derived by hand (float64),
so tests can check any backend against it, and it is itself checked against
finite differences.

Model (the article's, canonical layout of :func:`rnn_sweep.model.backends.vanilla_init`)::

    a_t = [x_t ; s_{t-1}] W + b        x_t one-hot [B, 2], s_t [B, d]
    s_t = tanh(a_t)
    z_t = s_t U + c                    logits [B, 2]
    L   = mean over (batch, t) of  -log softmax(z_t)[y_t]

Backward pass of one window (T steps, N = B*T terms in the mean)::

    dz_t = (softmax(z_t) - onehot(y_t)) / N
    dU   = sum_t s_t^T dz_t,    dc = sum_t dz_t
    ds_t = dz_t U^T + da_{t+1} W[2:]^T     (da_{T} := 0)
    da_t = ds_t * (1 - s_t^2)
    dW   = sum_t [x_t ; s_{t-1}]^T da_t,   db = sum_t da_t
    dL/dx_t = da_t W[:2]^T,                dL/ds_{-1} = da_0 W[2:]^T

TensorFlow-style truncation (BPTT(n, n)) treats the state entering each window
as a constant; :func:`tf_style_windows` carries it from window to window.

Public API (all arrays NumPy; params is a dict with W [2+d,d], b [d], U [d,2], c [2]):

* ``forward(params, x, s0) -> (logits [B,T,2], states [B,T,d])``
* ``window_grads(params, x, y, s0) -> WindowResult`` -- loss, parameter
  gradients, final state, dL/dx (w.r.t. the one-hot inputs) and dL/ds0.
* ``input_gradients(params, x, y, s0) -> [B,T,2]`` -- dL/dx alone.
* ``tf_style_windows(params, xs, ys, s0=None) -> list[WindowResult]`` -- several
  windows with carried state, parameters held fixed.
* ``train_windows(params, xs, ys, lr, initial_accumulator)`` -- TF1 Adagrad
  training over windows with carried state (what one compiled epoch does).

Any cell, any truncation style, any optimizer (slower, for tiny problems):

* ``cell_forward(cell, params, x, state)`` -- rnn (the article's layout) or
  Keras' GRU (reset_after=True) / LSTM equations, written out in float64.
* ``reference_epoch(cell, params, xs, ys, style, opt, hp, update_every)`` --
  one epoch of TF-style or true BPTT(n, 1) training, the losses straight from
  the styles' definitions (one forward pass per loss, no batching tricks) and
  the gradients by central finite differences of those losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PARAM_NAMES = ("W", "b", "U", "c")


@dataclass
class WindowResult:
    """One window's loss and gradients (float64).

    Attributes:
        loss: mean cross-entropy over the window's B*T positions (nats).
        grads: dict W, b, U, c -> dL/dparam, shaped like the params.
        final_state: s_{T-1} [B, d], the state handed to the next window.
        d_inputs: dL/dx [B, T, 2], gradient w.r.t. the one-hot inputs.
        d_state0: dL/ds_{-1} [B, d], gradient w.r.t. the state entering the window.
    """

    loss: float
    grads: dict[str, np.ndarray]
    final_state: np.ndarray
    d_inputs: np.ndarray
    d_state0: np.ndarray


def _as64(params: dict) -> dict[str, np.ndarray]:
    return {k: np.asarray(params[k], np.float64) for k in PARAM_NAMES}


def onehot(x_int: np.ndarray) -> np.ndarray:
    """Integer inputs [..] in {0, 1} -> one-hot float64 [.., 2]."""
    return np.eye(2)[np.asarray(x_int, np.int64)]


def forward(params: dict, x: np.ndarray, s0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits [B, T, 2] and states s_0..s_{T-1} [B, T, d] for one-hot inputs x [B, T, 2]."""
    p = _as64(params)
    s = np.asarray(s0, np.float64)
    states = []
    for t in range(x.shape[1]):
        s = np.tanh(np.concatenate([x[:, t], s], axis=1) @ p["W"] + p["b"])
        states.append(s)
    states = np.stack(states, axis=1)
    return states @ p["U"] + p["c"], states


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def window_grads(params: dict, x: np.ndarray, y: np.ndarray, s0: np.ndarray) -> WindowResult:
    """Loss and hand-derived gradients of one window (see the module docstring).

    Args:
        params: W, b, U, c (any float dtype).
        x: one-hot inputs [B, T, 2] (float; may be non-one-hot for derivative checks).
        y: integer targets [B, T] in {0, 1}.
        s0: state entering the window [B, d] (a constant: TF-style truncation).
    """
    p = _as64(params)
    x = np.asarray(x, np.float64)
    s0 = np.asarray(s0, np.float64)
    B, T = y.shape
    logits, states = forward(p, x, s0)
    probs = _softmax(logits)
    y_hot = onehot(y)
    loss = float(-np.mean(np.sum(y_hot * np.log(probs), axis=-1)))
    dz = (probs - y_hot) / (B * T)
    grads = {"U": np.einsum("btd,btk->dk", states, dz), "c": dz.sum(axis=(0, 1)),
             "W": np.zeros_like(p["W"]), "b": np.zeros_like(p["b"])}
    w_x, w_s = p["W"][:2], p["W"][2:]
    d_inputs = np.zeros_like(x)
    da_next = np.zeros_like(s0)
    for t in reversed(range(T)):
        ds = dz[:, t] @ p["U"].T + da_next @ w_s.T
        da = ds * (1.0 - states[:, t] ** 2)
        s_prev = states[:, t - 1] if t > 0 else s0
        grads["W"] += np.concatenate([x[:, t], s_prev], axis=1).T @ da
        grads["b"] += da.sum(axis=0)
        d_inputs[:, t] = da @ w_x.T
        da_next = da
    return WindowResult(loss, grads, states[:, -1], d_inputs, da_next @ w_s.T)


def input_gradients(params: dict, x: np.ndarray, y: np.ndarray, s0: np.ndarray) -> np.ndarray:
    """dL/dx [B, T, 2]: gradient of the window loss w.r.t. the one-hot inputs."""
    return window_grads(params, x, y, s0).d_inputs


def tf_style_windows(params: dict, xs: np.ndarray, ys: np.ndarray, s0: np.ndarray | None = None) -> list[WindowResult]:
    """Each window's loss and gradients with the state carried between windows.

    Args:
        params: fixed W, b, U, c (no update between windows).
        xs: integer inputs [W, B, n]; ys: integer targets [W, B, n].
        s0: state entering the first window [B, d]; zeros if None.
    """
    d = np.asarray(params["W"]).shape[1]
    s = np.zeros((xs.shape[1], d)) if s0 is None else s0
    out = []
    for x, y in zip(xs, ys):
        res = window_grads(params, onehot(x), y, s)
        out.append(res)
        s = res.final_state
    return out


def train_windows(params: dict, xs: np.ndarray, ys: np.ndarray, lr: float = 0.1,
                  initial_accumulator: float = 0.1) -> tuple[dict[str, np.ndarray], list[float]]:
    """TF1 Adagrad over windows with carried state, from a zero state (one epoch).

    Returns (trained params float64, per-window losses before each update).
    """
    p = _as64(params)
    acc = {k: np.full_like(v, initial_accumulator) for k, v in p.items()}
    s = np.zeros((xs.shape[1], p["W"].shape[1]))
    losses = []
    for x, y in zip(xs, ys):
        res = window_grads(p, onehot(x), y, s)
        for k in PARAM_NAMES:
            acc[k] += res.grads[k] ** 2
            p[k] = p[k] - lr * res.grads[k] / np.sqrt(acc[k])
        losses.append(res.loss)
        s = res.final_state
    return p, losses


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _cell_step(cell: str, p: dict, x_t: np.ndarray, state: tuple) -> tuple:
    """One step of ``cell`` on one-hot x_t [B, 2]; returns the new state tuple."""
    h = state[0]
    if cell == "rnn":
        return (np.tanh(np.concatenate([x_t, h], axis=1) @ p["W"] + p["b"]),)
    if cell == "gru":
        xz, xr, xh = np.split(x_t @ p["kernel"] + p["bias"][0], 3, axis=1)
        rz, rr, rh = np.split(h @ p["recurrent_kernel"] + p["bias"][1], 3, axis=1)
        z, r = _sigmoid(xz + rz), _sigmoid(xr + rr)
        return (z * h + (1 - z) * np.tanh(xh + r * rh),)
    i, f, g, o = np.split(x_t @ p["kernel"] + h @ p["recurrent_kernel"] + p["bias"], 4, axis=1)
    c = _sigmoid(f) * state[1] + _sigmoid(i) * np.tanh(g)
    return (_sigmoid(o) * np.tanh(c), c)


def cell_forward(cell: str, params: dict, x: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
    """Logits [B, T, 2] and final state of ``cell`` (rnn | gru | lstm) on one-hot x [B, T, 2]."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    state = tuple(np.asarray(s, np.float64) for s in state)
    hs = []
    for t in range(x.shape[1]):
        state = _cell_step(cell, p, x[:, t], state)
        hs.append(state[0])
    return np.stack(hs, axis=1) @ p["U"] + p["c"], state


def _ce(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(logp, np.asarray(y, np.int64)[..., None], axis=-1)[..., 0]


def _numeric_grads(loss, params: dict, eps: float = 1e-6) -> dict:
    """Central differences of loss(params) w.r.t. every entry (float64)."""
    p = {k: np.array(v, np.float64) for k, v in params.items()}
    grads = {}
    for k, arr in p.items():
        g = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + eps
            up = loss(p)
            arr[idx] = old - eps
            down = loss(p)
            arr[idx] = old
            g[idx] = (up - down) / (2 * eps)
        grads[k] = g
    return grads


def _optimizer_step(name: str, p: dict, g: dict, slots: dict, hp: dict) -> dict:
    """TF1 Adagrad / SGD / Adam on float64 dicts (``slots`` updated in place)."""
    if name == "sgd":
        return {k: p[k] - hp["lr"] * g[k] for k in p}
    if name == "adagrad":
        for k in p:
            slots.setdefault(k, np.full_like(p[k], hp["initial_accumulator"]))
            slots[k] = slots[k] + g[k] ** 2
        return {k: p[k] - hp["lr"] * g[k] / np.sqrt(slots[k]) for k in p}
    t = slots["t"] = slots.get("t", 0) + 1
    lr_t = hp["lr"] * np.sqrt(1 - hp["beta2"] ** t) / (1 - hp["beta1"] ** t)
    out = {}
    for k in p:
        m = slots[("m", k)] = hp["beta1"] * slots.get(("m", k), 0.0) + (1 - hp["beta1"]) * g[k]
        v = slots[("v", k)] = hp["beta2"] * slots.get(("v", k), 0.0) + (1 - hp["beta2"]) * g[k] ** 2
        out[k] = p[k] - lr_t * m / (np.sqrt(v) + hp["epsilon"])
    return out


def _true_step_losses(cell, p, rows_x, rows_y, starts, t0, n) -> list[float]:
    """Mean loss over the rows of each step t0..t0+u-1, each through its own n cells
    (row start: from position 0)."""
    out = []
    for j, s0 in enumerate(starts):
        t = t0 + j
        lo = max(t - n + 1, 0)  # no history before the row start; then s0 is the zero state
        logits, _ = cell_forward(cell, p, onehot(rows_x[:, lo:t + 1]), s0)
        out.append(float(np.mean(_ce(logits[:, -1], rows_y[:, t]))))
    return out


def _true_update_loss(cell, p, rows_x, rows_y, starts, t0, n):
    """Mean loss of steps t0..t0+u-1 (see :func:`_true_step_losses`)."""
    steps = _true_step_losses(cell, p, rows_x, rows_y, starts, t0, n)
    return sum(steps) / len(steps)


def reference_epoch(cell: str, params: dict, xs: np.ndarray, ys: np.ndarray, style: str, opt: str, hp: dict,
                    update_every: int | None = None, step_losses: list | None = None,
                    trainable: tuple[str, ...] | None = None) -> tuple[dict, list[float]]:
    """One epoch from the zero state; xs, ys int [W, B, n]. Returns (params float64, loss per update).

    ``step_losses``: a list that receives, position by position along the rows, the
    mean loss over the B rows at each position an update trained (before that update).
    ``trainable``: the only parameters updated (None: all); the others are never touched.

    ``style="tf"``: window by window, the entering state a constant. ``"true"``:
    an update every u = update_every (or n) steps of the rows; its start states
    come from a forward pass lagging n behind the losses, run with the current
    parameters and carried across updates.
    """
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    w, b, n = xs.shape
    d = p["U"].shape[0]
    zero = tuple(np.zeros((b, d)) for _ in range(2 if cell == "lstm" else 1))
    slots, losses, carry = {}, [], zero
    rows_x, rows_y = xs.transpose(1, 0, 2).reshape(b, w * n), ys.transpose(1, 0, 2).reshape(b, w * n)
    u = update_every or n
    for k in range(w if style == "tf" else (w * n) // u):
        if style == "tf":
            def loss(q, x=onehot(xs[k]), y=ys[k], s0=carry):
                return float(np.mean(_ce(cell_forward(cell, q, x, s0)[0], y)))
            next_carry = cell_forward(cell, p, onehot(xs[k]), carry)[1]
            if step_losses is not None:
                step_losses.extend(np.mean(_ce(cell_forward(cell, p, onehot(xs[k]), carry)[0], ys[k]), axis=0))
        else:
            starts = []
            for j in range(u):
                if k * u - n + j >= 0:
                    carry = _cell_step(cell, p, onehot(rows_x[:, k * u - n + j]), carry)
                starts.append(carry)

            def loss(q, t0=k * u, starts=starts):
                return _true_update_loss(cell, q, rows_x, rows_y, starts, t0, n)
            next_carry = carry
            if step_losses is not None:
                step_losses.extend(_true_step_losses(cell, p, rows_x, rows_y, starts, k * u, n))
        losses.append(loss(p))
        grads = _numeric_grads(loss, p)
        if trainable is not None:
            frozen = {k: p[k] for k in p if k not in trainable}
            p = {**_optimizer_step(opt, {k: p[k] for k in trainable}, {k: grads[k] for k in trainable}, slots, hp),
                 **frozen}
        else:
            p = _optimizer_step(opt, p, grads, slots, hp)
        carry = next_carry
    return p, losses
