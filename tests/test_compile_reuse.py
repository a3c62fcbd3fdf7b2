"""Runs in one process with the same shapes reuse the compiled epoch: no retracing."""

from __future__ import annotations

from conftest import small_cfg

SHAPES = ["num_steps=3", "state_size=7", "data.length=30000", "data.eval_length=9000"]


def _fns(cfg):
    from rnn_sweep import engine
    from rnn_sweep.models import build_backend

    be = build_backend(cfg.model, cfg.state_size)
    return (engine.epoch_fn(be, cfg.train.optimizer.name, cfg.truncation.style, cfg.train.xla),
            engine.predict_fn(be, xla=False))


def test_other_seed_and_lr_do_not_retrace(tmp_path):
    from rnn_sweep.train import train

    first = small_cfg(*SHAPES, "seed=0", "train.optimizer.lr=0.1")
    train(first, tmp_path / "a")
    epoch, predict = _fns(first)
    traced = epoch.experimental_get_tracing_count(), predict.experimental_get_tracing_count()
    assert traced[0] >= 1 and traced[1] >= 1
    second = small_cfg(*SHAPES, "seed=3", "train.optimizer.lr=0.05", "train.epochs=2")
    s = train(second, tmp_path / "b")
    assert _fns(second) == (epoch, predict)  # the same cached functions ...
    assert (epoch.experimental_get_tracing_count(), predict.experimental_get_tracing_count()) == traced  # ... not retraced
    assert s["status"] == "completed" and s["config"]["train"]["optimizer"]["lr"] == 0.05


def test_replicated_runs_reuse_their_compiled_epoch(tmp_path):
    from rnn_sweep import engine
    from rnn_sweep.models import build_backend
    from rnn_sweep.replicas import StackedScratch, stacked_step
    from rnn_sweep.train import train

    cfg = small_cfg(*SHAPES, "train.replicas=2")
    train(cfg, tmp_path / "a")
    stacked = StackedScratch(build_backend(cfg.model, cfg.state_size), 2)
    fn = engine.epoch_fn(stacked, "adagrad", "tf", True, step_fn=stacked_step)
    traced = fn.experimental_get_tracing_count()
    assert traced >= 1
    train(small_cfg(*SHAPES, "train.replicas=2", "seed=10", "train.optimizer.lr=0.2"), tmp_path / "b")
    assert fn.experimental_get_tracing_count() == traced
    assert (tmp_path / "b" / "seed=11" / "summary.json").exists()
