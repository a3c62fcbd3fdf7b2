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
