"""How long a TF-style program's window buffer is: its shape, decided without TensorFlow.

The launcher groups runs by compiled program before TensorFlow loads, so this rule
lives apart from :mod:`rnn_sweep.model.truncation`, which builds the program.
"""

from __future__ import annotations


def buffer_steps(num_steps: int) -> int:
    """Cells one TF-style program can hold per window: 32, or the next power of two above n.

    Every n up to this size shares one compiled program (the buffer of recorded
    states is this long, see :mod:`rnn_sweep.model.truncation`); a longer n gets the next size.
    """
    return max(32, 1 << (int(num_steps) - 1).bit_length())

