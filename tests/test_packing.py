"""Sweeps in packs: up-front validation, grouping, per-run records, resume and failures.

The launcher (rnn_sweep/launch/launcher.py, default for sweeps) validates every job
before anything trains, groups runs that can share one compiled program, and
trains each pack as one unit of work. Everything a user sees stays per run.
Real sweeps use a smoke-sized problem (8,000 steps, 4,000 held out).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import REPO, run_cli, small_cfg
from rnn_sweep.run import packing
from rnn_sweep.launch import hydra_jobs as pack_runner

RUN_ARGS = ("data=small", "data.length=8000", "data.eval_length=4000", "train.log_every=5", "train.progress=false",
            "train.xla=false")
TINY = (*RUN_ARGS, "hydra.callbacks.aggregate.enabled=false")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def digests(sweep: Path, names) -> dict[str, str]:
    return {str(p.relative_to(sweep)): hashlib.sha256(p.read_bytes()).hexdigest()
            for name in names for p in sorted((sweep / name).rglob("*")) if p.is_file()}


# --- grouping (no TensorFlow) ---------------------------------------------------------

def test_pack_key_ignores_exactly_seed_num_steps_optimizer_constants_and_execution_keys():
    base = packing.pack_key(small_cfg())
    same = [("seed=7",), ("num_steps=6",), ("train.optimizer.lr=0.3",), ("train.optimizer.initial_accumulator=0.2",),
            ("train.optimizer.beta1=0.5", "train.optimizer.beta2=0.9", "train.optimizer.epsilon=1e-6"),
            ("train.threads=1", "train.progress=true")]
    for overrides in same:
        assert packing.pack_key(small_cfg(*overrides)) == base, overrides
    other = [("state_size=5",), ("model=static",), ("truncation=true_bptt",),
             ("train.optimizer.name=sgd",), ("train.epochs=2",), ("train.batch_size=100",), ("data.length=90000",),
             ("train.xla=false",), ("data.boundary=wrap",)]
    keys = {packing.pack_key(small_cfg(*o)) for o in other}
    assert base not in keys and len(keys) == len(other)
    # model.fit runs and train.replicas runs never share a pack
    assert packing.pack_key(small_cfg("model=keras")) is None
    assert packing.pack_key(small_cfg("train.replicas=2")) is None


def test_make_packs_groups_in_sweep_order_and_caps_size_and_memory():
    # jobs: n=2 s0, n=5 s0, n=2 s1, keras, n=2 s2, n=5 s1, n=2 s3
    cfgs = [small_cfg("num_steps=2", "seed=0"), small_cfg("num_steps=5", "seed=0"), small_cfg("num_steps=2", "seed=1"),
            small_cfg("model=keras"), small_cfg("num_steps=2", "seed=2"), small_cfg("num_steps=5", "seed=1"),
            small_cfg("num_steps=2", "seed=3")]
    # every n in one pack, each n's runs together (n = 2 first: it appears first)
    assert packing.make_packs(cfgs) == [[0, 2, 4, 6, 1, 5], [3]]
    assert packing.make_packs(cfgs, max_pack_size=3) == [[0, 2, 4], [6, 1, 5], [3]]
    assert packing.make_packs(cfgs, max_pack_size=1) == [[i] for i in (0, 2, 4, 6, 1, 5, 3)]
    # memory: 100 bytes per n=2 run, 250 per n=5 run, budget 300 -> three n=2 runs fit, one n=5 run
    est = {2: 100, 5: 250, 5_000: 0}

    def estimate(c):
        return est[c.num_steps]

    assert packing.make_packs(cfgs, 32, memory_budget=300, estimate=estimate) == [[0, 2, 4], [6], [1], [5], [3]]
    # a run over budget on its own still gets a pack (refusing it is the config validation's job)
    assert packing.make_packs(cfgs[:3], 32, memory_budget=50, estimate=estimate) == [[0], [2], [1]]
    with pytest.raises(ValueError, match="max_pack_size=0"):
        packing.make_packs(cfgs, max_pack_size=0)
    assert packing.describe([[0, 2], [1, 5]]) == "2 packs (2 x 2)"
    assert packing.describe([[0, 2, 4], [1]]) == "2 packs (sizes 3, 1)"


def test_program_key_is_shared_by_every_tf_style_n_up_to_the_buffer():
    key = packing.program_key(small_cfg("num_steps=5"), 2)
    assert packing.program_key(small_cfg("num_steps=32", "seed=3"), 2) == key  # same buffer of 32 cells
    assert packing.program_key(small_cfg("num_steps=33"), 2) != key  # a buffer of 64
    assert packing.program_key(small_cfg("num_steps=5"), 3) != key  # K is a shape
    assert packing.program_key(small_cfg("num_steps=5", "state_size=5"), 2) != key
    true5, true8, true9 = (packing.program_key(small_cfg("truncation=true_bptt", f"num_steps={n}"), 2)
                           for n in (5, 8, 9))
    assert true5 == true8 != true9  # true BPTT on the scratch cell: blocks of 8 hold n = 5..8, 9 needs 16
    keras5, keras6 = (packing.program_key(small_cfg("truncation=true_bptt", "model=static", f"num_steps={n}"), 2)
                      for n in (5, 6))
    assert keras5 != keras6  # true BPTT on a Keras cell is built per n


def test_assign_workers_keeps_programs_together_and_balances_by_hand_derived_cases():
    adagrad, sgd = small_cfg(), small_cfg("train.optimizer.name=sgd")  # two programs, equal estimated cost
    # packs in sweep order: A B A B (one run each) on 2 workers: each worker compiles one program
    assert packing.assign_workers([[adagrad], [sgd], [adagrad], [sgd]], 2) == [[0, 2], [1, 3]]
    # one worker: everything, programs contiguous, each in sweep order
    assert packing.assign_workers([[adagrad], [sgd], [adagrad], [sgd]], 1) == [[0, 2, 1, 3]]
    # one program, four equal packs, two workers: split in halves (each worker compiles it once)
    assert packing.assign_workers([[adagrad]] * 4, 2) == [[0, 1], [2, 3]]
    # the program with the longer packs comes first
    big = small_cfg("state_size=64")
    assert packing.assign_workers([[adagrad], [big]], 1) == [[1, 0]]
    # the article-grid slice on 2 workers (d=4 packs cheap, d=32 packs ~6x dearer): cutting the
    # packs into halves of equal time would make one worker compile both programs; whole
    # programs finish sooner (measured: 6.5-6.7 s against 6.8-7.2 s for the 16 runs)
    from rnn_sweep.task.config import RunConfig

    grid = [RunConfig(num_steps=n, state_size=d, seed=s) for n in (1, 5, 10, 20) for d in (4, 32) for s in (0, 1)]
    slice_packs = [[grid[i] for i in p] for p in packing.make_packs(grid)]
    assert [p[0].state_size for p in slice_packs] == [4, 32]  # one pack per state size, every n in it
    assert packing.assign_workers(slice_packs, 2) == [[1], [0]]
    # more workers than packs: a pack each; never an empty chunk
    assert packing.assign_workers([[adagrad], [sgd]], 8) == [[0], [1]]
    with pytest.raises(ValueError, match="workers=0 is invalid"):
        packing.assign_workers([[adagrad]], 0)


def test_assign_workers_places_every_pack_once_on_at_most_workers_chunks():
    import itertools

    cfgs = [small_cfg(f"num_steps={n}", f"state_size={d}") for n, d in itertools.product((1, 5, 40), (2, 8, 32))]
    packs = [[c] * k for c, k in zip(cfgs, itertools.cycle((1, 2, 3)))]
    for workers in (1, 2, 3, 5, 16):
        chunks = packing.assign_workers(packs, workers)
        assert sorted(i for c in chunks for i in c) == list(range(len(packs)))
        assert 1 <= len(chunks) <= workers and all(chunks)


def test_pack_watcher_reports_each_pack_once_from_this_launchs_records(tmp_path):
    import time

    from omegaconf import OmegaConf

    from rnn_sweep.launch.workers import PackWatcher
    from rnn_sweep.launch.hydra_jobs import PACK_RECORD, PackedJob

    def job(name, subdir=".hydra"):
        config = OmegaConf.create({"hydra": {"output_subdir": subdir, "sweep": {"dir": str(tmp_path), "subdir": name}}})
        return PackedJob(0, [], config, small_cfg())

    packs = [[job("a"), job("b")], [job("c")], [job("d", subdir=None)]]
    reports = []
    with PackWatcher(packs, "L1", lambda pack, lines: reports.append((pack[0].config.hydra.sweep.subdir,
                                                                        lines))) as watcher:
        watcher.POLL_S = 0.05

        def record(name, launch, line):
            (tmp_path / name / ".hydra").mkdir(parents=True, exist_ok=True)
            (tmp_path / name / ".hydra" / PACK_RECORD).write_text(json.dumps({"launch": launch, "line": line}))

        record("a", "L1", "a: completed")
        record("b", "L0", "b: completed")  # an earlier launch's record: pack 1 is not done
        record("c", "L1", "c: failed: boom")
        time.sleep(1.2)
        assert reports == [("c", ["c: failed: boom"])]
        record("b", "L1", "b: diverged")
        time.sleep(1.2)
        assert reports == [("c", ["c: failed: boom"]), ("a", ["a: completed", "b: diverged"])]
        # what the workers returned: only the pack nobody reported yet is reported now
        watcher.finished([0, 1, 2], [[_ret("a"), _ret("b")], [_ret("c")], [_ret("d")]])
    assert reports[2:] == [("d", ["d: skipped (already completed)"])] and len(reports) == 3


def _ret(name):
    from hydra.core.utils import JobReturn, JobStatus

    from rnn_sweep.run.core import RunOutcome
    from rnn_sweep.launch.hydra_jobs import OUTCOME_ATTR

    ret = JobReturn(status=JobStatus.COMPLETED)
    setattr(ret, OUTCOME_ATTR, RunOutcome(f"/x/{name}", "skipped", {"status": "completed"}))
    return ret


def test_only_rnn_sweeps_own_task_is_recognised():
    from rnn_sweep.launch import cli
    from rnn_sweep.launch.launcher import is_rnn_sweep_task

    assert is_rnn_sweep_task(cli.run.__wrapped__)

    def run(cfg):  # same name, another file
        return cfg

    assert not is_rnn_sweep_task(run) and not is_rnn_sweep_task(None)


# --- one invalid combination: nothing runs ---------------------------------------------

@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=cores"], ["hydra/launcher=local_submitit"]])
def test_invalid_combination_refuses_whole_sweep_before_anything_runs(tmp_path, launcher):
    out = run_cli("-m", "num_steps=2,0,3", "state_size=4,0", "hydra.sweep.dir=sw", *TINY, *launcher,
                  cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    # every invalid combination of 3 x 2, in sweep order, named by its swept values, with its reason
    # (and nothing else: TensorFlow never loaded, no job ran)
    expected = [
        "rnn-sweep: error: 4 of 6 sweep combinations are invalid; nothing was trained (fix or remove them and rerun):",
        f"  num_steps=2 state_size=0: state_size=0 is invalid: must be a positive integer (>= 1)",
        f"  num_steps=0 state_size=4: num_steps=0 is invalid: must be a positive integer (>= 1)",
        f"  num_steps=0 state_size=0: num_steps=0 is invalid: must be a positive integer (>= 1)",
        f"  num_steps=3 state_size=0: state_size=0 is invalid: must be a positive integer (>= 1)",
    ]
    assert [ln for ln in out.stderr.splitlines() if ln.strip()] == expected, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    sweep = tmp_path / "sw"
    # Hydra's own multirun.yaml only: no run directory, no job records, no submitit jobs, no lock left
    assert sorted(p.name for p in sweep.iterdir()) == ["multirun.yaml"]


def test_bad_max_pack_size_is_one_line_before_anything_runs(tmp_path):
    out = run_cli("-m", "seed=0,1", "hydra.sweep.dir=sw", "hydra.launcher.max_pack_size=0", *TINY, cwd=tmp_path,
                  timeout=120)
    assert out.returncode == 2
    assert [ln for ln in out.stderr.splitlines() if ln.strip()] == [
        "rnn-sweep: error: hydra.launcher.max_pack_size=0 is invalid: must be a positive integer (>= 1)"]
    assert sorted(p.name for p in (tmp_path / "sw").iterdir()) == ["multirun.yaml"]


@pytest.mark.parametrize("launcher, extra, expected", [
    ("rnn_sweep", [], 0),  # in-process: TensorFlow's default
    ("cores", ["hydra.launcher.n_jobs=2"], max(1, (os.cpu_count() or 1) // 2)),
    ("cores", ["hydra.launcher.n_jobs=-1"], 1),  # one worker per core
    ("local_submitit", ["hydra.launcher.cpus_per_task=3"], 3),
    ("slurm", ["hydra.launcher.cpus_per_task=4"], 4),
    ("joblib", ["hydra.launcher.n_jobs=1"], os.cpu_count() or 1),  # the plain plugin, unwrapped
])
def test_job_threads_reads_the_wrapped_launchers_share(launcher, extra, expected):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from rnn_sweep.launch.cli import job_threads

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}", *extra], return_hydra_config=True)
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        assert job_threads(0) == expected
        assert job_threads(5) == 5  # the user's train.threads wins
    finally:
        HydraConfig.instance().cfg = saved


# --- real sweeps in packs ----------------------------------------------------------------

@pytest.mark.slow
def test_seed_sweep_is_one_pack_with_per_run_records_equal_to_runs_alone(tmp_path):
    args = ("-m", "seed=0,1,2", "num_steps=4", "hydra.sweep.subdir=seed${seed}", *TINY)
    out = run_cli(*args, "hydra.sweep.dir=packed", "hydra.verbose=rnn_sweep.launch.launcher", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "Packing 3 jobs into 1 pack (1 x 3)" in log
    # each job composed once: the launcher reuses the configs Hydra's sweeper composed to validate them
    assert "composed 3 jobs (3 reused from the sweeper's validation)" in log
    names = [f"seed{s}" for s in (0, 1, 2)]
    packed = tmp_path / "packed"
    for name in names:
        record = read_json(packed / ".jobs" / name / "pack.json")
        assert record == {"pack": "1/1", "size": 3, "members": names, "trained": names}
        # Hydra's per-job records, as for any job
        assert {"config.yaml", "hydra.yaml", "overrides.yaml", "cli.log"} <= {
            p.name for p in (packed / ".jobs" / name).iterdir()}
        assert f"-> {packed.resolve() / name}" in (packed / ".jobs" / name / "cli.log").read_text()
        assert sorted(p.name for p in (packed / name).iterdir()) == ["checkpoints.csv", "losses.csv", "summary.json"]
    # the same runs, each alone through Hydra's basic launcher (today's path): same numbers
    ref = run_cli(*args, "hydra.sweep.dir=alone", "hydra/launcher=basic", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert not (tmp_path / "alone" / ".jobs" / names[0] / "pack.json").exists()
    for name in names:
        # Hydra's records written by the pack runner equal those Hydra's own run_job wrote
        mine, hydras = packed / ".jobs" / name, tmp_path / "alone" / ".jobs" / name
        for record in ("config.yaml", "overrides.yaml"):
            assert (mine / record).read_text() == (hydras / record).read_text()
        mine_h, hydras_h = OmegaConf.load(mine / "hydra.yaml").hydra, OmegaConf.load(hydras / "hydra.yaml").hydra
        assert mine_h.runtime.output_dir == str((packed / name).resolve())
        assert hydras_h.runtime.output_dir == str((tmp_path / "alone" / name).resolve())
        for key in ("job", "overrides.task", "runtime.choices.experiment", "runtime.choices.model", "job_logging"):
            assert OmegaConf.select(mine_h, key) == OmegaConf.select(hydras_h, key), key
        a, b = read_json(packed / name / "summary.json"), read_json(tmp_path / "alone" / name / "summary.json")
        assert a["status"] == b["status"] == "completed"
        assert a["seed"] == b["seed"] and a["config"] == b["config"]
        for key in ("final_loss", "heldout_loss"):
            assert a[key] == pytest.approx(b[key], abs=1e-5)
        rows_a = (packed / name / "losses.csv").read_text().splitlines()
        rows_b = (tmp_path / "alone" / name / "losses.csv").read_text().splitlines()
        # 8,000 / 200 = 40 positions per row < a grid block of 10,000 // 200 = 50: one partial block
        assert len(rows_a) == len(rows_b) == 1 + 1
        for ra, rb in zip(rows_a[1:], rows_b[1:]):
            assert float(ra.split(",")[3]) == pytest.approx(float(rb.split(",")[3]), abs=1e-5)


@pytest.mark.slow
def test_resume_retrains_only_the_unfinished_member_of_a_pack(tmp_path):
    args = ("-m", "seed=0,1,2", "num_steps=4", "hydra.sweep.dir=sw", "hydra.sweep.subdir=seed${seed}", *TINY)
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    sweep = tmp_path / "sw"
    names = [f"seed{s}" for s in (0, 1, 2)]
    first = read_json(sweep / names[1] / "summary.json")
    kept = digests(sweep, [names[0], names[2]])
    # seed 1 "killed" mid-run: no summary, truncated records (a row cut off mid-line)
    (sweep / names[1] / "summary.json").unlink()
    (sweep / names[1] / "losses.csv").write_text("epoch,data_start,data_end,loss,updates,elapsed_s\n0,0,80")
    (sweep / names[1] / "checkpoints.csv").write_text("epoch,data_steps,updates,heldout_loss,learned_3,learned_8\n0,0")
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert f"retraining {(sweep / names[1]).resolve()} from scratch (removed checkpoints.csv, losses.csv)" in log
    assert sum(f"skipping {(sweep / n).resolve()}:" in log for n in names) == 2
    assert digests(sweep, [names[0], names[2]]) == kept
    for name in names:
        assert read_json(sweep / ".jobs" / name / "pack.json")["trained"] == [names[1]]
    again = read_json(sweep / names[1] / "summary.json")
    assert again["status"] == "completed" and again["final_loss"] == pytest.approx(first["final_loss"], abs=1e-5)


@pytest.mark.slow
def test_a_diverging_member_is_isolated_and_the_sweep_still_succeeds(tmp_path):
    longer = [a.replace("length=8000", "length=40000") for a in TINY]
    out = run_cli("-m", "train.optimizer.lr=0.1,1000", "hydra.sweep.dir=sw", "hydra.sweep.subdir=lr${train.optimizer.lr}",
                  *longer, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Packing 2 jobs into 1 pack (1 x 2)" in out.stdout + out.stderr
    sweep = tmp_path / "sw"
    good, bad = read_json(sweep / "lr0.1" / "summary.json"), read_json(sweep / "lr1000.0" / "summary.json")
    assert good["status"] == "completed" and good["diverged_at_step"] is None
    # 40,000 steps / 200 rows = 200 positions per row; the first grid block, 10,000 // 200 = 50
    # positions, already explodes: updates done at its end ceil(50 / n=5) = 10, data 50 * 200
    assert bad["status"] == "diverged" and bad["diverged_at_step"] == 10 and bad["heldout_loss"] is None
    assert bad["diverged_at_data_steps"] == 10_000
    # the diverged member did not disturb the other: same as that run trained alone
    alone = run_cli("train.optimizer.lr=0.1", "hydra.run.dir=alone", *longer[:len(RUN_ARGS)], cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert good["final_loss"] == pytest.approx(read_json(tmp_path / "alone" / "summary.json")["final_loss"], abs=1e-5)


@pytest.mark.slow
def test_submitit_local_runs_one_job_per_pack(tmp_path):
    out = run_cli("experiment=smoke", "hydra.callbacks.aggregate.enabled=false", "hydra/launcher=local_submitit",
                  cwd=tmp_path, timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    sweep = tmp_path / "outputs" / "sweeps" / "smoke"
    runs = {p.parent.name: read_json(p) for p in sweep.glob("*/summary.json")}
    assert set(runs) == {f"num_steps={n},seed={s}" for n in (2, 5) for s in (0, 1)}
    assert all(r["status"] == "completed" for r in runs.values())
    # smoke = num_steps 2,5 x seed 0,1: one pack of both n and both seeds, so one submitit job, not four
    assert len(list((sweep / ".submitit").rglob("*_result.pkl"))) == 1
    assert {read_json(sweep / ".jobs" / name / "pack.json")["pack"] for name in runs} == {"1/1"}


def test_memory_cap_counts_the_runtime_once_per_pack_not_once_per_member():
    """A pack is one process: BASE_BYTES once, then each member's own terms (by hand)."""
    from rnn_sweep.task.config import BASE_BYTES, memory_terms
    from rnn_sweep.launch.launcher import PackingLauncher

    launcher = PackingLauncher(pack_memory_gb=1.0)
    budget, member = launcher._memory_cap()
    assert budget == 2**30 - BASE_BYTES
    cfg = small_cfg("seed=3")
    assert member(cfg) == sum(memory_terms(cfg).values()) < BASE_BYTES
    # Under a 1 GiB Slurm job (80% usable), a seed sweep of small runs is one pack; with the
    # runtime counted per member (the old sum of whole-run estimates) each run was alone.
    slurm = PackingLauncher(wrapped="hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
                            mem_gb=1, partition=None, timeout_min=5, cpus_per_task=1, gpus_per_node=None,
                            tasks_per_node=1, nodes=1, name="x", submitit_folder="x")
    cfgs = [small_cfg(f"seed={s}") for s in range(4)]
    assert packing.make_packs(cfgs, 32, *slurm._memory_cap()) == [[0, 1, 2, 3]]


@pytest.mark.slow
def test_the_launchers_plan_says_why_a_pack_was_split(tmp_path):
    # smoke: num_steps 2, 5 x seeds 0, 1 = one pack of 4 (every n of one state size); a cap of 3 splits
    # it, keeping each n's runs together (2 + 2), and the plan says why
    out = run_cli("experiment=smoke", "hydra.callbacks.aggregate.enabled=false", "hydra.launcher.max_pack_size=3",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "Packing 4 jobs into 2 packs (2 x 2)" in log
    assert "pack 1 (split by max_pack_size 3): num_steps=2 seed=0 experiment=smoke | num_steps=2 seed=1" in log
    assert "pack 2 (split by max_pack_size 3): num_steps=5 seed=0" in log
    whole = run_cli("experiment=smoke", "hydra.callbacks.aggregate.enabled=false", cwd=tmp_path)
    assert "Packing 4 jobs into 1 pack (1 x 4)" in whole.stdout + whole.stderr and "split" not in whole.stderr
