"""Sweeps that must never lose or mix results: distinct run directories, run locks inside sweeps,
safety checks that refuse when they fail, a full disk, interrupts, exit codes, Optuna reruns.

Every end-to-end test runs the real ``rnn-sweep`` console script on tiny data into ``tmp_path``;
expected directories, messages and counts are derived here from the command, not captured.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import deep_chain, mounted_tmpfs, remove_chain, run_cli
from rnn_sweep.run import locks
from rnn_sweep.run import packing
from test_safety_runs import TINY, NO_AGG, error_lines
from test_sweeps import popen_cli, wait_for

SEED_DIRS = "hydra.sweep.subdir=seed${seed}"  # one readable run directory per seed


def tree(path: Path) -> dict[str, str]:
    """sha256 of every file below ``path`` (relative names)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def temp_files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.name.endswith(".tmp"))


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


# --- every job its own run directory ----------------------------------------------------

def test_dir_rounds_by_hand():
    same, other = "A", "B"
    # two jobs of one config in one directory: one run asked twice -> the copy waits a round
    assert packing.dir_rounds(["/s/x", "/s/y", "/s/x"], [same, same, same]) == ([[0, 1], [2]], [], [])
    # one directory for two configs, and a directory inside another: clashes, by job index
    assert packing.dir_rounds(["/s/x", "/s/x"], [same, other])[1] == [(0, 1)]
    assert packing.dir_rounds(["/s/r", "/s/r/seed=1"], [same, other])[1] == [(0, 1)]
    assert packing.dir_rounds(["/s/a/b", "/s/a", "/s/ab"], [same, other, same])[1] == [(1, 0)]
    # the sweep directory itself, or a folder holding it, is no run directory
    assert packing.dir_rounds(["/s", "/s/x", "/"], [same, other, same], reserved=["/s"])[2] == [0, 2]
    assert packing.dir_rounds(["/s/x", "/s/xy"], [same, other], reserved=["/s"]) == ([[0, 1]], [], [])


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=cores", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=local_submitit"]])
@pytest.mark.parametrize("pattern, sweep, first, second, where", [
    ("onedir", ["seed=0,1"], "seed=0", "seed=1", "onedir:"),
    # 4 jobs, 2 directories: the first pair named, the other counted
    ("n${num_steps}", ["num_steps=2,3", "seed=0,1"], "num_steps=2 seed=0", "num_steps=2 seed=1",
     "n2 (and 1 more such pair(s)):"),
])
def test_jobs_sharing_a_run_directory_are_refused_before_anything_trains(tmp_path, launcher, pattern, sweep,
                                                                          first, second, where):
    out = run_cli("-m", "hydra.sweep.dir=sw", f"hydra.sweep.subdir={pattern}", *sweep, *TINY, NO_AGG, *launcher,
                  cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    sweep_dir = (tmp_path / "sw").resolve()
    assert len(lines) == 1 and lines[0].startswith(
        f"rnn-sweep: error: jobs '{first}' and '{second}' would write the same run directory {sweep_dir}/{where}"), \
        out.stderr
    assert "nothing was trained" in lines[0] and "Traceback" not in out.stdout + out.stderr
    assert sorted(p.name for p in (tmp_path / "sw").iterdir()) == ["multirun.yaml"]  # no run, no lock


def test_two_names_for_one_run_directory_are_refused(tmp_path):
    (tmp_path / "sw" / "p0").mkdir(parents=True)
    (tmp_path / "sw" / "p1").symlink_to("p0")  # sw/p1/run is sw/p0/run
    out = run_cli("-m", "hydra.sweep.dir=sw", "hydra.sweep.subdir=p${seed}/run", "seed=0,1", *TINY, NO_AGG,
                  cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    assert error_lines(out.stderr)[0].startswith(
        f"rnn-sweep: error: jobs 'seed=0' and 'seed=1' would write the same run directory "
        f"{(tmp_path / 'sw' / 'p0' / 'run').resolve()}:")
    assert sorted(p.name for p in (tmp_path / "sw").iterdir()) == ["multirun.yaml", "p0", "p1"]
    assert list((tmp_path / "sw" / "p0").iterdir()) == []


@pytest.mark.slow
def test_the_same_job_twice_trains_once_and_both_get_its_result(tmp_path):
    out = run_cli("-m", "hydra.sweep.dir=sw", SEED_DIRS, "seed=3,3", *TINY, NO_AGG, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = (tmp_path / "sw" / "seed3").resolve()
    log = out.stdout + out.stderr
    assert log.count(f"skipping {run}:") == 1  # the copy found the first one's finished record
    assert summary(run)["status"] == "completed"
    held_out = f"{summary(run)['heldout_loss']:.4f}"
    # one progress line per job, the same result: trained by the first, found finished by its copy
    assert log.count(f"] seed3: completed, held-out {held_out} (") == 1
    assert log.count(f"] seed3: skipped (already completed), held-out {held_out} (") == 1


# --- the run lock inside sweeps ---------------------------------------------------------

def live_holder() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"])


def start_time(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat (the process's start, in clock ticks since boot), read here by hand."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()[22 - 3]


def lock_line(pid: int, start: str | None) -> str:
    return f"{socket.gethostname()} {pid}" + (f" {start}" if start else "") + "\n"


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=cores", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=basic"]])
def test_a_sweep_job_never_writes_a_run_directory_a_live_run_holds(tmp_path, launcher):
    sweep = tmp_path / "sw"
    holder, dead = live_holder(), subprocess.Popen(["true"])
    dead.wait()
    try:
        start = start_time(holder.pid)
        partial = "epoch,data_start,data_end,loss,updates,elapsed_s\n0,0,8000,0.69,8,0.1\n"
        for seed, line in ((0, lock_line(holder.pid, start)),  # a live single run
                           (1, lock_line(dead.pid, None)),  # a killed one (old lock format)
                           (2, lock_line(holder.pid, str(int(start) + 1)))):  # its pid reused by another process
            (sweep / f"seed{seed}").mkdir(parents=True)
            (sweep / f"seed{seed}" / ".run.lock").write_text(line)
            (sweep / f"seed{seed}" / "losses.csv").write_text(partial)
        live_before = tree(sweep / "seed0")
        out = run_cli("-m", "hydra.sweep.dir=sw", SEED_DIRS, "seed=0,1,2", *TINY, NO_AGG, *launcher, cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert out.returncode == 2, out.stderr[-3000:]
    assert tree(sweep / "seed0") == live_before  # nothing deleted, nothing trained
    held = (f"another run (process {holder.pid} on {socket.gethostname()}) is running in "
            f"{(sweep / 'seed0').resolve()}")
    assert f"seed0: refused: {held}" in out.stdout + out.stderr  # its progress line
    assert f"  refused: {held}" in out.stderr and "1 refused" in out.stderr
    assert not [ln for ln in out.stderr.splitlines() if ln.startswith("  failed:")]
    for seed in (1, 2):  # stale locks are taken over; the run trains and lets go of its lock
        assert summary(sweep / f"seed{seed}")["status"] == "completed"
        assert not (sweep / f"seed{seed}" / ".run.lock").exists()


@pytest.mark.slow
def test_a_single_run_into_a_live_sweeps_run_directory_is_refused(tmp_path):
    proc = popen_cli("-m", "hydra.sweep.dir=sw", SEED_DIRS, "seed=0", *TINY, NO_AGG, "train.epochs=300", cwd=tmp_path)
    run = tmp_path / "sw" / "seed0"
    try:
        wait_for(lambda: (run / "losses.csv").exists(), timeout=120, proc=proc)
        single = run_cli(f"hydra.run.dir={run}", "seed=0", *TINY, "train.epochs=300", cwd=tmp_path, timeout=60)
        assert single.returncode == 2
        assert error_lines(single.stderr) == [
            f"rnn-sweep: error: another run (process {proc.pid} on {socket.gethostname()}) is running in "
            f"{run}; wait for it to finish, or choose another hydra.run.dir (if that process is gone, delete "
            f"{run}/.run.lock)"]
        assert (run / "losses.csv").exists()
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert summary(run)["steps"] == 300 * 8  # 40 columns / 5 = 8 windows per epoch, all of them logged
    # 40 positions per row < a grid block of 10,000 // 200 = 50: one block per epoch, one run's rows
    assert len((run / "losses.csv").read_text().splitlines()) == 1 + 300
    assert not (run / ".run.lock").exists()


def test_a_reused_pid_never_holds_a_lock(tmp_path):
    holder = live_holder()
    try:
        start = start_time(holder.pid)
        assert locks.process_start(holder.pid) == start and locks.pid_alive(holder.pid, start)
        assert not locks.pid_alive(holder.pid, str(int(start) + 1)) and not locks.pid_alive(0)
        lock = locks.DirLock(tmp_path, ".run.lock", "run", "hint")
        for line, held in ((lock_line(holder.pid, start), True), (lock_line(holder.pid, None), True),
                           (lock_line(holder.pid, str(int(start) - 1)), False)):
            (tmp_path / ".run.lock").write_text(line)
            if held:
                with pytest.raises(locks.Locked, match=f"process {holder.pid} on"):
                    lock.acquire()
            else:
                lock.acquire()
                assert (tmp_path / ".run.lock").read_text() == lock_line(os.getpid(), start_time(os.getpid()))
                lock.release()
        # a sweep's worker entry of a reused pid counts as dead and is removed; a live worker's stays
        workers = tmp_path / "sw" / locks.WORKERS_DIR
        workers.mkdir(parents=True)
        (workers / f"{socket.gethostname()}-{holder.pid}").write_text(str(int(start) + 7) + "\n")
        (workers / f"{socket.gethostname()}-{os.getppid()}").write_text(start_time(os.getppid()) + "\n")
        assert locks.live_workers(tmp_path / "sw") == [os.getppid()]
        assert [p.name for p in workers.iterdir()] == [f"{socket.gethostname()}-{os.getppid()}"]
    finally:
        holder.kill()
        holder.wait()


def test_taking_a_sweep_lock_removes_the_entries_of_dead_workers(tmp_path):
    from rnn_sweep.run.job import SweepLock

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / locks.WORKERS_DIR).mkdir()
    (tmp_path / locks.WORKERS_DIR / f"{socket.gethostname()}-{dead.pid}").touch()  # old, empty entry
    lock = SweepLock(tmp_path)
    lock.acquire()
    lock.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- a safety check that fails refuses --------------------------------------------------

def test_a_deep_folder_chain_never_leaves_a_sweep_unprotected(tmp_path):
    sweep = tmp_path / "sw"
    sweep.mkdir()
    deep_chain(sweep, 2000)
    holder = live_holder()  # another sweep holds the directory
    try:
        (sweep / ".sweep.lock").write_text(lock_line(holder.pid, None))
        out = run_cli("-m", "hydra.sweep.dir=sw", SEED_DIRS, "seed=0,1", *TINY, NO_AGG, cwd=tmp_path, timeout=120)
    finally:
        holder.kill()
        holder.wait()
        remove_chain(sweep)
    assert out.returncode == 2, out.stderr[-3000:]
    assert error_lines(out.stderr) == [
        f"rnn-sweep: error: another sweep (process {holder.pid} on {socket.gethostname()}) is running in sw; wait "
        "for it to finish, or choose another hydra.sweep.dir (if that process is gone, delete sw/.sweep.lock)"]
    assert not (sweep / "seed0").exists() and not (sweep / "seed1").exists()


def test_an_error_inside_the_sweep_check_is_a_one_line_refusal(tmp_path):
    long_dir = "/".join(["x" * 200] * 25)  # 5,024 characters: longer than any path the kernel accepts
    out = run_cli("-m", f"hydra.sweep.dir={long_dir}", "seed=0,1", *TINY, NO_AGG, cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"rnn-sweep: error: cannot check the sweep directory {long_dir}, "
                                                   "so nothing was started: OSError: "), out.stderr
    assert "File name too long" in lines[0] and list(tmp_path.iterdir()) == []


def test_an_error_inside_the_run_check_is_a_one_line_refusal(tmp_path):
    long_dir = "/".join(["x" * 200] * 25)
    out = run_cli(f"hydra.run.dir={long_dir}", *TINY, cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"rnn-sweep: error: cannot check the run directory {long_dir}, "
                                                   "so nothing was started: "), out.stderr
    assert list(tmp_path.iterdir()) == []


# --- a full disk mid-sweep ----------------------------------------------------------------

DISK_FULL_FOR_SEED_1 = """
import builtins, errno, pathlib
import rnn_sweep.run.train as T
import rnn_sweep.launch.cli as C

def full():
    return OSError(errno.ENOSPC, "No space left on device")  # what write() raises: no file name

class FullFile:
    def __init__(self, f): self.f = f
    def write(self, s): raise full()
    def __getattr__(self, k): return getattr(self.f, k)

def open_losses(path, mode="r", *a, **k):
    f = builtins.open(path, mode, *a, **k)
    return FullFile(f) if str(path).endswith("seed1/losses.csv") else f
T.open = open_losses

def open_failures(path, mode="r", *a, **k):
    if str(path).endswith(".failures"):
        raise full()
    return builtins.open(path, mode, *a, **k)
C.open = open_failures

_write_text = pathlib.Path.write_text
def write_text(self, data, *a, **k):
    if self.name.startswith(".pack.json") and self.parent.name == "seed1":
        builtins.open(self, "w").close()  # a full disk leaves the file it could not fill
        raise full()
    return _write_text(self, data, *a, **k)
pathlib.Path.write_text = write_text
"""


@pytest.mark.slow
def test_a_full_disk_mid_sweep_names_the_file_and_run_and_the_sweep_goes_on(tmp_path):
    # seeds 0 and 1 are one pack: it fails as a whole, its runs are retried one by one, seed 0 finishes
    proc = popen_cli("-m", "hydra.sweep.dir=sw", SEED_DIRS, "seed=0,1", *TINY, NO_AGG, cwd=tmp_path,
                     prelude=DISK_FULL_FOR_SEED_1)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr[-3000:]
    sweep = (tmp_path / "sw").resolve()
    run = sweep / "seed1"
    assert "Traceback" not in stderr
    assert f"  failed: {run}: ResultsWriteError: cannot write {run}/losses.csv: No space left on device" in stderr
    assert "1 job(s) did not finish: 1 failed" in stderr
    assert summary(sweep / "seed0")["status"] == "completed"
    assert summary(run)["status"] == "failed"  # the record fits where the losses did not
    assert temp_files(sweep) == [] and not (sweep / ".jobs" / "seed1" / "pack.json").exists()


@pytest.mark.slow
def test_a_full_disk_between_packs_still_tries_the_later_packs(tmp_path):
    prelude = DISK_FULL_FOR_SEED_1.replace('endswith("seed1/losses.csv")', 'endswith("never")')
    proc = popen_cli("-m", "hydra.sweep.dir=sw", "seed=1", "num_steps=2,5", *TINY, NO_AGG,
                     "hydra.sweep.subdir=n${num_steps}/seed${seed}", "hydra.launcher.max_pack_size=1",
                     cwd=tmp_path, prelude=prelude)  # two packs: the full disk hits the first
    stdout, stderr = proc.communicate(timeout=300)
    sweep = (tmp_path / "sw").resolve()
    assert proc.returncode == 0, stderr[-3000:]  # only a progress record was lost: every run finished
    assert f"cannot write {sweep}/.jobs/n2/seed1/pack.json: No space left on device" in stdout + stderr
    assert [summary(sweep / f"n{n}" / "seed1")["status"] for n in (2, 5)] == ["completed", "completed"]
    assert temp_files(sweep) == [] and "Traceback" not in stderr


@pytest.fixture
def small_tmpfs(tmp_path):
    yield from mounted_tmpfs(tmp_path, "160k")


@pytest.mark.slow
def test_a_real_full_disk_mid_sweep_every_job_is_accounted_for(small_tmpfs):
    # 160 KiB: Hydra's records of the first jobs fit, the losses of 400 logged blocks per run do not
    seeds = range(4)
    out = run_cli("-m", f"hydra.sweep.dir={small_tmpfs}/sw", "seed=0,1,2,3", "num_steps=2,5", *TINY,
                  NO_AGG, "train.log_every=1", "train.epochs=30", "hydra.sweep.subdir=n${num_steps}s${seed}",
                  cwd=small_tmpfs.parent, timeout=300)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr  # (a failed run's traceback is in its job log)
    sweep = small_tmpfs / "sw"
    failed = [ln for ln in out.stderr.splitlines() if ln.startswith("  failed: ")]
    assert failed and all("No space left on device" in ln and f"{sweep}/n" in ln for ln in failed), out.stderr
    for n in (2, 5):  # every job either finished or is listed, by its run directory
        for s in seeds:
            run = sweep / f"n{n}s{s}"
            done = (run / "summary.json").exists() and summary(run)["status"] == "completed"
            assert done or any(f"{run}:" in ln for ln in failed), run
    assert temp_files(sweep) == []


# --- interrupts -------------------------------------------------------------------------

def interrupt(proc: subprocess.Popen, sig: int = signal.SIGINT, group: bool = True) -> tuple[str, str]:
    (os.killpg if group else os.kill)(proc.pid, sig)
    return proc.communicate(timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=cores", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=local_submitit"],
                                      ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]])  # Hydra's own, unpacked
def test_ctrl_c_of_a_sweep_is_one_line_exit_130_and_a_rerun_resumes(tmp_path, launcher):
    args = ("-m", "hydra.sweep.dir=sw", "hydra.sweep.subdir=n${num_steps}", "num_steps=2,5", *TINY, NO_AGG,
            "train.epochs=150", *launcher)
    proc = popen_cli(*args, cwd=tmp_path)
    sweep = tmp_path / "sw"
    try:
        wait_for(lambda: len(list(sweep.glob("n*/losses.csv"))) >= 1, timeout=120, proc=proc)
        time.sleep(0.5)
        stdout, stderr = interrupt(proc)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert [ln for ln in stderr.splitlines() if ln.strip()] == [
        "rnn-sweep: interrupted: the sweep in sw was stopped; rerunning the same command resumes it (finished runs "
        "are kept, unfinished ones train again)"]
    assert "Traceback" not in stdout
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [summary(sweep / f"n{n}")["steps"] for n in (2, 5)] == [150 * 20, 150 * 8]  # 40 columns // n windows


RUN_INTERRUPTED = ("rnn-sweep: interrupted: the run in run was stopped before it finished; rerunning the same "
                   "command (same hydra.run.dir) trains it again")


def interrupt_run_once(tmp_path: Path, marker: Path, *args: str, prelude: str = "") -> list[str]:
    """Start a single run into ``run``, Ctrl-C it once ``marker`` exists; its exit code must be 130.
    Returns the non-empty lines it printed on stderr."""
    proc = popen_cli("hydra.run.dir=run", *TINY, *args, cwd=tmp_path, prelude=prelude)
    try:
        wait_for(marker.exists, timeout=120, proc=proc)
        _, stderr = interrupt(proc)
    finally:
        proc.kill()
    assert proc.returncode == 130
    return [ln for ln in stderr.splitlines() if ln.strip()]


@pytest.mark.slow
def test_ctrl_c_of_a_single_run_is_one_line_exit_130(tmp_path):
    assert interrupt_run_once(tmp_path, tmp_path / "run" / "losses.csv", "train.epochs=20000") == [RUN_INTERRUPTED]
    assert not (tmp_path / "run" / ".run.lock").exists()


IMPORT_SLOWLY = """
import os, time
import rnn_sweep.run.runtime as R
_real = R._import_tensorflow_without_keras
def slow_import():
    os.write(2, b"TensorFlow start-up line, never shown unless verbose\\n")  # as its native code writes to fd 2
    open("importing", "w").close()
    time.sleep(60)
    return _real()
R._import_tensorflow_without_keras = slow_import
"""


@pytest.mark.slow
def test_ctrl_c_while_tensorflow_imports_shows_none_of_its_lines(tmp_path):
    assert interrupt_run_once(tmp_path, tmp_path / "importing", prelude=IMPORT_SLOWLY) == [RUN_INTERRUPTED]


@pytest.mark.slow
def test_sigterm_of_a_cores_sweep_leaks_nothing_and_a_rerun_completes(tmp_path):
    args = ("-m", "hydra.sweep.dir=sw", "hydra.sweep.subdir=n${num_steps}", "num_steps=2,5", *TINY, NO_AGG,
            "train.epochs=150", "hydra/launcher=cores", "hydra.launcher.n_jobs=2")
    proc = popen_cli(*args, cwd=tmp_path)
    sweep = tmp_path / "sw"
    try:
        wait_for(lambda: len(list(sweep.glob("n*/losses.csv"))) == 2, timeout=120, proc=proc)
        time.sleep(0.5)
        stdout, stderr = interrupt(proc, signal.SIGTERM, group=False)  # the sweep process only, as `kill PID`
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 143
    assert [ln for ln in stderr.splitlines() if ln.strip()] == [
        "rnn-sweep: terminated (SIGTERM): the sweep in sw was stopped; rerunning the same command resumes it "
        "(finished runs are kept, unfinished ones train again)"]  # no "leaked semaphore" warning
    assert not (sweep / ".sweep.lock").exists() and not (sweep / locks.WORKERS_DIR).exists()
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "leaked" not in again.stderr and "removing stale sweep lock" not in again.stdout + again.stderr
    assert not (sweep / locks.WORKERS_DIR).exists()  # the workers of a finished sweep exit and take their entries


# --- exit codes and messages ------------------------------------------------------------

@pytest.mark.parametrize("force", ["maybe", "2"])
@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_a_bad_force_value_is_refused_before_anything(tmp_path, force, mode):
    args = ["hydra.run.dir=run"] if mode == "run" else ["-m", "hydra.sweep.dir=sw", "seed=0,1"]
    out = run_cli(*args, *TINY, f"+force={force}", cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    shown = repr(force) if force == "maybe" else force
    assert [ln for ln in out.stderr.splitlines() if ln.strip()] == [
        f"rnn-sweep: error: force={shown} is invalid: must be true or false (also accepted: yes/on and no/off)"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("force", ["no", "off", "false"])
def test_force_no_never_replaces_a_finished_run_of_another_config(tmp_path, force):
    first = run_cli("-m", "hydra.sweep.dir=sw", "hydra.sweep.subdir=run", "num_steps=2", *TINY, NO_AGG, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run = (tmp_path / "sw" / "run").resolve()
    before = tree(run)  # losses.csv and summary.json (a sweep keeps Hydra's records in .jobs/)
    refusal = (f"{run} holds a finished run of a different config (num_steps: finished run has 2, this sweep asks "
               "for 5); it is never overwritten: use another hydra.sweep.dir, or rerun with +force=true to replace it")
    sweep = run_cli("-m", "hydra.sweep.dir=sw", "hydra.sweep.subdir=run", "num_steps=5", *TINY, NO_AGG,
                    f"+force={force}", cwd=tmp_path)
    assert sweep.returncode == 2
    assert f"[1/1] run: refused: {refusal} (" in sweep.stdout + sweep.stderr  # its progress line
    assert error_lines(sweep.stderr) == [
        "rnn-sweep: 1 job(s) did not finish: 1 refused (nothing trained: bad input, or a directory in the way); the "
        "finished ones are kept, and rerunning the sweep retries these:"]
    assert f"  refused: {refusal}" in sweep.stderr and "training error" not in sweep.stderr
    single = run_cli(f"hydra.run.dir={run}", "num_steps=5", *TINY, f"+force={force}", cwd=tmp_path)
    assert single.returncode == 2
    assert error_lines(single.stderr) == [f"rnn-sweep: error: {refusal}"]
    assert {k: v for k, v in tree(run).items() if k in before} == before  # (the run added Hydra's records)


def test_a_sweep_directory_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "results").write_text("my results\n")
    out = run_cli("-m", "hydra.sweep.dir=results", "seed=0,1", *TINY, cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert [ln for ln in out.stderr.splitlines() if ln.strip()] == [
        "rnn-sweep: error: refusing to use results as a sweep directory: it is a file, not a directory; choose an "
        "empty or new directory"]
    assert (tmp_path / "results").read_text() == "my results\n" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("sweep, empty", [(["seed=range(0,0)"], "seed=range(0,0)"),
                                          (["seed=0,1", "num_steps=range(5,2)"], "num_steps=range(5,2)")])
def test_a_sweep_of_nothing_says_so_and_writes_nothing(tmp_path, sweep, empty):
    out = run_cli("-m", "hydra.sweep.dir=sw", *sweep, *TINY, cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert [ln for ln in out.stderr.splitlines() if ln.strip()] == [
        f"rnn-sweep: error: {empty} gives no value, so this sweep has no jobs: nothing to train, nothing was "
        "written (give it at least one value)"]
    assert list(tmp_path.iterdir()) == []


# --- reruns keep working under Hydra's sweepers ----------------------------------------

@pytest.mark.slow
def test_an_optuna_sweep_trains_aggregates_and_its_rerun_is_not_refused(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    args = ("-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.sampler.seed=1", "hydra.sweep.dir=sw", "seed=choice(0,1)", "num_steps=choice(2,5)", *TINY)
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = tmp_path / "sw"
    assert "Best parameters" in first.stdout + first.stderr
    results = (sweep / "optimization_results.yaml").read_text()
    runs = sorted(p.parent.name for p in sweep.glob("*/summary.json"))
    assert runs and all(summary(sweep / r)["status"] == "completed" for r in runs)
    assert (sweep / "aggregate" / "runs.csv").exists()
    kept = {r: tree(sweep / r) for r in runs}
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "refusing" not in log and all(f"skipping {(sweep / r).resolve()}:" in log for r in runs)
    assert {r: tree(sweep / r) for r in runs} == kept
    assert (sweep / "optimization_results.yaml").read_text().startswith("name: optuna")
    assert results.startswith("name: optuna")


@pytest.mark.slow
def test_a_basic_sweep_rerun_beside_files_it_never_touches(tmp_path):
    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "optimization_results.yaml").write_text("best: 1\n")  # written by another tool, never ours
    (sweep / "notes").mkdir()
    (sweep / "notes" / "ideas.md").write_text("# ideas\n")
    mine = tree(sweep)
    args = ("-m", "hydra.sweep.dir=sw", SEED_DIRS, "seed=0,1", *TINY, NO_AGG)
    for _ in range(2):
        out = run_cli(*args, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
    assert {k: v for k, v in tree(sweep).items() if k in mine} == mine
    assert [summary(sweep / f"seed{s}")["status"] for s in (0, 1)] == ["completed", "completed"]
    # a job whose run directory holds the user's files is refused before anything trains
    (sweep / "seed2").mkdir()
    (sweep / "seed2" / "draft.txt").write_text("x")
    out = run_cli("-m", "hydra.sweep.dir=sw", SEED_DIRS, "seed=2,3", *TINY, NO_AGG, cwd=tmp_path)
    assert out.returncode == 2
    assert error_lines(out.stderr) == [
        f"rnn-sweep: error: job 'seed=2': refusing to use {(sweep / 'seed2').resolve()} as a run directory: it holds "
        "files rnn-sweep did not write (files at risk: draft.txt); choose an empty or new directory; nothing was "
        "trained"]
    assert not (sweep / "seed3").exists()
