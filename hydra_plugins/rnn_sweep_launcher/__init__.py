"""rnn-sweep's launcher plugin for Hydra (the logic lives in :mod:`rnn_sweep.launch.launcher`).

Hydra instantiates launchers only from the ``hydra_plugins`` namespace package,
so this package (installed with rnn-sweep; ``hydra_plugins`` itself has no
``__init__.py``, as every Hydra plugin ships it) holds the class Hydra sees and
registers its configs: ``hydra/launcher=rnn_sweep`` (in-process),
``rnn_sweep_joblib``, ``rnn_sweep_submitit_local`` and ``rnn_sweep_submitit_slurm``.
"""
