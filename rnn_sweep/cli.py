"""Thin Hydra entry points: compose the config, then call the library.

``rnn-sweep`` trains one configuration (or, with ``-m``, every combination of
a sweep). All logic lives in :mod:`rnn_sweep.train`; this module only turns a
Hydra ``DictConfig`` into a validated :class:`~rnn_sweep.config.RunConfig`
(before TensorFlow is imported) and reports errors in one line.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rnn_sweep.config import ConfigError, RunConfig, from_dict, validate

log = logging.getLogger("rnn_sweep")
ConfigStore.instance().store(name="rnn_sweep_schema", node=RunConfig)
# The repository's top-level conf/ (an absolute path, so it works from any cwd).
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Resolve a composed Hydra config into a validated RunConfig (no TensorFlow)."""
    raw = OmegaConf.to_container(cfg, resolve=True)
    raw.pop("hydra", None)
    run_cfg = from_dict(raw)
    validate(run_cfg)
    return run_cfg


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def run(cfg: DictConfig) -> float | None:
    """Train one configuration into Hydra's run (or sweep job) directory."""
    try:
        run_cfg = to_run_config(cfg)
    except ConfigError as err:
        print(f"rnn-sweep: error: {err}", file=sys.stderr)
        sys.exit(2)
    run_dir = HydraConfig.get().runtime.output_dir
    from rnn_sweep.train import train

    summary = train(run_cfg, run_dir)
    log.info("%s: final loss %.4f, held-out %.4f (levels %s), learned %s -> %s",
             summary["status"], summary["final_loss"] or float("nan"),
             summary["heldout_loss"] or float("nan"),
             " / ".join(f"{lv['name']} {lv['loss']:.4f}" for lv in summary["levels"]),
             summary["learned_fraction"], run_dir)
    return summary["heldout_loss"]


def main() -> None:
    """Console script ``rnn-sweep``."""
    run()


if __name__ == "__main__":
    main()
