"""Shared fixtures: the real conf/ composed once, shrunk for tests.

TensorFlow is imported at most once per pytest process (tests share it); tests
that check "no TensorFlow before validation" run in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
VENV_BIN = Path(sys.executable).parent


def compose(overrides: list[str] | None = None, config_name: str = "config", return_hydra: bool = False):
    """Compose the real Hydra config (conf/) with overrides; returns a DictConfig (``hydra`` node on request)."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    import rnn_sweep.launch.cli  # noqa: F401  (registers the schema)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hcompose(config_name=config_name, overrides=overrides or [], return_hydra_config=return_hydra)


def small_cfg(*overrides: str):
    """A validated RunConfig from conf/ with small data (fast, still learns)."""
    from rnn_sweep.launch.cli import to_run_config

    base = ["data=small", "train.progress=false"]
    return to_run_config(compose(base + list(overrides)))


def run_cli(*args: str, cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``rnn-sweep`` console script in ``cwd``."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([str(VENV_BIN / "rnn-sweep"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


@pytest.fixture
def cfg_factory():
    return small_cfg
