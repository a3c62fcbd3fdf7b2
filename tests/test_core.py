"""The execution core without Hydra: plan, skip, refuse, lock, clear, train, fall back, record.

Every path of ``rnn-sweep`` trains through :func:`rnn_sweep.run.core.execute_pack`;
these tests call it directly on RunConfigs and directories, and check each
outcome's status, exit code and console line against the files on disk and
against lines written out by hand.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import small_cfg
from rnn_sweep.run import core
from rnn_sweep.run.core import Job, RunOutcome, execute_pack

TINY = ("data.length=2000", "data.eval_length=1000")


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def listing(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir())


@pytest.fixture
def no_tf(monkeypatch):
    """Fake training: no TensorFlow, a worker that needs no preparing."""
    monkeypatch.setattr(core, "prepare_worker", lambda seed, threads, backend="keras": None)


def fake_summary(cfg, status="completed", error=None, heldout=0.5):
    return {"status": status, "seed": cfg.seed, "heldout_loss": heldout if status == "completed" else None,
            "error": error, "levels": [], "learned_fraction": {}}


def finished_record(cfg) -> dict:
    """A completed run's summary.json as train() writes it (the fields a reader checks)."""
    import dataclasses

    return {"status": "completed", "num_steps": cfg.num_steps, "state_size": cfg.state_size, "seed": cfg.seed,
            "steps": 10, "final_loss": 0.6, "heldout_loss": 0.55, "heldout_optimal_loss": 0.45,
            "learned_fraction": {"3": 0.5}, "config": dataclasses.asdict(cfg),
            "levels": [{"name": "none", "lags": [], "loss": 0.66}, {"name": "lag 3", "lags": [3], "loss": 0.52}]}


# --- RunOutcome: one shape, from which the line and the exit code derive ----------------

HAND_MADE = {"status": "completed", "heldout_loss": 0.52104, "diverged_at_step": None,
             "levels": [{"name": "none", "loss": 0.661563}, {"name": "lag 3", "loss": 0.519167},
                        {"name": "lags 3+8", "loss": 0.454454}],
             "learned_fraction": {"3": 0.98123, "8": 0.0213}}


def test_line_and_exit_code_of_every_status_written_out_by_hand():
    run = "/sw/num_steps=5,seed=0"
    levels = "(none 0.6616 / lag 3 0.5192 / lags 3+8 0.4545)"
    cases = [
        (RunOutcome(run, "completed", HAND_MADE, trained=True), 0,
         f"num_steps=5,seed=0: completed, held-out 0.5210 {levels}, learned lag 3 0.98, lag 8 0.02"),
        (RunOutcome(run, "skipped", HAND_MADE), 0,
         f"num_steps=5,seed=0: skipped (already completed), held-out 0.5210 {levels}, learned lag 3 0.98, lag 8 0.02"),
        (RunOutcome(run, "diverged", {"status": "diverged", "diverged_at_step": 120, "heldout_loss": None,
                                      "learned_fraction": {}}, trained=True), 0,
         "num_steps=5,seed=0: diverged at step 120"),
        (RunOutcome(run, "failed", None, f"{run}: ValueError: boom", trained=True), 1,
         f"num_steps=5,seed=0: failed: {run}: ValueError: boom"),
        (RunOutcome(run, "refused", None, f"{run} holds a finished run of a different config"), 2,
         f"num_steps=5,seed=0: refused: {run} holds a finished run of a different config"),
    ]
    for outcome, code, line in cases:
        assert (outcome.exit_code, outcome.line()) == (code, line)
    assert cases[0][0].heldout_loss == 0.52104 and cases[3][0].heldout_loss is None
    assert core.exit_code([c[0] for c in cases]) == 2 and core.exit_code([c[0] for c in cases[:4]]) == 1
    assert core.exit_code([]) == 0
    # it travels from worker processes to the sweep process with its JobReturn
    assert pickle.loads(pickle.dumps(cases[0][0])) == cases[0][0]
    with pytest.raises(Exception):
        cases[0][0].status = "failed"  # frozen: how a run ended is not edited afterwards


def test_a_fraction_without_a_value_reads_n_a():
    summary = {**HAND_MADE, "learned_fraction": {"3": 0.5, "5": None}}
    assert RunOutcome("/r/x", "completed", summary).line().endswith("learned lag 3 0.50, lag 5 n/a")


# --- real runs: train, skip, refuse, force, clear ---------------------------------------

def test_train_then_skip_then_refuse_another_config_then_force(tmp_path):
    run = tmp_path / "run"
    cfg = small_cfg(*TINY)
    [out] = execute_pack([Job(cfg, run)])
    summary = read(run / "summary.json")
    assert (out.status, out.trained, out.exit_code, out.error) == ("completed", True, 0, None)
    assert out.summary == summary and out.heldout_loss == summary["heldout_loss"]
    levels = " / ".join(f"{lv['name']} {lv['loss']:.4f}" for lv in summary["levels"])
    learned = ", ".join(f"lag {k} {v:.2f}" for k, v in summary["learned_fraction"].items())
    assert out.line() == f"run: completed, held-out {summary['heldout_loss']:.4f} ({levels}), learned {learned}"
    assert ".run.lock" not in listing(run)  # released once the record is written

    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()} | {".": run.stat().st_mtime_ns}
    [again] = execute_pack([Job(cfg, run)])
    assert (again.status, again.trained, again.exit_code) == ("skipped", False, 0)
    assert again.summary == summary and again.line().startswith("run: skipped (already completed), held-out ")
    # a skipped run is only read: no lock file, not even the directory's mtime changes
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} | {".": run.stat().st_mtime_ns} == before

    other = small_cfg(*TINY, "seed=7")
    [refused] = execute_pack([Job(other, run)])
    assert (refused.status, refused.exit_code, refused.trained) == ("refused", 2, False)
    assert refused.error.startswith(f"{run} holds a finished run of a different config (seed: finished run has 0")
    assert read(run / "summary.json") == summary and ".run.lock" not in listing(run)

    [forced] = execute_pack([Job(other, run, force=True)])
    assert (forced.status, forced.trained) == ("completed", True)
    assert read(run / "summary.json")["config"]["seed"] == 7


def test_a_partial_run_is_cleared_and_retrained_a_foreign_file_refuses(tmp_path):
    partial, foreign = tmp_path / "partial", tmp_path / "foreign"
    for run in (partial, foreign):
        run.mkdir()
        (run / "losses.csv").write_text("epoch,step,loss,block_steps,elapsed_s\n0,5,0.69")  # killed mid-run
    (foreign / "notes.txt").write_text("mine")
    cfgs = [small_cfg(*TINY), small_cfg(*TINY, "seed=1")]
    out = execute_pack([Job(cfgs[0], partial), Job(cfgs[1], foreign)])
    assert [o.status for o in out] == ["completed", "refused"]
    assert read(partial / "summary.json")["status"] == "completed"
    assert "0,5,0.69" not in (partial / "losses.csv").read_text()
    assert out[1].exit_code == 2 and "notes.txt" in out[1].error and str(foreign) in out[1].error
    assert listing(foreign) == ["losses.csv", "notes.txt"] and (foreign / "notes.txt").read_text() == "mine"


def test_a_training_error_is_recorded_in_the_schema_of_every_record(tmp_path, monkeypatch):
    import rnn_sweep.run.train as T

    ok_dir, bad_dir = tmp_path / "ok", tmp_path / "bad"
    [ok] = execute_pack([Job(small_cfg(*TINY), ok_dir)])

    def broken(cfg, run_dir, overwrite=False):
        raise FloatingPointError("injected")

    monkeypatch.setattr(T, "train", broken)
    [bad] = execute_pack([Job(small_cfg(*TINY, "seed=1"), bad_dir)])
    record = read(bad_dir / "summary.json")
    assert (bad.status, bad.exit_code, bad.trained) == ("failed", 1, True)
    assert bad.error == f"{bad_dir}: FloatingPointError: injected (recorded in summary.json)"
    assert bad.line() == f"bad: failed: {bad.error}"
    assert record["status"] == "failed" and record["error"] == "FloatingPointError: injected"
    assert record["config"]["seed"] == 1 and record["final_loss"] is None and record["heldout_loss"] is None
    assert set(record) == set(read(ok_dir / "summary.json"))  # one schema for every record
    assert ok.status == "completed" and ".run.lock" not in listing(bad_dir)


# --- packs, fallback, locks: fake training, no TensorFlow -------------------------------

def test_a_pack_trains_as_one_call_without_its_finished_member(tmp_path, monkeypatch, no_tf):
    import rnn_sweep.run.train as T

    calls = []

    def fake_pack(cfgs, run_dirs, threads=0):
        calls.append(([c.seed for c in cfgs], threads))
        for d in run_dirs:
            assert (d / ".run.lock").exists()  # held while the pack trains
        return [fake_summary(c, "failed", "FloatingPointError: boom") if c.seed == 1 else fake_summary(c)
                for c in cfgs]

    monkeypatch.setattr(T, "train_pack", fake_pack)
    cfgs = [small_cfg(f"seed={s}") for s in (0, 1, 2, 3)]
    done = tmp_path / "s3"
    done.mkdir()
    (done / "summary.json").write_text(json.dumps(finished_record(cfgs[3])))
    out = execute_pack([Job(c, tmp_path / f"s{c.seed}") for c in cfgs], threads=3)
    assert calls == [([0, 1, 2], 3)]  # one call for the members that must train
    assert [o.status for o in out] == ["completed", "failed", "completed", "skipped"]
    assert [o.trained for o in out] == [True, True, True, False]
    assert out[1].error == f"{tmp_path / 's1'}: FloatingPointError: boom (recorded in summary.json)"
    assert [o.exit_code for o in out] == [0, 1, 0, 0]
    assert not any((tmp_path / f"s{s}" / ".run.lock").exists() for s in range(4))


def test_a_pack_that_cannot_train_as_one_is_trained_run_by_run(tmp_path, monkeypatch, no_tf):
    import rnn_sweep.run.train as T

    def broken_pack(cfgs, run_dirs, threads=0):
        raise RuntimeError("whole pack failed")

    def one(cfg, run_dir, overwrite=False):
        if cfg.seed == 1:
            raise FloatingPointError("seed 1")
        return fake_summary(cfg)

    monkeypatch.setattr(T, "train_pack", broken_pack)
    monkeypatch.setattr(T, "train", one)
    out = execute_pack([Job(small_cfg(f"seed={s}"), tmp_path / f"s{s}") for s in (0, 1)])
    assert [o.status for o in out] == ["completed", "failed"] and all(o.trained for o in out)
    assert out[1].error == f"{tmp_path / 's1'}: FloatingPointError: seed 1 (recorded in summary.json)"
    assert read(tmp_path / "s1" / "summary.json")["error"] == "FloatingPointError: seed 1"


def test_a_failure_record_that_cannot_be_written_says_so(tmp_path, monkeypatch, no_tf):
    import errno

    import rnn_sweep.run.records as R
    import rnn_sweep.run.train as T

    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(T, "train", lambda cfg, run_dir, overwrite=False: 1 / 0)
    monkeypatch.setattr(R, "write_json_atomic", full)
    [out] = execute_pack([Job(small_cfg(), tmp_path / "r")])
    assert out.status == "failed" and out.summary is None and out.exit_code == 1
    assert out.error == (f"{tmp_path / 'r'}: ZeroDivisionError: division by zero (and its failure record could "
                         "not be written either: No space left on device)")
    assert not (tmp_path / "r" / "summary.json").exists()  # unfinished: a rerun retrains it


def start_time(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()[22 - 3]


def test_a_run_a_live_process_holds_is_refused_and_left_alone(tmp_path, monkeypatch, no_tf):
    import rnn_sweep.run.train as T

    monkeypatch.setattr(T, "train", lambda *a, **k: pytest.fail("a locked run must not train"))
    holder = subprocess.Popen(["sleep", "60"])
    try:
        run = tmp_path / "r"
        run.mkdir()
        line = f"{socket.gethostname()} {holder.pid} {start_time(holder.pid)}\n"
        (run / ".run.lock").write_text(line)
        (run / "losses.csv").write_text("partial")
        [out] = execute_pack([Job(small_cfg(), run)])
        assert (out.status, out.exit_code, out.trained) == ("refused", 2, False)
        assert str(holder.pid) in out.error and str(run) in out.error
        assert (run / ".run.lock").read_text() == line and (run / "losses.csv").read_text() == "partial"
    finally:
        holder.kill()
        holder.wait()


def test_a_caller_holding_the_lock_trains_without_taking_it(tmp_path, monkeypatch, no_tf):
    import rnn_sweep.run.train as T

    monkeypatch.setattr(T, "train", lambda cfg, run_dir, overwrite=False: fake_summary(cfg))
    run = tmp_path / "r"
    run.mkdir()
    (run / ".run.lock").write_text(f"{socket.gethostname()} {os.getpid()}\n")  # this process: a single run's lock
    [out] = execute_pack([Job(small_cfg(), run, locked=True)])
    assert out.status == "completed" and (run / ".run.lock").exists()  # the caller releases its own lock


def test_an_interrupt_stops_the_pack_and_releases_its_locks(tmp_path, monkeypatch, no_tf):
    import rnn_sweep.run.train as T

    def interrupted(cfg, run_dir, overwrite=False):
        assert (Path(run_dir) / ".run.lock").exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        execute_pack([Job(small_cfg(), tmp_path / "r")])
    assert not (tmp_path / "r" / ".run.lock").exists()
