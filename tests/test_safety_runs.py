"""Safety with real training: concurrent runs, killed parallel sweeps, invalid jobs, bad records.

Every test launches the real ``rnn-sweep`` console script on tiny data
(8,000 steps per epoch) into ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from conftest import run_cli
from test_sweeps import popen_cli, wait_for

TINY = ("data=small", "data.length=8000", "data.eval_length=4000", "train.log_every=5", "train.progress=false",
        "train.xla=false")
NO_AGG = "hydra.callbacks.aggregate.enabled=false"


def job_dir(sweep: Path, override: str) -> Path:
    """The one run directory of ``sweep`` whose name (Hydra's override_dirname) holds ``override``."""
    (found,) = [p for p in sweep.iterdir() if p.is_dir() and override in p.name.split(",")]
    return found


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("rnn-sweep:")]


# --- two runs, one directory ------------------------------------------------------------

@pytest.mark.slow
def test_second_run_into_a_busy_run_directory_is_refused(tmp_path):
    first = popen_cli("hydra.run.dir=run", *TINY, "train.epochs=400", cwd=tmp_path)
    run = tmp_path / "run"
    wait_for(lambda: (run / "losses.csv").exists(), timeout=120, proc=first)
    assert (run / ".run.lock").read_text().split()[1] == str(first.pid)
    second = run_cli("hydra.run.dir=run", *TINY, "train.epochs=400", cwd=tmp_path, timeout=60)
    assert second.returncode == 2
    assert error_lines(second.stderr) == [
        f"rnn-sweep: error: another run (process {first.pid} on {os.uname().nodename}) is running in run; wait for "
        f"it to finish, or choose another hydra.run.dir (if that process is gone, delete run/.run.lock)"]
    assert "Traceback" not in second.stderr
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 400 * 8  # 40 columns / 5 = 8 windows
    # 40 positions per row < a grid block of 10,000 // 200 = 50: one partial block per epoch
    assert len((run / "losses.csv").read_text().splitlines()) == 1 + 400
    assert not (run / ".run.lock").exists()


# --- kill -9 of a parallel sweep --------------------------------------------------------

def children(pid: int) -> list[int]:
    """Every descendant of ``pid``, from the process table in /proc."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent_of.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_kill_9_of_a_joblib_sweep_leaves_no_worker_and_a_rerun_completes(tmp_path):
    args = ("-m", "hydra.sweep.dir=sw", "num_steps=2,5", "seed=0,1", *TINY, "train.epochs=60", NO_AGG,
            "hydra/launcher=cores", "hydra.launcher.n_jobs=2")
    sweep = proc = None
    try:
        proc = popen_cli(*args, cwd=tmp_path)
        sweep = tmp_path / "sw"
        wait_for(lambda: len(list(sweep.glob("*/losses.csv"))) >= 2, timeout=180, proc=proc)
        workers = children(proc.pid)
        assert len([p for p in workers if "popen_loky_posix" in Path(f"/proc/{p}/cmdline").read_text()]) == 2
        os.kill(proc.pid, signal.SIGKILL)  # the sweep process only: its workers must follow by themselves
        proc.wait()
        deadline = time.monotonic() + 5
        while any(running(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in workers if running(p)] == []
        out = run_cli(*args, cwd=tmp_path, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "removing stale sweep lock" in out.stdout + out.stderr
        for n in (2, 5):
            for s in (0, 1):
                (run,) = [p for p in sweep.iterdir() if {f"num_steps={n}", f"seed={s}"} <= set(p.name.split(","))]
                summary = json.loads((run / "summary.json").read_text())
                assert summary["status"] == "completed" and summary["steps"] == 60 * (40 // n)
    finally:  # whatever happened, nothing of this test keeps running (workers share the group)
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_sweep_lock_is_held_while_a_killed_sweeps_worker_lives(tmp_path):
    import socket
    import subprocess

    from rnn_sweep.run import job as sw
    from rnn_sweep.run.locks import Locked
    from rnn_sweep.run.locks import WORKERS_DIR

    dead = subprocess.Popen(["true"])
    dead.wait()
    worker = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / sw.LOCK_FILE).write_text(f"{socket.gethostname()} {dead.pid}\n")
        (tmp_path / WORKERS_DIR).mkdir()
        (tmp_path / WORKERS_DIR / f"{socket.gethostname()}-{worker.pid}").touch()
        with pytest.raises(Locked, match=f"worker process\\(es\\) {worker.pid} of a killed sweep"):
            sw.SweepLock(tmp_path).acquire()
    finally:
        worker.kill()
        worker.wait()
    sw.SweepLock(tmp_path).acquire()  # the worker is gone: the lock is stale now
    assert (tmp_path / sw.LOCK_FILE).read_text().split()[1] == str(os.getpid())
    assert not (tmp_path / WORKERS_DIR).exists()  # the dead worker's entry, and the emptied folder, are gone


# --- invalid jobs, malformed records, divergence ----------------------------------------

@pytest.mark.slow
def test_invalid_job_in_a_sweep_costs_nothing_else(tmp_path):
    # rnn-sweep's own launchers refuse such a sweep up front (tests/test_packing.py); under a
    # plain Hydra launcher, which hands jobs over one by one, the invalid job is recorded alone.
    out = run_cli("-m", "hydra/launcher=basic", "hydra.sweep.dir=sw", "num_steps=0,2", "seed=0", *TINY, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    sweep = tmp_path / "sw"
    # Hydra's override_dirname: sorted overrides without the excluded keys (train.progress)
    name = ",".join(sorted(o for o in ["num_steps=0", "seed=0", *TINY] if not o.startswith("train.progress")))
    name = name.replace("xla=false", "xla=False")
    refusal = f"{sweep.resolve()}/{name}: num_steps=0 is invalid: must be a positive integer (>= 1)"
    assert f"{name}: refused: {refusal}" in out.stdout + out.stderr  # the job's one line
    assert f"  refused: {refusal}" in out.stderr  # and the list at the end
    (run,) = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "aggregate"]
    assert "num_steps=2" in run.name
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert not (sweep / name).exists() and not (sweep / ".jobs" / name).exists()
    assert (sweep / "aggregate" / "runs.csv").exists()  # the valid run was aggregated


@pytest.mark.slow
def test_malformed_finished_records_are_retrained_each_reported(tmp_path):
    args = ("-m", "hydra.sweep.dir=sw", "seed=0,1,2", *TINY, NO_AGG)
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = tmp_path / "sw"
    bad = {0: lambda s: {k: v for k, v in s.items() if k != "levels"}, 1: lambda s: [s],
           2: lambda s: {**s, "final_loss": "0.52"}}
    for seed, corrupt in bad.items():
        path = job_dir(sweep, f"seed={seed}") / "summary.json"
        path.write_text(json.dumps(corrupt(json.loads(path.read_text()))))
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    for seed, reason in ((0, "levels is not a non-empty list"), (1, "is a JSON list"),
                         (2, "final_loss='0.52' is not a loss")):
        path = job_dir(sweep, f"seed={seed}") / "summary.json"
        assert f"{path.resolve()} is malformed: " in log and reason in log
        summary = json.loads(path.read_text())
        assert summary["status"] == "completed" and isinstance(summary["levels"], list)
    assert "KeyError" not in log and "Traceback" not in log


@pytest.mark.slow
def test_single_run_that_diverges_exits_1(tmp_path):
    out = run_cli("hydra.run.dir=run", *TINY, "train.diverge_loss=0.01", cwd=tmp_path)
    assert out.returncode == 1
    # the first grid block (all 40 positions of the epoch) is above 0.01: updates at its end ceil(40 / n=5) = 8
    assert error_lines(out.stderr) == [
        "rnn-sweep: error: the run diverged at step 8 (a loss block above train.diverge_loss=0.01 or not finite); "
        f"its record is in {(tmp_path / 'run').resolve()}"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"


@pytest.mark.slow
def test_sweep_job_with_an_overlong_name_runs_and_resumes(tmp_path):
    deps = "[" + ",".join(f"{{lag:{100 + i},effect:0.0}}" for i in range(11)) + ",{lag:3,effect:0.5}]"
    args = ("-m", "hydra.sweep.dir=sw", f"data.dependencies={deps}", *TINY, NO_AGG)
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = [p for p in (tmp_path / "sw").iterdir() if not p.name.startswith(".") and p.is_dir()]
    assert len(f"data.dependencies={deps}".encode()) > 255 >= len(run.name.encode())
    assert run.name.startswith("data.dependencies=[{lag:100,effect:0.0},") and "~" in run.name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["learned_fraction"]["100"] is None
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0 and f"skipping {run.resolve()}:" in again.stdout + again.stderr
