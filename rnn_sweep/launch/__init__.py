"""The command line and the Hydra adapter: entry points, the packing launcher, callbacks,
exit codes. The only layer that imports Hydra."""
