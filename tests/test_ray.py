"""The optional Ray launcher (extra ``ray``: hydra-ray-launcher) runs a sweep.

hydra-ray-launcher pins ``cloudpickle<3``; joblib 1.6 (the default environment)
needs ``cloudpickle>=3``, so the extra resolves to joblib 1.5 + cloudpickle 2.
To keep the project's own environment untouched, this test builds a throwaway
venv in tmp with only the extra's packages, layers the project's environment
*behind* it (a .pth file), and runs ``experiment=smoke`` with ``hydra/launcher=ray``.
When the current environment already has the extra, it is used directly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow
EXTRA = ["hydra-ray-launcher>=1.2", "joblib<1.6"]  # keep in step with pyproject's `ray` extra


def layered_python(root: Path) -> Path:
    """A venv holding the extra's packages first, then the project's environment."""
    subprocess.run([sys._base_executable, "-m", "venv", str(root)], check=True, timeout=120)
    py = root / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", *EXTRA], capture_output=True, text=True,
                         timeout=600)
    if pip.returncode != 0:
        pytest.skip(f"cannot install the ray extra into a throwaway venv (no package index?): {pip.stderr[-500:]}")
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    base = sysconfig.get_paths()["purelib"]  # this (the project's) environment
    Path(site, "zz_rnn_sweep_base.pth").write_text(f"{REPO}\nimport site; site.addsitedir({base!r})\n")
    return py


def test_smoke_sweep_with_ray_launcher(tmp_path):
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None:
        py = Path(sys.executable)
    else:
        py = layered_python(tmp_path / "venv")
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0"}
    code = "from rnn_sweep.launch.cli import main; main()"
    out = subprocess.run([str(py), "-c", code, "experiment=smoke", "hydra/launcher=ray",
                          "+hydra.launcher.ray.init.num_cpus=2", "hydra.callbacks.aggregate.enabled=false"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "Ray Launcher is launching 4 jobs" in out.stdout + out.stderr
    sweep = work / "outputs" / "sweeps" / "smoke"
    for n in (2, 5):
        for s in (0, 1):
            summary = json.loads((sweep / f"num_steps={n},seed={s}" / "summary.json").read_text())
            assert summary["status"] == "completed" and (summary["num_steps"], summary["seed"]) == (n, s)
    versions = subprocess.run([str(py), "-c", "import cloudpickle, joblib; print(cloudpickle.__version__, "
                               "joblib.__version__)"], capture_output=True, text=True, env=env).stdout.split()
    assert int(versions[0].split(".")[0]) < 3  # the extra's pin wins inside its environment
