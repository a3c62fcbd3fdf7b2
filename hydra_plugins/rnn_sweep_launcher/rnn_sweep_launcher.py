"""The launcher class Hydra instantiates; see :class:`rnn_sweep.launch.launcher.PackingLauncher`."""

from rnn_sweep.launch import launcher as _impl


class RnnSweepLauncher(_impl.PackingLauncher):
    """Validates a whole rnn-sweep sweep up front and trains it in packs through a wrapped launcher."""


_impl.register_configs(f"{__name__}.{RnnSweepLauncher.__name__}")
