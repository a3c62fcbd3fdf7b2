"""Sweep progress lines: counts, elapsed time and ETA, checked against hand-computed values."""

from __future__ import annotations

from rnn_sweep.progress import Progress, format_seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_format_seconds_by_hand():
    assert [format_seconds(s) for s in (0, 42.4, 59.6, 75.2, 3599, 3725)] == [
        "0s", "42s", "1m00s", "1m15s", "59m59s", "1h02m"]


def test_one_line_per_run_with_k_of_n_and_an_eta_from_the_average_pace():
    clock, lines = FakeClock(), []
    progress = Progress(5, clock=clock, emit=lines.append)
    assert progress.eta() is None  # nothing finished: no pace yet
    clock.now += 30  # a pack of two finished after 30 s: 15 s per run, 3 runs left -> 45 s
    progress.pack_done(["num_steps=2,seed=0", "num_steps=2,seed=1"], [0.5191234, None])
    clock.now += 10  # one more run at 40 s: 40/3 s per run, 2 left -> 26.7 s
    progress.pack_done(["num_steps=5,seed=0"], [0.47])
    clock.now += 20
    progress.pack_done(["a", "b"], [0.5, 0.6])
    assert lines == [
        "[1/5] num_steps=2,seed=0: held-out 0.5191 (30s elapsed, ETA 2m00s)",
        "[2/5] num_steps=2,seed=1: no held-out loss (see its record) (30s elapsed, ETA 45s)",
        "[3/5] num_steps=5,seed=0: held-out 0.4700 (40s elapsed, ETA 27s)",
        "[4/5] a: held-out 0.5000 (1m00s elapsed, ETA 15s)",
        "[5/5] b: held-out 0.6000 (1m00s elapsed, done)",
    ]
