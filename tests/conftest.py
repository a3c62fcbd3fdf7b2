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


def deep_chain(root: Path, levels: int) -> None:
    """``root/d/d/.../d`` ``levels`` deep, made one level at a time relative to an open folder
    (no path that long is ever formed, so it can pass PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


def remove_chain(root: Path) -> None:
    """Remove a chain made by :func:`deep_chain` without recursion (pytest's own cleanup would recurse)."""
    fds = [os.open(root, os.O_RDONLY)]
    while True:
        try:
            fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
        except FileNotFoundError:
            break
    while len(fds) > 1:
        os.close(fds.pop())
        os.rmdir("d", dir_fd=fds[-1])
    os.close(fds[0])


def mounted_tmpfs(tmp_path: Path, size: str):
    """A generator for a fixture: a tmpfs of ``size`` at tmp_path/mnt (skips where mounting is not allowed)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)

