"""The aggregator as a hostile user meets it: its output folder, odd sweep trees, a full disk, Ctrl-C.

What must hold (rnn_sweep/analysis/outdir.py, rnn_sweep/analysis/rundirs.py): in ``--out`` only
files it provably wrote are ever replaced or removed; one aggregation per
``--out`` at a time, its files moved into place as a set; run folders that are
links, deep chains of folders and impossible ``losses.csv`` rows are named in
the warnings, never a traceback. Expected values are derived here by hand (file
bytes, hashes, onsets of a hand-made curve), never captured from the code.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import deep_chain, remove_chain
from test_aggregate import CP_HEADER, CURVE, HEADER, ONSET3, ONSET8, checkpoint_rows, config, grid_rows, write_run

VENV_BIN = Path(sys.executable).parent
AGG = str(VENV_BIN / "rnn-sweep-aggregate")
MANIFEST = ".rnn-sweep-aggregate.json"
LOCK = ".rnn-sweep-aggregate.lock"


def cli(*args, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([AGG, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def snapshot(folder: Path) -> dict:
    """Every entry below ``folder``: file bytes, link targets, folders (what must stay byte-identical)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            rel = p.relative_to(folder).as_posix()
            out[rel] = ("link", os.readlink(p)) if p.is_symlink() else ("dir",) if p.is_dir() else p.read_bytes()
    return out


def one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("rnn-sweep-aggregate: error: "), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def sweep(root: Path, styles=("tf",), seeds=2) -> Path:
    for style in styles:
        for seed in range(seeds):
            write_run(root / f"{style}_s{seed}", config(5, 4, seed, style=style), hydra=False)
    return root


def recorded(out: Path) -> dict:
    """The manifest's files, checked against the folder by an independent hash."""
    body = json.loads((out / MANIFEST).read_text())
    for name, entry in body["files"].items():
        data = (out / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name
    return body


# --- the output folder: a name is not ownership ------------------------------------------------

@pytest.mark.slow  # four aggregations with figures
def test_users_figures_under_figure_names_are_never_removed_or_replaced(tmp_path):
    paper = tmp_path / "paper"
    paper.mkdir()
    mine = {"truncation.png": b"my truncation figure", "curves.svg": b"<svg>mine</svg>", "onset.eps": b"%!PS mine"}
    for name, data in mine.items():
        (paper / name).write_bytes(data)
    # One style: no truncation figure; svg/eps not asked for. Nothing of the user's is in the way or removed.
    proc = cli(sweep(tmp_path / "one"), "--out", paper)
    assert proc.returncode == 0, proc.stderr
    assert {n: (paper / n).read_bytes() for n in mine} == mine
    assert set(recorded(paper)["files"]) >= {"runs.csv", "grid.png", "curves.png", "curves.pdf"}
    assert not set(recorded(paper)["files"]) & set(mine)
    # Two styles: this sweep draws truncation.png, which is the user's: the whole aggregation is refused.
    before = snapshot(paper)
    proc = cli(sweep(tmp_path / "two", styles=("tf", "true")), "--out", paper)
    one_line_error(proc, 2, "truncation.png (not in .rnn-sweep-aggregate.json)")
    assert snapshot(paper) == before


@pytest.mark.slow
def test_a_file_of_its_own_changed_by_the_user_is_the_users(tmp_path):
    s, out = sweep(tmp_path / "s"), tmp_path / "out"
    assert cli(s, "--out", out, "--format", "png,svg").returncode == 0
    (out / "grid.png").write_bytes(b"edited by the user")  # it would be replaced
    (out / "curves.svg").write_bytes(b"<svg>edited</svg>")  # it would be removed as stale (svg not asked for)
    before = snapshot(out)
    proc = cli(s, "--out", out, "--format", "png")
    one_line_error(proc, 2, "grid.png (changed since the aggregator wrote it)")
    assert snapshot(out) == before
    (out / "grid.png").unlink()
    proc = cli(s, "--out", out, "--format", "png")
    one_line_error(proc, 2, "would remove as stale", "curves.svg (changed since the aggregator wrote it)")
    assert (out / "curves.svg").read_bytes() == b"<svg>edited</svg>" and not (out / "grid.png").exists()
    (out / "curves.svg").unlink()
    assert cli(s, "--out", out, "--format", "png").returncode == 0
    assert "grid.svg" not in recorded(out)["files"] and not (out / "grid.svg").exists()  # its own, unchanged: stale


def test_a_folder_aggregated_by_a_version_without_the_manifest_is_refused_naming_its_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("runs.csv", "grid.csv", "grid.png"):
        (out / name).write_text("written by an older rnn-sweep-aggregate, or by the user")
    before = snapshot(out)
    proc = cli(sweep(tmp_path / "s"), "--out", out)
    one_line_error(proc, 2, "runs.csv (not in", "grid.csv (not in", "older version")
    assert snapshot(out) == before


@pytest.mark.parametrize("make", [
    lambda out: (out / MANIFEST).write_text("my own notes, under the manifest's name\n"),
    lambda out: (out / MANIFEST).write_text('{"files": {"runs.csv": '),
    lambda out: (out / MANIFEST).write_text(json.dumps({"written_by": "rnn-sweep-aggregate", "version": 1,
                                                        "complete": True, "pending": {},
                                                        "files": {"../thesis.tex": {"size": 1, "sha256": "0" * 64}}})),
    lambda out: (out / MANIFEST).write_text("[1, 2]"),
    lambda out: (out / MANIFEST).mkdir(),
    lambda out: (out / MANIFEST).symlink_to(out.parent / "elsewhere.json"),
], ids=["text", "truncated_json", "foreign_names", "json_list", "directory", "symlink"])
def test_a_manifest_the_aggregator_did_not_write_is_refused_never_replaced(tmp_path, make):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere.json").write_text("the user's file a link points to")
    (out / "thesis.tex").write_text("\\documentclass{article}")
    make(out)
    before, outside = snapshot(out), (tmp_path / "elsewhere.json").read_text()
    proc = cli(sweep(tmp_path / "s"), "--out", out)
    one_line_error(proc, 2, MANIFEST)
    assert snapshot(out) == before and (tmp_path / "elsewhere.json").read_text() == outside


@pytest.mark.slow  # one console-script process per refused --out
def test_where_out_may_not_be(tmp_path):
    s = sweep(tmp_path / "s")
    before = snapshot(s)
    one_line_error(cli(s, "--out", s), 2, "it is the SWEEP_DIR")
    one_line_error(cli(s, "--out", s / "tf_s0" / "figs"), 2, "it is in the run directory")
    one_line_error(cli(s / "tf_s0"), 2, "it is in the run directory")  # a run dir's default out: inside it
    # A run of an older version (blocks of updates) is a run directory too.
    old = tmp_path / "old_run"
    old.mkdir()
    (old / "losses.csv").write_text("epoch,step,loss,block_steps,elapsed_s\n0,10,0.69,10,0.5\n")
    one_line_error(cli(s, "--out", old / "figs"), 2, "it is in the run directory")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "multirun.yaml").write_text("hydra: {}\n")
    one_line_error(cli(s, "--out", tmp_path / "other"), 2, "it is a sweep directory")
    assert snapshot(s) == before and sorted(os.listdir(tmp_path / "other")) == ["multirun.yaml"]
    # A file merely named losses.csv above --out does not make a run directory of the user's home.
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "losses.csv").write_text("my own losses, in euros\n")
    assert cli(s, "--out", tmp_path / "home" / "paper", "--no-figures").returncode == 0
    # --out a link to a folder: the folder is used (its manifest, its lock), the link left as it is.
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert cli(s, "--out", tmp_path / "link").returncode == 0
    assert (tmp_path / "link").is_symlink() and "runs.csv" in recorded(tmp_path / "real")["files"]


# --- odd sweep trees ---------------------------------------------------------------------------

def test_linked_run_folders_are_read_once_and_every_other_link_is_named(tmp_path):
    s = tmp_path / "s"
    write_run(s / "real", config(5, 4, 0), hydra=False)
    write_run(tmp_path / "elsewhere" / "run", config(5, 4, 1), hydra=False)
    (tmp_path / "elsewhere" / "notes").mkdir()
    (s / "linked").symlink_to(tmp_path / "elsewhere" / "run")  # a run kept elsewhere: read
    (s / "twin").symlink_to(s / "real")  # the same run twice: read once
    (s / "folder").symlink_to(tmp_path / "elsewhere" / "notes")  # not a run
    (s / "broken").symlink_to(tmp_path / "nowhere")
    (s / "loop").symlink_to(s)  # never followed into
    proc = cli(s, "--out", tmp_path / "out", "--no-figures")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert sorted(runs["run_id"]) == ["linked", "real"] and sorted(runs["seed"]) == [0, 1]
    warnings = (tmp_path / "out" / "warnings.txt").read_text().splitlines()
    assert len(warnings) == 4, warnings
    why = {w.split(":")[0]: w for w in warnings}
    assert "the same run directory as real" in why["twin"] and "broken symbolic link" in why["broken"]
    assert "not a run directory" in why["folder"] and "not a run directory" in why["loop"]
    assert "4 warning(s), 4 of them about runs or folders skipped" in proc.stderr


@pytest.fixture
def chains():
    made = []
    yield made
    for top in made:
        remove_chain(top)


def test_a_very_deep_chain_of_folders_is_named_not_a_traceback(tmp_path, chains):
    s = sweep(tmp_path / "s", seeds=1)
    (s / ".jobs").mkdir()
    chains += [s, s / ".jobs"]
    deep_chain(s, 3000)  # past Python's recursion limit and past PATH_MAX (4096 bytes)
    deep_chain(s / ".jobs", 3000)
    proc = cli(s, "--out", tmp_path / "out", "--no-figures")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert list(pd.read_csv(tmp_path / "out" / "runs.csv")["run_id"]) == ["tf_s0"]
    warnings = (tmp_path / "out" / "warnings.txt").read_text()
    assert warnings.count("not searched (more than 32 levels below the sweep") == 2, warnings


def test_impossible_loss_rows_are_rejected_one_by_one_with_a_warning(tmp_path):
    run = write_run(tmp_path / "s" / "hostile", config(5, 4, 0), hydra=False)
    lines = (HEADER + grid_rows(CURVE)).splitlines(keepends=True)
    bad = ["0,-10000,10000,0.69,10,0.1\n",  # negative data
           "0,10000,10000,0.69,10,0.1\n",  # an empty interval
           "0,10000,20000,-0.5,20,0.1\n",  # negative loss
           "0,10000,20000,inf,20,0.1\n",  # non-finite before the last row
           "0,10000,20000,nan,20,0.1\n",
           "0,10000,20000,1e308,20,0.1\n",  # above train.diverge_loss (10) before the last row
           "-1,10000,20000,0.69,20,0.1\n",  # negative epoch
           "0,5000,20000,0.69,20,0.1\n",  # starts before the block before it ended
           f"0,10000,{10**30},0.69,20,0.1\n",  # beyond any run's data
           "0,10000,20000,0.69,-1,0.1\n",  # negative updates
           "0,10000,20000,0.69,5,0.1\n",  # updates go back (10 before)
           "0,10000,20000,0.69,20,-3\n"]  # negative elapsed time
    # Between the 1st and 2nd good rows (data 0-10k and 10k-20k) so every bad row is "inside" the curve.
    (run / "losses.csv").write_text("".join([lines[0], lines[1], *bad, *lines[2:]])
                                    + "0,100000,110000,1e308,110,9\n")
    proc = cli(tmp_path / "s", "--out", tmp_path / "out", "--no-figures")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    curves = pd.read_csv(tmp_path / "out" / "curves.csv")
    # The rejected rows are gone: the clean curve (and not the completed run's last 1e308 block).
    assert list(curves["data_start"]) == [10_000 * i for i in range(10)] and list(curves["loss"]) == CURVE
    warning = (tmp_path / "out" / "warnings.txt").read_text()
    assert "rejected 13 row(s) with impossible values" in warning and "line 3: data -10000..10000" in warning


def test_impossible_checkpoint_rows_are_rejected_and_the_onset_stands(tmp_path):
    run = write_run(tmp_path / "s" / "hostile", config(5, 4, 0), hydra=False)
    lines = (CP_HEADER + checkpoint_rows()).splitlines(keepends=True)
    bad = ["0,-5,0,0.6,0.1,0.1\n",  # negative data
           "0,0,0,0.6,0.9,0.9\n",  # data does not grow (a second untrained row)
           "0,10000,2,-0.6,0.1,0.1\n",  # negative held-out loss
           "0,10000,2,0.6,inf,0.1\n",  # a fraction that is not a number
           "0,10000,2,inf,0.1,0.1\n",  # a non-finite loss before the last row
           "-1,10000,2,0.6,0.1,0.1\n",  # negative epoch
           "0,10000,2,0.6,0.1\n"]  # a column short: malformed
    (run / "checkpoints.csv").write_text("".join([lines[0], lines[1], *bad, *lines[2:]]))
    (tmp_path / "s" / "junk").mkdir()
    write_run(tmp_path / "s" / "junk", config(5, 4, 1), hydra=False)
    (tmp_path / "s" / "junk" / "checkpoints.csv").write_text("epoch,data_steps,updates,heldout_loss,learned_x\n0,0,0,1,1\n")
    proc = cli(tmp_path / "s", "--out", tmp_path / "out", "--no-figures")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    runs = pd.read_csv(tmp_path / "out" / "runs.csv").set_index("run_id")
    assert runs.loc["hostile", "onset_lag3"] == ONSET3 and runs.loc["hostile", "onset_lag8"] == ONSET8
    assert runs.loc["junk", "onset_status_lag3"] == "no_checkpoints"
    warning = (tmp_path / "out" / "warnings.txt").read_text()
    assert "checkpoints.csv: rejected 6 row(s) with impossible values" in warning
    assert "checkpoints.csv: dropped 1 malformed line(s)" in warning
    assert "junk: checkpoints.csv has no 'epoch,data_steps,updates,heldout_loss,learned_<lag>...' header" in warning


def test_a_diverged_block_is_kept_only_as_the_last_row_of_a_run_that_did_not_complete(tmp_path):
    run = write_run(tmp_path / "s" / "diverged", config(5, 4, 0), summary=False, losses=None)
    (run / "losses.csv").write_text(HEADER + grid_rows([0.69, 0.6, float("nan")]))
    write_run(tmp_path / "s" / "exploded", config(5, 4, 1), summary=False, losses=None)
    (tmp_path / "s" / "exploded" / "losses.csv").write_text(HEADER + grid_rows([0.69, 55.0]))
    assert cli(tmp_path / "s", "--out", tmp_path / "out", "--no-figures").returncode == 0
    c = pd.read_csv(tmp_path / "out" / "curves.csv")
    assert math.isnan(c[c["run_id"] == "diverged"]["loss"].iloc[-1]) and list(c[c["run_id"] == "exploded"]["loss"]) \
        == [0.69, 55.0]
    assert "rejected" not in (tmp_path / "out" / "warnings.txt").read_text()


def test_a_fifo_in_place_of_a_record_is_named_never_read(tmp_path):
    run = write_run(tmp_path / "s" / "fifo", config(5, 4, 0), hydra=False)
    (run / "losses.csv").unlink()
    os.mkfifo(run / "losses.csv")
    write_run(tmp_path / "s" / "fifo2", config(5, 4, 1), summary=False)
    (tmp_path / "s" / "fifo2" / ".hydra" / "config.yaml").unlink()
    os.mkfifo(tmp_path / "s" / "fifo2" / ".hydra" / "config.yaml")
    (tmp_path / "s" / "fifo2" / "summary.json").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "s" / "fifo2" / "summary.json")
    proc = cli(tmp_path / "s", "--out", tmp_path / "out", "--no-figures", timeout=60)
    assert proc.returncode == 0, proc.stderr
    warnings = (tmp_path / "out" / "warnings.txt").read_text()
    assert "fifo: losses.csv is not a regular file" in warnings
    assert "fifo2: skipped" in warnings and "summary.json is not a regular file" in warnings


def test_records_nested_deeper_than_any_parser_takes_are_named_not_a_traceback(tmp_path):
    write_run(tmp_path / "s" / "ok", config(5, 4, 0), hydra=False)
    (tmp_path / "s" / "json").mkdir()
    (tmp_path / "s" / "json" / "summary.json").write_text("[" * 100_000 + "]" * 100_000)
    write_run(tmp_path / "s" / "yaml", config(5, 4, 1), summary=False)
    (tmp_path / "s" / "yaml" / ".hydra" / "config.yaml").write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    proc = cli(tmp_path / "s", "--out", tmp_path / "out", "--no-figures")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert list(pd.read_csv(tmp_path / "out" / "runs.csv")["run_id"]) == ["ok"]
    why = {w.split(":")[0]: w for w in (tmp_path / "out" / "warnings.txt").read_text().splitlines()}
    assert "summary.json unreadable (RecursionError" in why["json"]
    assert "no Hydra config record" in why["yaml"]


# --- one aggregation at a time, as a set -------------------------------------------------------

def test_a_second_aggregation_into_a_locked_out_is_refused_naming_the_holder(tmp_path):
    s, out = sweep(tmp_path / "s"), tmp_path / "out"
    assert cli(s, "--out", out).returncode == 0
    (out / LOCK).write_text(f"{socket.gethostname()} {os.getpid()}\n")  # this test process: alive
    before = snapshot(out)
    proc = cli(s, "--out", out)
    one_line_error(proc, 2, "is in use", f"process {os.getpid()} on {socket.gethostname()}")
    assert snapshot(out) == before
    (out / LOCK).write_text("the user's own file under the lock's name\n")  # never taken over
    one_line_error(cli(s, "--out", out), 2, f"{LOCK} there is not a lock the aggregator wrote")
    assert (out / LOCK).read_text() == "the user's own file under the lock's name\n"


def test_a_killed_aggregations_lock_and_staging_folder_are_cleaned_by_the_next(tmp_path):
    s, out = sweep(tmp_path / "s"), tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / f".rnn-sweep-aggregate.{dead.pid}.tmp").mkdir(parents=True)
    (out / f".rnn-sweep-aggregate.{dead.pid}.tmp" / "runs.csv").write_text("half")
    (out / LOCK).write_text(f"{socket.gethostname()} {dead.pid}\n")
    (out / ".rnn-sweep-aggregate.1.tmp").mkdir()  # no lock names process 1: not provably a leftover, kept
    proc = cli(s, "--out", out, "--no-figures")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == sorted([MANIFEST, ".rnn-sweep-aggregate.1.tmp"])


def test_two_aggregations_at_once_one_is_refused_and_the_set_is_one_sweeps(tmp_path):
    big = sweep(tmp_path / "big", styles=("tf", "true"), seeds=60)
    small = sweep(tmp_path / "small", seeds=1)
    out = tmp_path / "out"
    first = subprocess.Popen([AGG, str(big), "--out", str(out), "--format", "png,pdf"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    while not (out / LOCK).exists():
        assert first.poll() is None, first.communicate()
        time.sleep(0.01)
    second = cli(small, "--out", out)
    assert first.wait(timeout=120) == 0
    one_line_error(second, 2, "is in use", f"process {first.pid}")
    assert len(pd.read_csv(out / "runs.csv")) == 120 and set(recorded(out)["files"]) == {
        p.name for p in out.iterdir() if not p.name.startswith(".")}


def test_a_commit_stopped_halfway_is_marked_incomplete_and_repaired(tmp_path, monkeypatch, capsys):
    from rnn_sweep.analysis import aggregate_cli
    from rnn_sweep.analysis import outdir

    s1, s2, out = sweep(tmp_path / "a"), sweep(tmp_path / "b", styles=("true",)), tmp_path / "out"
    assert aggregate_cli.run(s1, out, ("png",)) == 0
    real_replace, calls = os.replace, []

    def killed_after_three(src, dst):  # the process dies (SIGKILL, power cut) between two renames into out
        if Path(dst).parent == out:
            calls.append(Path(dst).name)
            if len(calls) == 4:
                raise SystemExit("killed")
        real_replace(src, dst)

    monkeypatch.setattr(outdir.os, "replace", killed_after_three)
    with pytest.raises(SystemExit):
        aggregate_cli.run(s2, out, ("png",))
    monkeypatch.undo()
    body = json.loads((out / MANIFEST).read_text())
    assert calls[0] == MANIFEST and body["complete"] is False  # the half-moved set does not look complete
    assert set(body["pending"]) == set(body["files"]) and body["pending"] != body["files"]
    capsys.readouterr()
    assert aggregate_cli.run(s2, out, ("png",)) == 0
    assert "was stopped while moving its files" in capsys.readouterr().err
    body = recorded(out)
    assert body["complete"] is True and body["pending"] == {}
    assert set(pd.read_csv(out / "runs.csv", dtype={"style": str})["style"]) == {"true"}


# --- a full disk, Ctrl-C -----------------------------------------------------------------------

def _full_disk(real, target: str):
    """A writer that fails like a full disk when asked to write ``target`` (by name), else writes."""
    def write(obj, path, *args, **kwargs):
        if target in Path(path).name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, path, *args, **kwargs)
    return write


@pytest.mark.parametrize("target", ["curves.csv", "onset.png"])
def test_disk_full_while_writing_names_the_path_and_keeps_the_last_set(tmp_path, monkeypatch, capsys, target):
    from matplotlib.figure import Figure

    from rnn_sweep.analysis.aggregate_cli import main

    s1, s2, out = sweep(tmp_path / "a"), sweep(tmp_path / "b", styles=("true",)), tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main([str(s1), "--out", str(out), "--format", "png"])
    assert stop.value.code == 0
    before = snapshot(out)
    assert {"runs.csv", "grid.png", "onset.png"} <= set(before)  # the last sweep's tables beside its figures
    monkeypatch.setattr(pd.DataFrame, "to_csv", _full_disk(pd.DataFrame.to_csv, target))
    monkeypatch.setattr(Figure, "savefig", _full_disk(Figure.savefig, target))
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([str(s2), "--out", str(out), "--format", "png"])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.count("\n") == 1
    assert err == f"rnn-sweep-aggregate: error: cannot write {out / target}: No space left on device " \
                  f"(nothing in {out} was changed)\n"
    assert snapshot(out) == before  # no new runs.csv beside the old figures, no temp file


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_a_really_full_disk_keeps_the_last_set(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "160k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        out = disk / "out"
        assert cli(sweep(tmp_path / "a"), "--out", out, "--no-figures").returncode == 0
        before = snapshot(out)
        proc = cli(sweep(tmp_path / "b", styles=("tf", "true")), "--out", out, "--format", "png,pdf")
        one_line_error(proc, 1, f"cannot write {out}/", "No space left on device", "nothing in")
        assert snapshot(out) == before
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_ctrl_c_that_a_c_extension_turns_into_an_import_error_is_still_an_interrupt(monkeypatch, capsys):
    # numpy's import, interrupted inside its C module, raises "ImportError: ... PyCapsule_Import could not
    # import module datetime" (seen with Ctrl-C 50 ms after the start): still one line and exit 130
    from rnn_sweep.analysis import aggregate_cli

    def numpy_like_import(argv):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            raise ImportError("PyCapsule_Import could not import module \"datetime\"") from None

    monkeypatch.setattr(aggregate_cli, "_CTRL_C", [])
    monkeypatch.setattr(aggregate_cli, "_main", numpy_like_import)
    with pytest.raises(SystemExit) as stop:
        aggregate_cli.main([])
    assert stop.value.code == 130
    assert capsys.readouterr().err == aggregate_cli.INTERRUPTED + "\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored for the caller


def test_an_import_error_without_ctrl_c_is_not_called_an_interrupt(monkeypatch):
    from rnn_sweep.analysis import aggregate_cli

    def broken(argv):
        raise ImportError("a broken install")

    monkeypatch.setattr(aggregate_cli, "_CTRL_C", [])
    monkeypatch.setattr(aggregate_cli, "_main", broken)
    with pytest.raises(ImportError, match="a broken install"):
        aggregate_cli.main([])


@pytest.mark.slow
@pytest.mark.parametrize("when", ["early", "reading", "staging"])
def test_ctrl_c_is_one_line_exit_130_and_keeps_the_last_set(tmp_path, when):
    big = sweep(tmp_path / "big", styles=("tf", "true"), seeds=60)
    out = tmp_path / "out"
    assert cli(sweep(tmp_path / "small", seeds=1), "--out", out, "--format", "png").returncode == 0
    before = snapshot(out)
    proc = subprocess.Popen([AGG, str(big), "--out", str(out), "--format", "png,pdf"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if when == "early":
        time.sleep(0.05)  # still importing
    elif when == "reading":
        while not (out / LOCK).exists():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.005)
    else:
        while not any(p.name.endswith(".tmp") for p in out.iterdir()):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.005)
        time.sleep(0.3)  # drawing figures
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == ("rnn-sweep-aggregate: interrupted; the output folder keeps its last "
                                              "complete set; rerun to aggregate\n")
    assert snapshot(out) == before


# --- through the sweep's callback --------------------------------------------------------------

SWEEP_ARGS = ("-m", "data=small", "num_steps=3", "seed=0", "train.progress=false")


@pytest.mark.parametrize("setting,needle", [
    ("hydra.callbacks.aggregate.formats=bogus", "hydra.callbacks.aggregate.formats='bogus' is invalid"),
    ("hydra.callbacks.aggregate.formats='png,tiff'", "hydra.callbacks.aggregate.formats='png,tiff' is invalid"),
    ("hydra.callbacks.aggregate.enabled=maybe", "hydra.callbacks.aggregate.enabled='maybe' is invalid"),
    ("hydra.callbacks.aggregate.enabled=2", "hydra.callbacks.aggregate.enabled=2 is invalid"),
    ("hydra.callbacks.aggregate.out=null", "hydra.callbacks.aggregate.out=None is invalid"),
])
def test_bad_callback_settings_are_refused_before_anything_runs(tmp_path, setting, needle):
    from conftest import run_cli

    proc = run_cli(*SWEEP_ARGS, f"hydra.sweep.dir={tmp_path / 'sweep'}", setting, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("rnn-sweep: error: ") and needle in proc.stderr
    assert not (tmp_path / "sweep").exists()


def test_out_beside_the_sweep_holding_the_users_files_is_refused_before_training(tmp_path):
    from conftest import run_cli

    (tmp_path / "grid.png").write_bytes(b"the user's figure")
    (tmp_path / "runs.csv").write_text("the user's table\n")
    proc = run_cli(*SWEEP_ARGS, f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.callbacks.aggregate.out=..",
                   cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "hydra.callbacks.aggregate.out='..'" in proc.stderr and "runs.csv (not in" in proc.stderr
    assert "grid.png (not in" in proc.stderr
    assert (tmp_path / "grid.png").read_bytes() == b"the user's figure"
    assert (tmp_path / "runs.csv").read_text() == "the user's table\n"
    assert not (tmp_path / "sweep").exists() or not any((tmp_path / "sweep").iterdir())  # nothing trained


@pytest.mark.slow
def test_an_aggregation_refused_at_the_end_of_a_sweep_fails_the_sweep(tmp_path):
    from conftest import run_cli

    out = tmp_path / "sweep" / "aggregate"
    out.mkdir(parents=True)
    (out / LOCK).write_text(f"{socket.gethostname()} {os.getpid()}\n")  # an aggregation still running (alive)
    proc = run_cli(*SWEEP_ARGS, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "rnn-sweep: error: the aggregation was refused: --out=" in proc.stderr and "is in use" in proc.stderr
    assert (tmp_path / "sweep" / "data=small,num_steps=3,seed=0" / "summary.json").exists()  # the run stands
    assert sorted(p.name for p in out.iterdir()) == [LOCK]
