"""Benchmarks: rnn-sweep against a literal port of the article's code, same machine, same run.

One command (``make bench``, or ``.venv/bin/python benchmarks/run.py``) measures, with
every implementation in its own subprocess (process start to exit = whole-run wall,
``os.wait4`` = its peak resident memory):

1. single runs at the article's setting (n=5, d=4, 1M steps, 1 epoch; 2 epochs for the
   warm-epoch number) and at n=10, d=16, 3 epochs: data generation per epoch, warm
   epoch, whole-run wall, peak memory, and ratios port / ours;
2. replicas: ``train.replicas=8`` (8 seeds as one computation) against one run;
3. compile reuse: two runs with the same shapes (other seed, other lr) in one process;
4. a sweep: a fixed subset of ``experiment=r2rt_grid`` our way (one ``rnn-sweep -m``
   process; the joblib launcher preset; seeds as replicas) against the port once per combination.

Each single-run measurement is repeated ``--repeats`` times (port and ours interleaved,
so load from other processes hits both alike); tables show medians. Results: a markdown
table on stdout and in ``benchmarks/results/bench-<time>.md`` (+ raw ``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = Path(sys.executable)
RNN_SWEEP = PY.parent / "rnn-sweep"
PORT = REPO / "benchmarks" / "article_port.py"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
SETTINGS = {  # name: (num_steps, state_size, epochs)
    "article": (5, 4, 1), "article-2ep": (5, 4, 2), "n10-d16-3ep": (10, 16, 3)}
SWEEP = {"num_steps": [5, 10], "state_size": [4, 16], "seed": [0, 1, 2], "epochs": 3}  # r2rt_grid subset


def timed(cmd: list[str], cwd: Path) -> dict:
    """Run ``cmd``; return wall seconds, peak RSS (MB) of the process, and its stdout."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024.0, "stdout": stdout}


def run_port(n: int, d: int, epochs: int, seed: int = 0) -> dict:
    r = timed([str(PY), str(PORT), f"--num-steps={n}", f"--state-size={d}", f"--epochs={epochs}",
               f"--seed={seed}"], REPO)
    rec = json.loads(r["stdout"].strip().splitlines()[-1])
    return {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"],
            "data_s": rec["epoch_data_s"], "epoch_s": rec["epoch_train_s"], "final_loss": rec["final_loss"]}


def run_ours(n: int, d: int, epochs: int, workdir: Path, *extra: str) -> dict:
    out = Path(tempfile.mkdtemp(dir=workdir))
    r = timed([str(RNN_SWEEP), f"num_steps={n}", f"state_size={d}", f"train.epochs={epochs}",
               "train.progress=false", f"hydra.run.dir={out}", *extra], REPO)
    summaries = [json.loads(p.read_text()) for p in sorted(out.rglob("summary.json"))]
    t = summaries[0]["timings"]
    return {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"], "runs": len(summaries),
            "data_s": [t["data_s"] / max(1, len(t["epoch_s"]))] * len(t["epoch_s"]), "epoch_s": t["epoch_s"],
            "train_s": t["train_s"], "final_loss": summaries[0]["final_loss"]}


def warm(epochs: list[float]) -> float | None:
    """The warm epoch: the median of every epoch after the first (which compiles)."""
    return statistics.median(epochs[1:]) if len(epochs) > 1 else None


def bench_single(repeats: int, workdir: Path) -> dict:
    """Port and ours per setting, interleaved, ``repeats`` times; plus ours with 8 replicas."""
    raw = {f"{impl}:{name}": [] for name in SETTINGS for impl in ("port", "ours")}
    raw["ours-x8:article"], raw["ours-noxla:article"] = [], []
    for rep in range(repeats):
        for name, (n, d, e) in SETTINGS.items():
            raw[f"port:{name}"].append(run_port(n, d, e))
            raw[f"ours:{name}"].append(run_ours(n, d, e, workdir))
            print(f"  rep {rep + 1}/{repeats} {name}: port {raw[f'port:{name}'][-1]['wall_s']:.1f}s, "
                  f"ours {raw[f'ours:{name}'][-1]['wall_s']:.1f}s", file=sys.stderr, flush=True)
        raw["ours-x8:article"].append(run_ours(5, 4, 1, workdir, "train.replicas=8"))
        raw["ours-noxla:article"].append(run_ours(5, 4, 1, workdir, "train.xla=false"))
    return raw


def compile_reuse_probe() -> dict:
    """In THIS process: two article-setting runs with the same shapes, other seed and lr."""
    sys.path.insert(0, str(REPO))
    from rnn_sweep.task.config import RunConfig
    from rnn_sweep.run.train import train

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (seed, lr) in enumerate([(0, 0.1), (1, 0.05)]):
            cfg = RunConfig(seed=seed)
            cfg.train.progress, cfg.train.optimizer.lr, cfg.train.epochs = False, lr, 2
            t0 = time.perf_counter()
            s = train(cfg, Path(tmp) / str(i))
            out[f"run{i + 1}"] = {"first_epoch_s": s["timings"]["first_epoch_s"], "eval_s": s["timings"]["eval_s"],
                                  "warm_epoch_s": s["timings"]["warm_epoch_s"], "total_s": time.perf_counter() - t0}
    from rnn_sweep.model import engine
    from rnn_sweep.model.backends import ScratchBackend

    out["epoch_traces"] = engine.epoch_fn(ScratchBackend(4), "adagrad", "tf", True, 5).program.experimental_get_tracing_count()
    return out


def bench_compile_reuse(repeats: int) -> list[dict]:
    runs = []
    for _ in range(repeats):
        r = timed([str(PY), str(Path(__file__).resolve()), "--compile-reuse-probe"], REPO)
        runs.append(json.loads(r["stdout"].strip().splitlines()[-1]))
    return runs


# The port trains and prints; it writes no tables or figures. So our sweeps run with the
# aggregation callback off, and aggregating their result is timed on its own.
NO_AGGREGATE = "hydra.callbacks.aggregate.enabled=false"


def sweep_overrides() -> list[str]:
    return [f"{k}={','.join(map(str, v))}" for k, v in SWEEP.items() if k != "epochs"] + \
        [f"train.epochs={SWEEP['epochs']}", "train.progress=false", NO_AGGREGATE]


def bench_sweep(workdir: Path, launcher: str | None) -> dict:
    """The grid subset: the port once per combination vs our sweep variants (each run once)."""
    import itertools

    port = [run_port(n, d, SWEEP["epochs"], seed)
            for n, d, seed in itertools.product(SWEEP["num_steps"], SWEEP["state_size"], SWEEP["seed"])]
    res = {"port": {"wall_s": sum(p["wall_s"] for p in port), "runs": len(port),
                    "peak_rss_mb": max(p["peak_rss_mb"] for p in port)}}
    base = [str(RNN_SWEEP), "-m", "data=r2rt", *sweep_overrides()]
    variants = {"ours (basic launcher, 1 process)": []}
    if launcher:
        variants[f"ours (hydra/launcher={launcher}, {os.cpu_count()} worker processes)"] = [f"hydra/launcher={launcher}"]
    for name, extra in variants.items():
        out = Path(tempfile.mkdtemp(dir=workdir))
        r = timed([*base, f"hydra.sweep.dir={out}", *extra], REPO)
        res[name] = {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"],
                     "runs": len(list(out.rglob("summary.json")))}
        if not extra:  # what the callback would have added: tables + PNG/PDF figures
            agg = timed([str(PY.parent / "rnn-sweep-aggregate"), str(out), "--format", "png,pdf"], REPO)
            res["aggregation"] = {"wall_s": agg["wall_s"], "peak_rss_mb": agg["peak_rss_mb"], "runs": res[name]["runs"]}
    # seeds as replicas: one job per (n, d) trains both seeds at once
    out = Path(tempfile.mkdtemp(dir=workdir))
    seeds = SWEEP["seed"]
    cmd = [str(RNN_SWEEP), "-m", "data=r2rt", f"num_steps={','.join(map(str, SWEEP['num_steps']))}",
           f"state_size={','.join(map(str, SWEEP['state_size']))}", f"seed={seeds[0]}",
           f"train.replicas={len(seeds)}", f"train.epochs={SWEEP['epochs']}", "train.progress=false",
           NO_AGGREGATE, f"hydra.sweep.dir={out}"]
    r = timed(cmd, REPO)
    res["ours (seeds as train.replicas, 1 process)"] = {
        "wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"], "runs": len(list(out.rglob("summary.json")))}
    return res


def machine() -> str:
    """nproc, CPU model, memory, load: the machine the numbers come from."""
    model = platform.processor() or "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({model}), {mem:.0f} GiB RAM, {platform.platform()}; load average {load}"


def _med(runs: list[dict], key, fn=None) -> float | None:
    vals = [fn(r[key]) if fn else r[key] for r in runs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _row(measure: str, setting: str, port: float | None, ours: float | None, target: str, unit: str = "s") -> str:
    fmt = (lambda v: "-" if v is None else f"{v:.3f} {unit}" if unit == "s" else f"{v:.0f} {unit}")
    ratio = f"**{port / ours:.1f}x**" if port and ours else "-"
    return f"| {measure} | {setting} | {fmt(port)} | {fmt(ours)} | {ratio} | {target} |"


def single_table(raw: dict) -> list[str]:
    lines = ["| measure | setting | article port | rnn-sweep | port / ours | target |", "|---|---|---|---|---|---|"]
    for name, label, whole in [("article", "n=5 d=4, 1 epoch", True), ("article-2ep", "n=5 d=4 (2nd of 2 epochs)", False),
                               ("n10-d16-3ep", "n=10 d=16, 3 epochs", True)]:
        p, o = raw[f"port:{name}"], raw[f"ours:{name}"]
        if name != "article":
            lines.append(_row("data generation / epoch (mean, 1st epoch incl.)", label.split(" (")[0],
                              _med(p, "data_s", statistics.mean),
                              _med(o, "data_s", statistics.mean), ">= 20x"))
            lines.append(_row("warm epoch (training)", label, _med(p, "epoch_s", warm), _med(o, "epoch_s", warm),
                              ">= 8x" if name == "article-2ep" else ""))
        if whole:
            lines.append(_row("whole run, process start to exit", label, _med(p, "wall_s"), _med(o, "wall_s"), "> 1x"))
            lines.append(_row("peak memory (RSS)", label, _med(p, "peak_rss_mb"), _med(o, "peak_rss_mb"), "", "MB"))
    p, nx = raw["port:article"], raw["ours-noxla:article"]
    lines.append(_row("whole run, train.xla=false", "n=5 d=4, 1 epoch", _med(p, "wall_s"), _med(nx, "wall_s"), "> 1x"))
    one, eight = raw["ours:article"], raw["ours-x8:article"]
    lines += ["", "| replicas (ours, n=5 d=4, 1 epoch) | 1 run | train.replicas=8 | cost of 8 / cost of 1 | target |",
              "|---|---|---|---|---|"]
    for key, label in [("wall_s", "whole run wall"), ("train_s", "training (compile + epochs)")]:
        a, b = _med(one, key), _med(eight, key)
        lines.append(f"| {label} | {a:.2f} s | {b:.2f} s | **{b / a:.2f}x** | <= 2x |")
    return lines


def reuse_table(runs: list[dict]) -> list[str]:
    f1, f2 = _med([r["run1"] for r in runs], "first_epoch_s"), _med([r["run2"] for r in runs], "first_epoch_s")
    w = _med([r["run1"] for r in runs], "warm_epoch_s")
    e1, e2 = _med([r["run1"] for r in runs], "eval_s"), _med([r["run2"] for r in runs], "eval_s")
    traces = max(r["epoch_traces"] for r in runs)
    return ["| compile reuse (one process, n=5 d=4) | 1st run | 2nd run (seed 1, lr 0.05) | saved per run |",
            "|---|---|---|---|",
            f"| first epoch (incl. trace + XLA compile) | {f1:.3f} s | {f2:.3f} s | {f1 - f2:.3f} s |",
            f"| held-out evaluation (incl. compile) | {e1:.3f} s | {e2:.3f} s | {e1 - e2:.3f} s |",
            f"| warm epoch, for reference | {w:.3f} s | | |",
            f"| traces of the epoch function after both runs | {traces} | | |"]


def sweep_table(res: dict) -> list[str]:
    combos = len(SWEEP["num_steps"]) * len(SWEEP["state_size"]) * len(SWEEP["seed"])
    grid = ", ".join(f"{k}={'/'.join(map(str, v))}" for k, v in SWEEP.items() if k != "epochs")
    port = res["port"]["wall_s"]
    lines = [f"Sweep: {combos} combinations of experiment=r2rt_grid ({grid}; 1M steps, {SWEEP['epochs']} epochs each).",
             "", "| sweep | runs | wall | port / ours | peak RSS (max process) | target |", "|---|---|---|---|---|---|"]
    for name, r in res.items():
        if name == "aggregation":
            continue
        ratio = "" if name == "port" else f"**{port / r['wall_s']:.1f}x**"
        label = "article port, one process per combination" if name == "port" else name
        lines.append(f"| {label} | {r['runs']} | {r['wall_s']:.1f} s | {ratio} | {r['peak_rss_mb']:.0f} MB | "
                     f"{'' if name == 'port' else '>= 5x'} |")
    if "aggregation" in res:
        lines += ["", f"Our sweeps ran with the aggregation callback off (the port writes no tables or figures); "
                      f"`rnn-sweep-aggregate` on the basic-launcher sweep (tables + PNG/PDF figures) took "
                      f"{res['aggregation']['wall_s']:.1f} s on its own."]
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="rnn-sweep vs the article's code (see module docstring)")
    ap.add_argument("--repeats", type=int, default=3, help="repetitions of each single-run measurement")
    ap.add_argument("--skip-sweep", action="store_true", help="leave out the sweep benchmark")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--compile-reuse-probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.compile_reuse_probe:
        print(json.dumps(compile_reuse_probe()))
        return
    t0, start_machine = time.perf_counter(), machine()
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="rnn-sweep-bench-"))
    try:
        print("single runs ...", file=sys.stderr, flush=True)
        single = bench_single(args.repeats, workdir)
        print("compile reuse ...", file=sys.stderr, flush=True)
        reuse = bench_compile_reuse(args.repeats)
        presets = [p for p in ("cores", "joblib") if (REPO / "conf" / "hydra" / "launcher" / f"{p}.yaml").exists()]
        print("sweep ...", file=sys.stderr, flush=True)
        sweep = None if args.skip_sweep else bench_sweep(workdir, (presets or [None])[0])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [f"# rnn-sweep benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"Machine: {start_machine} (at start); load at end {' / '.join(f'{v:.2f}' for v in os.getloadavg())}.",
             f"Single-run numbers: median of {args.repeats} repetitions, port and ours interleaved.", "",
             *single_table(single), "", *reuse_table(reuse)]
    if sweep:
        lines += ["", *sweep_table(sweep)]
    lines += ["", f"Benchmark wall time: {time.perf_counter() - t0:.0f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"bench-{stamp}.md").write_text(text)
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(
        {"machine": start_machine, "single": single, "compile_reuse": reuse, "sweep": sweep}, indent=1, default=str))


if __name__ == "__main__":
    main()
