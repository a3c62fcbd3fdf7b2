"""Packed sweep jobs go through Hydra's public ``run_job``: Hydra's records, callbacks and statuses.

A user's Hydra callback (the kind a tracking integration installs) must see every
packed job as Hydra shows any job: ``on_job_start`` with the job's config before
the job's run trains, ``on_job_end`` with a JobReturn whose status says how the
run ended (FAILED for a run that failed, with the reason), and Hydra's own
``.hydra`` records written by Hydra. The sweep itself still finishes, aggregates
and exits 1 listing the failure (tests/test_sweeps.py).
"""

from __future__ import annotations

import json

import pytest

from test_safety_runs import TINY, NO_AGG
from test_sweeps import FAIL_SEED_1, popen_cli

PROBE = """
import json, os, pathlib
from hydra.experimental.callback import Callback
import rnn_sweep.launch.hydra_jobs as H

class Probe(Callback):
    def _write(self, event):
        with open(os.environ["PROBE_LOG"], "a") as f:
            f.write(json.dumps(event) + "\\n")

    def on_job_start(self, config, **kwargs):
        run = pathlib.Path(config.hydra.runtime.output_dir)
        self._write({"event": "start", "seed": int(config.seed), "trained_before": sorted(
            p.parent.name for p in run.parent.glob("*/summary.json"))})

    def on_job_end(self, config, job_return, **kwargs):
        value = job_return._return_value
        self._write({"event": "end", "seed": int(config.seed), "status": job_return.status.name,
                     "value": value if isinstance(value, float) else str(value)})

H.Probe = Probe
"""


@pytest.mark.slow
def test_user_callbacks_see_every_packed_job_with_its_true_status(tmp_path, monkeypatch):
    log = tmp_path / "probe.jsonl"
    monkeypatch.setenv("PROBE_LOG", str(log))
    proc = popen_cli("-m", "hydra.sweep.dir=sw", "hydra.sweep.subdir=seed${seed}", "seed=0,1,2", *TINY, NO_AGG,
                     "+hydra.callbacks.probe._target_=rnn_sweep.launch.hydra_jobs.Probe",
                     cwd=tmp_path, prelude=PROBE + FAIL_SEED_1)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr[-3000:]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    starts = [e for e in events if e["event"] == "start"]
    ends = {e["seed"]: e for e in events if e["event"] == "end"}
    # every job of the pack was set up (on_job_start) before any of its runs trained
    assert sorted(e["seed"] for e in starts) == [0, 1, 2]
    assert all(e["trained_before"] == [] for e in starts)
    assert events.index(starts[-1]) < min(events.index(e) for e in ends.values())
    # each job ends with its own status: the failed run FAILED with its reason, the others their loss
    assert ends[1]["status"] == "FAILED" and "injected failure for seed 1" in ends[1]["value"]
    for seed in (0, 2):
        assert ends[seed]["status"] == "COMPLETED" and 0.3 < ends[seed]["value"] < 1.0
    # Hydra's own records of each job, in the sweep's records folder
    for seed in (0, 1, 2):
        records = tmp_path / "sw" / ".jobs" / f"seed{seed}"
        assert {"config.yaml", "hydra.yaml", "overrides.yaml"} <= {p.name for p in records.iterdir()}
        assert f"seed={seed}" in (records / "overrides.yaml").read_text()
