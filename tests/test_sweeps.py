"""Sweeps: launchers, deterministic run directories, resume after SIGKILL, failures, locking.

Sweeps run the real ``rnn-sweep`` console script on ``experiment=smoke`` (4 runs:
num_steps 2,5 x seed 0,1 on 8,000 steps per epoch) into ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, VENV_BIN, run_cli
import rnn_sweep.launch.cli  # noqa: F401  (registers the config schema for compose)
from rnn_sweep.run import job as sw
from rnn_sweep.run.locks import Locked

# Aggregation (a callback at the end of a sweep, tested elsewhere) is left on in the
# first test only, to keep these tests quick.
NO_AGG = "hydra.callbacks.aggregate.enabled=false"
SMOKE_RUNS = {f"num_steps={n},seed={s}": (n, s) for n in (2, 5) for s in (0, 1)}


def logged_blocks(n: int, epochs: int = 1) -> list[tuple[int, int, int, int]]:
    """(epoch, data_start, data_end, updates) of each row of a smoke run's losses.csv, derived by hand.

    8,000 steps / 200 rows = 40 positions per row; 40 // n windows of n train all 40 (n=2: 20
    updates, n=5: 8). The grid block is 10,000 // 200 = 50 positions, more than an epoch holds,
    so each epoch is one partial block of 40 positions = 8,000 steps: data [e*8,000, (e+1)*8,000),
    updates done at its end (e+1) * (40 // n).
    """
    w = 40 // n
    return [(e, e * 8000, (e + 1) * 8000, (e + 1) * w) for e in range(epochs)]


def checkpoint_data(n: int, epochs: int = 1) -> list[int]:
    """The data_steps column of a smoke run's checkpoints.csv, derived by hand.

    The untrained row (0), then train.checkpoints=10 per epoch, each after the update that
    completes data position max(1, round(40 * f)) of the 40 per row (the same positions for
    every n; repeats measured once). Epoch 0 is log-spaced, f = 256**((i - 9) / 9): 0.0039,
    0.0073, 0.0134, 0.0248, 0.0459, 0.0850, 0.157, 0.291, 0.540, 1 -> positions 1, 1, 1, 1, 2,
    3, 6, 12, 22, 40 -> updates ceil(p / n): n=2: 1, 2, 3, 6, 11, 20; n=5: 1, 2, 3, 5, 8.
    Later epochs evenly, positions 4, 8, .., 40: n=2 -> 2, 4, .., 20; n=5 -> 1, 2, 3, 4, 4, 5,
    6, 7, 8, 8 -> 1, 2, 3, 4, 5, 6, 7, 8. Each row's data: e * 8,000 + updates * n * 200 rows.
    """
    first = {2: [1, 2, 3, 6, 11, 20], 5: [1, 2, 3, 5, 8]}[n]
    later = {2: list(range(2, 21, 2)), 5: list(range(1, 9))}[n]
    return [0] + [e * 8000 + u * n * 200 for e in range(epochs) for u in (first if e == 0 else later)]


def sweep_dir(root: Path, name: str = "smoke") -> Path:
    return root / "outputs" / "sweeps" / name


def check_complete(sweep: Path, runs=SMOKE_RUNS, epochs: int = 1) -> dict[str, dict]:
    """Every expected run directory holds a completed summary, a full losses.csv and checkpoints.csv."""
    found = {p.parent.name for p in sweep.glob("*/summary.json")}
    assert found == set(runs)
    summaries = {}
    for name, (n, s) in runs.items():
        summary = json.loads((sweep / name / "summary.json").read_text())
        assert summary["status"] == "completed", summary["error"]
        assert (summary["config"]["num_steps"], summary["config"]["seed"]) == (n, s)
        rows = (sweep / name / "losses.csv").read_text().splitlines()
        assert rows[0] == "epoch,data_start,data_end,loss,updates,elapsed_s"
        assert [tuple(int(r.split(",")[i]) for i in (0, 1, 2, 4)) for r in rows[1:]] == logged_blocks(n, epochs)
        checkpoints = (sweep / name / "checkpoints.csv").read_text().splitlines()
        assert checkpoints[0] == "epoch,data_steps,updates,heldout_loss,learned_3,learned_8"
        assert [int(r.split(",")[1]) for r in checkpoints[1:]] == checkpoint_data(n, epochs)
        summaries[name] = summary
    return summaries


def digests(sweep: Path, names) -> dict[str, str]:
    """sha256 of every file in the given run directories."""
    return {str(p.relative_to(sweep)): hashlib.sha256(p.read_bytes()).hexdigest()
            for name in names for p in sorted((sweep / name).rglob("*")) if p.is_file()}


def popen_cli(*args: str, cwd: Path, prelude: str = "") -> subprocess.Popen:
    """Start ``rnn-sweep ARGS`` (optionally after some Python ``prelude``) in its own session."""
    code = f"import sys; {prelude}\nfrom rnn_sweep.launch.cli import main; sys.argv = ['rnn-sweep', *{list(args)!r}]; main()"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"sweep ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the sweep")
        time.sleep(0.05)


# --- launchers and resume ---------------------------------------------------------------

@pytest.mark.slow
def test_smoke_basic_launcher_then_rerun_skips_everything(tmp_path):
    out = run_cli("experiment=smoke", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    check_complete(sweep)
    assert not (sweep / sw.LOCK_FILE).exists()
    before = digests(sweep, SMOKE_RUNS)
    mtimes = {n: (sweep / n).stat().st_mtime_ns for n in SMOKE_RUNS}

    again = run_cli("experiment=smoke", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert sum(f"skipping {sweep.resolve() / n}:" in log for n in SMOKE_RUNS) == 4
    assert digests(sweep, SMOKE_RUNS) == before
    assert {n: (sweep / n).stat().st_mtime_ns for n in SMOKE_RUNS} == mtimes  # nothing created/removed


@pytest.mark.slow
def test_smoke_joblib_launcher_matches_basic_launcher_runs(tmp_path):
    out = run_cli("experiment=smoke", NO_AGG, "hydra/launcher=cores", "hydra.launcher.n_jobs=2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "Joblib.Parallel(n_jobs=2" in log
    threads = max(1, (os.cpu_count() or 1) // 2)  # each of 2 workers gets its share of the cores
    # once per pack: smoke is one pack of 4, split so that each of the 2 workers gets one
    shares = re.findall(r"TensorFlow intra-op threads for this job: (\d+)", log)
    assert len(shares) == 2 and set(shares) == {str(threads)}, shares  # one per pack: one pack per worker
    summaries = check_complete(sweep_dir(tmp_path))
    # Same seed and config -> the same training in worker processes as in-process:
    # compare a run against a sequential reference trained here (TF default threads).
    from rnn_sweep.run.train import train
    from conftest import small_cfg

    ref = train(small_cfg("experiment=smoke", "num_steps=5", "seed=1"), tmp_path / "ref")
    assert np.isclose(summaries["num_steps=5,seed=1"]["final_loss"], ref["final_loss"], rtol=1e-5)
    assert np.isclose(summaries["num_steps=5,seed=1"]["heldout_loss"], ref["heldout_loss"], rtol=1e-5)


@pytest.mark.slow
def test_sigkill_mid_sweep_then_rerun_completes_and_keeps_finished_runs(tmp_path):
    # The 3rd job (num_steps=5,seed=0) is killed mid-training, once its losses.csv
    # (flushed every epoch) holds a few epochs.
    epochs = 150
    args = ("experiment=smoke", NO_AGG, f"train.epochs={epochs}", "hydra.launcher.max_pack_size=2")
    runs = {f"{name},train.epochs={epochs}": ns for name, ns in SMOKE_RUNS.items()}  # dir names
    proc = popen_cli(*args, cwd=tmp_path)
    sweep = sweep_dir(tmp_path)
    partial = sweep / f"num_steps=5,seed=0,train.epochs={epochs}" / "losses.csv"
    wait_for(lambda: partial.exists() and partial.read_text().count("\n") >= 4, timeout=180, proc=proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = [n for n in runs if (sweep / n / "summary.json").exists()]
    assert set(finished) == {f"num_steps=2,seed={s},train.epochs={epochs}" for s in (0, 1)}
    # seed 1 of num_steps=5 is in the killed run's pack: unfinished too (not started, or cut short)
    assert not (sweep / f"num_steps=5,seed=1,train.epochs={epochs}" / "summary.json").exists()
    assert len(partial.read_text().splitlines()) < 1 + epochs  # really cut short (one row per epoch)
    before = digests(sweep, finished)
    assert (sweep / sw.LOCK_FILE).exists()  # the killed sweep's lock, now stale

    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    check_complete(sweep, runs, epochs=epochs)
    assert digests(sweep, finished) == before
    assert "removing stale sweep lock" in out.stdout + out.stderr
    removed = "checkpoints.csv, losses.csv"  # both records a run starts with, in name order
    assert f"retraining {partial.parent.resolve()} from scratch (removed {removed})" in out.stdout + out.stderr


# --- failures -------------------------------------------------------------------------

FAIL_SEED_1 = """
import rnn_sweep.run.train as T
_train = T.train
def train(cfg, run_dir, overwrite=False):
    if cfg.seed == 1:
        raise FloatingPointError("injected failure for seed 1")
    return _train(cfg, run_dir, overwrite)
T.train = train
if hasattr(T, "train_pack"):
    # Packs train as one program: fail the whole pack, so the launcher retries its runs one
    # by one through T.train above (one run's failure must still cost only that run).
    def train_pack(cfgs, run_dirs, *args, **kwargs):
        raise RuntimeError("injected failure of the whole pack")
    T.train_pack = train_pack
"""


@pytest.mark.slow
def test_failing_job_is_recorded_others_finish_exit_status_nonzero_then_retried(tmp_path):
    proc = popen_cli("experiment=smoke", "num_steps=2", cwd=tmp_path, prelude=FAIL_SEED_1)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert "injected failure for seed 1" in stderr
    assert "rnn-sweep: 1 job(s) did not finish: 1 failed (training or writing its results raised)" in stderr
    assert "refused" not in stderr
    sweep = sweep_dir(tmp_path)
    # the sweep is still aggregated, the failed run listed with its status
    runs = {r["seed"]: r["status"] for r in
            __import__("pandas").read_csv(sweep / "aggregate" / "runs.csv").to_dict("records")}
    assert runs == {0: "completed", 1: "failed"}
    assert not (sweep / ".sweep.lock").exists()
    ok = json.loads((sweep / "num_steps=2,seed=0" / "summary.json").read_text())
    failed = json.loads((sweep / "num_steps=2,seed=1" / "summary.json").read_text())
    assert ok["status"] == "completed"
    assert failed["status"] == "failed"
    assert failed["error"] == "FloatingPointError: injected failure for seed 1"
    assert failed["config"]["seed"] == 1 and failed["final_loss"] is None
    # A failed run is not a result: the next launch retries it (and skips the other).
    out = run_cli("experiment=smoke", NO_AGG, "num_steps=2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    check_complete(sweep, {k: v for k, v in SMOKE_RUNS.items() if v[0] == 2})
    assert f"skipping {(sweep / 'num_steps=2,seed=0').resolve()}:" in out.stdout + out.stderr


@pytest.mark.slow
def test_finished_run_with_other_config_is_never_overwritten_unless_forced(tmp_path):
    # A fixed subdir makes two different configs share one run directory.
    common = ("-m", "data=small", "data.length=8000", "data.eval_length=4000", "hydra.sweep.dir=sw",
              "hydra.sweep.subdir=run", "train.progress=false", "train.xla=false", NO_AGG)
    first = run_cli(*common, "num_steps=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = digests(tmp_path / "sw", ["run"])
    clash = run_cli(*common, "num_steps=5", cwd=tmp_path)
    assert clash.returncode == 2  # refused, like the same clash in a single run: nothing trained
    refusal = (f"{(tmp_path / 'sw' / 'run').resolve()} holds a finished run of a different config (num_steps: "
               "finished run has 2, this sweep asks for 5)")
    # said once as the run finishes (its progress line), once in the list at the end
    assert f"[1/1] run: refused: {refusal}" in clash.stdout + clash.stderr and f"  refused: {refusal}" in clash.stderr
    assert "1 job(s) did not finish: 1 refused" in clash.stderr and "training error" not in clash.stderr
    assert digests(tmp_path / "sw", ["run"]) == before
    forced = run_cli(*common, "num_steps=5", "+force=true", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert json.loads((tmp_path / "sw" / "run" / "summary.json").read_text())["num_steps"] == 5


# --- two sweeps, one directory ----------------------------------------------------------

@pytest.mark.slow
def test_second_sweep_into_same_directory_refuses_first_completes(tmp_path):
    first = popen_cli("experiment=smoke", NO_AGG, cwd=tmp_path)
    sweep = sweep_dir(tmp_path)
    wait_for(lambda: (sweep / sw.LOCK_FILE).exists(), timeout=60, proc=first)
    second = run_cli("experiment=smoke", cwd=tmp_path, timeout=120)
    assert second.returncode == 2
    assert f"rnn-sweep: error: another sweep (process {first.pid} on " in second.stderr
    assert "Traceback" not in second.stderr
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    check_complete(sweep)


def test_lock_is_exclusive_and_a_dead_holders_lock_is_taken_over(tmp_path):
    lock = sw.SweepLock(tmp_path)
    lock.acquire()
    with pytest.raises(Locked, match=f"process {os.getpid()} on"):
        sw.SweepLock(tmp_path).acquire()
    lock.release()
    assert not (tmp_path / sw.LOCK_FILE).exists()
    # A holder that no longer exists (a SIGKILLed sweep): a finished child's pid.
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / sw.LOCK_FILE).write_text(f"{lock.owner.split()[0]} {dead.pid}\n")
    sw.SweepLock(tmp_path).acquire()
    assert (tmp_path / sw.LOCK_FILE).read_text().split()[1] == str(os.getpid())
    # A lock from another host cannot be checked: respected.
    (tmp_path / sw.LOCK_FILE).write_text("some-other-host 1\n")
    with pytest.raises(Locked, match="process 1 on some-other-host"):
        sw.SweepLock(tmp_path).acquire()


# --- planning (no TensorFlow) -----------------------------------------------------------

def _write_summary(run_dir: Path, status: str, cfg) -> None:
    """A well-formed record (the keys rnn_sweep.run.records.summary_problems checks), by hand."""
    import dataclasses

    run_dir.mkdir(parents=True, exist_ok=True)
    loss = 0.52 if status == "completed" else None
    (run_dir / "summary.json").write_text(json.dumps({
        "status": status, "config": dataclasses.asdict(cfg), "final_loss": loss, "heldout_loss": loss,
        "num_steps": cfg.num_steps, "state_size": cfg.state_size, "seed": cfg.seed, "steps": 10,
        "levels": [{"name": "nothing", "lags": [], "loss": 0.66}], "learned_fraction": {"3": 1.0, "8": None}}))


def test_plan_replicated_job_is_finished_when_every_seed_record_is(tmp_path, cfg_factory):
    cfg = cfg_factory("num_steps=3", "seed=5", "train.replicas=3")
    job = tmp_path / "job"
    for s in (5, 6):  # two of the three per-seed records, as written by train.replicas
        _write_summary(job / f"seed={s}", "completed", cfg_factory("num_steps=3", f"seed={s}"))
    assert sw.plan(cfg, job) == "train"  # seed 7 missing (e.g. killed mid-write)
    _write_summary(job / "seed=7", "completed", cfg_factory("num_steps=3", "seed=7"))
    assert sw.plan(cfg, job) == "skip"
    _write_summary(job / "seed=7", "completed", cfg_factory("num_steps=3", "seed=7", "train.optimizer.lr=0.3"))
    with pytest.raises(sw.ConfigMismatch, match=r"train\.optimizer\.lr"):
        sw.plan(cfg, job)


def test_plan_skip_train_mismatch_force(tmp_path, cfg_factory):
    cfg = cfg_factory("num_steps=3")
    assert sw.plan(cfg, tmp_path / "none") == "train"
    _write_summary(tmp_path / "done", "completed", cfg)
    assert sw.plan(cfg, tmp_path / "done") == "skip"
    assert sw.plan(cfg, tmp_path / "done", force=True) == "train"
    # execution settings are not part of a run's identity
    assert sw.plan(cfg_factory("num_steps=3", "train.threads=1", "train.progress=true"), tmp_path / "done") == "skip"
    with pytest.raises(sw.ConfigMismatch, match=r"train\.optimizer\.lr: finished run has 0\.1, this sweep asks for 0\.2"):
        sw.plan(cfg_factory("num_steps=3", "train.optimizer.lr=0.2"), tmp_path / "done")
    _write_summary(tmp_path / "div", "diverged", cfg)
    assert sw.plan(cfg, tmp_path / "div") == "skip"
    _write_summary(tmp_path / "fail", "failed", cfg_factory("num_steps=4"))
    assert sw.plan(cfg, tmp_path / "fail") == "train"  # failed runs are retried, whatever their config
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text('{"status": "compl')
    assert sw.plan(cfg, tmp_path / "bad") == "train"


def test_clear_partial_removes_only_run_files_and_refuses_foreign_ones(tmp_path):
    from rnn_sweep.run.records import UnsafeDirectory

    for name in ("losses.csv", ".summary.json.123.tmp", "summary.json", "cli.log"):
        (tmp_path / name).write_text("x")
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("x")
    assert sw.clear_partial(tmp_path) == [".summary.json.123.tmp", "losses.csv", "summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "cli.log"]
    # Anything a run does not write (a checkpoint folder, a user's notes) stops the clearing
    # before a single file is removed.
    (tmp_path / "losses.csv").write_text("x")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / ".hydra" / "mine.txt").write_text("x")
    with pytest.raises(UnsafeDirectory, match=r"files at risk: \.hydra/mine\.txt, ckpt"):
        sw.clear_partial(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "ckpt", "cli.log", "losses.csv"]
    # A job without overrides gets its own directory, never the sweep directory itself,
    # and a sweep directory is never cleared as if it were a run.
    from rnn_sweep.launch.hydra_glue import _run_subdir

    assert _run_subdir("") == "base" and _run_subdir("num_steps=2") == "num_steps=2"
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("x")
    with pytest.raises(UnsafeDirectory, match="it is a sweep directory"):
        sw.clear_partial(sweep)
    assert (sweep / "multirun.yaml").exists()


# --- command-line mistakes -----------------------------------------------------------------

def test_nonexistent_experiment_is_a_clear_message(tmp_path):
    out = run_cli("experiment=smok", cwd=tmp_path, timeout=60)
    assert out.returncode != 0
    assert "Could not find 'experiment/smok'" in out.stderr
    assert "smoke" in out.stderr and "quickstart" in out.stderr  # the options it lists
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "outputs").exists()


def test_sweep_directories_and_experiment_grids(tmp_path):
    from conftest import compose

    from hydra import compose as hcompose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        grid = hcompose("config", overrides=["experiment=r2rt_grid"], return_hydra_config=True)
        adhoc = hcompose("config", overrides=[], return_hydra_config=True)
    params = grid.hydra.sweeper.params
    assert str(grid.hydra.mode) == "RunMode.MULTIRUN"
    assert params.num_steps == "range(1,21)" and params.seed == "0,1,2"
    assert [int(v) for v in params.state_size.split(",")] == [2, 4, 8, 16, 32]
    assert grid.data.length == 1_000_000 and grid.train.batch_size == 200 and grid.train.optimizer.lr == 0.1
    from rnn_sweep.launch.hydra_glue import _sweep_name

    assert _sweep_name(grid.hydra.runtime.choices.experiment) == "r2rt_grid"
    assert _sweep_name(adhoc.hydra.runtime.choices.get("experiment")) == "adhoc"
    assert set(adhoc.hydra.job.config.override_dirname.exclude_keys) >= {"experiment", "force"}
    qs = compose(["experiment=quickstart"])  # the article's data and optimizer, 2 epochs
    assert (qs.data.length, qs.train.epochs, qs.train.batch_size, qs.train.optimizer.lr) == (1_000_000, 2, 200, 0.1)
    assert VENV_BIN.exists()
