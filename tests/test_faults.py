"""Faults around a run: full disk, read-only output, command-line mistakes.

Disk faults use real small tmpfs mounts (root only; skipped with the reason
otherwise), so the errors are the kernel's own ENOSPC / EROFS.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import mounted_tmpfs, run_cli, small_cfg
from rnn_sweep.run.train import ResultsWriteError, train, write_json_atomic


@pytest.fixture
def tmpfs(tmp_path):
    """A 256 KiB tmpfs mounted at tmp_path/mnt."""
    yield from mounted_tmpfs(tmp_path, "256k")


def fill(mnt: Path, leave_bytes: int) -> None:
    """Fill the filesystem until about ``leave_bytes`` are free."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave_bytes, 0))
    with open(mnt / "filler", "ab") as f:  # top up to the byte if page rounding left more
        try:
            while os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize > leave_bytes:
                f.write(b"\0" * 512)
                f.flush()
        except OSError:
            pass


def test_full_disk_during_training_leaves_no_complete_looking_run(tmpfs):
    fill(tmpfs, 4096)
    run_dir = tmpfs / "run"
    cfg = small_cfg("train.log_every=1", "train.epochs=2")  # ~1000 loss rows: more than 4 KiB
    with pytest.raises(OSError) as err:
        train(cfg, run_dir)
    assert err.value.errno == errno.ENOSPC
    assert not (run_dir / "summary.json").exists()
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_full_disk_when_writing_summary_keeps_old_file_intact(tmpfs):
    target = tmpfs / "summary.json"
    target.write_text(json.dumps({"status": "completed", "final_loss": 0.52}))
    fill(tmpfs, 0)
    with pytest.raises(OSError) as err:
        write_json_atomic(target, {"status": "completed", "payload": "x" * 100_000})
    assert err.value.errno == errno.ENOSPC
    assert json.loads(target.read_text()) == {"status": "completed", "final_loss": 0.52}
    assert sorted(p.name for p in tmpfs.iterdir()) == ["filler", "summary.json"]


def test_read_only_output_fails_before_training(tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(ResultsWriteError, match=r"cannot write results to .*/run: Read-only file system"):
        train(small_cfg(), tmpfs / "run")


@pytest.mark.parametrize("args,expect", [
    (["no_such_key=1"], "no_such_key"),
    (["+no_such_key=1"], "no_such_key"),
    (["train.optimiser.lr=0.1"], "optimiser"),
    (["state_size=abc"], "state_size"),
    (["train.optimizer.lr=fast"], "lr"),
    (["model=scrach"], "scrach"),
    (["data=r2rtt"], "r2rtt"),
])
def test_command_line_mistakes_give_a_clear_message(tmp_path, args, expect):
    out = run_cli(*args, cwd=tmp_path, timeout=60)
    assert out.returncode == 2  # Hydra's errors are bad input too
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rnn-sweep: error: "), out.stderr
    assert expect in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_read_only_output_at_the_command_line_is_one_line(tmpfs, mode):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    args = ([f"hydra.run.dir={tmpfs}/run"] if mode == "run"
            else ["-m", f"hydra.sweep.dir={tmpfs}/sweep", "seed=0,1"])
    out = run_cli(*args, "data=small", cwd=tmpfs.parent, timeout=60)
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert lines == [f"rnn-sweep: error: cannot write results to {tmpfs}/{mode}: Read-only file system"], out.stderr
