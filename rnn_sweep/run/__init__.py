"""Running runs: the execution core every path goes through (core.py: plan, skip, lock,
clear, train, record, one RunOutcome per run), training a pack into its run directories,
the run records, locks, job planning and packing. No Hydra."""
