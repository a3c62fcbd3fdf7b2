"""rnn-sweep: how truncated BPTT decides what a recurrent network can learn.

The library modules (``config``, ``data``, ``baselines``, ``models``, ``train``,
``aggregate``, ``plots``) never import Hydra; ``cli`` holds the thin entry points.
TensorFlow is imported lazily, only by the modules that train.
"""

__version__ = "0.1.0"
