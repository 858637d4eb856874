"""The command line, ``python -m ebmlib.bench``: ``methods`` (every method on a task at equal compute, written as
a tidy CSV and an anytime plot), ``rmwggis`` (time and memory of RM vs RMwGGIS by dimension) and ``ensemble``
(batched ensembles against separate runs) and ``cost`` (the predicted training time of every chapter at ``full``
from the smoke run's cost ledgers)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import torch

from ebmlib.bench.cluster import BACKENDS
from ebmlib.bench.cost import GPUS, calibrate_cpu, check_on_this_cpu, format_cost_table, read_ledgers
from ebmlib.bench.ensemble import DEFAULT_KS, ENSEMBLE_CASES, bench_ensemble, format_ensemble_table
from ebmlib.bench.methods import METHODS, methods_for
from ebmlib.bench.rmwggis import DEFAULT_DIMS, bench_rmwggis, format_table
from ebmlib.bench.runner import Budget, compare_methods
from ebmlib.bench.summary import equal_budget, plot_anytime, write_csv
from ebmlib.bench.tasks import TASKS, make_task
from ebmlib.utils import describe_hardware, get_device


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ebmlib.bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cmp = commands.add_parser("methods", help="every method of a task at equal compute: CSV + anytime plot")
    cmp.add_argument("--task", required=True, choices=TASKS)
    length = cmp.add_mutually_exclusive_group(required=True)
    length.add_argument("--budget", type=float, help="training seconds per run (evaluation not counted)")
    length.add_argument("--iterations", type=int, help="training iterations per run instead of seconds")
    cmp.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    cmp.add_argument("--methods", nargs="+", default=None, choices=sorted(METHODS),
                     help="default: every method of the task's kind")
    cmp.add_argument("--scale", default="book", choices=("ci", "book", "full"), help="task sizes")
    cmp.add_argument("--checkpoints", type=int, default=5, help="log-spaced evaluations per run")
    cmp.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: best available)")
    cmp.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for <task>.csv and <task>.png")
    cmp.add_argument("--run-dir", type=Path, default=None,
                     help="keep each finished run here; rerunning the command resumes the sweep from it")
    cmp.add_argument("--backend", default="inprocess", choices=BACKENDS,
                     help="train the runs in this process, or as tasks on a Ray cluster (one per GPU or node)")
    cmp.add_argument("--address", default=None,
                     help="with --backend ray: the cluster's address, host:port (default: RAY_ADDRESS, a cluster "
                          "started on this machine, else a new local one)")
    rm = commands.add_parser("rmwggis", help="ratio matching vs RMwGGIS, one training step (paper Table 2)")
    rm.add_argument("--dims", type=int, nargs="+", default=list(DEFAULT_DIMS), help="data dimensions d")
    rm.add_argument("--batch-size", type=int, default=256)
    rm.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: best available)")
    rm.add_argument("--repeats", type=int, default=3, help="timed steps per measurement (median)")
    rm.add_argument("--n-samples", type=int, default=10, help="neighbours per point for RMwGGIS")
    rm.add_argument("--chunk-size", type=int, default=None, help="rows per checkpointed chunk for exact RM")
    rm.add_argument("--rank-one", action="store_true",
                    help="also time exact RM through the rank-one first layer (MLPEnergy's fast path)")
    rm.add_argument("--rank-one-chunk-size", type=int, default=None,
                    help="rows per checkpointed chunk for the rank-one path (default: one pass)")
    ens = commands.add_parser("ensemble", help="K networks trained as one batched run vs K separate runs")
    ens.add_argument("--methods", nargs="+", default=None, choices=list(ENSEMBLE_CASES),
                     help="default: every run the chapters batch")
    ens.add_argument("--ks", type=int, nargs="+", default=list(DEFAULT_KS), help="ensemble sizes K")
    ens.add_argument("--n-iters", type=int, default=20, help="iterations per timing")
    ens.add_argument("--repeats", type=int, default=3, help="timings per measurement (median)")
    ens.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: best available)")
    cost = commands.add_parser("cost", help="predicted training time of every chapter at full, from the smoke run")
    cost.add_argument("--device", nargs="+", default=["t4", "a100", "h100"], choices=[*GPUS, "cpu"],
                      help="devices to predict for (cpu: this machine, measured on one thread)")
    cost.add_argument("--ledgers", type=Path, default=Path("_build/smoke/cost"),
                      help="the smoke run's cost ledgers, <chapter>.jsonl (make test-full-smoke writes them)")
    cost.add_argument("--check", type=Path, nargs="*", default=[],
                      help="ledgers whose timed CPU steps check the model, e.g. _build/smoke/cost")
    return parser


def _methods(args: argparse.Namespace) -> int:
    device = get_device(args.device)
    task = make_task(args.task, args.scale, device=device)
    methods = args.methods or methods_for(task)
    budget = Budget(seconds=args.budget, iterations=args.iterations, n_checkpoints=args.checkpoints)
    rows = compare_methods(task, methods, args.seeds, budget, run_dir=args.run_dir, backend=args.backend,
                           address=args.address)
    csv_path = write_csv(rows, args.out / f"{task.name}.csv")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    plot_anytime(ax, rows, task.primary)
    ax.set_title(f"{task.description}\n{describe_hardware(device)}", fontsize=9)
    ax.legend(fontsize=7)
    fig.savefig(args.out / f"{task.name}.png", dpi=150)
    unit = "s" if args.budget is not None else " iterations"
    print(f"{task.description}: {len(args.seeds)} seeds, budget {args.budget or args.iterations}{unit}, "
          f"{describe_hardware(device)}; wrote {csv_path} and {task.name}.png\n")
    print(f"| method | {task.primary} (mean) | std | diverged | seconds | iterations |\n|---|---|---|---|---|---|")
    for row in equal_budget(rows, task.primary):
        print(f"| {row['method']} | {row['mean']:.4g} | {row['std']:.2g} | {row['diverged']} | "
              f"{row['seconds']:.3g} | {row['iterations']:.0f} |")
    return 0


def _rmwggis(args: argparse.Namespace) -> int:
    device = get_device(args.device)
    rows = bench_rmwggis(args.dims, batch_size=args.batch_size, device=device, repeats=args.repeats,
                         n_samples=args.n_samples, chunk_size=args.chunk_size, rank_one=args.rank_one,
                         rank_one_chunk_size=args.rank_one_chunk_size)
    chunking = "" if args.chunk_size is None else f", RM chunk size {args.chunk_size}"
    print(
        f"One training step (forward + backward + Adam), exact RM vs biased RMwGGIS (s = {args.n_samples}); "
        f"{describe_hardware(device)}; batch size {args.batch_size}{chunking}; "
        f"median of {args.repeats}; peak tensor memory\n"
    )
    print(format_table(rows))
    if args.rank_one:
        chunks = "one pass" if args.rank_one_chunk_size is None else f"chunks of {args.rank_one_chunk_size} rows"
        print(f"\nExact RM through the rank-one first layer ({chunks}):\n")
        print("| d | RM rank-one ms | RM rank-one MiB | speed-up over generic RM |\n|---|---|---|---|")
        for row in rows:
            ratio = "—" if row["rank_one_speedup"] is None else f"{row['rank_one_speedup']:.2f}"
            print(f"| {row['d']} | {row['rm1_ms']:.1f} | {row['rm1_mib']:.1f} | {ratio} |")
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    device = get_device(args.device)
    rows = bench_ensemble(args.methods, args.ks, n_iters=args.n_iters, repeats=args.repeats, device=device)
    print(f"Speed-up of a K-member ensemble over K separate runs (time per member-step; above 1: the ensemble is "
          f"faster); {describe_hardware(device)}; {torch.get_num_threads()} thread(s); median of {args.repeats} "
          f"timings of {args.n_iters} iterations\n")
    print(format_ensemble_table(rows))
    return 0


def _cost(args: argparse.Namespace) -> int:
    ledgers = read_ledgers(args.ledgers)
    devices = {name: GPUS[name] if name != "cpu" else calibrate_cpu(1) for name in args.device}
    print("Training at `full`, predicted from one counted step of every run at its full shapes (smoke run):\n")
    print(format_cost_table(ledgers, devices, colab="t4" if "t4" in devices else None))
    for name, device in devices.items():
        print(f"\n{name}: {device.flops_per_second / 1e9:,.0f} GFLOP/s, {device.bytes_per_second / 1e9:,.1f} GB/s, "
              f"{device.launch_seconds * 1e6:.1f} µs per operator; {device.source}")
    for folder in args.check:
        checked = read_ledgers(folder)
        print(f"\nCheck on this CPU, {folder}: predicted / measured seconds of the timed training steps\n")
        print("| chapter | threads | predicted s | measured s | ratio |\n|---|---|---|---|---|")
        for chapter, (predicted, measured) in check_on_this_cpu(checked).items():
            threads = ", ".join(str(t) for t in sorted({r.threads for r in checked[chapter]}))
            ratio = f"{predicted / measured:.2f}" if measured > 0 else "—"
            print(f"| {chapter} | {threads} | {predicted:.1f} | {measured:.1f} | {ratio} |")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of ``python -m ebmlib.bench``; returns the exit status."""
    args = _parser().parse_args(argv)
    return {"methods": _methods, "rmwggis": _rmwggis, "ensemble": _ensemble, "cost": _cost}[args.command](args)
