"""Counting what a run costs: the FLOPs, operators and bytes of a step, and a ledger of every training run and
every sampling or evaluation loop.

A step of the small networks in this book is bound by one of three things: arithmetic (its FLOPs), memory
traffic (the bytes its operators write), or, on a GPU, the number of operators it dispatches, each of which
launches at least one kernel however little it computes. :func:`count_operations` counts all three for any
callable; :mod:`ebmlib.bench.cost` turns counts into predicted times.

The ledger: when the environment variable ``EBMLIB_COST`` names a file, :func:`~ebmlib.train.fit` counts one
step of every training run (the second, so that persistent chains and adapted step sizes are past their first
iteration) and appends one JSON line per run to that file (:func:`record_run`): the step's counts, the steps
run and timed, and — in the smoke run, whose iteration counts are :class:`~ebmlib.ledger.Capped` — the steps
the same run takes at ``full`` and how many ``full`` runs it stands for (:func:`~ebmlib.ledger.repeat_factor`).
The samplers' loops do the same through :func:`recorded_steps` (records of kind ``"evaluation"``): drawing
synthetic rows or estimating a partition function can cost more than training the energy. A loop that runs
inside a recorded one (the sampler inside a training step) is part of that step's count and is not recorded
again.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

from ebmlib.utils import check_int

COST_ENV = "EBMLIB_COST"
RUN_KINDS = ("training", "evaluation")


# Outputs at least this large are fresh pages on a CPU: glibc serves allocations above its largest mmap threshold
# (32 MiB on 64-bit Linux) from new mappings, and PyTorch's CPU allocator does not cache them, so writing one
# costs a page fault per 4 kB page on top of the write itself.
LARGE_OUTPUT_BYTES = 32 * 2**20


@dataclass(frozen=True)
class OperationCount:
    """The work of one call: ``flops`` of matrix products and convolutions (by the formulas of
    :mod:`torch.utils.flop_counter`; elementwise operations are not counted), ``operators``, the ATen operators
    dispatched, forward and backward, ``bytes``, the size of the tensors they write (views write nothing), and
    ``large_bytes``, the part of ``bytes`` written into new tensors of at least :data:`LARGE_OUTPUT_BYTES`."""

    flops: int
    operators: int
    bytes: int = 0
    large_bytes: int = 0

    def __post_init__(self) -> None:
        check_int(self.flops, "flops", minimum=0)
        check_int(self.operators, "operators", minimum=0)
        check_int(self.bytes, "bytes", minimum=0)
        check_int(self.large_bytes, "large_bytes", minimum=0)
        if self.large_bytes > self.bytes:
            raise ValueError(f"large_bytes ({self.large_bytes}) must not exceed bytes ({self.bytes})")


class OperationCounter(TorchDispatchMode):
    """A context that counts the ATen operators dispatched while it is active, autograd's backward operators
    included, the FLOPs of those that :mod:`torch.utils.flop_counter` has a formula for, and the bytes of the
    tensors they write. (``FlopCounterMode`` itself tracks modules with backward hooks, which
    ``torch.autograd.grad`` inside a step, as in Gibbs-with-Gradients, does not allow.)"""

    def __init__(self) -> None:
        super().__init__()
        self.operators = 0
        self.flops = 0
        self.bytes = 0
        self.large_bytes = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.operators += 1
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += int(formula(*args, **kwargs, out_val=out))
        aliases = [r.alias_info for r in func._schema.returns]
        if not any(a is not None and not a.is_write for a in aliases):  # a view writes nothing
            sizes = [t.numel() * t.element_size() for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
            self.bytes += sum(sizes)
            if not any(a is not None for a in aliases):  # new tensors (an in-place write reuses its pages)
                self.large_bytes += sum(size for size in sizes if size >= LARGE_OUTPUT_BYTES)
        return out

    @property
    def count(self) -> OperationCount:
        return OperationCount(self.flops, self.operators, self.bytes, self.large_bytes)


def count_operations(fn: Callable[[], Any]) -> OperationCount:
    """FLOPs, dispatched operators and bytes written of one call of ``fn()`` (a callable without arguments).

    Examples
    --------
    >>> import torch
    >>> a = torch.ones(4, 8)
    >>> count_operations(lambda: a @ a.T)
    OperationCount(flops=256, operators=2, bytes=64, large_bytes=0)
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable without arguments, got {type(fn).__name__}")
    with OperationCounter() as counter:
        fn()
    return counter.count


class Capped(int):
    """A count the smoke run lowered (:func:`~ebmlib.scale.smoke_cap`): an ``int`` that remembers its ``full``
    value, so that the cost ledger can scale what one smoke step costs to the ``full`` run.

    Arithmetic on it gives a plain ``int`` (the full value is then lost); ``max`` and ``min`` of capped counts
    return one of them and keep it.
    """

    full: int

    def __new__(cls, value: int, full: int) -> Capped:
        check_int(value, "value", minimum=0)
        check_int(full, "full", minimum=0)
        count = super().__new__(cls, value)
        count.full = int(full)
        return count

    def __getnewargs__(self) -> tuple[int, int]:
        return int(self), self.full


class Repeats(tuple):
    """The first entries of a setting that lists repetitions of one code path (the smoke run's ``first``), which
    remembers how many entries ``full`` has: while a loop iterates over it, :func:`repeat_factor` includes
    ``full / len(self)``, the number of runs at ``full`` that each run of the smoke run stands for."""

    full: int

    def __new__(cls, entries: tuple, full: int) -> Repeats:
        if not isinstance(entries, tuple):
            raise ValueError(f"entries must be a tuple, got {type(entries).__name__}")
        check_int(full, "full", minimum=len(entries))
        kept = super().__new__(cls, entries)
        kept.full = int(full)
        return kept

    def __getnewargs__(self) -> tuple[tuple, int]:
        return tuple(self), self.full

    def __iter__(self):
        return _RepeatsIterator(self)


class _RepeatsIterator:
    """An iterator over a :class:`Repeats` that counts in :func:`repeat_factor` from its first entry until it is
    exhausted or dropped (a ``for`` loop drops it when the loop ends, by exhaustion or ``break``). An iterator
    made but never advanced (tqdm makes one it does not use) does not count."""

    def __init__(self, repeats: Repeats) -> None:
        self.repeats = repeats
        self._entries = tuple.__iter__(repeats)

    def __iter__(self) -> _RepeatsIterator:
        return self

    def __next__(self) -> Any:
        try:
            entry = next(self._entries)
        except StopIteration:
            _LIVE_REPEATS.discard(self)
            raise
        _LIVE_REPEATS.add(self)
        return entry


_LIVE_REPEATS: weakref.WeakSet = weakref.WeakSet()


def repeat_factor() -> float:
    """How many ``full`` runs the code running now stands for: the product of ``full / kept`` over the
    :class:`Repeats` settings that loops are iterating over now (each counted once; 1 outside such loops and
    outside the smoke run)."""
    active = {id(it.repeats): it.repeats for it in list(_LIVE_REPEATS)}
    return math.prod(r.full / max(len(r), 1) for r in active.values())


class _Nesting(threading.local):
    """How many contexts of one kind are open in this thread: one counter per thread, so that runs in other
    threads of the process are not affected."""

    depth = 0

    @contextmanager
    def entered(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1


_UNRECORDED = _Nesting()  # open unrecorded() contexts
_OPEN_LOOPS = _Nesting()  # recorded loops running now; a loop inside one is part of its counted step


def ledger_path() -> Path | None:
    """The ledger file named by ``EBMLIB_COST``, or ``None`` when runs are not recorded (no ``EBMLIB_COST``, or
    inside :func:`unrecorded`)."""
    value = os.environ.get(COST_ENV, "").strip()
    return Path(value).expanduser() if value and not _UNRECORDED.depth else None


@contextmanager
def unrecorded() -> Iterator[None]:
    """A context in which nothing is counted or recorded, even with ``EBMLIB_COST`` set.

    For runs timed against a budget of seconds (:func:`~ebmlib.bench.advance`): a step under the
    :class:`OperationCounter` runs many times slower than the others, and counted inside the budget it would
    take training time from the run and make methods incomparable at equal time.
    """
    with _UNRECORDED.entered():
        yield


@dataclass(frozen=True)
class RunRecord:
    """One training run or sampling loop in the ledger.

    ``step`` is one step's count; ``steps`` the steps this call ran, ``timed_steps`` and ``seconds`` those of
    them timed (every step but the counted one, without callbacks); ``full_steps`` the steps of the same run at
    ``full`` (``None`` where the iteration count was not a :class:`~ebmlib.ledger.Capped` one) and ``repeats``
    the number of ``full`` runs this one stands for; ``members`` the networks trained at once (an ensemble);
    ``threads`` torch's CPU threads during the run; ``kind`` says whether the run trains (``"training"``, a
    :func:`~ebmlib.train.fit` run) or samples and evaluates (``"evaluation"``, a :func:`recorded_steps` loop).
    """

    desc: str
    step: OperationCount
    steps: int
    timed_steps: int
    seconds: float
    full_steps: int | None
    repeats: float
    members: int
    threads: int
    kind: str = "training"

    def __post_init__(self) -> None:
        if self.kind not in RUN_KINDS:
            raise ValueError(f"kind must be one of {RUN_KINDS}, got {self.kind!r}")
        if not isinstance(self.desc, str):
            raise ValueError(f"desc must be a string, got {self.desc!r}")
        if not isinstance(self.step, OperationCount):
            raise ValueError(f"step must be an OperationCount, got {type(self.step).__name__}")
        for name in ("steps", "timed_steps", "members", "threads"):
            check_int(getattr(self, name), name, minimum=0 if name == "timed_steps" else 1)
        if self.full_steps is not None:
            check_int(self.full_steps, "full_steps", minimum=1)
        for name in ("seconds", "repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def record_run(path: Path, record: RunRecord) -> None:
    """Append ``record`` to the ledger at ``path`` as one JSON line."""
    if not isinstance(path, (str, Path)):
        raise ValueError(f"path must be a path, got {type(path).__name__}")
    if not isinstance(record, RunRecord):
        raise ValueError(f"record must be a RunRecord, got {type(record).__name__}")
    row = asdict(record)
    with open(path, "a") as ledger:
        ledger.write(json.dumps(row) + "\n")


def run_record(desc: str, step: OperationCount, n_iters: int, steps: int, timed_steps: int, seconds: float,
               members: int, kind: str = "training") -> RunRecord:
    """The ledger's record of a run of ``n_iters`` iterations (a :class:`~ebmlib.ledger.Capped` count in the
    smoke run), of which this call ran ``steps``."""
    full = getattr(n_iters, "full", None)
    return RunRecord(desc=desc, step=step, steps=steps, timed_steps=timed_steps, seconds=seconds,
                     full_steps=None if full is None else int(full), repeats=repeat_factor(), members=members,
                     threads=torch.get_num_threads(), kind=kind)


@contextmanager
def recorded_loop() -> Iterator[None]:
    """A context whose loops belong to a recorded run: :func:`recorded_steps` inside it records nothing.

    :func:`~ebmlib.train.fit` runs its training loop in it, so that a sampler called by the loss (the short-run
    chains of contrastive divergence) is counted once, as part of the training step that calls it.
    """
    with _OPEN_LOOPS.entered():
        yield


@contextmanager
def flushed_denormals() -> Iterator[None]:
    """Denormal floats (below about 1e-38 in float32) flushed to zero while torch computes on one CPU thread:
    for runs timed against a budget (:func:`~ebmlib.bench.advance`), as :func:`unrecorded` is.

    Denormal arithmetic is 10–100 times slower on x86 CPUs: energy discrepancy on 256 bits drifts into it after
    about 30 iterations and then slows 17-fold per step, which decided comparisons at equal time on a CPU (not on
    a GPU). The flag lives in each thread's floating-point control register and torch's worker threads keep the
    one they started with, so on several threads it would make results depend on when the pool was created:
    there, nothing is changed.
    """
    if torch.get_num_threads() != 1:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def recorded_steps(n_steps: int, desc: str) -> Iterator[int]:
    """``range(n_steps)`` for the loop of a sampler or an evaluation, recorded in the cost ledger.

    With ``EBMLIB_COST`` set and no recorded loop around this one (:func:`recorded_loop`), the second step (the
    first if there is only one) runs under an :class:`OperationCounter`, the others are timed, and when the loop
    ends one record of kind ``"evaluation"`` is appended to the ledger; its ``full_steps`` is ``n_steps.full``
    when ``n_steps`` is :class:`Capped`. Otherwise this is ``range(n_steps)``.

    Examples
    --------
    >>> [step for step in recorded_steps(3, "chains")]
    [0, 1, 2]
    """
    check_int(n_steps, "n_steps", minimum=0)
    if not isinstance(desc, str):
        raise ValueError(f"desc must be a string, got {desc!r}")
    path = ledger_path()
    if path is None or _OPEN_LOOPS.depth:
        yield from range(n_steps)
        return
    counted, count, seconds = min(1, n_steps - 1), None, 0.0
    with recorded_loop():
        for step in range(n_steps):
            if step == counted:
                with OperationCounter() as counter:
                    yield step
                count = counter.count
            else:
                start = time.perf_counter()
                yield step
                seconds += time.perf_counter() - start
    if count is not None:
        record_run(path, run_record(desc, count, n_steps, n_steps, n_steps - 1, seconds, 1, kind="evaluation"))


def repetitions(n: int) -> range | Repeats:
    """``range(n)`` for a loop that repeats one computation ``n`` times (draws of a sample, say); in the smoke
    run, where ``n`` is :class:`Capped`, a :class:`Repeats` of it, so that each repetition kept stands for
    ``n.full / n`` of them in the ledger (:func:`repeat_factor`)."""
    check_int(n, "n", minimum=0)
    full = getattr(n, "full", None)
    return range(n) if full is None else Repeats(tuple(range(n)), max(int(full), int(n)))


def read_ledger(path: str | Path) -> list[RunRecord]:
    """The records of a ledger file, in the order the runs ended."""
    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        raise ValueError(f"path must name a ledger file, got {path!r}")
    rows = []
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        rows.append(RunRecord(**{**row, "step": OperationCount(**row["step"])}))
    return rows
