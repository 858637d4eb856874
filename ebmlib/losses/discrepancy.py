"""Energy discrepancy (Schröder et al. 2023, 2024): the loss, its exact population value on small spaces.

Energy discrepancy compares the energy of a data point ``x`` with the energies of points reached from it by a
noise process ``q``: draw ``y ~ q(·|x)``, then ``M`` negatives ``x'_j ~ q(·|y)`` given the same ``y``, and
minimise (Schröder et al. 2024, the authors' code)::

    L(θ) = (1/B) Σ_i log( w + Σ_{j=1}^M exp(E_θ(x_i) - E_θ(x'_{i,j})) ),

with the stabilising offset ``w`` (``w = 0``: plain log-sum-exp). This equals the paper's
``log(w/M + (1/M) Σ_j exp(...))`` plus the constant ``log M``. As ``M → ∞`` (``w = 0``) it tends to
``log M +`` the population ED functional (:func:`~ebmlib.losses.exact_energy_discrepancy`)::

    ED_q(p, E) = E_{x~p}[ E(x) ] + E_{x~p} E_{y~q(·|x)} [ log Σ_{x'} q(y|x') e^{-E(x')} ],

which the data distribution minimises (up to a constant energy) when ``q`` is symmetric. The perturbations
``q`` are in :mod:`ebmlib.losses.perturbations`; any object with a ``contrast(x, n)`` method
(:class:`~ebmlib.losses.PerturbationKernel`) works.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from ebmlib.samplers.core import all_finite, raise_unless_finite
from ebmlib.utils import EnergyFn, check_energy_output, check_int, check_tensor


@runtime_checkable
class PerturbationKernel(Protocol):
    """What energy discrepancy needs of a perturbation: its negatives. Every
    :class:`~ebmlib.losses.Perturbation` is one."""

    def contrast(self, x: Tensor, n: int) -> Tensor:
        """``y ~ q(·|x)`` once per row of ``x`` ``(B, D)``, then ``n`` draws ``x' ~ q(·|y)``: ``(B, n, D)``."""


def discrepancy_from_energies(e_pos: Tensor, e_neg: Tensor, *, w: float = 1.0, reduction: str = "mean") -> Tensor:
    """``log(w + Σ_j exp(E(x_i) - E(x'_{i,j})))`` from energies, in log-sum-exp form.

    Parameters
    ----------
    e_pos
        ``E(x_i)``, shape ``(B,)``.
    e_neg
        ``E(x'_{i,j})``, shape ``(B, M)``.
    w
        Offset ``w >= 0``; the constant entry ``log w`` joins the ``M`` differences before the log-sum-exp,
        and is left out when ``w = 0``.
    reduction
        ``"mean"`` (a scalar) or ``"none"`` (shape ``(B,)``).
    """
    check_tensor(e_pos, "e_pos", ndim=1, floating=True)
    check_tensor(e_neg, "e_neg", shape=(e_pos.shape[0], None), floating=True)
    if e_neg.shape[1] < 1:
        raise ValueError("e_neg must hold at least one negative per data point")
    return _discrepancy(e_pos, e_neg, _check_offset(w), _check_reduction(reduction))


def _check_reduction(reduction: str) -> str:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return reduction


def _discrepancy(e_pos: Tensor, e_neg: Tensor, w: float, reduction: str) -> Tensor:
    v = e_pos.unsqueeze(1) - e_neg
    if w > 0:
        v = torch.cat([v, torch.full_like(v[:, :1], math.log(w))], dim=1)
    per_point = torch.logsumexp(v, dim=1)
    return per_point.mean() if reduction == "mean" else per_point


def check_perturbation(perturbation: object) -> None:
    """Raise ``ValueError`` unless ``perturbation`` has a ``contrast`` method
    (:class:`~ebmlib.losses.PerturbationKernel`)."""
    if not isinstance(perturbation, PerturbationKernel):
        raise ValueError(f"perturbation must have a contrast(x, n) method, got {type(perturbation).__name__}")


def _check_offset(w: float) -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
        raise ValueError(f"w must be a finite number >= 0, got {w!r}")
    return float(w)


def energy_discrepancy(
    energy_fn: EnergyFn,
    x: Tensor,
    perturbation: PerturbationKernel,
    *,
    n_negatives: int = 32,
    w: float = 1.0,
    reduction: str = "mean",
) -> tuple[Tensor, dict[str, Tensor]]:
    """The energy-discrepancy loss of a batch (the authors' stabilised estimator, see the module docstring).

    The ``B · M`` negatives are drawn without gradient (they are discrete, or noise added to data) and
    passed through ``energy_fn`` in one batch of shape ``(B · M, D)``.

    Parameters
    ----------
    energy_fn
        ``(B, D) -> (B,)``.
    x
        Data, shape ``(B, D)``, in the format ``perturbation`` expects.
    perturbation
        Draws the negatives, :meth:`~ebmlib.losses.PerturbationKernel.contrast`.
    n_negatives
        ``M >= 1`` (paper: 32).
    w
        Offset ``w >= 0`` (paper: 1).
    reduction
        ``"mean"`` or ``"none"``, as in :func:`~ebmlib.losses.discrepancy_from_energies`.

    Returns
    -------
    loss, logs
        The loss and the mean positive and negative energies (detached).
    """
    check_perturbation(perturbation)
    check_tensor(x, "x", ndim=2, finite=False)  # values: the perturbation's own check
    m = check_int(n_negatives, "n_negatives", minimum=1)
    w, reduction = _check_offset(w), _check_reduction(reduction)
    with torch.no_grad():
        x_neg = perturbation.contrast(x, m)
    batch, dim = x.shape
    e_pos = check_energy_output(energy_fn(x), batch, "energy_fn", finite=False)
    e_neg = check_energy_output(energy_fn(x_neg.reshape(batch * m, dim)), batch * m, "energy_fn", finite=False)
    raise_unless_finite(all_finite(e_pos, e_neg))
    loss = _discrepancy(e_pos, e_neg.view(batch, m), w, reduction)
    return loss, {"energy_pos": e_pos.mean().detach(), "energy_neg": e_neg.mean().detach()}


class EnergyDiscrepancy:
    """:func:`~ebmlib.losses.energy_discrepancy` with bound settings: ``loss_fn(model, batch)`` for
    :func:`~ebmlib.train.fit`."""

    def __init__(self, perturbation: PerturbationKernel, *, n_negatives: int = 32, w: float = 1.0) -> None:
        check_perturbation(perturbation)
        self.perturbation = perturbation
        self.n_negatives = check_int(n_negatives, "n_negatives", minimum=1)
        self.w = _check_offset(w)

    def __call__(self, energy_fn: EnergyFn, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return energy_discrepancy(energy_fn, x, self.perturbation, n_negatives=self.n_negatives, w=self.w)


def exact_energy_discrepancy(energies: Tensor, data_probs: Tensor, transition: Tensor) -> Tensor:
    """Population ED functional on an enumerated space (the ``M → ∞``, ``w = 0`` limit, less ``log M``).

    ``ED = Σ_x p(x) [E(x) + Σ_y Q[x, y] log Σ_{x'} Q[x', y] e^{-E(x')}]`` with ``Q[x, y] = q(y|x)``.

    Parameters
    ----------
    energies
        ``E`` of every state, shape ``(S,)``.
    data_probs
        ``p(x)``, shape ``(S,)``, summing to one.
    transition
        ``Q``, shape ``(S, S)``, rows summing to one (e.g. :meth:`~ebmlib.losses.Perturbation.transition_matrix`).
    """
    check_tensor(energies, "energies", ndim=1, floating=True)
    n = energies.shape[0]
    check_tensor(data_probs, "data_probs", shape=(n,), floating=True)
    check_tensor(transition, "transition", shape=(n, n), floating=True)
    if (data_probs < 0).any() or abs(float(data_probs.sum()) - 1) > 1e-6:
        raise ValueError("data_probs must be a probability vector")
    if (transition < 0).any() or not torch.allclose(transition.sum(1), torch.ones_like(data_probs), atol=1e-6):
        raise ValueError("transition must be a stochastic matrix: entries >= 0, rows summing to one")
    # log Σ_x' Q[x', y] exp(-E(x')) for every y; log 0 = -inf drops impossible moves.
    contrast = torch.logsumexp(transition.log() - energies.unsqueeze(1), dim=0)
    return (data_probs * (energies + transition @ contrast)).sum()
