"""The losses of the tabular experiments of Schröder et al. (2024): the TabED variants (energy discrepancy
with uniform, grid, cyclical, ordinal or structured perturbations of the categorical columns) and TabCD."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ebmlib.data.codes import check_classes
from ebmlib.losses.contrastive import PersistentContrastiveDivergence
from ebmlib.losses.discrepancy import EnergyDiscrepancy
from ebmlib.losses.heat import (
    CyclicalPerturbation,
    GridPerturbation,
    HeatPerturbation,
    MixedPerturbation,
    OrdinalPerturbation,
    UniformPerturbation,
)
from ebmlib.samplers.buffer import ReplayBuffer
from ebmlib.samplers.mixed import langevin_gibbs
from ebmlib.utils import EnergyFn, check_device, check_float_dtype, check_int


def mixed_noise(n: int, n_numeric: int, n_classes: Sequence[int], *, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """Sampler starting rows ``(n, n_numeric + C)``: standard normal numeric columns, uniform codes."""
    check_int(n, "n", minimum=1)
    check_int(n_numeric, "n_numeric", minimum=0)
    n_classes = check_classes(n_classes)
    check_float_dtype(dtype)
    device = None if device is None else check_device(device)
    numeric = torch.randn(n, n_numeric, device=device, dtype=dtype)
    codes = torch.stack([torch.randint(0, k, (n,), device=device) for k in n_classes], dim=1).to(dtype)
    return torch.cat([numeric, codes], dim=1)


def tabular_losses(n_numeric: int, n_classes: Sequence[int], ordinal: Sequence[bool], *, cd_rounds: int,
                   device: torch.device | str | None = None) -> dict[str, Any]:
    """The losses of the paper's Table 1, in its order: TabED-Uni, -Grid, -Cyc, -Ord, -Str and TabCD.

    The ED variants differ only in the perturbation of the categorical columns; the numeric ones get a
    Gaussian with ``σ = 0.05`` (Uni, Grid) or ``0.1`` (Cyc, Ord, Str), as in the authors' code. Uni keeps a
    column with probability 0.1, Cyc and Ord use the heat kernel at ``t = 0.005 K²`` and ``0.01 K²``, and
    **Str** (structure-chosen) uses the ordinal kernel (``t = 0.01 K²``) for columns flagged in ``ordinal``
    and the uniform one (keep 0.1) for the others. TabCD is :func:`~ebmlib.losses.tabcd_loss`.
    """
    check_int(n_numeric, "n_numeric", minimum=0)
    n_classes = check_classes(n_classes)
    if isinstance(ordinal, (str, bytes)) or not isinstance(ordinal, Sequence):
        raise ValueError(f"ordinal must be a sequence of one flag per categorical column, got {ordinal!r}")
    flags = [bool(o) for o in ordinal]
    if len(flags) != len(n_classes):
        raise ValueError(f"ordinal must give one flag per categorical column ({len(n_classes)}), got {len(flags)}")
    check_int(cd_rounds, "cd_rounds", minimum=1)
    keep_t = -math.log(0.1)  # the uniform kernel's time for keep probability 0.1
    structured = HeatPerturbation(n_classes, [0.01 * k**2 if o else keep_t for k, o in zip(n_classes, flags)],
                                  ["ordinal" if o else "uniform" for o in flags])
    return {
        "TabED-Uni": EnergyDiscrepancy(MixedPerturbation(n_numeric, 0.05, UniformPerturbation(n_classes, 0.1))),
        "TabED-Grid": EnergyDiscrepancy(MixedPerturbation(n_numeric, 0.05, GridPerturbation(n_classes))),
        "TabED-Cyc": EnergyDiscrepancy(MixedPerturbation(n_numeric, 0.1, CyclicalPerturbation(n_classes, 0.005))),
        "TabED-Ord": EnergyDiscrepancy(MixedPerturbation(n_numeric, 0.1, OrdinalPerturbation(n_classes, 0.01))),
        "TabED-Str": EnergyDiscrepancy(MixedPerturbation(n_numeric, 0.1, structured)),
        "TabCD": tabcd_loss(n_numeric, n_classes, cd_rounds=cd_rounds, device=device),
    }


def tabcd_loss(n_numeric: int, n_classes: Sequence[int], *, cd_rounds: int, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> PersistentContrastiveDivergence:
    """TabCD: persistent CD for mixed rows, the paper's MCMC baseline.

    A replay buffer of 10 000 rows started from :func:`~ebmlib.losses.mixed_noise` (never reinitialised),
    ``cd_rounds`` rounds of :func:`~ebmlib.samplers.langevin_gibbs` (``h = 2.5·10⁻⁴``, the authors' ``s = 5·10⁻⁴``)
    per update and an L2 penalty 0.3 on the energies. Building it draws the buffer's starting rows from the global
    torch generator. ``device`` and ``dtype`` are the buffer's (those of the data rows).
    """
    check_int(n_numeric, "n_numeric", minimum=0)
    n_classes = check_classes(n_classes)
    check_int(cd_rounds, "cd_rounds", minimum=1)
    check_float_dtype(dtype)
    buffer = ReplayBuffer(lambda n: mixed_noise(n, n_numeric, n_classes, device=device, dtype=dtype), capacity=10_000,
                          reinit_prob=0.0)

    def sampler(energy_fn: EnergyFn, x: Tensor) -> Tensor:
        return langevin_gibbs(energy_fn, x, n_classes, n_numeric=n_numeric, n_rounds=cd_rounds, step_size=2.5e-4)

    return PersistentContrastiveDivergence(buffer, sampler, l2_reg=0.3)
