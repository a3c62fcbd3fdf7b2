"""A sweep through hydra/launcher=slurm (rnn-sweep's packing launcher wrapping submitit_slurm) on a
real, private single-node Slurm cluster: one Slurm job (array task) per pack.

The fixture installs Debian's slurm-wlm when it is missing (CI runs ``make test``
as root on a clean machine), starts munged/slurmctld/slurmd with private paths
under a temp dir, and stops them afterwards.
"""

from __future__ import annotations

import json
import shutil

import pytest
from omegaconf import OmegaConf

from conftest import run_cli
from slurm_cluster import SlurmCluster, ensure_installed, unavailable_reason

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    ensure_installed()
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_smoke_sweep_on_slurm(slurm, tmp_path):
    out = run_cli("experiment=smoke", "hydra/launcher=slurm", "hydra.launcher.partition=test",
                  "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1",
                  "hydra.launcher.max_pack_size=2",  # one pack per num_steps: an array of two tasks
                  cwd=tmp_path, timeout=400, env=slurm.env())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = tmp_path / "outputs" / "sweeps" / "smoke"
    expected = {f"num_steps={n},seed={s}": (n, s) for n in (2, 5) for s in (0, 1)}
    runs = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}
    assert set(runs) == set(expected)
    for name, (n, s) in expected.items():
        assert runs[name]["status"] == "completed", runs[name]["error"]
        assert (runs[name]["num_steps"], runs[name]["seed"]) == (n, s)
    # The jobs really went through Slurm: submitit kept the sbatch script and one result
    # per array task -- one task per pack (max_pack_size 2 keeps smoke's two num_steps apart), not per run.
    sbatch_scripts = list((sweep / ".submitit").rglob("*_submission.sh"))
    assert sbatch_scripts and "#SBATCH --partition=test" in sbatch_scripts[0].read_text()
    assert "#SBATCH --array=0-1" in sbatch_scripts[0].read_text()
    assert len(list((sweep / ".submitit").rglob("*_result.pkl"))) == 2
    packs = {name: json.loads((sweep / ".jobs" / name / "pack.json").read_text()) for name in expected}
    for name, (n, _) in expected.items():
        assert packs[name]["members"] == [f"num_steps={n},seed={s}" for s in (0, 1)]
    # hydra.job.id of each run is its Slurm job id: the two seeds of a pack share one
    job_ids = {name: str(OmegaConf.load(sweep / ".jobs" / name / "hydra.yaml").hydra.job.id) for name in expected}
    assert job_ids["num_steps=2,seed=0"] == job_ids["num_steps=2,seed=1"] != job_ids["num_steps=5,seed=0"]
    assert shutil.which("squeue")
