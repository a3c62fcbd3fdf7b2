"""The speed targets, each against the article port (or today's main) measured in the same run.

    .venv/bin/python benchmarks/bench_targets.py                 # all (~15 min on 2 cores)
    .venv/bin/python benchmarks/bench_targets.py --only grid     # or: slice, grid10, styles, single
    .venv/bin/python benchmarks/bench_targets.py --baseline /path/to/main/checkout --only styles
    .venv/bin/python benchmarks/bench_targets.py --quick         # a smoke run of the script (tiny data)

1. **slice**: num_steps 1,5,10,20 x state_size 4,32 x seeds 0,1 (16 runs, 1M steps, 1
   epoch, as in ``experiment=r2rt_grid``). The port runs once per combination (its own
   process each, as the article's code would); ours is ONE ``rnn-sweep -m`` process:
   the default in-process launcher with the aggregation callback off (the port writes
   no tables or figures) and on, and ``hydra/launcher=cores`` (aggregation off).
   Target: port / ours >= 10x. The slice's median port run is the port's per-run time below.
2. **grid**: the whole ``experiment=r2rt_grid`` (300 runs), end to end with aggregation,
   in-process and with ``hydra/launcher=cores``: wall seconds and peak memory of the
   whole process tree (sum of the resident sets of rnn-sweep and its workers, sampled
   every 0.2 s). The port is not run 300 times: its per-run wall is the median of the
   slice's 16 (``--only grid`` alone measures a 4-run port slice, n 1,20 x d 4,32).
   Target: port x 300 / ours >= 100x.
3. **grid10**: the same grid with 10 seeds (1,000 runs), end to end: <= 60 s, <= 2 GB.
4. **styles**: ``experiment=truncation_styles`` end to end with this code and with the
   baseline checkout (``--baseline``, run through ``PYTHONPATH``; default: skip), one after
   the other: >= 2x.
5. **single**: one run, whole process (start to exit), 3 epochs at n=5 d=4; port and ours
   interleaved ``--repeats`` times, medians. Target: port / ours >= 2x.

Every sweep's runs are checked (all completed, the expected count) before a time is
reported. Prints markdown tables; writes them and the raw numbers to
``benchmarks/results/targets-<time>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ENV, REPO, RNN_SWEEP, machine, run_ours, run_port  # noqa: E402

SLICE = {"num_steps": [1, 5, 10, 20], "state_size": [4, 32], "seed": [0, 1]}
NO_AGG = "hydra.callbacks.aggregate.enabled=false"


def load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def tree_rss_mb(pgid: int) -> float:
    """Resident memory (MB) of every process in process group ``pgid`` (Linux /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat: the process group
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss in pages
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we read it
    return total / 2**20


def sweep(args: list[str], sweep_dir: Path, expected: int, code: Path | None = None) -> dict:
    """One ``rnn-sweep -m`` in its own process group; wall seconds and peak tree memory.

    ``code``: a checkout whose ``rnn_sweep`` the process imports instead (``PYTHONPATH``).
    """
    cmd = [str(RNN_SWEEP), "-m", *args, "train.progress=false", f"hydra.sweep.dir={sweep_dir}"]
    env = {**ENV, "PYTHONPATH": str(code)} if code is not None else ENV
    peak, done = [0.0], threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=code or REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)

    def sample():
        while not done.wait(0.2):
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    statuses = [json.loads(p.read_text())["status"] for p in sweep_dir.glob("*/summary.json")]
    if statuses.count("completed") != expected:
        sys.exit(f"{sweep_dir}: {statuses.count('completed')} of {expected} runs completed")
    return {"wall_s": wall, "peak_tree_mb": peak[0]}


def slice_overrides(quick: bool) -> list[str]:
    grid = [f"{k}={','.join(map(str, v))}" for k, v in SLICE.items()]
    return grid + ["train.epochs=1"] + (["data=small"] if quick else [])


def bench_slice(work: Path, quick: bool) -> dict:
    """The port once per combination, then our three ways of running the slice."""
    port = []
    for n in SLICE["num_steps"]:
        for d in SLICE["state_size"]:
            for seed in SLICE["seed"]:
                port.append(run_port(n, d, 1, seed)["wall_s"] if not quick else 1.0)
    runs = len(port)
    ours = {name: sweep(slice_overrides(quick) + extra, work / f"slice-{name}", runs)["wall_s"]
            for name, extra in [("in-process", [NO_AGG]), ("in-process + aggregation", []),
                                ("cores", ["hydra/launcher=cores", NO_AGG])]}
    return {"port_runs_s": port, "port_s": sum(port), "ours_s": ours}


def port_per_run(quick: bool) -> list[float]:
    """The port's wall per run on a 4-run slice (n 1,20 x d 4,32), when the full slice is not measured."""
    return [1.0] * 4 if quick else [run_port(n, d, 1, 0)["wall_s"] for n in (1, 20) for d in (4, 32)]


def bench_grid(work: Path, quick: bool, seeds: int = 3) -> dict:
    extra = ["data=small", "num_steps=1,2", "state_size=2,4"] if quick else []
    runs = (4 if quick else 100) * seeds
    seed_list = [f"seed={','.join(map(str, range(seeds)))}"] if seeds != 3 else []
    return {name: sweep(["experiment=r2rt_grid", *extra, *seed_list, *launcher], work / f"grid{seeds}-{name}", runs)
            for name, launcher in [("in-process", []), ("cores", ["hydra/launcher=cores"])]}


def bench_styles(work: Path, quick: bool, baseline: Path | None) -> dict:
    """experiment=truncation_styles with this code, then with the baseline checkout."""
    extra = ["data=small", "num_steps=2,4", "state_size=4", "seed=0,1"] if quick else []
    runs = 8 if quick else 140
    out = {"ours": sweep(["experiment=truncation_styles", *extra], work / "styles-ours", runs)}
    if baseline is not None:
        out["baseline"] = sweep(["experiment=truncation_styles", *extra], work / "styles-base", runs, code=baseline)
    return out


def bench_single(work: Path, repeats: int, quick: bool) -> dict:
    epochs = 1 if quick else 3
    port, ours = [], []
    for _ in range(repeats):
        port.append(run_port(5, 4, epochs)["wall_s"])
        ours.append(run_ours(5, 4, epochs, work)["wall_s"])
    return {"port_s": port, "ours_s": ours}


def tables(res: dict) -> list[str]:
    out = []
    if "slice" in res:
        s = res["slice"]
        out += ["", "Grid slice (16 runs: num_steps 1,5,10,20 x state_size 4,32 x seeds 0,1; 1M steps, 1 epoch)", "",
                "| how | wall | port / ours | target |", "|---|---|---|---|",
                f"| article port, one process per run | {s['port_s']:.1f} s | | |"]
        out += [f"| rnn-sweep -m, {name} | {t:.1f} s | **{s['port_s'] / t:.1f}x** | >= 10x |"
                for name, t in s["ours_s"].items()]
    port_run = statistics.median(res["slice"]["port_runs_s"] if "slice" in res else res.get("port_runs_s", [0])) or None
    for key, runs, target in (("grid", 300, ">= 100x the port"), ("grid10", 1000, "<= 60 s, <= 2 GB")):
        if key not in res:
            continue
        out += ["", f"experiment=r2rt_grid, {runs} runs, end to end with aggregation", "",
                "| how | wall | peak memory (process tree) | port x runs / ours | target |", "|---|---|---|---|---|"]
        if port_run:
            out.append(f"| article port, estimated ({runs} x median port run) | {port_run * runs:.0f} s | | | |")
        for name, r in res[key].items():
            ratio = f"**{port_run * runs / r['wall_s']:.0f}x**" if port_run else ""
            out.append(f"| rnn-sweep experiment=r2rt_grid, {name} | {r['wall_s']:.1f} s | "
                       f"{r['peak_tree_mb'] / 1024:.2f} GB | {ratio} | {target} |")
    if "styles" in res:
        st = res["styles"]
        base = st.get("baseline", {}).get("wall_s")
        ours = st["ours"]["wall_s"]
        ratio = f"**{base / ours:.2f}x**" if base else "no baseline"
        out += ["", "experiment=truncation_styles, end to end", "", "| code | wall | baseline / this | target |",
                "|---|---|---|---|", f"| this | {ours:.1f} s | {ratio} | >= 2x |"]
        if base:
            out.append(f"| baseline | {base:.1f} s | | |")
    if "single" in res:
        p, o = statistics.median(res["single"]["port_s"]), statistics.median(res["single"]["ours_s"])
        out += ["", f"Single run, whole process, 3 epochs at n=5 d=4 (medians of {len(res['single']['port_s'])})", "",
                "| article port | rnn-sweep | port / ours | target |", "|---|---|---|---|",
                f"| {p:.2f} s | {o:.2f} s | **{p / o:.2f}x** | >= 2x |"]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["slice", "grid", "grid10", "styles", "single"], action="append",
                    help="measure only this target (repeatable); default: all")
    ap.add_argument("--repeats", type=int, default=3, help="repetitions of the single-run measurement")
    ap.add_argument("--baseline", type=Path, help="a checkout of the code to compare truncation_styles against")
    ap.add_argument("--quick", action="store_true", help="smoke-test the script on tiny data (numbers mean nothing)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    only = args.only or ["slice", "grid", "grid10", "styles", "single"]
    res: dict = {"machine": machine(), "load_before": load()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "slice" not in only and ({"grid", "grid10"} & set(only)):
            res["port_runs_s"] = port_per_run(args.quick)
        for name, fn in [("slice", lambda: bench_slice(work, args.quick)), ("grid", lambda: bench_grid(work, args.quick)),
                         ("grid10", lambda: bench_grid(work, args.quick, seeds=10)),
                         ("styles", lambda: bench_styles(work, args.quick, args.baseline)),
                         ("single", lambda: bench_single(work, args.repeats, args.quick))]:
            if name in only:
                print(f"measuring {name} ...", file=sys.stderr, flush=True)
                res[name] = fn()
    res["load_after"] = load()
    lines = [f"Machine: {res['machine']}; load average before {res['load_before']}, after {res['load_after']}."]
    lines += tables(res)
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"targets-{stamp}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"targets-{stamp}.json").write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
