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
import os
from dataclasses import dataclass, field
from typing import Any, Optional

BACKENDS = ("scratch", "static", "dynamic", "keras")  # see rnn_sweep/model/backends.py
CELLS = ("rnn", "gru", "lstm")  # scratch: rnn only (the article's hand-written cell)
OPTIMIZERS = ("adagrad", "sgd", "adam")
STYLES = ("tf", "true")  # BPTT(n, n) and true BPTT(n, 1); see rnn_sweep/model/truncation.py
BOUNDARIES = ("pad", "wrap")
SPACINGS = ("log", "linear")  # train.checkpoint_spacing
REQUIRED = "???"  # a field without default (OmegaConf's marker for a mandatory value)
SEED_LIMIT = 2**32  # Keras/NumPy legacy seeding take 32-bit seeds (keras.utils.set_random_seed)
MAX_THREADS = 1024  # never more TF threads than this, whatever the machine (100000 hung)
MEMORY_LIMIT_ENV = "RNN_SWEEP_MEMORY_LIMIT"  # bytes (suffix K/M/G allowed) or "off"


# A boolean knob. Typed Any for OmegaConf, which would turn 2 or "y" into True for a
# bool field before validation sees it; from_dict parses it strictly (parse_bool).
Flag = Any


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


@dataclass
class Dependency:
    """Y_t depends on X_{t-lag}: P(Y_t=1) gains ``effect`` when X_{t-lag}=1."""

    lag: int = REQUIRED  # type: ignore[assignment]  (no default: a missing lag is an error)
    effect: float = REQUIRED  # type: ignore[assignment]


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
    # false: the reservoir control -- the cell's input and recurrent weights stay at their
    # seeded initial values and only the output layer (U, c) trains.
    train_recurrent: Flag = True


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
    log_every: int = 100  # updates per block of the optional per-update log (updates.csv)
    log_updates: Flag = False  # also write updates.csv (blocks of log_every updates; depends on n)
    log_data_steps: int = 10_000  # time steps per block of losses.csv (whole positions of the rows; same grid for every n)
    checkpoints: int = 10  # held-out checkpoints per epoch (checkpoints.csv); 0 = only the final evaluation
    checkpoint_spacing: str = "log"  # log: the first epoch's checkpoints geometrically spaced; linear: evenly
    checkpoint_eval_length: int = 20_000  # held-out time steps each checkpoint measures
    final_fraction: float = 0.1  # summary's final_loss: mean training loss over this last fraction of the data
    # Training to a criterion: stop when the checkpoints' held-out loss has not improved by
    # stop_tolerance nats for stop_patience checkpoints in a row (0 = train the whole budget).
    stop_patience: int = 0
    stop_tolerance: float = 0.001
    max_data_steps: Optional[int] = None  # the budget in training time steps (None: epochs x data.length)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    xla: Flag = True  # compile the epoch with XLA (faster on CPU for this model)
    threads: int = 0  # TF intra-op threads; 0 = automatic (1, or a parallel launcher's share)
    progress: Flag = True  # tqdm bar (silent anyway when stderr is not a terminal)
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


# What YAML 1.1 (and so a Hydra override or an OmegaConf bool field) reads as a boolean.
TRUE_WORDS = ("true", "yes", "on")
FALSE_WORDS = ("false", "no", "off")


def parse_bool(name: str, value: Any) -> bool:
    """``value`` as a boolean, accepting only what YAML reads as one; else ConfigError naming ``name``.

    ``bool("no")`` is True, and OmegaConf turns ``2`` or ``"y"`` into True for a
    bool field: every boolean knob goes through here instead, so ``+force=no``,
    ``+force=maybe`` or ``train.xla=2`` can never mean true by accident.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise ConfigError(f"{name}={value!r} is invalid: must be true or false "
                      f"(also accepted: {'/'.join(TRUE_WORDS[1:])} and {'/'.join(FALSE_WORDS[1:])})")


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
        if data.boundary == "wrap" and lag >= min(data.length, data.eval_length):
            _fail(f"data.dependencies[{i}].lag", lag, "with data.boundary=wrap a lag must be below data.length="
                  f"{data.length} and data.eval_length={data.eval_length} (X[t-lag] would wrap onto itself)")
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
    if isinstance(cfg.train.replicas, int) and cfg.seed + max(cfg.train.replicas, 1) - 1 >= SEED_LIMIT:
        _fail("seed", cfg.seed, f"must be below 2**32 = {SEED_LIMIT} (with train.replicas K: seed + K - 1 too)")
    _choice("model.backend", cfg.model.backend, BACKENDS)
    _choice("model.cell", cfg.model.cell, CELLS)
    if cfg.model.backend == "scratch" and cfg.model.cell != "rnn":
        _fail("model.cell", cfg.model.cell, "model.backend=scratch is the article's hand-written vanilla cell; "
              "only 'rnn' is allowed (use static, dynamic or keras for gru/lstm)")
    t = cfg.train
    _positive_int("train.epochs", t.epochs)
    _positive_int("train.batch_size", t.batch_size)
    _positive_int("train.log_every", t.log_every)
    _validate_logging(cfg)
    for section, obj in (("TrainConfig", t), ("ModelConfig", cfg.model)):
        prefix = "train" if section == "TrainConfig" else "model"
        for flag in FLAG_FIELDS[section]:
            if not isinstance(getattr(obj, flag), bool):
                _fail(f"{prefix}.{flag}", getattr(obj, flag), "must be true or false")
    _positive_int("train.replicas", t.replicas)  # K > 1: seeds seed..seed+K-1 as one pack (any backend, style)
    if isinstance(t.threads, bool) or not isinstance(t.threads, int) or not 0 <= t.threads <= thread_limit():
        _fail("train.threads", t.threads, f"must be an integer from 0 (automatic) to {thread_limit()} "
              f"(4 x this machine's {os.cpu_count()} cores, at most {MAX_THREADS})")
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
    lengths = [("data.length", cfg.data.length), ("data.eval_length", cfg.data.eval_length)]
    if t.checkpoints:
        lengths.append(("train.checkpoint_eval_length", t.checkpoint_eval_length))
    for length_field, length in lengths:
        columns = length // t.batch_size
        if columns < cfg.num_steps:
            raise ConfigError(
                f"train.batch_size={t.batch_size} does not fit the data: {length_field}={length} "
                f"gives {columns} columns per row, fewer than num_steps={cfg.num_steps}; "
                f"need {length_field} >= batch_size * num_steps = {t.batch_size * cfg.num_steps}"
            )
    check_memory(cfg)


def _validate_logging(cfg: RunConfig) -> None:
    """The data grid of losses.csv, the checkpoints and the final-loss window."""
    t = cfg.train
    _positive_int("train.log_data_steps", t.log_data_steps)
    if isinstance(t.checkpoints, bool) or not isinstance(t.checkpoints, int) or t.checkpoints < 0:
        _fail("train.checkpoints", t.checkpoints, "must be an integer >= 0 (held-out checkpoints per epoch)")
    _positive_int("train.checkpoint_eval_length", t.checkpoint_eval_length)
    _choice("train.checkpoint_spacing", t.checkpoint_spacing, SPACINGS)
    lags = [d.lag for d in cfg.data.dependencies if isinstance(d.lag, int)]
    if t.checkpoints and cfg.data.boundary == "wrap" and lags and max(lags) >= t.checkpoint_eval_length:
        _fail("train.checkpoint_eval_length", t.checkpoint_eval_length, f"with data.boundary=wrap it must exceed "
              f"every lag (the largest is {max(lags)}: X[t-lag] would wrap onto itself)")
    _validate_stopping(cfg)
    f = t.final_fraction
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not (0.0 < f <= 1.0):
        _fail("train.final_fraction", f, "must be in (0, 1] (the last fraction of the data final_loss averages)")


def _validate_stopping(cfg: RunConfig) -> None:
    t = cfg.train
    if isinstance(t.stop_patience, bool) or not isinstance(t.stop_patience, int) or t.stop_patience < 0:
        _fail("train.stop_patience", t.stop_patience, "must be an integer >= 0 (0 = train the whole budget)")
    if t.stop_patience and not t.checkpoints:
        _fail("train.stop_patience", t.stop_patience, "needs held-out checkpoints to judge by: set train.checkpoints "
              ">= 1 (or stop_patience=0)")
    tol = t.stop_tolerance
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
        _fail("train.stop_tolerance", tol, "must be a finite number >= 0 (nats)")
    if t.max_data_steps is not None:
        _positive_int("train.max_data_steps", t.max_data_steps)


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


def thread_limit() -> int:
    """The most TensorFlow threads a run may ask for: 4 per core of this machine, at most 1024."""
    return min(MAX_THREADS, 4 * (os.cpu_count() or 1))


GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight blocks per cell
BASE_BYTES = 750 * 2**20  # Python + TensorFlow runtime + compiled programs (measured: docs/reliability.md)


def memory_terms(cfg: RunConfig) -> dict[str, int]:
    """Estimated peak bytes of one run, by the field that drives each term.

    The terms (calibrated against measured peak RSS, docs/reliability.md):

    * ``state_size`` -- parameters: ``48 * K * P`` bytes with
      ``P = gates * ((2 + d) * d + d) + 2 * d + 2``: 12 float32 copies
      (params, gradients, optimizer slots, the NumPy initial values, XLA's
      buffers; measured 46 bytes per parameter at d=3000).
    * ``num_steps`` -- activations of one window kept for backprop:
      ``32 * K * gates * B * n * d`` (8 float32 copies: states, pre-activations,
      their gradients, XLA's buffers); true BPTT holds ``u`` such windows at once
      (u = update_every or n; measured 30 bytes per value at n=u=20, d=64).
    * ``data.length`` -- one epoch's data: float32 uniforms for inputs and
      targets, float32 P(Y=1), int8 inputs/targets and their windows, and the
      float32 one-hot rows of true BPTT: ``16 * L`` (+ ``8 * L`` true style,
      + ``L`` per dependency with wrap, whose lagged copies are rolled).
    * ``data.eval_length`` -- held-out data plus float32 predictions and the
      float64 copies of the probe: ``64 * E``.
    * ``data.dependencies`` -- the padding of max(lag) inputs drawn before a
      sequence (float32 uniforms + int8, train and eval data never at once):
      ``6 * max_lag`` (measured 5.6 bytes per step of lag at lag 2e8).
    """
    k, d, n, b = cfg.train.replicas, cfg.state_size, cfg.num_steps, cfg.train.batch_size
    gates = GATES.get(cfg.model.cell, 4)
    params = gates * ((2 + d) * d + d) + 2 * d + 2
    u = (cfg.truncation.update_every or n) if cfg.truncation.style == "true" else 1
    lags = [dep.lag for dep in cfg.data.dependencies]
    true_rows = 8 if cfg.truncation.style == "true" else 0
    wrap_copies = len(lags) if cfg.data.boundary == "wrap" else 0
    return {
        "state_size": 48 * k * params,
        "num_steps": 32 * k * gates * b * n * d * u,
        "data.length": (16 + true_rows + wrap_copies) * cfg.data.length,
        "data.eval_length": 64 * cfg.data.eval_length,
        "data.dependencies": 0 if cfg.data.boundary == "wrap" else 6 * max(lags, default=0),
    }


def estimate_memory_bytes(cfg: RunConfig) -> int:
    """Estimated peak resident memory of one run in bytes (see :func:`memory_terms`)."""
    return BASE_BYTES + sum(memory_terms(cfg).values())


def available_memory_bytes() -> int | None:
    """The memory a run may use: ``$RNN_SWEEP_MEMORY_LIMIT`` if set, else MemAvailable; None = unknown/off."""
    limit = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if limit.lower() == "off":
        return None
    if limit:
        units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
        scale = units.get(limit[-1].upper(), 1)
        try:
            return int(float(limit[:-1] if scale > 1 else limit) * scale)
        except ValueError:
            raise ConfigError(f"{MEMORY_LIMIT_ENV}={limit!r} is invalid: bytes with an optional K/M/G/T suffix, "
                              "or off") from None
    return meminfo_available()  # None where not Linux: no check


def meminfo_available() -> int | None:
    """Bytes of memory available to new work (Linux MemAvailable), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(cfg: RunConfig) -> None:
    """Refuse a run whose estimated memory exceeds what this machine has available (one line)."""
    available = available_memory_bytes()
    if available is None:
        return
    terms = memory_terms(cfg)
    need = BASE_BYTES + sum(terms.values())
    if need <= available:
        return
    worst = max(terms, key=terms.get)
    name, value = worst, {"state_size": cfg.state_size, "num_steps": cfg.num_steps, "data.length": cfg.data.length,
                          "data.eval_length": cfg.data.eval_length}.get(worst)
    if worst == "data.dependencies":
        i = max(range(len(cfg.data.dependencies)), key=lambda j: cfg.data.dependencies[j].lag)
        name, value = f"data.dependencies[{i}].lag", cfg.data.dependencies[i].lag
    gb = 2**30
    raise ConfigError(
        f"{name}={value} is too large for this machine: the run needs about {need / gb:.1f} GiB "
        f"({terms[worst] / gb:.1f} GiB from {worst}) and {available / gb:.1f} GiB is available; "
        f"it must fit (set {MEMORY_LIMIT_ENV} to override the limit)")


def updates_per_epoch(cfg: RunConfig) -> int:
    """Parameter updates per epoch: windows (TF style) or every update_every steps (true style)."""
    if cfg.truncation.style == "true" and cfg.truncation.update_every is not None:
        return windows_per_epoch(cfg) * cfg.num_steps // cfg.truncation.update_every
    return windows_per_epoch(cfg)


def windows_per_epoch(cfg: RunConfig) -> int:
    """Training steps (windows) in one epoch, as in the article's gen_batch."""
    return (cfg.data.length // cfg.train.batch_size) // cfg.num_steps


# The schema's booleans, parsed by parse_bool.
FLAG_FIELDS = {"TrainConfig": ("xla", "progress", "log_updates"), "ModelConfig": ("train_recurrent",)}


def from_dict(raw: dict) -> RunConfig:
    """Build a RunConfig from a plain nested dict (e.g. a resolved Hydra config).

    Unknown keys raise ConfigError naming them; missing keys take defaults,
    except a dependency's ``lag`` and ``effect``, which have none.
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
        for name, f in fields.items():  # fields without default (Dependency.lag/effect) must be given
            if f.default == REQUIRED and values.get(name, REQUIRED) == REQUIRED:
                raise ConfigError(f"{prefix}{name} is missing: it must be given (e.g. data.dependencies="
                                  "[{lag:3,effect:0.5}]), it has no default")
        for name, value in values.items():
            sub = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
                   "truncation": TruncationConfig, "optimizer": OptimizerConfig}.get(name)
            if sub is not None and cls in (RunConfig, TrainConfig):
                kwargs[name] = build(sub, value, f"{prefix}{name}.")
            elif name in FLAG_FIELDS.get(cls.__name__, ()):
                kwargs[name] = parse_bool(f"{prefix}{name}", value)
            elif name == "dependencies":
                kwargs[name] = [build(Dependency, d, f"{prefix}dependencies[{i}].") for i, d in enumerate(value)]
            else:
                kwargs[name] = value
        return cls(**kwargs)

    return build(RunConfig, raw, "")
