"""rnn-sweep's launcher passes Hydra's own conformance suites for launcher plugins.

Run the way the official plugins run them (hydra-joblib-launcher's and
hydra-submitit-launcher's tests/): ``LauncherTestSuite`` sweeps Hydra's test apps
in-process through ``hydra/launcher=<name>``; ``IntegrationTestSuite`` writes small
apps and runs them as scripts with ``-m``. Those tasks are not rnn-sweep runs, so
the launcher must act exactly as the launcher it wraps, for each of the three.
"""

from __future__ import annotations

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from hydra_plugins.rnn_sweep_launcher.rnn_sweep_launcher import RnnSweepLauncher

@pytest.fixture(autouse=True)
def hydra_version_base_as_in_hydras_own_tests():
    """Run each suite test under an unset version_base, as Hydra's own test runs do.

    Importing rnn_sweep.launch.cli (other test modules do) runs ``@hydra.main(version_base="1.3")``,
    which sets Hydra's process-wide version base; the suites expect 1.1's defaults (jobs chdir).
    """
    from hydra import version

    base = version.VersionBase.instance()  # a Singleton: VersionBase() would return this same object
    saved = base.getbase()
    base.version_base = version._UNSPECIFIED_
    yield
    version.VersionBase.instance().version_base = saved


LOGGING = [{"override hydra/hydra_logging": "hydra_debug"}, {"override hydra/job_logging": "disabled"}]


def test_discovery() -> None:
    # Hydra finds the plugin in the hydra_plugins namespace package (it instantiates no other).
    assert RnnSweepLauncher.__name__ in [x.__name__ for x in Plugins.instance().discover(Launcher)]


@pytest.mark.parametrize("launcher_name, overrides", [
    ("rnn_sweep", []),
    pytest.param("rnn_sweep_joblib", [], marks=pytest.mark.slow),  # worker processes: seconds per test
    pytest.param("rnn_sweep_submitit_local", ["hydra.launcher.timeout_min=2"], marks=pytest.mark.slow),
])
class TestRnnSweepLauncher(LauncherTestSuite):
    """Hydra's launcher suite, through each wrapped launcher."""


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [
    # Each test runs its app as a script (a Python process or two): all slow.
    pytest.param({"defaults": [{"override hydra/launcher": "rnn_sweep"}, *LOGGING]}, ["-m"],
                 marks=pytest.mark.slow),
    pytest.param({"defaults": [{"override hydra/launcher": "rnn_sweep_joblib"}, *LOGGING]}, ["-m"],
                 marks=pytest.mark.slow),
    pytest.param({}, ["-m", "hydra/hydra_logging=disabled", "hydra/job_logging=disabled",
                      "hydra/launcher=rnn_sweep_submitit_local", "hydra.launcher.gpus_per_node=0",
                      "hydra.launcher.timeout_min=1"], marks=pytest.mark.slow),
])
class TestRnnSweepLauncherIntegration(IntegrationTestSuite):
    """Hydra's integration suite (apps run as scripts), through each wrapped launcher."""


DISCOVER = """
import sys, sysconfig
sys.path[:0] = [{target!r}, {site!r}]  # the installed wheel, then the dependencies (no .pth files: not the repo)
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
import hydra_plugins.rnn_sweep_launcher.rnn_sweep_launcher as plugin
import rnn_sweep
print(plugin.__file__)
print(rnn_sweep.__file__)
print(" ".join(sorted(x.__name__ for x in Plugins.instance().discover(Launcher))))
print(" ".join(ConfigStore.instance().list("hydra/launcher")))
"""


@pytest.mark.slow
def test_a_regular_non_editable_install_is_discovered_by_hydra(tmp_path):
    import shutil
    import subprocess
    import sys
    import sysconfig
    import zipfile

    from conftest import REPO

    wheels, target, src = tmp_path / "wheels", tmp_path / "site", tmp_path / "src"
    # a copy, so building leaves nothing (build/, *.egg-info) in the working tree
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "outputs",
                                                             "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(src)], check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("rnn_sweep-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    # a namespace package, as every Hydra plugin ships it: no hydra_plugins/__init__.py
    assert "hydra_plugins/rnn_sweep_launcher/rnn_sweep_launcher.py" in names
    assert "hydra_plugins/__init__.py" not in names
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = DISCOVER.format(target=str(target), site=sysconfig.get_paths()["purelib"])
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    plugin_file, package_file, launchers, configs = out.stdout.splitlines()
    assert plugin_file.startswith(str(target)) and package_file.startswith(str(target))
    assert "RnnSweepLauncher" in launchers.split()
    assert {"rnn_sweep.yaml", "rnn_sweep_joblib.yaml", "rnn_sweep_submitit_local.yaml",
            "rnn_sweep_submitit_slurm.yaml"} <= set(configs.split())
