"""Runs and packs in one process with the same shapes reuse the compiled programs: no retracing."""

from __future__ import annotations

from conftest import small_cfg

SHAPES = ["num_steps=3", "state_size=7", "data.length=30000", "data.eval_length=9000"]


def _fns(cfg):
    from rnn_sweep.model import engine
    from rnn_sweep.model.backends import build_backend

    be = build_backend(cfg.model, cfg.state_size)
    return (engine.epoch_fn(be, cfg.train.optimizer.name, cfg.truncation.style, cfg.train.xla,
                            cfg.num_steps).program,
            engine.predict_fn(be, xla=cfg.train.xla).program)


def _traces(fns) -> tuple[int, int]:
    return tuple(f.experimental_get_tracing_count() for f in fns)


def test_other_seed_and_lr_do_not_retrace(tmp_path):
    from rnn_sweep.run.train import train

    first = small_cfg(*SHAPES, "seed=0", "train.optimizer.lr=0.1")
    train(first, tmp_path / "a")
    fns = _fns(first)
    traced = _traces(fns)
    assert traced[0] >= 1 and traced[1] >= 1
    second = small_cfg(*SHAPES, "seed=3", "train.optimizer.lr=0.05", "train.epochs=2")
    s = train(second, tmp_path / "b")
    assert _fns(second) == fns  # the same cached functions ...
    assert _traces(fns) == traced  # ... not retraced
    assert s["status"] == "completed" and s["config"]["train"]["optimizer"]["lr"] == 0.05


def test_a_pack_traces_each_program_once_and_the_next_pack_reuses_them(tmp_path):
    """A pack of 3 compiles one epoch and one evaluation program for all members, the same
    evaluation program for both held-out lengths (the checkpoints' and the final one); another
    pack of 3 with other seeds and learning rates (and the replicas option) compiles nothing."""
    from rnn_sweep.run.train import train, train_pack

    cfgs = [small_cfg(*SHAPES, "num_steps=5", f"seed={s}", f"train.optimizer.lr={lr}")
            for s, lr in [(0, 0.1), (1, 0.2), (2, 0.3)]]
    fns = _fns(cfgs[0])
    before = _traces(fns)
    train_pack(cfgs, [tmp_path / f"a{i}" for i in range(3)])
    once = _traces(fns)
    assert once == (before[0] + 1, before[1] + 1)  # once each, not per member nor per held-out length
    others = [small_cfg(*SHAPES, "num_steps=5", f"seed={s}", f"train.optimizer.lr={lr}")
              for s, lr in [(7, 0.5), (8, 0.01), (9, 0.1)]]
    train_pack(others, [tmp_path / f"b{i}" for i in range(3)])
    train(small_cfg(*SHAPES, "num_steps=5", "train.replicas=3", "seed=20"), tmp_path / "c")
    assert _traces(fns) == once
    assert (tmp_path / "c" / "seed=22" / "summary.json").exists()


def test_other_num_steps_reuse_the_tf_style_program(tmp_path):
    """TF style: n enters the compiled epoch as a number, so runs with other num_steps (up to the
    program's buffer of 32 cells) and the same state size trace and compile nothing new; true
    style on the scratch cell shares one program between the n of its block size (3 and 4:
    4 rows; 5 needs 8), on a Keras cell builds its program per n."""
    from rnn_sweep.model import engine
    from rnn_sweep.run.train import train

    shapes = [s for s in SHAPES if not s.startswith("num_steps")]
    train(small_cfg(*shapes, "num_steps=2"), tmp_path / "a")
    fns = _fns(small_cfg(*shapes, "num_steps=2"))
    traced = _traces(fns)
    for n in (1, 7, 32):
        cfg = small_cfg(*shapes, f"num_steps={n}")
        assert _fns(cfg) == fns
        s = train(cfg, tmp_path / f"n{n}")
        assert s["status"] == "completed" and s["num_steps"] == n
    assert _traces(fns) == traced
    assert engine.epoch_fn(*_args(small_cfg(*shapes, "num_steps=33"))).program is not fns[0]  # next buffer size
    true3, true4, true5 = (engine.epoch_fn(*_args(small_cfg(*shapes, "truncation=true_bptt", f"num_steps={n}"))).program
                           for n in (3, 4, 5))
    assert true3 is true4 and true4 is not true5
    keras2, keras3 = (engine.epoch_fn(*_args(small_cfg(*shapes, "truncation=true_bptt", "model=static",
                                                       f"num_steps={n}"))).program for n in (2, 3))
    assert keras2 is not keras3


def _args(cfg):
    from rnn_sweep.model.backends import build_backend

    return (build_backend(cfg.model, cfg.state_size), cfg.train.optimizer.name, cfg.truncation.style, cfg.train.xla,
            cfg.num_steps)


def test_n_is_a_runtime_input_of_the_compiled_program_not_a_constant():
    """One trace is not enough: XLA recompiles per value of any input it must treat as a
    compile-time constant (it did for n while the data were sliced with Python indexing).
    The program's HLO is identical for n=2 and n=7, so XLA compiles it once."""
    import re

    import tensorflow as tf

    from rnn_sweep.task import data
    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim
    from rnn_sweep.task.config import DataConfig, RunConfig
    from rnn_sweep.model.backends import build_backend

    tf.random.set_seed(0)  # determinism is on: XLA's lowering asks for a seed
    cfg = RunConfig(num_steps=3, state_size=3)
    be = build_backend(cfg.model, 3)
    params = {k: tf.constant(v) for k, v in be.init_params([0]).items()}
    hp = optim.stacked_hyperparams([cfg.train.optimizer])
    xs, ys = data.pack_epoch_steps(DataConfig(), 2000, 20, [0], 0)
    program = engine.epoch_fn(be, "adagrad", "tf", True, 3).program

    def hlo(n: int) -> str:
        ir = program.experimental_get_compiler_ir(params, optim.init_state("adagrad", params, hp), hp, xs, ys,
                                                  tf.constant(n), be.zero_state(1, 20), tf.constant(0),
                                                  tf.constant(100))(stage="hlo")
        return re.sub(r"HloModule \S+", "", ir)

    assert hlo(2) == hlo(7)
