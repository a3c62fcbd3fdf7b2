"""The task: configuration schema and validation, data, analytic loss levels, the probe.

No TensorFlow, no Hydra, no files: everything here runs before TensorFlow loads."""
