"""How large a program's per-n buffers are: their shapes, decided without TensorFlow.

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



def block_rows(num_steps: int) -> int:
    """Block rows of a true-BPTT program for the scratch cell: the next power of two from n.

    Every n up to this size shares one compiled program (n is a runtime number; rows from
    n on are padding, see :func:`rnn_sweep.model.truncation.true_block_grad_steps`): the
    n = 2..16 of a sweep compile 4 programs instead of 7, at the price of up to ~2x block
    work for an n just past a power of two.
    """
    return 1 << (int(num_steps) - 1).bit_length()
