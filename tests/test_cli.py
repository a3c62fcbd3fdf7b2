"""The console script: help, one run into outputs/runs, one-line errors."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli


def test_help_explains_groups_and_knobs(tmp_path):
    out = run_cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for text in ("data:", "model:", "train:", "truncation:", "num_steps", "state_size", "0.52"):
        assert text in out.stdout


@pytest.mark.parametrize("override,field", [
    ("num_steps=0", "num_steps"),
    ("state_size=-2", "state_size"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.epochs=0", "train.epochs"),
    ("model.backend=nope", "model.backend"),
    ("train.optimizer.name=nope", "train.optimizer.name"),
    ("data.dependencies=[{lag:0,effect:0.1}]", "data.dependencies[0].lag"),
    ("data.base_prob=0.9", "data.dependencies"),
    ("data.length=100", "train.batch_size"),
])
def test_bad_input_one_line_error_no_traceback(tmp_path, override, field):
    out = run_cli(override, cwd=tmp_path, timeout=60)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"rnn-sweep: error: {field}"), out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "outputs").exists()  # rejected before Hydra creates the run directory


def test_type_error_is_hydras_message_not_a_traceback(tmp_path):
    out = run_cli("num_steps=abc", cwd=tmp_path, timeout=60)
    assert out.returncode == 2  # bad input, ours or Hydra's
    assert "num_steps" in out.stderr and "Traceback" not in out.stderr


def test_one_run_writes_results(tmp_path):
    out = run_cli("data=small", "num_steps=10", "state_size=16", "train.epochs=2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["config"]["num_steps"] == 10 and summary["config"]["state_size"] == 16
    lines = (run_dir / "losses.csv").read_text().splitlines()
    # 100,000 steps / 200 rows = 500 positions per row, n=10 -> 50 updates train all 500.
    # Grid: 10,000 // 200 = 50 positions (10,000 steps) per block -> 10 full blocks per epoch;
    # block k of epoch e: data e*100,000 + [k*10,000, (k+1)*10,000), updates e*50 + 50(k+1)/10.
    assert lines[0] == "epoch,data_start,data_end,loss,updates,elapsed_s"
    expected = [[str(e), str(e * 100_000 + k * 10_000), str(e * 100_000 + (k + 1) * 10_000), str(e * 50 + 5 * (k + 1))]
                for e in range(2) for k in range(10)]
    assert [[c for i, c in enumerate(ln.split(",")) if i in (0, 1, 2, 4)] for ln in lines[1:]] == expected
