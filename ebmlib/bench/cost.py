"""What training costs, counted rather than timed, and the time the counts predict on a given device.

A step of the small networks in this book is bound by arithmetic (its FLOPs over the throughput the device
reaches), by memory traffic (the bytes its operators write over the bandwidth) or, on a GPU, by launches: every
ATen operator the step dispatches starts at least one kernel, and PyTorch spends several microseconds of host
time on each however little it computes. :func:`~ebmlib.ledger.count_operations` counts all three;
:func:`~ebmlib.bench.predict_seconds` turns counts into time on a :class:`~ebmlib.bench.DeviceModel`: on a GPU
the larger of the three times (the host queues kernels while earlier ones run), on a CPU their sum (one thread
does everything in turn).

:func:`~ebmlib.bench.chapter_costs` applies the model to the cost ledgers (:mod:`ebmlib.ledger`) that the
smoke run writes: every training run and sampling loop of a chapter, counted at its ``full`` shapes, times the
steps it takes at ``full``. ``python -m ebmlib.bench cost`` prints the result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ebmlib.bench.base import Task, check_task
from ebmlib.bench.methods import Method, check_methods
from ebmlib.bench.runner import advance, start_run
from ebmlib.ledger import LARGE_OUTPUT_BYTES, OperationCount, RunRecord, count_operations, read_ledger
from ebmlib.utils import check_int, check_positive

# A free Colab session ends after at most 12 hours (Colab's FAQ); a chapter's resumable runs continue in the next.
_COLAB_SESSION_SECONDS = 12 * 3600.0


@dataclass(frozen=True)
class DeviceModel:
    """What a device does per second: ``flops_per_second`` reached on these networks' matrix products,
    ``bytes_per_second`` written by elementwise work (``math.inf``: not modelled), ``large_bytes_per_second`` the
    same into new tensors of at least :data:`~ebmlib.ledger.LARGE_OUTPUT_BYTES` (``None``: as fast as
    ``bytes_per_second``; on a CPU each of their pages is a page fault), and ``launch_seconds``, the cost of one
    dispatched operator however small. ``overlap``: the times overlap (a GPU, whose host queues kernels while
    earlier ones run) or add up (a CPU). ``source`` says where the numbers come from."""

    name: str
    flops_per_second: float
    launch_seconds: float
    bytes_per_second: float = math.inf
    overlap: bool = True
    source: str = ""
    large_bytes_per_second: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        check_positive(self.flops_per_second, "flops_per_second")
        check_positive(self.launch_seconds, "launch_seconds")
        for name in ("bytes_per_second", "large_bytes_per_second"):
            value = getattr(self, name)
            if not (value is None and name == "large_bytes_per_second") and not (
                    isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not isinstance(self.overlap, bool):
            raise ValueError(f"overlap must be True or False, got {self.overlap!r}")


# Fraction of the published peak that the matrix products (batch and width a few hundred) and the elementwise
# operators of these networks reach; assumed, not measured (no GPU has run this model yet).
_GPU_FLOP_EFFICIENCY = 0.5
_GPU_BANDWIDTH_EFFICIENCY = 0.7
# Host time PyTorch spends per eager operator (dispatch, autograd bookkeeping, kernel launch): assumed 10 µs on
# Colab's slower host CPUs and 6 µs on a server's; this machine's CPU measures its own (calibrate_cpu).
_SOURCE = ("fp32 peak and memory bandwidth from NVIDIA's datasheet, times {flops:.0%} and {bw:.0%} (assumed); "
           "{launch:.0f} µs per operator (assumed)")


def _gpu(name: str, peak_tflops: float, bandwidth_gb: float, launch_us: float) -> DeviceModel:
    return DeviceModel(name, flops_per_second=peak_tflops * 1e12 * _GPU_FLOP_EFFICIENCY,
                       launch_seconds=launch_us * 1e-6, bytes_per_second=bandwidth_gb * 1e9 * _GPU_BANDWIDTH_EFFICIENCY,
                       overlap=True, source=_SOURCE.format(flops=_GPU_FLOP_EFFICIENCY, bw=_GPU_BANDWIDTH_EFFICIENCY,
                                                           launch=launch_us))


GPUS: dict[str, DeviceModel] = {
    "t4": _gpu("T4 (Colab's free GPU)", 8.1, 320.0, 10.0),
    "a100": _gpu("A100 SXM 80 GB", 19.5, 2039.0, 6.0),
    "h100": _gpu("H100 SXM", 67.0, 3350.0, 6.0),
}


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _elementwise_bytes_per_second(n: int, repeats: int) -> float:
    """Bytes per second written by a mix of the elementwise operators of a training step (sums, products, the
    SiLU activation and its gradient, sigmoid, exp) on new ``n``-element float32 tensors."""
    x, y = torch.randn(n), torch.randn(n)
    mix = (torch.add, torch.mul, lambda a, _: nn.functional.silu(a), lambda a, b: torch.ops.aten.silu_backward(b, a),
           lambda a, _: torch.sigmoid(a), lambda a, _: torch.exp(a))
    seconds = _best_seconds(lambda: [op(x, y) for op in mix], repeats)
    return len(mix) * n * 4 / seconds


def calibrate_cpu(threads: int = 1, repeats: int = 20) -> DeviceModel:
    """This machine's CPU as a :class:`DeviceModel`, measured on ``threads`` threads: the throughput of a
    256 × 256 × 256 matrix product; the bytes per second a mix of elementwise operators writes into new 1 MiB
    tensors, and into new 64 MiB ones (beyond :data:`~ebmlib.ledger.LARGE_OUTPUT_BYTES`, fresh pages); and
    the time per operator of a forward-backward pass and Adam step of a network too small to compute anything."""
    check_int(threads, "threads", minimum=1)
    check_int(repeats, "repeats", minimum=1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    # glibc's mmap threshold grows to the size of the largest mapped block freed (at most 32 MiB): a long
    # training run has raised it, a fresh process has not, and then even 1 MiB tensors would be fresh pages.
    torch.empty(LARGE_OUTPUT_BYTES // 4 - 2**18).fill_(0)  # made, written and freed at once
    try:
        a, b = torch.randn(256, 256), torch.randn(256, 256)
        flops = 2 * 256**3 / _best_seconds(lambda: a @ b, repeats)
        bandwidth = _elementwise_bytes_per_second(2**18, repeats)
        large_bandwidth = _elementwise_bytes_per_second(2**24, max(1, repeats // 5))
        tiny = nn.Sequential(nn.Linear(2, 2), nn.SiLU(), nn.Linear(2, 1))
        optimizer = torch.optim.Adam(tiny.parameters())
        batch = torch.randn(1, 2)

        def step() -> None:
            optimizer.zero_grad()
            tiny(batch).sum().backward()
            optimizer.step()

        operators = count_operations(step).operators
        launch = _best_seconds(lambda: [step() for _ in range(20)], repeats) / (20 * operators)
    finally:
        torch.set_num_threads(before)
    return DeviceModel(f"this CPU, {threads} thread{'s' * (threads > 1)}", flops_per_second=flops,
                       launch_seconds=launch, bytes_per_second=bandwidth, overlap=False,
                       source="measured by ebmlib.bench.cost.calibrate_cpu", large_bytes_per_second=large_bandwidth)


def predict_seconds(count: OperationCount, device: DeviceModel) -> float:
    """Predicted time of the work ``count`` on ``device``: its arithmetic, memory and launch times, the largest
    of them where the device overlaps them (a GPU), their sum where it does not (a CPU).

    Parameters
    ----------
    count
        From :func:`~ebmlib.ledger.count_operations`.
    device
        The device's throughput, bandwidth and launch latency.
    """
    if not isinstance(count, OperationCount):
        raise ValueError(f"count must be an OperationCount, got {type(count).__name__}")
    if not isinstance(device, DeviceModel):
        raise ValueError(f"device must be a DeviceModel, got {type(device).__name__}")
    large = device.large_bytes_per_second or device.bytes_per_second
    memory = (count.bytes - count.large_bytes) / device.bytes_per_second + count.large_bytes / large
    times = (count.flops / device.flops_per_second, memory, count.operators * device.launch_seconds)
    return max(times) if device.overlap else sum(times)


def count_methods(task: Task, methods: Sequence[Method | str], *, warmup: int = 1) -> list[dict[str, Any]]:
    """FLOPs, operators and bytes of one training step of each method on ``task`` (after ``warmup`` steps, so
    that persistent chains and adapted step sizes are past their first iteration).

    Rows with ``task``, ``method``, ``flops``, ``operators`` and ``bytes``; ``methods`` are names of
    :data:`~ebmlib.bench.METHODS` or :class:`~ebmlib.bench.Method` objects (a variant with other settings).
    """
    check_task(task)
    check_int(warmup, "warmup", minimum=0)
    rows = []
    for method in check_methods(methods):
        run = start_run(task, method, 0, ema_decay=None)
        if warmup:
            advance(run, warmup)
        count = count_operations(partial(advance, run, 1))
        rows.append({"task": task.name, "method": method.name, "flops": count.flops, "operators": count.operators,
                     "bytes": count.bytes})
    return rows


def _check_records(records: Any, name: str = "records") -> Sequence[RunRecord]:
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence) or not all(
            isinstance(r, RunRecord) for r in records):
        raise ValueError(f"{name} must be a sequence of ebmlib.ledger.RunRecord, got {type(records).__name__}")
    return records


def _check_devices(devices: Any) -> Mapping[str, DeviceModel]:
    if not isinstance(devices, Mapping) or not devices or not all(
            isinstance(k, str) and isinstance(d, DeviceModel) for k, d in devices.items()):
        raise ValueError(f"devices must be a non-empty mapping of names to DeviceModel, got {devices!r}")
    return devices


def read_ledgers(folder: str | Path) -> dict[str, list[RunRecord]]:
    """Every ``<chapter>.jsonl`` ledger in ``folder``, by chapter."""
    if not isinstance(folder, (str, Path)):
        raise ValueError(f"folder must be a path, got {type(folder).__name__}")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder must be a folder of cost ledgers (<chapter>.jsonl), got {folder}")
    return {path.stem: read_ledger(path) for path in sorted(folder.glob("*.jsonl"))}


def chapter_costs(records: Sequence[RunRecord], devices: Mapping[str, DeviceModel]) -> dict[str, Any]:
    """A chapter's work at ``full`` from its smoke-run ledger: training runs and steps, FLOPs, operators, and the
    predicted seconds on each of ``devices``, of which ``evaluation_seconds`` are spent in sampling and evaluation
    loops (records of kind ``"evaluation"``).

    Each record's one counted step is multiplied by the steps of that run or loop at ``full`` and by the number
    of ``full`` runs it stands for (:func:`~ebmlib.ledger.repeat_factor`). A record whose step count the smoke
    run did not carry (arithmetic on a :class:`~ebmlib.ledger.Capped` count gives a plain one) is counted at the
    steps it ran; ``uncarried`` counts such training runs. ``runs`` and ``steps`` count training only.
    """
    _check_records(records)
    _check_devices(devices)
    totals: dict[str, Any] = {"runs": 0.0, "steps": 0.0, "flops": 0.0, "operators": 0.0, "uncarried": 0,
                              "seconds": {name: 0.0 for name in devices},
                              "evaluation_seconds": {name: 0.0 for name in devices}}
    for record in records:
        steps = record.full_steps if record.full_steps is not None else record.steps
        weight = steps * record.repeats
        if record.kind == "training":
            totals["uncarried"] += record.full_steps is None
            totals["runs"] += record.repeats
            totals["steps"] += weight
        totals["flops"] += record.step.flops * weight
        totals["operators"] += record.step.operators * weight
        for name, device in devices.items():
            seconds = predict_seconds(record.step, device) * weight
            totals["seconds"][name] += seconds
            if record.kind == "evaluation":
                totals["evaluation_seconds"][name] += seconds
    return totals


def check_against_measured(records: Sequence[RunRecord], device: DeviceModel) -> tuple[float, float]:
    """(predicted, measured) seconds of the timed steps of ``records`` (training runs and sampling loops) on
    ``device`` — the model's check on a CPU, where each record's timed steps ran."""
    _check_records(records)
    if not isinstance(device, DeviceModel):
        raise ValueError(f"device must be a DeviceModel, got {type(device).__name__}")
    timed = [r for r in records if r.timed_steps > 0]
    return (sum(predict_seconds(r.step, device) * r.timed_steps for r in timed), sum(r.seconds for r in timed))


def check_on_this_cpu(ledgers: Mapping[str, Sequence[RunRecord]],
                      calibrate: Callable[[int], DeviceModel] = calibrate_cpu) -> dict[str, tuple[float, float]]:
    """(predicted, measured) seconds of every chapter's timed steps on this CPU
    (:func:`check_against_measured`), each run predicted with the CPU calibrated at the thread count it ran with;
    ``calibrate(threads)`` is called once per thread count found in ``ledgers``."""
    if not isinstance(ledgers, Mapping):
        raise ValueError(f"ledgers must be a mapping of chapter names to records, got {type(ledgers).__name__}")
    if not callable(calibrate):
        raise ValueError(f"calibrate must be callable with a thread count, got {type(calibrate).__name__}")
    for chapter, records in ledgers.items():
        _check_records(records, f"ledgers[{chapter!r}]")
    cpus = {threads: calibrate(threads) for threads in sorted({r.threads for rs in ledgers.values() for r in rs})}
    checks = {}
    for chapter, records in ledgers.items():
        pairs = [check_against_measured([r for r in records if r.threads == t], cpu) for t, cpu in cpus.items()]
        checks[chapter] = (sum(p for p, _ in pairs), sum(m for _, m in pairs))
    return checks


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_cost_table(ledgers: Mapping[str, Sequence[RunRecord]], devices: Mapping[str, DeviceModel],
                      colab: str | None = "t4", checks: Mapping[str, float | None] | None = None) -> str:
    """A Markdown table of :func:`chapter_costs` per chapter: training runs (with how many of them the smoke run
    could only count at its own length, "short") and steps, TFLOP and operators ("kernels") at ``full``, the
    predicted time (training, sampling and evaluation) on each device, the share of it spent sampling and
    evaluating (on the device named ``colab``, else the first) and, unless ``colab`` is ``None``, how many
    12-hour Colab sessions that device needs; ``checks`` adds a column ("check") of the model's predicted over
    measured time on this CPU, by chapter. A chapter none of whose training runs' full lengths are known
    (budgets in seconds) shows "—"."""
    if not isinstance(ledgers, Mapping):
        raise ValueError(f"ledgers must be a mapping of chapter names to records, got {type(ledgers).__name__}")
    for chapter, records in ledgers.items():
        _check_records(records, f"ledgers[{chapter!r}]")
    _check_devices(devices)
    if checks is not None and not isinstance(checks, Mapping):
        raise ValueError(f"checks must be None or a mapping of chapter names to ratios, got {type(checks).__name__}")
    if colab is not None and colab not in devices:
        raise ValueError(f"colab must be None or name one of devices {sorted(devices)}, got {colab!r}")
    share = colab if colab is not None else next(iter(devices))
    head = (["ch.", "steps (runs)", "TFLOP", "kernels"]
            + [devices[n].name.split()[0] for n in devices]
            + ["sampling"]
            + (["Colab"] if colab is not None else [])
            + (["check"] if checks is not None else []))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for chapter, records in ledgers.items():
        cost = chapter_costs(records, devices)
        number = chapter.split("_")[0]
        label = (number.lstrip("0") or "0") if number.isdigit() else chapter
        trained = sum(r.kind == "training" for r in records)
        unknown = trained and cost["uncarried"] == trained  # e.g. runs with budgets in seconds
        n = cost["uncarried"]
        runs = f"{cost['runs']:.0f}"
        runs += f", {n} short" if n and not unknown else ""
        cells = [label, ("—" if unknown else f"{cost['steps']:,.0f}") + f" ({runs})"] + (
            ["—"] * (3 + len(devices)) if unknown else [
            f"{cost['flops'] / 1e12:,.0f}", f"{cost['operators'] / 1e9:,.2f} G",
            *(_duration(cost["seconds"][name]) for name in devices),
            f"{cost['evaluation_seconds'][share] / max(cost['seconds'][share], 1e-300):.0%}"])
        if colab is not None:
            sessions = math.ceil(cost["seconds"][colab] / _COLAB_SESSION_SECONDS)
            cells.append("—" if unknown else str(sessions))
        if checks is not None:
            ratio = checks.get(chapter)
            cells.append("—" if ratio is None else f"{ratio:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
