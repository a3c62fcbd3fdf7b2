"""Sweep progress lines: counts, elapsed time and ETA, checked against hand-computed values."""

from __future__ import annotations

from rnn_sweep.launch.progress import Progress, format_seconds


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
    progress.pack_done(["s0: completed", "s1: failed: boom"])
    clock.now += 10  # one more run at 40 s: 40/3 s per run, 2 left -> 26.7 s
    progress.pack_done(["n5: diverged"])
    clock.now += 20
    progress.pack_done(["a", "b"])
    assert lines == [
        "[1/5] s0: completed (30s elapsed, ETA 2m00s)",
        "[2/5] s1: failed: boom (30s elapsed, ETA 45s)",
        "[3/5] n5: diverged (40s elapsed, ETA 27s)",
        "[4/5] a (1m00s elapsed, ETA 15s)",
        "[5/5] b (1m00s elapsed, done)",
    ]
