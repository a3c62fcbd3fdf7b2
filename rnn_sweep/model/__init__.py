"""The models and their training numerics: backends, optimizers, truncation styles, the
compiled engine. TensorFlow lives here; no Hydra, no files."""
