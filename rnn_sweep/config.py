"""Typed configuration schema and validation.

The dataclasses below are the single source of truth for every setting; Hydra
YAML files only pick options and set values (Hydra structured configs).
``validate`` checks everything that types alone cannot and raises
:class:`ConfigError` with a one-line message that names the field and what is
allowed. It imports nothing heavy, so bad input fails before TensorFlow loads.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Optional

BACKENDS = ("scratch", "static", "dynamic", "keras")  # see rnn_sweep/models.py
CELLS = ("rnn", "gru", "lstm")  # scratch: rnn only (the article's hand-written cell)
OPTIMIZERS = ("adagrad", "sgd", "adam")
STYLES = ("tf", "true")  # BPTT(n, n) and true BPTT(n, 1); see rnn_sweep/truncation.py
BOUNDARIES = ("pad", "wrap")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


@dataclass
class Dependency:
    """Y_t depends on X_{t-lag}: P(Y_t=1) gains ``effect`` when X_{t-lag}=1."""

    lag: int = 1
    effect: float = 0.0


def _article_dependencies() -> list[Dependency]:
    return [Dependency(lag=3, effect=0.5), Dependency(lag=8, effect=-0.25)]


@dataclass
class DataConfig:
    """The synthetic sequence rule and how much of it each epoch sees."""

    input_prob: float = 0.5  # P(X_t = 1)
    base_prob: float = 0.5  # P(Y_t = 1) when no dependency fires
    dependencies: list[Dependency] = field(default_factory=_article_dependencies)
    length: int = 1_000_000  # time steps drawn per epoch
    eval_length: int = 200_000  # time steps of held-out data for the final evaluation
    boundary: str = "pad"  # pad: draw max(lag) extra inputs; wrap: the article's X[i-lag]


@dataclass
class ModelConfig:
    """Which implementation of the recurrent network to train."""

    backend: str = "scratch"
    cell: str = "rnn"


@dataclass
class OptimizerConfig:
    """Optimizer and its hyper-parameters (Adagrad with TF1 semantics by default)."""

    name: str = "adagrad"
    lr: float = 0.1
    initial_accumulator: float = 0.1  # adagrad only (TF1 AdagradOptimizer default)
    beta1: float = 0.9  # adam only
    beta2: float = 0.999  # adam only
    epsilon: float = 1e-8  # adam only (TF1 AdamOptimizer default)


@dataclass
class TrainConfig:
    """Training loop settings."""

    epochs: int = 1
    batch_size: int = 200
    log_every: int = 100  # training steps per logged loss block
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    xla: bool = True  # compile the epoch with XLA (faster on CPU for this model)
    threads: int = 0  # TF intra-op threads; 0 = TensorFlow's default
    progress: bool = True  # tqdm bar (silent anyway when stderr is not a terminal)
    replicas: int = 1  # independent seeds trained as one vectorised computation
    diverge_loss: float = 10.0  # a block mean above this (or NaN) stops the run


@dataclass
class TruncationConfig:
    """How gradients are truncated (see README: truncation styles)."""

    style: str = "tf"
    update_every: Optional[int] = None  # true style: steps per update; None = num_steps


@dataclass
class RunConfig:
    """Everything one training run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    truncation: TruncationConfig = field(default_factory=TruncationConfig)
    num_steps: int = 5  # truncation length n (window length for TF style)
    state_size: int = 4
    seed: int = 0


def _fail(field_name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{field_name}={value!r} is invalid: {allowed}")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(name, value, "must be a positive integer (>= 1)")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(name, value, f"allowed values are {', '.join(allowed)}")


def _probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
        _fail(name, value, "must be a probability in [0, 1]")


def rule_probabilities(data: DataConfig) -> list[tuple[tuple[int, ...], float]]:
    """P(Y=1) for every combination of the dependencies' lagged inputs.

    Returns a list of (bits, p) where bits[i] is X_{t-lag_i}, in the order of
    ``data.dependencies``.
    """
    effects = [d.effect for d in data.dependencies]
    out = []
    for bits in itertools.product((0, 1), repeat=len(effects)):
        out.append((bits, data.base_prob + sum(e * b for e, b in zip(effects, bits))))
    return out


def validate_data(data: DataConfig) -> None:
    """Validate the data rule; raise ConfigError naming the first bad field."""
    _probability("data.input_prob", data.input_prob)
    _probability("data.base_prob", data.base_prob)
    _positive_int("data.length", data.length)
    _positive_int("data.eval_length", data.eval_length)
    _choice("data.boundary", data.boundary, BOUNDARIES)
    lags = []
    for i, dep in enumerate(data.dependencies):
        lag = dep.lag
        if isinstance(lag, bool) or not isinstance(lag, int) or lag < 1:
            _fail(f"data.dependencies[{i}].lag", lag, "must be an integer >= 1 (Y_t depends on X_{t-lag})")
        if not isinstance(dep.effect, (int, float)) or isinstance(dep.effect, bool) or not math.isfinite(dep.effect):
            _fail(f"data.dependencies[{i}].effect", dep.effect, "must be a finite number")
        lags.append(lag)
    if len(set(lags)) != len(lags):
        _fail("data.dependencies", lags, "lags must be distinct")
    if len(lags) > 12:
        _fail("data.dependencies", len(lags), "at most 12 dependencies (baselines enumerate 2^k cases)")
    for bits, p in rule_probabilities(data):
        if not (-1e-12 <= p <= 1 + 1e-12):
            combo = ", ".join(f"X_(t-{lg})={b}" for lg, b in zip(lags, bits))
            raise ConfigError(
                f"data.dependencies: P(Y=1)={p:g} for {combo or 'no inputs'}; "
                "data.base_prob plus the effects that fire must stay in [0, 1] for every input combination"
            )


def validate(cfg: RunConfig) -> None:
    """Validate a whole run configuration; raise ConfigError on the first problem."""
    validate_data(cfg.data)
    _positive_int("num_steps", cfg.num_steps)
    _positive_int("state_size", cfg.state_size)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        _fail("seed", cfg.seed, "must be a non-negative integer")
    _choice("model.backend", cfg.model.backend, BACKENDS)
    _choice("model.cell", cfg.model.cell, CELLS)
    if cfg.model.backend == "scratch" and cfg.model.cell != "rnn":
        _fail("model.cell", cfg.model.cell, "model.backend=scratch is the article's hand-written vanilla cell; "
              "only 'rnn' is allowed (use static, dynamic or keras for gru/lstm)")
    t = cfg.train
    _positive_int("train.epochs", t.epochs)
    _positive_int("train.batch_size", t.batch_size)
    _positive_int("train.log_every", t.log_every)
    _positive_int("train.replicas", t.replicas)  # K > 1: seeds seed..seed+K-1 as one pack (any backend, style)
    if isinstance(t.threads, bool) or not isinstance(t.threads, int) or t.threads < 0:
        _fail("train.threads", t.threads, "must be an integer >= 0 (0 = TensorFlow default)")
    if not (isinstance(t.diverge_loss, (int, float)) and t.diverge_loss > 0):
        _fail("train.diverge_loss", t.diverge_loss, "must be a positive number")
    o = t.optimizer
    _choice("train.optimizer.name", o.name, OPTIMIZERS)
    for name in ("lr", "initial_accumulator", "epsilon"):
        v = getattr(o, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            _fail(f"train.optimizer.{name}", v, "must be a positive finite number")
    for name in ("beta1", "beta2"):
        v = getattr(o, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v < 1.0):
            _fail(f"train.optimizer.{name}", v, "must be in [0, 1)")
    _validate_truncation(cfg)
    for length_field in ("length", "eval_length"):
        length = getattr(cfg.data, length_field)
        columns = length // t.batch_size
        if columns < cfg.num_steps:
            raise ConfigError(
                f"train.batch_size={t.batch_size} does not fit the data: data.{length_field}={length} "
                f"gives {columns} columns per row, fewer than num_steps={cfg.num_steps}; "
                f"need data.{length_field} >= batch_size * num_steps = {t.batch_size * cfg.num_steps}"
            )


def _validate_truncation(cfg: RunConfig) -> None:
    style, ue = cfg.truncation.style, cfg.truncation.update_every
    if style == "True":  # Hydra parsed a bare `true` as a boolean and the str schema made it "True"
        _fail("truncation.style", style, "write truncation=true_bptt or truncation.style='true' (quoted); "
              f"allowed values are {', '.join(STYLES)}")
    _choice("truncation.style", style, STYLES)
    # model.fit owns its training loop: one loss per window, no per-step sub-sequences.
    if style == "true" and cfg.model.backend == "keras":
        _fail("truncation.style", style, "model.backend='keras' (model.fit) can only do truncation.style=tf; "
              "use a functional backend (any other model.backend) for true BPTT")
    if ue is None:
        return
    _positive_int("truncation.update_every", ue)
    if style != "true":
        _fail("truncation.update_every", ue, "only truncation.style=true uses it (leave it null for tf style)")
    positions = (cfg.data.length // cfg.train.batch_size) // cfg.num_steps * cfg.num_steps
    if ue > positions:
        _fail("truncation.update_every", ue, f"must be <= the {positions} steps per row of an epoch")


def updates_per_epoch(cfg: RunConfig) -> int:
    """Parameter updates per epoch: windows (TF style) or every update_every steps (true style)."""
    if cfg.truncation.style == "true" and cfg.truncation.update_every is not None:
        return windows_per_epoch(cfg) * cfg.num_steps // cfg.truncation.update_every
    return windows_per_epoch(cfg)


def windows_per_epoch(cfg: RunConfig) -> int:
    """Training steps (windows) in one epoch, as in the article's gen_batch."""
    return (cfg.data.length // cfg.train.batch_size) // cfg.num_steps


def from_dict(raw: dict) -> RunConfig:
    """Build a RunConfig from a plain nested dict (e.g. a resolved Hydra config).

    Unknown keys raise ConfigError naming them; missing keys take defaults.
    """
    def build(cls, values: dict, prefix: str):
        import dataclasses

        if not isinstance(values, dict):
            _fail(prefix.rstrip("."), values, f"must be a mapping of {cls.__name__} fields")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            _fail(prefix + unknown[0], values[unknown[0]], f"unknown key; known keys are {', '.join(fields)}")
        kwargs = {}
        for name, value in values.items():
            sub = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
                   "truncation": TruncationConfig, "optimizer": OptimizerConfig}.get(name)
            if sub is not None and cls in (RunConfig, TrainConfig):
                kwargs[name] = build(sub, value, f"{prefix}{name}.")
            elif name == "dependencies":
                kwargs[name] = [build(Dependency, d, f"{prefix}dependencies[{i}].") for i, d in enumerate(value)]
            else:
                kwargs[name] = value
        return cls(**kwargs)

    return build(RunConfig, raw, "")
