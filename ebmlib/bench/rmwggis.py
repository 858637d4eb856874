"""Time and memory of one training step, exact ratio matching against RMwGGIS, as in Table 2 of Liu, Liu & Ji
("Gradient-guided importance sampling for learning binary EBMs"), whose numbers are in
:data:`~ebmlib.bench.PAPER_TABLE2`; run ``python -m ebmlib.bench rmwggis --help``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor

from ebmlib.losses import ratio_matching, rmwggis
from ebmlib.nets import MLPEnergy
from ebmlib.utils import Measurement, check_device, check_int, get_device, measure

DEFAULT_DIMS = (32, 64, 128, 256, 512, 1024, 2048)
_MIB = 2**20

# Table 2 of the paper: 2spirals, batch 256, time per training batch averaged over an epoch, biased RMwGGIS
# with s = 10, on an unnamed GPU. Every entry is legible in the text, and the printed speedups and memory
# savings agree with these numbers to the digits shown. The paper writes "MB"; we read it as MiB (what
# nvidia-smi and torch report). Its memory is the process total on the GPU (≈ 890 MB even for RMwGGIS at
# d = 32, i.e. CUDA context and allocator cache included), whereas ours is the peak of tensor memory above
# the level before the step: compare savings, not absolute sizes.
PAPER_TABLE2: dict[int, dict[str, float]] = {
    32: {"rm_ms": 63.9, "rmwggis_ms": 41.2, "rm_mib": 957, "rmwggis_mib": 891},
    64: {"rm_ms": 106.5, "rmwggis_ms": 47.2, "rm_mib": 1031, "rmwggis_mib": 893},
    128: {"rm_ms": 185.6, "rmwggis_ms": 58.8, "rm_mib": 1189, "rmwggis_mib": 893},
    256: {"rm_ms": 372.9, "rmwggis_ms": 86.9, "rm_mib": 1545, "rmwggis_mib": 915},
    512: {"rm_ms": 735.2, "rmwggis_ms": 137.7, "rm_mib": 2315, "rmwggis_mib": 919},
    1024: {"rm_ms": 1390.1, "rmwggis_ms": 244.9, "rm_mib": 4237, "rmwggis_mib": 931},
    2048: {"rm_ms": 2684.1, "rmwggis_ms": 434.1, "rm_mib": 9633, "rmwggis_mib": 951},
}
"""The paper's Table 2 (GPU; whole-process memory in MB) by dimension ``d``."""

COLUMNS = ("d", "rm_ms", "rmwggis_ms", "speedup", "rm_mib", "rmwggis_mib", "memory_saving_%")
"""Columns of the rows returned by :func:`~ebmlib.bench.bench_rmwggis` (times in ms, memory in MiB)."""

RANK_ONE_COLUMNS = ("rm1_ms", "rm1_mib", "rank_one_speedup")
"""Further columns with ``rank_one=True``: exact ratio matching through the rank-one first layer (time, memory)
and its speed-up over the generic path (``rm_ms / rm1_ms``)."""
_OOM_MESSAGES = ("out of memory", "can't allocate memory")


def _row(d: int, rm: Measurement | None, fast: Measurement, rank_one: Measurement | None = None) -> dict[str, Any]:
    """One result row; ``rm is None`` means ratio matching ran out of memory."""
    fast_ms, fast_mib = fast.seconds * 1e3, fast.peak_bytes / _MIB
    row: dict[str, Any] = {"d": d, "rmwggis_ms": fast_ms, "rmwggis_mib": fast_mib, "rm_oom": rm is None}
    if rank_one is not None:
        row |= {"rm1_ms": rank_one.seconds * 1e3, "rm1_mib": rank_one.peak_bytes / _MIB, "rank_one_speedup": None}
    if rm is None:
        return {**row, "rm_ms": None, "rm_mib": None, "speedup": None, "memory_saving_%": None}
    rm_ms, rm_mib = rm.seconds * 1e3, rm.peak_bytes / _MIB
    saving = 100 * (1 - fast_mib / rm_mib) if rm_mib > 0 else math.nan
    if rank_one is not None:
        row["rank_one_speedup"] = rm_ms / row["rm1_ms"]
    return {**row, "rm_ms": rm_ms, "rm_mib": rm_mib, "speedup": rm_ms / fast_ms, "memory_saving_%": saving}


def paper_table2_rows() -> list[dict[str, Any]]:
    """:data:`~ebmlib.bench.PAPER_TABLE2` as rows with the columns of :func:`~ebmlib.bench.bench_rmwggis`."""
    rows = []
    for d, v in PAPER_TABLE2.items():
        saving = 100 * (1 - v["rmwggis_mib"] / v["rm_mib"])
        speedup = v["rm_ms"] / v["rmwggis_ms"]
        rows.append({"d": d, **v, "speedup": speedup, "memory_saving_%": saving, "rm_oom": False})
    return rows


def _training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, x: Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss, _ = loss_fn(model, x)
    loss.backward()
    optimizer.step()


def _is_out_of_memory(err: RuntimeError) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or any(m in str(err) for m in _OOM_MESSAGES)


def _measure_step(loss_fn: Callable, x: Tensor, repeats: int, warmup: int = 1) -> Measurement | None:
    """Median time and peak tensor memory of one Adam step on a fresh paper MLP; ``None`` if out of memory."""
    model = MLPEnergy(x.shape[1], hidden=256, depth=3).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    try:
        return measure(partial(_training_step, model, optimizer, loss_fn, x), x.device, repeats=repeats,
                       warmup=warmup)
    except RuntimeError as err:
        if not _is_out_of_memory(err):
            raise
    # The failed step's tensors are garbage now; return the cached blocks so the next measurement starts clean.
    del model, optimizer
    if x.device.type == "cuda":
        torch.cuda.empty_cache()
    return None


def bench_rmwggis(
    dims: Sequence[int] = DEFAULT_DIMS,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    repeats: int = 3,
    n_samples: int = 10,
    chunk_size: int | None = None,
    warmup: int = 1,
    rank_one: bool = False,
    rank_one_chunk_size: int | None = None,
) -> list[dict[str, Any]]:
    """Time and memory of one training step, exact ratio matching vs biased RMwGGIS (paper Table 2).

    For each ``d`` a fresh ``MLPEnergy(d, hidden=256, depth=3)`` (Swish) with Adam takes one step
    (forward + backward + Adam update) on a fixed batch, measured with :func:`ebmlib.utils.measure` (median
    of ``repeats`` timed steps after ``warmup`` untimed ones; peak tensor memory of one step). The batch is uniformly
    random bits, drawn once outside the timed region: the cost of a step does not depend on the bit values,
    so the paper's Gray-coded 2spirals data would time the same. RMwGGIS uses the gradient proposal, the
    biased estimator (eq. 12, the one timed in the paper) and, like the authors' code, ``n_samples``
    distinct neighbours per point.

    Parameters
    ----------
    dims
        Data dimensions; each must be ``>= n_samples``.
    batch_size
        Points per step (256 in the paper).
    device
        Where to run; ``None`` picks :func:`ebmlib.utils.get_device`.
    repeats
        Timed steps per measurement.
    n_samples
        ``s``, neighbours per point for RMwGGIS.
    chunk_size
        Passed to :func:`~ebmlib.losses.ratio_matching`: checkpointed chunks trade one extra forward pass for
        memory (``None``: all ``B·d`` neighbours at once, as the paper does).
    warmup
        Untimed steps before each measurement (0 skips them, as the smoke run does: its times mean nothing).
    rank_one
        Also time exact ratio matching through the rank-one first layer of the MLP
        (:func:`~ebmlib.losses.ratio_matching` with ``rank_one=True``): the same objective and gradient without
        the flipped copies. The ``rm_*`` columns are always the generic path, the paper's algorithm.
    rank_one_chunk_size
        ``chunk_size`` of the rank-one measurement: checkpointed chunks of at most this many neighbour rows
        (``None``: one pass).

    Returns
    -------
    list of dict
        One row per ``d`` with the keys of :data:`~ebmlib.bench.COLUMNS` (times in ms, memory in MiB, saving in percent)
        and ``rm_oom`` (and, with ``rank_one``, :data:`~ebmlib.bench.RANK_ONE_COLUMNS`); if the generic ratio
        matching runs out of memory its entries are ``None`` and ``rm_oom`` is True.
    """
    check_int(batch_size, "batch_size", minimum=1)
    check_int(repeats, "repeats", minimum=1)
    check_int(n_samples, "n_samples", minimum=1)
    check_int(warmup, "warmup", minimum=0)
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or not dims:
        raise ValueError(f"dims must be a non-empty sequence of dimensions, got {dims!r}")
    for i, d in enumerate(dims):
        check_int(d, f"dims[{i}]", minimum=n_samples)
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size", minimum=1)
    device = get_device() if device is None else check_device(device)
    if not isinstance(rank_one, bool):
        raise ValueError(f"rank_one must be a bool, got {rank_one!r}")
    rm_loss = partial(ratio_matching, chunk_size=chunk_size, rank_one=False)
    if rank_one_chunk_size is not None:
        check_int(rank_one_chunk_size, "rank_one_chunk_size", minimum=1)
    rank_one_loss = partial(ratio_matching, rank_one=True, chunk_size=rank_one_chunk_size)
    fast_loss = partial(rmwggis, n_samples=n_samples, estimator="biased", replacement=False)
    # The first steps of a process pay for thread-pool start-up and kernel selection; spend them on a small d.
    warm_x = torch.randint(0, 2, (batch_size, max(n_samples, 32)), device=device).float()
    for loss in (rm_loss, fast_loss, rank_one_loss) if rank_one else (rm_loss, fast_loss):
        _measure_step(loss, warm_x, 1)
    rows = []
    for d in dims:
        x = torch.randint(0, 2, (batch_size, d), device=device).float()
        fast = _measure_step(fast_loss, x, repeats, warmup)
        if fast is None:
            raise RuntimeError(f"RMwGGIS ran out of memory at d = {d}, batch size {batch_size}")
        fast_rm = _measure_step(rank_one_loss, x, repeats, warmup) if rank_one else None
        rows.append(_row(d, _measure_step(rm_loss, x, repeats, warmup), fast, fast_rm))
    return rows


def _format(value: Any, digits: int) -> str:
    if value is None:
        return "OOM"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`~ebmlib.bench.bench_rmwggis` (or :func:`~ebmlib.bench.paper_table2_rows`) rows."""
    header = "| d | RM ms | RMwGGIS ms | speedup | RM MiB | RMwGGIS MiB | memory saving % |"
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not rows:
        raise ValueError(f"rows must be a non-empty sequence of result rows, got {rows!r}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not set(COLUMNS) <= set(row):
            raise ValueError(f"rows[{i}] must be a dict with the keys {COLUMNS}")
    digits = {"speedup": 2, "memory_saving_%": 1}
    lines = [header, "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [_format(row[c], digits.get(c, 1)) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
