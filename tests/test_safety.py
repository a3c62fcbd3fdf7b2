"""A user's files are never lost; bad input is refused in one line before any work.

Each test uses a real folder of user files (``thesis.tex``, ``notes/``) and the
real ``rnn-sweep`` console script, and checks byte for byte that every file
survived. The refusals happen before Hydra creates anything, so these are fast.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from rnn_sweep.run import records

USER_FILES = {"thesis.tex": "\\documentclass{article}\n", "notes/ideas.md": "# ideas\n", "notes/.hidden": "x"}


def make_user_folder(path: Path) -> dict[str, str]:
    """Write a user's files under ``path``; return their digests (relative path -> sha256)."""
    for rel, text in USER_FILES.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    return tree_digest(path)


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def one_error_line(out) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


@pytest.mark.parametrize("run_dir", [".", "", "./", "sub/.."])
def test_run_dir_that_is_the_current_directory_is_refused(tmp_path, run_dir):
    before = make_user_folder(tmp_path)
    out = run_cli(f"hydra.run.dir={run_dir}", "data=small", cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    line = one_error_line(out)
    assert line.startswith("rnn-sweep: error: refusing to use ")
    assert "current directory" in line
    if run_dir:  # the files at risk are named
        assert "notes" in line and "thesis.tex" in line
    assert tree_digest(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "thesis.tex"]


def test_home_and_root_are_refused(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    before = make_user_folder(home)
    for run_dir in ("'~'", str(home), "/"):  # Hydra's grammar needs ~ quoted
        out = run_cli(f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=60, env={"HOME": str(home)})
        assert out.returncode == 2, out.stderr
        assert one_error_line(out).startswith("rnn-sweep: error: refusing to use ")
    assert tree_digest(home) == before and sorted(p.name for p in home.iterdir()) == ["notes", "thesis.tex"]


def test_existing_foreign_folder_is_refused_naming_the_files(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    before = make_user_folder(mine)
    (mine / "losses.csv").write_text("my own losses, not rnn-sweep's\n")  # one of our names, in their folder
    before = tree_digest(mine)
    out = run_cli("hydra.run.dir=mine", "data=small", cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert one_error_line(out) == (
        f"rnn-sweep: error: refusing to use mine as a run directory: it holds files rnn-sweep did not write "
        "(files at risk: notes, thesis.tex); choose an empty or new directory")
    assert tree_digest(mine) == before


def test_sweep_dir_whose_run_directory_holds_foreign_files_is_refused(tmp_path):
    mine = tmp_path / "mine"
    (mine / "seed=0").mkdir(parents=True)
    before = make_user_folder(mine / "seed=0")  # the folder the job seed=0 would write
    out = run_cli("-m", "hydra.sweep.dir=mine", "seed=0,1", cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    line = one_error_line(out)
    assert line == (f"rnn-sweep: error: job 'seed=0': refusing to use {(mine / 'seed=0').resolve()} as a run "
                    "directory: it holds files rnn-sweep did not write (files at risk: notes, thesis.tex); choose an "
                    "empty or new directory; nothing was trained")
    assert tree_digest(mine / "seed=0") == before and sorted(p.name for p in mine.iterdir()) == [
        "multirun.yaml", "seed=0"]
    # the current directory as a sweep directory: refused too
    out = run_cli("-m", "hydra.sweep.dir=.", "seed=0,1", cwd=mine / "seed=0", timeout=60)
    assert out.returncode == 2 and "current directory" in one_error_line(out)
    assert tree_digest(mine / "seed=0") == before


def test_run_dir_inside_a_sweep_dir_itself_is_refused(tmp_path):
    sweep = tmp_path / "sw"
    (sweep / ".jobs").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    before = tree_digest(sweep)
    out = run_cli("hydra.run.dir=sw", cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert "it is a sweep directory" in one_error_line(out)
    assert tree_digest(sweep) == before


def test_foreign_entries_and_what_clearing_removes(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    for rel in ("losses.csv", "summary.json", ".summary.json.77.tmp", ".write-test.5", ".run.lock", "cli.log",
                ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml",
                "seed=3/losses.csv", "seed=3/summary.json"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text("x")
    assert records.foreign_entries(run) == []
    (run / "seed=3" / "cli.log").write_text("x")  # Hydra never writes into a replica's folder
    (run / "other.log").write_text("x")
    (run / "link").symlink_to(tmp_path)
    assert records.foreign_entries(run) == ["link", "other.log", "seed=3/cli.log"]
    (run / "seed=3" / "cli.log").unlink()
    (run / "other.log").unlink()
    (run / "link").unlink()
    assert records.clear_unfinished(run) == [".summary.json.77.tmp", ".write-test.5", "losses.csv", "seed=3",
                                             "summary.json"]
    assert sorted(p.name for p in run.iterdir()) == [".hydra", ".run.lock", "cli.log"]


def test_sweep_dir_rules(tmp_path):
    sweep = tmp_path / "sw"
    for rel in ("multirun.yaml", ".sweep.lock", ".failures", ".jobs/a/config.yaml", ".workers/h-1",
                "num_steps=2,seed=0/losses.csv", "num_steps=2,seed=0/summary.json", "empty_job/.keep_dir/",
                "2/0/losses.csv", "2/1/summary.json", "aggregate/runs.csv", "rep/seed=4/summary.json",
                "optimization_results.yaml", "notes/ideas.md", "2/plot.py"):
        target = sweep / rel
        if rel.endswith("/"):
            target.mkdir(parents=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("x")
    # rnn-sweep never removes or replaces anything here but its records: nothing is at risk
    records.check_sweep_dir(sweep)
    records.check_sweep_dir(sweep, aggregate_dir="figures")
    # what a job would write is checked per run directory
    records.check_job_dir(sweep / "num_steps=2,seed=0")
    with pytest.raises(records.UnsafeDirectory, match=r"files at risk: ideas\.md"):
        records.check_job_dir(sweep / "notes")
    (sweep / "link").symlink_to(sweep / "2" / "0")
    with pytest.raises(records.UnsafeDirectory, match=r"it is a link"):
        records.check_job_dir(sweep / "link")
    # entries with the names of rnn-sweep's records that it did not write are in the way
    (sweep / ".failures").unlink()
    (sweep / ".failures").mkdir()
    (sweep / ".workers" / "h-1").unlink()
    (sweep / ".workers").rmdir()
    (sweep / ".workers").write_text("x")
    with pytest.raises(records.UnsafeDirectory, match=r"files at risk: \.failures, \.workers\)"):
        records.check_sweep_dir(sweep)
    (tmp_path / "file").write_text("x")
    with pytest.raises(records.UnsafeDirectory, match="it is a file, not a directory"):
        records.check_sweep_dir(tmp_path / "file")


def test_override_dirname_excludes_match_records():
    import yaml

    conf = yaml.safe_load((REPO / "conf" / "config.yaml").read_text())
    assert conf["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"] == list(records.DIRNAME_EXCLUDED_KEYS)


# --- strict records ---------------------------------------------------------------------

def test_json_records_are_strict_nan_becomes_null(tmp_path):
    import numpy as np

    path = tmp_path / "summary.json"
    records.write_json_atomic(path, {"a": float("nan"), "b": [np.float32(np.inf), 1.5], "c": {"d": np.int64(3)}})

    def reject(const):
        raise ValueError(f"bare {const} in JSON")

    assert json.loads(path.read_text(), parse_constant=reject) == {"a": None, "b": [None, 1.5], "c": {"d": 3}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_learned_fraction_of_a_dependency_without_effect_is_null_with_reason():
    import numpy as np

    from rnn_sweep.task import probe

    rng = np.random.default_rng(0)
    x3, x5 = rng.integers(0, 2, 1000), rng.integers(0, 2, 1000)
    p_true = 0.5 + 0.25 * x3  # lag 5 has effect 0
    p_model = 0.5 + 0.125 * x3
    fractions = probe.learned_fractions(p_model, p_true, [x3, x5], [3, 5])
    assert fractions["3"] == pytest.approx(0.5) and fractions["5"] is None
    # The rule has no lag-5 term, but on 1000 samples p_true differs a little between X5=0 and
    # X5=1 through X3 (sampling noise): a ratio of noises is no fraction.
    assert 0 < abs(probe.effect(p_true, x5)) < 0.02
    assert probe.undefined_fractions(p_true, [x3, x5], [3, 5]) == {
        "5": "the dependency has no effect on the held-out data (E[p|X=1] - E[p|X=0] is within 4 standard errors "
             "of 0): nothing to learn"}
    # constant truth (no dependency at all) and a lag whose input never fires: both undefined
    assert probe.learned_fractions(p_model, np.full(1000, 0.5), [x3], [3]) == {"3": None}
    assert "only one value" in probe.undefined_fractions(p_true, [np.zeros(1000)], [9])["9"]


def test_probe_statistics_equal_the_textbook_formulas_on_model_sized_data():
    """The probe's one-pass group statistics against boolean indexing and np.var / np.sqrt,
    written out here, on float32 predictions over 200k int8 positions (a held-out set)."""
    import numpy as np

    from rnn_sweep.task import probe

    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, 200_000).astype(np.int8)
    p = (0.4 + 0.2 * x + 0.05 * rng.standard_normal(200_000)).astype(np.float32)
    on, off = p[x == 1].astype(np.float64), p[x == 0].astype(np.float64)
    assert probe.effect(p, x) == pytest.approx(on.mean() - off.mean(), rel=1e-12)
    diff, error = probe._effect_and_error(p, x)
    assert error == pytest.approx(np.sqrt(on.var() / len(on) + off.var() / len(off)), rel=1e-9)
    assert np.isnan(probe.effect(p, np.ones_like(x)))  # one empty group
    # the precomputed masks a run's checkpoints are scored with: the same effects
    y = rng.integers(0, 2, 200_000).astype(np.int8)
    masks = probe.lag_masks([x, y, np.ones_like(x)])
    fast = probe.effects(p, masks)
    assert fast[0] == pytest.approx(on.mean() - off.mean(), rel=1e-9)
    assert fast[1] == pytest.approx(p[y == 1].astype(np.float64).mean() - p[y == 0].astype(np.float64).mean(),
                                    rel=1e-6, abs=1e-12)
    assert np.isnan(fast[2])
    assert probe.cross_entropy(p, y == 1) == probe.cross_entropy(p, y)


@pytest.mark.parametrize("body,problem", [
    ([1, 2], "is a JSON list"),
    ({"status": "completed", "config": {}, "final_loss": 0.5, "heldout_loss": 0.5, "learned_fraction": {}},
     "levels is not a non-empty list"),
    ({"status": "completed", "config": {}, "final_loss": "0.5", "heldout_loss": 0.5, "learned_fraction": {},
      "levels": []}, "final_loss='0.5' is not a loss"),
    ({"status": "done", "config": {}, "levels": [], "learned_fraction": {}}, "status='done'"),
    ({"status": "completed", "config": [], "levels": [], "learned_fraction": {}}, "no config"),
])
def test_malformed_summaries_are_reported_with_the_reason(tmp_path, body, problem):
    (tmp_path / "summary.json").write_text(json.dumps(body))
    summary, reason = records.read_summary(tmp_path)
    assert summary is None and problem in reason and str(tmp_path / "summary.json") in reason


# --- bad input before any work ----------------------------------------------------------

@pytest.mark.parametrize("args,expect", [
    (["truncation=true"], "truncation=true is invalid: YAML reads 'true' as a boolean, and truncation takes one "
                          "of its options: tf, true_bptt (true BPTT is truncation=true_bptt)"),
    (["--cfg", "hydra", "--resolve"], "use --cfg all --resolve"),
    (["nokey=1"], "Could not override 'nokey'"),
    (["num_steps=["], "cannot parse the override 'num_steps=['"),
    (["model=nope"], "Could not find 'model/nope'; Available options in 'model': dynamic, keras, scratch, static"),
    (["seed=4294967296"], "seed=4294967296 is invalid: must be below 2**32"),
    (["seed=4294967294", "train.replicas=3"], "seed=4294967294 is invalid: must be below 2**32"),
    (["train.threads=100000"], "train.threads=100000 is invalid: must be an integer from 0"),
    (["data.dependencies=[{lag:3}]"], "data.dependencies[0].effect is missing"),
    (["data.dependencies=[{effect:0.5}]"], "data.dependencies[0].lag is missing"),
    (["data=small", "data.boundary=wrap", "data.dependencies=[{lag:50000,effect:0.5}]"],
     "data.dependencies[0].lag=50000 is invalid: with data.boundary=wrap a lag must be below"),
    (["state_size=1000000"], "state_size=1000000 is too large for this machine: the run needs about"),
    (["data.dependencies=[{lag:3,effect:0.5},{lag:100000000000,effect:-0.25}]"],
     "data.dependencies[1].lag=100000000000 is too large for this machine"),
    (["data.length=1000000000000"], "data.length=1000000000000 is too large for this machine"),
])
def test_bad_input_is_one_line_exit_2_no_directory(tmp_path, args, expect):
    out = run_cli(*args, cwd=tmp_path, timeout=60)
    assert out.returncode == 2, out.stderr
    line = one_error_line(out)
    assert line.startswith("rnn-sweep: error: ") and expect in line, line
    assert list(tmp_path.iterdir()) == []  # no outputs/runs/<ts>... left behind


def test_memory_limit_names_estimate_and_available(tmp_path):
    out = run_cli("state_size=20000", cwd=tmp_path, timeout=60, env={"RNN_SWEEP_MEMORY_LIMIT": "2G"})
    assert out.returncode == 2
    line = one_error_line(out)
    # P = (2 + 20000) * 20000 + 20000 + 2 * 20000 + 2 = 400,100,002 weights x 48 B = 17.9 GiB;
    # + base 0.73 GiB + activations 32*200*5*20000 B = 0.60 GiB + data 0.03 GiB = 19.2 GiB
    assert "state_size=20000 is too large for this machine: the run needs about 19.2 GiB (17.9 GiB from " \
           "state_size)" in line, line
    assert "and 2.0 GiB is available" in line and "RNN_SWEEP_MEMORY_LIMIT" in line
    assert list(tmp_path.iterdir()) == []


def test_memory_estimate_formula_by_hand():
    from conftest import small_cfg
    from rnn_sweep.task.config import BASE_BYTES, estimate_memory_bytes

    cfg = small_cfg("num_steps=5", "state_size=4")  # data=small: 100k train, 50k eval, lags 3 and 8, pad
    params = (2 + 4) * 4 + 4 + 2 * 4 + 2  # W (2+d) x d, b_s, U d x 2, b_p
    by_hand = 48 * params + 32 * 200 * 5 * 4 + 16 * 100_000 + 64 * 50_000 + 6 * 8
    assert estimate_memory_bytes(cfg) == BASE_BYTES + by_hand
    true = small_cfg("num_steps=5", "state_size=4", "truncation=true_bptt", "truncation.update_every=2")
    assert estimate_memory_bytes(true) - estimate_memory_bytes(cfg) == 32 * 200 * 5 * 4 * (2 - 1) + 8 * 100_000


def test_long_run_directory_names_are_shortened_deterministically():
    from rnn_sweep.launch.hydra_glue import short_name

    name = ",".join(f"data.dependencies.{i}=[{{lag:{100 + i},effect:0.0}}]" for i in range(12))
    assert len(name.encode()) > 255
    short = short_name(name)
    assert len(short.encode()) <= 255 and short == short_name(name)
    prefix, digest = short.rsplit("~", 1)
    assert name.startswith(prefix + ",") and len(digest) == 16
    assert hashlib.sha256(name.encode()).hexdigest().startswith(digest)
    assert short_name("num_steps=2,seed=0") == "num_steps=2,seed=0"
    other = name[:-3] + "1}]"
    assert short_name(other) != short and short_name(other).rsplit("~", 1)[0] == prefix
    assert len(short_name("é" * 200).encode()) <= 255  # multi-byte characters are not cut in half


def test_errors_never_leave_a_run_lock_or_directory(tmp_path):
    out = run_cli("num_steps=0", cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and not (tmp_path / "outputs").exists()
    assert os.listdir(tmp_path) == []
