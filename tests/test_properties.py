"""Property-based validation: every configuration across the schema, valid or not.

A valid configuration is drawn, then (usually) exactly one field is replaced
by an invalid value. The expected verdict comes from an independent oracle
written here (closed-form bounds, not the enumeration in config.py): invalid
ones must raise ConfigError with one line naming the field, valid ones must be
accepted. The case counts are printed (run with -s) and asserted.
"""

from __future__ import annotations

import math
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnn_sweep.task import config as C

COUNTS: Counter = Counter()
THREAD_LIMIT = min(1024, 4 * (os.cpu_count() or 1))  # documented in docs/reliability.md


def _mem_total() -> int:
    """MemTotal of this machine in bytes, read independently of rnn_sweep.task.config."""
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))


# Weights alone past the machine's total memory can never fit whatever is available
# (a constant, so every Hypothesis draw sees the same bound).
MIN_HUGE_STATE = math.isqrt(_mem_total() // 4) + 1

POSITIVE_INTS = ["num_steps", "state_size", "train.epochs", "train.batch_size", "train.log_every",
                 "train.log_data_steps", "train.checkpoint_eval_length"]
POSITIVE_FLOATS = ["train.optimizer.lr", "train.optimizer.initial_accumulator", "train.optimizer.epsilon"]
UNIT_FLOATS = ["data.input_prob", "data.base_prob"]
BETAS = ["train.optimizer.beta1", "train.optimizer.beta2"]
CHOICES = {"model.backend": C.BACKENDS, "model.cell": C.CELLS, "train.optimizer.name": C.OPTIMIZERS,
           "truncation.style": C.STYLES, "data.boundary": C.BOUNDARIES,
           "train.checkpoint_spacing": ("log", "linear")}


def deps_in_range(base: float, effects: list[float]) -> bool:
    """Closed form: the extreme probabilities are base + all negative / all positive effects."""
    lo = base + sum(e for e in effects if e < 0)
    hi = base + sum(e for e in effects if e > 0)
    return -1e-12 <= lo and hi <= 1 + 1e-12


@st.composite
def valid_raw(draw) -> dict:
    base = draw(st.floats(0, 1))
    lags = draw(st.lists(st.integers(1, 30), min_size=0, max_size=4, unique=True))
    effects = []
    for _ in lags:  # keep every combination inside [0, 1]
        room_up = 1 - base - sum(e for e in effects if e > 0)
        room_down = base + sum(e for e in effects if e < 0)
        effects.append(draw(st.floats(-max(room_down, 0), max(room_up, 0))))
    n = draw(st.integers(1, 25))
    batch = draw(st.integers(1, 300))
    length = draw(st.integers(batch * n, batch * n * 40))
    eval_length = draw(st.integers(batch * n, batch * n * 10))
    checkpoints = draw(st.integers(0, 20))
    checkpoint_length = draw(st.integers(batch * n, batch * n * 10))
    boundary = draw(st.sampled_from(C.BOUNDARIES))
    if boundary == "wrap" and lags and max(lags) >= min(length, eval_length, checkpoint_length if checkpoints
                                                          else length):
        boundary = "pad"  # wrap needs every lag below every length (else X[t-lag] wraps onto itself)
    return {
        "num_steps": n, "state_size": draw(st.integers(1, 64)), "seed": draw(st.integers(0, 2**31)),
        "data": {"input_prob": draw(st.floats(0, 1)), "base_prob": base, "length": length,
                 "eval_length": eval_length, "boundary": boundary,
                 "dependencies": [{"lag": lg, "effect": e} for lg, e in zip(lags, effects)]},
        "model": {"backend": "scratch", "cell": "rnn"},
        "train": {"epochs": draw(st.integers(1, 5)), "batch_size": batch, "log_every": draw(st.integers(1, 500)),
                  "log_data_steps": draw(st.integers(1, 10**6)), "checkpoints": checkpoints,
                  "checkpoint_eval_length": checkpoint_length, "final_fraction": draw(st.floats(0.001, 1.0)),
                  "log_updates": draw(st.booleans()), "checkpoint_spacing": draw(st.sampled_from(["log", "linear"])),
                  "threads": draw(st.integers(0, THREAD_LIMIT)), "diverge_loss": draw(st.floats(0.01, 100)),
                  "optimizer": {"name": draw(st.sampled_from(C.OPTIMIZERS)), "lr": draw(st.floats(1e-5, 10)),
                                "initial_accumulator": draw(st.floats(1e-4, 1)),
                                "beta1": draw(st.floats(0, 0.999)), "beta2": draw(st.floats(0, 0.9999)),
                                "epsilon": draw(st.floats(1e-10, 1e-3))}},
        "truncation": {"style": "tf", "update_every": None},
    }


def _set(raw: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    for p in path:
        raw = raw[p]
    raw[last] = value


@st.composite
def mutated(draw) -> tuple[dict, str | None]:
    """(raw config, the field expected in the error or None if valid)."""
    raw = draw(valid_raw())
    kind = draw(st.sampled_from(["valid", "int", "float", "unit", "beta", "choice", "lag", "effect", "fit", "dup",
                                 "seed", "threads", "wrap", "missing", "memory", "checkpoints", "final",
                                 "flag"]))
    train = raw["train"]
    if kind == "checkpoints":
        train["checkpoints"] = draw(st.one_of(st.integers(-50, -1), st.just(2.5), st.just(True)))
        return raw, "train.checkpoints"
    if kind == "final":
        train["final_fraction"] = draw(st.one_of(st.floats(1.0001, 5), st.floats(-5, 0), st.just(math.nan)))
        return raw, "train.final_fraction"
    if kind == "flag":
        f = draw(st.sampled_from(["xla", "progress", "log_updates"]))
        train[f] = draw(st.sampled_from(["maybe", 2, 0, "y", None, 1.5]))
        return raw, f"train.{f}"
    if kind == "seed":  # Keras seeds are 32-bit
        raw["seed"] = draw(st.integers(2**32, 2**64))
        return raw, "seed"
    if kind == "threads":
        raw["train"]["threads"] = draw(st.integers(THREAD_LIMIT + 1, 10**6))
        return raw, "train.threads"
    if kind == "memory":  # float32 weights alone: 4 * d^2 bytes, more than this machine has
        raw["state_size"] = draw(st.integers(MIN_HUGE_STATE, 10**7))
        return raw, "state_size"
    if kind == "int":
        f = draw(st.sampled_from(POSITIVE_INTS))
        _set(raw, f, draw(st.one_of(st.integers(-100, 0), st.just(True), st.just(2.5), st.just("5"))))
        return raw, f
    if kind == "float":
        f = draw(st.sampled_from(POSITIVE_FLOATS))
        _set(raw, f, draw(st.sampled_from([0.0, -1.0, math.inf, math.nan, -1e-9])))
        return raw, f
    if kind == "unit":
        f = draw(st.sampled_from(UNIT_FLOATS))
        _set(raw, f, draw(st.one_of(st.floats(1.0001, 10), st.floats(-10, -0.0001))))
        return raw, f
    if kind == "beta":
        f = draw(st.sampled_from(BETAS))
        _set(raw, f, draw(st.one_of(st.floats(1.0, 5), st.floats(-5, -0.0001))))
        return raw, f
    if kind == "choice":
        f = draw(st.sampled_from(sorted(CHOICES)))
        _set(raw, f, draw(st.text(min_size=1, max_size=8).filter(lambda s: s not in CHOICES[f])))
        return raw, f
    deps = raw["data"]["dependencies"]
    if kind == "lag":
        deps.append({"lag": draw(st.integers(-5, 0)), "effect": 0.0})
        return raw, f"data.dependencies[{len(deps) - 1}].lag"
    if kind == "effect":
        effect = draw(st.floats(-2, 2))
        if deps_in_range(raw["data"]["base_prob"], [d["effect"] for d in deps] + [effect]):
            effect = 1.5  # base_prob >= 0, so P(Y=1) >= 1.5 when it fires
        deps.append({"lag": 99, "effect": effect})
        return raw, "data.dependencies"
    if kind == "dup" and deps:
        deps.append({"lag": deps[0]["lag"], "effect": 0.0})
        return raw, "data.dependencies"
    if kind == "wrap" and deps:  # a lag reaching past the data it would wrap around
        data = raw["data"]
        data["boundary"] = "wrap"
        deps.append({"lag": draw(st.integers(min(data["length"], data["eval_length"]), 10**6)), "effect": 0.0})
        if len({d["lag"] for d in deps}) < len(deps) or any(d["lag"] >= min(data["length"], data["eval_length"])
                                                           for d in deps[:-1]):
            deps[:-1] = []  # keep the added one the first (and only) offending lag
        return raw, f"data.dependencies[{len(deps) - 1}].lag"
    if kind == "missing" and deps:
        del deps[0][draw(st.sampled_from(["lag", "effect"]))]
        return raw, "data.dependencies[0]."
    if kind == "fit" and raw["train"]["batch_size"] * raw["num_steps"] > 1:
        raw["data"]["boundary"] = "pad"  # the fit rule alone (a wrap lag could now reach past the data)
        which = draw(st.sampled_from(["length", "eval_length"]))
        raw["data"][which] = draw(st.integers(1, raw["train"]["batch_size"] * raw["num_steps"] - 1))
        return raw, f"data.{which}"
    return raw, None


def check(raw: dict, field: str | None) -> None:
    COUNTS["total"] += 1
    try:
        cfg = C.from_dict(raw)
        C.validate(cfg)
    except C.ConfigError as err:
        msg = str(err)
        assert field is not None, f"valid config rejected: {msg}"
        assert "\n" not in msg and field in msg, (field, msg)
        assert "invalid" in msg or "must" in msg or "does not fit" in msg, msg
        COUNTS["invalid"] += 1
        return
    assert field is None, f"invalid {field} accepted: {raw}"
    COUNTS["valid"] += 1


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_every_config_accepted_or_rejected_naming_the_field(case):
    check(*case)


def test_case_counts():
    # runs after the property test in file order; both kinds must have been exercised
    print(f"\nproperty test: {COUNTS['total']} configurations, {COUNTS['invalid']} invalid rejected, "
          f"{COUNTS['valid']} valid accepted")
    assert COUNTS["invalid"] > 500 and COUNTS["valid"] > 50


@st.composite
def override_case(draw) -> tuple[list[str], str | None]:
    """Command-line overrides as a user types them: (overrides, field expected in the error)."""
    key = draw(st.sampled_from(POSITIVE_INTS + POSITIVE_FLOATS + UNIT_FLOATS + sorted(CHOICES)))
    if key in POSITIVE_INTS:
        value = draw(st.one_of(st.integers(-3, 12).map(str), st.sampled_from(["abc", "1.5", "[]"])))
        ok = value.lstrip("-").isdigit() and int(value) >= 1
    elif key in POSITIVE_FLOATS:
        value = draw(st.one_of(st.floats(-1, 1, allow_nan=False).map(repr), st.sampled_from(["fast", "inf"])))
        ok = value not in ("fast", "inf") and float(value) > 0
    elif key in UNIT_FLOATS:
        value = draw(st.floats(-0.5, 1.5, allow_nan=False).map(repr))
        ok = 0 <= float(value) <= 1
        if key == "data.base_prob" and ok:  # the article's effects +0.5 / -0.25 must still fit
            ok = 0.25 <= float(value) <= 0.5
    else:
        value = draw(st.one_of(st.sampled_from(CHOICES[key]), st.sampled_from(["x", "Scratch", "adagrad2"])))
        ok = value in CHOICES[key] and not (key == "model.cell" and value != "rnn")
        value = f"'{value}'"  # quoted, as a user must for values like true (else YAML reads a bool)
    if key == "num_steps" and ok:
        ok = int(value) <= 20_000 // 200  # the default checkpoint_eval_length: 100 columns per row
    if key == "train.checkpoint_eval_length" and ok:
        ok = int(value) >= 200 * 5  # batch_size x the default num_steps
    return [f"{key}={value}"], None if ok else key


@pytest.mark.slow  # 150 compositions through Hydra: ~18 s
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(override_case())
def test_command_line_overrides_through_hydra(case):
    """The same guarantees through Hydra's composition of the real conf/ (as the CLI does)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from conftest import small_cfg

    overrides, field = case
    COUNTS["hydra"] += 1
    try:
        small_cfg(*overrides)
    except C.ConfigError as err:
        assert field is not None and field.split(".")[-1] in str(err), (overrides, str(err))
        return
    except (HydraException, OmegaConfBaseException) as err:  # type errors: Hydra's own message
        assert field is not None and field.split(".")[-1] in str(err), (overrides, str(err))
        return
    assert field is None, f"{overrides} accepted"
