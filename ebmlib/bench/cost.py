"""What a training step costs, counted rather than timed: its floating-point operations and the operators it
dispatches, and the time these two counts predict on a given device.

A step of the small networks in this book is bound by one of two things. On a CPU, or with large batches, by
arithmetic: its time is about its FLOPs over the throughput the device reaches. On a GPU, by launches: every ATen
operator the step dispatches starts at least one kernel, and a kernel costs a few microseconds however little
it computes. :func:`~ebmlib.bench.count_operations` counts both for any callable;
:func:`~ebmlib.bench.predict_seconds` turns the counts into the larger of the two times,
``max(FLOPs / throughput, operators × launch latency)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ebmlib.bench.base import Task, check_task
from ebmlib.bench.methods import Method, check_methods
from ebmlib.bench.runner import advance, start_run
from ebmlib.utils import check_int, check_positive


@dataclass(frozen=True)
class OperationCount:
    """The work of one call: ``flops`` of matrix products and convolutions (by the formulas of
    :mod:`torch.utils.flop_counter`; elementwise operations are not counted) and ``operators``, the ATen operators
    dispatched, forward and backward."""

    flops: int
    operators: int

    def __post_init__(self) -> None:
        check_int(self.flops, "flops", minimum=0)
        check_int(self.operators, "operators", minimum=0)


@dataclass(frozen=True)
class DeviceModel:
    """What a device does per second: ``flops_per_second`` reached on these networks' matrix products, and
    ``launch_seconds``, the cost of one dispatched operator however small."""

    name: str
    flops_per_second: float
    launch_seconds: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        check_positive(self.flops_per_second, "flops_per_second")
        check_positive(self.launch_seconds, "launch_seconds")


class _Counter(TorchDispatchMode):
    """Counts the ATen operators dispatched while it is active, autograd's backward operators included, and the
    FLOPs of those that :mod:`torch.utils.flop_counter` has a formula for. (``FlopCounterMode`` itself tracks
    modules with backward hooks, which ``torch.autograd.grad`` inside a step, as in Gibbs-with-Gradients,
    does not allow.)"""

    def __init__(self) -> None:
        super().__init__()
        self.operators = 0
        self.flops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.operators += 1
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += int(formula(*args, **kwargs, out_val=out))
        return out


def count_operations(fn: Callable[[], Any]) -> OperationCount:
    """FLOPs and dispatched operators of one call of ``fn()`` (a callable without arguments).

    Examples
    --------
    >>> import torch
    >>> a = torch.ones(4, 8)
    >>> count_operations(lambda: a @ a.T)
    OperationCount(flops=256, operators=2)
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable without arguments, got {type(fn).__name__}")
    with _Counter() as counter:
        fn()
    return OperationCount(counter.flops, counter.operators)


def predict_seconds(count: OperationCount, device: DeviceModel) -> float:
    """Predicted time of the work ``count`` on ``device``: the larger of its arithmetic time and its launch time.

    Parameters
    ----------
    count
        From :func:`count_operations`.
    device
        The device's throughput and launch latency.
    """
    if not isinstance(count, OperationCount):
        raise ValueError(f"count must be an OperationCount, got {type(count).__name__}")
    if not isinstance(device, DeviceModel):
        raise ValueError(f"device must be a DeviceModel, got {type(device).__name__}")
    return max(count.flops / device.flops_per_second, count.operators * device.launch_seconds)


def count_methods(task: Task, methods: Sequence[Method | str], *, warmup: int = 1) -> list[dict[str, Any]]:
    """FLOPs and operators of one training step of each method on ``task`` (after ``warmup`` steps, so that
    persistent chains and adapted step sizes are past their first iteration).

    Rows with ``task``, ``method``, ``flops`` and ``operators``; ``methods`` are names of
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
        rows.append({"task": task.name, "method": method.name, "flops": count.flops, "operators": count.operators})
    return rows
