"""Throughput of batched ensembles: ``K`` networks trained as one run (:func:`~ebmlib.train.fit_ensemble`) against
``K`` separate runs (:func:`~ebmlib.train.fit`), at the shapes of the runs the chapters batch — chapter 1's Table 1
(32-bit toys) and chapter 3's toys (32-bit and base-5 codes); ``python -m ebmlib.bench ensemble``."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ebmlib.data import BaseQCode, GrayCode, sample_toy
from ebmlib.losses import (
    BernoulliPerturbation,
    BitFlipPerturbation,
    EnergyDiscrepancy,
    GridPerturbation,
    OrdinalPerturbation,
    contrastive_divergence,
    ratio_matching,
    rmwggis,
)
from ebmlib.nets import MixedEnergy, MLPEnergy
from ebmlib.samplers import gibbs_binary, gibbs_categorical
from ebmlib.train import LossFn, MemberStreams, fit, fit_ensemble
from ebmlib.utils import check_device, check_int, get_device

DEFAULT_KS = (1, 2, 4, 7, 16)
_BASE, _DIGITS = 5, 8  # chapter 3's base-5 codes: 8 digits per coordinate, 16 columns


@dataclass(frozen=True)
class EnsembleCase:
    """One batched training run of a chapter: the network, the loss and the optimiser settings of one step.

    ``make(dim)`` builds the network for codes of ``dim`` columns; ``loss(dim)`` the loss; ``code`` is
    ``"gray"`` (32 bits) or ``"base5"`` (16 base-5 digits) of the 8 Gaussians toy; batch 128.
    """

    chapter: int
    make: Callable[[int], nn.Module]
    loss: Callable[[int], LossFn]
    code: str
    lr: float
    weight_decay: float = 0.0
    grad_clip: float | None = None
    ema_decay: float | None = None


def _cd_binary(model: nn.Module, x: Tensor) -> Any:
    return contrastive_divergence(model, x, gibbs_binary(model, x, n_sweeps=1), l2_reg=0.3)


def _cd_categorical(model: nn.Module, x: Tensor) -> Any:
    classes = [_BASE] * x.shape[1]
    return contrastive_divergence(model, x, gibbs_categorical(model, x, classes, 1), l2_reg=0.3)


_TABLE1 = dict(chapter=1, make=lambda d: MLPEnergy(d, hidden=128, depth=3), code="gray", lr=2e-3,
               weight_decay=1e-4, grad_clip=1.0)
_TOYS3 = dict(chapter=3, make=lambda d: MLPEnergy(d, hidden=64, depth=3), code="gray", lr=1e-3, grad_clip=5.0,
              ema_decay=0.99)
_CODES3 = _TOYS3 | dict(make=lambda d: MixedEnergy(0, [_BASE] * d, hidden=64, depth=3), code="base5")
ENSEMBLE_CASES: dict[str, EnsembleCase] = {
    "RM": EnsembleCase(loss=lambda d: ratio_matching, **_TABLE1),
    "RMwGGIS (unbiased)": EnsembleCase(loss=lambda d: partial(rmwggis, n_samples=10), **_TABLE1),
    "RMwGGIS (biased)": EnsembleCase(
        loss=lambda d: partial(rmwggis, n_samples=10, estimator="biased", replacement=False), **_TABLE1),
    "RMwRAND": EnsembleCase(loss=lambda d: partial(rmwggis, n_samples=10, proposal="uniform"), **_TABLE1),
    "ED-Bern": EnsembleCase(loss=lambda d: EnergyDiscrepancy(BernoulliPerturbation(0.1)), **_TOYS3),
    "ED-Grid": EnsembleCase(loss=lambda d: EnergyDiscrepancy(BitFlipPerturbation()), **_TOYS3),
    "CD": EnsembleCase(loss=lambda d: _cd_binary, **_TOYS3),
    "ED-Grid (base 5)": EnsembleCase(loss=lambda d: EnergyDiscrepancy(GridPerturbation([_BASE] * d)), **_CODES3),
    "ED-Ord (base 5)": EnsembleCase(loss=lambda d: EnergyDiscrepancy(OrdinalPerturbation([_BASE] * d, 0.01)),
                                    **_CODES3),
    "CD (base 5)": EnsembleCase(loss=lambda d: _cd_categorical, **_CODES3),
}
"""The runs the chapters train as ensembles, by method name (chapter 1: Table 1; chapter 3: the toys)."""


def _batches(case: EnsembleCase, device: torch.device) -> tuple[int, Callable[[], Tensor]]:
    reference = sample_toy("8gaussians", 10_000, generator=torch.Generator().manual_seed(0))
    code = GrayCode.from_samples(reference) if case.code == "gray" else BaseQCode.from_samples(reference, _BASE,
                                                                                                _DIGITS)
    return code.dim, lambda: code.encode(sample_toy("8gaussians", 128, device=device))


def _seconds_per_step(train: Callable[[int], Any], n_iters: int, repeats: int, device: torch.device) -> float:
    """Median seconds per iteration of ``train(n_iters)`` over ``repeats`` calls, after one untimed call."""
    train(2)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        train(n_iters)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) / n_iters)
    return statistics.median(times)


def bench_ensemble(methods: Sequence[str] | None = None, ks: Sequence[int] = DEFAULT_KS, *, n_iters: int = 20,
                   repeats: int = 3, device: torch.device | str | None = None) -> list[dict[str, Any]]:
    """Time per member-step of ``K``-member ensembles against separate runs, for each method and ``K``.

    A separate run is :func:`~ebmlib.train.fit` on one network (Adam, the case's clipping and EMA); ``K`` of them
    cost ``K`` times its time per step. The ensemble is :func:`~ebmlib.train.fit_ensemble` on ``K`` members with
    ``batched=True``, each drawing its own data and random numbers. Both are timed over ``n_iters`` iterations
    (median of ``repeats``, after a warm-up), in this process, one after the other.

    Parameters
    ----------
    methods
        Names of :data:`~ebmlib.bench.ENSEMBLE_CASES` (default: all).
    ks
        Ensemble sizes ``K``.
    n_iters, repeats
        Iterations per timing and timings per measurement.
    device
        Where to run; default :func:`~ebmlib.utils.get_device`.

    Returns
    -------
    list of dict
        One row per method and ``K``: ``method``, ``chapter``, ``K``, ``separate_ms`` (one separate run's time
        per step), ``member_ms`` (the ensemble's time per step divided by ``K``) and ``speedup``
        (``separate_ms / member_ms``: above 1 the ensemble is faster than ``K`` separate runs).
    """
    names = list(ENSEMBLE_CASES) if methods is None else list(methods)
    for name in names:
        if name not in ENSEMBLE_CASES:
            raise ValueError(f"methods must be among {sorted(ENSEMBLE_CASES)}, got {name!r}")
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks:
        raise ValueError(f"ks must be a non-empty sequence of ensemble sizes, got {ks!r}")
    for i, k in enumerate(ks):
        check_int(k, f"ks[{i}]", minimum=1)
    check_int(n_iters, "n_iters", minimum=1)
    check_int(repeats, "repeats", minimum=1)
    device = get_device() if device is None else check_device(device)
    return [row for name in names for row in _bench_case(name, ks, n_iters, repeats, device)]


def _bench_case(name: str, ks: Sequence[int], n_iters: int, repeats: int, device: torch.device) -> list[dict]:
    case = ENSEMBLE_CASES[name]
    dim, next_batch = _batches(case, device)
    loss = case.loss(dim)
    settings = dict(grad_clip=case.grad_clip, ema_decay=case.ema_decay, progress=False)
    torch.manual_seed(0)
    model = case.make(dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=case.lr, weight_decay=case.weight_decay)

    def separate_run(n: int) -> None:
        fit(model, loss, next_batch, n_iters=n, optimizer=optimizer, log_every=n, **settings)

    separate = _seconds_per_step(separate_run, n_iters, repeats, device)
    rows = []
    for k in ks:
        streams = MemberStreams(list(range(k)), device)
        ensemble = streams.build(partial(case.make, dim)).to(device)
        run = partial(_ensemble_run, ensemble, streams, loss, [next_batch] * k, case, settings)
        batched = _seconds_per_step(run, n_iters, repeats, device) / k
        rows.append({"method": name, "chapter": case.chapter, "K": k, "separate_ms": 1e3 * separate,
                     "member_ms": 1e3 * batched, "speedup": separate / batched})
    return rows


def _ensemble_run(ensemble: nn.Module, streams: MemberStreams, loss: LossFn, batches: list, case: EnsembleCase,
                  settings: dict[str, Any], n: int) -> None:
    fit_ensemble(ensemble, streams, loss, batches, n_iters=n, lr=case.lr, weight_decay=case.weight_decay,
                 batched=True, log_every=n, **settings)


def format_ensemble_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`~ebmlib.bench.bench_ensemble` rows: the speed-up per method (rows) and ``K``."""
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not rows:
        raise ValueError(f"rows must be a non-empty sequence of result rows, got {rows!r}")
    ks = sorted({r["K"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["| method | separate ms/step | " + " | ".join(f"K = {k}" for k in ks) + " |",
             "|---|---|" + "---|" * len(ks)]
    for method in methods:
        mine = {r["K"]: r for r in rows if r["method"] == method}
        first = next(iter(mine.values()))
        cells = [f"{mine[k]['speedup']:.2f}×" if k in mine else "" for k in ks]
        lines.append(f"| {method} (ch. {first['chapter']}) | {first['separate_ms']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
