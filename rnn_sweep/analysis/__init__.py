"""Reading run directories, statistics as tidy tables, figures, the aggregate command.

No TensorFlow, no Hydra."""
