"""MCMC diagnostics: rank-normalised split-R̂ (Vehtari et al. 2021) and mode switches of chains."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlib.utils import check_tensor


def _rank_normalise(draws: Tensor) -> Tensor:
    """Rank-normalised z-scores of ``(m, n, d)`` draws, pooled over chains per coordinate (average ranks
    for ties): :math:`\\Phi^{-1}((r - 3/8) / (S + 1/4))`, Vehtari et al. (2021) eq. 14."""
    m, n, d = draws.shape
    flat = draws.reshape(m * n, d).T.contiguous()  # (d, S)
    ordered = flat.sort(dim=1).values
    below = torch.searchsorted(ordered, flat, right=False)
    upto = torch.searchsorted(ordered, flat, right=True)
    ranks = (below + upto + 1).to(draws.dtype) / 2
    z = torch.special.ndtri((ranks - 0.375) / (m * n + 0.25))
    return z.T.reshape(m, n, d)


def _split_chains(draws: Tensor) -> Tensor:
    """``(m, n, d)`` -> ``(2m, n // 2, d)``: first and last halves of every chain (the middle draw of an odd
    ``n`` is dropped, as in Vehtari et al.'s reference code and ArviZ)."""
    half = draws.shape[1] // 2
    return torch.cat([draws[:, :half], draws[:, -half:]], dim=0)


def _median(draws: Tensor) -> Tensor:
    """Per-coordinate median of ``(m, n, d)`` draws, ``(d,)``; the mean of the two middle values for an even
    count (NumPy's convention; ``torch.median`` returns the lower one)."""
    ordered = draws.reshape(-1, draws.shape[2]).sort(dim=0).values
    count = ordered.shape[0]
    return (ordered[(count - 1) // 2] + ordered[count // 2]) / 2


def _rhat_of_split_chains(chains: Tensor) -> Tensor:
    """R̂ of ``(M, N, d)`` (half-)chains (Gelman et al. 2013), per coordinate ``(d,)``."""
    length = chains.shape[1]
    chain_means = chains.mean(1)
    within = chains.var(1, unbiased=True).mean(0)
    between = length * chain_means.var(0, unbiased=True)
    var_plus = (length - 1) / length * within + between / length
    constant = torch.where(between > 0, torch.inf, 1.0).to(within.dtype)  # two Python numbers: default dtype
    return torch.where(within > 0, (var_plus / within).sqrt(), constant)


def split_rhat(chains: Tensor) -> Tensor:
    r"""Rank-normalised split-:math:`\hat R` of Vehtari et al. (2021), per coordinate.

    Each chain is split in two halves (dropping the middle draw when ``n`` is odd); with ``M = 2m``
    half-chains of length ``N``, within-chain variance ``W`` and between-chain variance ``B``,
    :math:`\hat R = \sqrt{((N-1)/N\, W + B/N) / W}`. It is computed on the rank-normalised half-chains
    :math:`z = \Phi^{-1}((r - 3/8)/(S + 1/4))` (ranks ``r`` of all ``S = MN`` draws of a coordinate, average
    ranks for ties; eq. 14) and on the rank-normalised folded draws :math:`|x - \mathrm{median}(x)|`, and the
    larger value is returned (§4.2). This is ArviZ's ``rhat(method="rank")``, which the tests compare against.
    Values near 1 mean the chains agree; chains stuck in different modes give values well above 1 (the
    flowMC-EBM paper reports the maximum over coordinates, Table 2).

    Parameters
    ----------
    chains
        Draws of shape ``(m, n, d)``: ``m ≥ 2`` chains, ``n ≥ 4`` steps, ``d`` coordinates.

    Returns
    -------
    Tensor
        ``(d,)``, on the device and in the dtype of ``chains``; ``inf`` where a coordinate is constant within
        every half-chain but differs between them, and 1 where it is constant altogether (ArviZ returns NaN).
    """
    check_tensor(chains, "chains", ndim=3, floating=True)
    if chains.shape[0] < 2 or chains.shape[1] < 4:
        raise ValueError(f"chains must have shape (m >= 2, n >= 4, d), got {tuple(chains.shape)}")
    halves = _split_chains(chains)
    bulk = _rhat_of_split_chains(_rank_normalise(halves))
    tail = _rhat_of_split_chains(_rank_normalise((halves - _median(halves)).abs()))
    return torch.maximum(bulk, tail)


def mode_switches(chains: Tensor, centres: Tensor) -> Tensor:
    r"""How often each chain changes its nearest mode centre.

    With :math:`k_t = \arg\min_k \lVert x_t - \mu_k \rVert` the nearest centre of the chain's state at step
    ``t``, the count is :math:`\sum_{t=1}^{n-1} \mathbb{1}[k_t \ne k_{t-1}]`. Chains that never leave their
    mode score 0; a sampler that mixes between modes scores in proportion to its number of steps.

    Parameters
    ----------
    chains
        States of shape ``(m, n, d)``: ``m`` chains, ``n ≥ 2`` steps (the layout of
        :func:`~ebmlib.metrics.split_rhat`).
    centres
        Mode centres ``(K, d)``, e.g. the means of a Gaussian mixture.

    Returns
    -------
    Tensor
        ``(m,)`` integer counts (``torch.long``), on the device of ``chains``.
    """
    check_tensor(chains, "chains", ndim=3, floating=True)
    if chains.shape[1] < 2:
        raise ValueError(f"chains must have at least 2 steps, got shape {tuple(chains.shape)}")
    check_tensor(centres, "centres", shape=(None, chains.shape[2]), floating=True)
    if centres.shape[0] == 0:
        raise ValueError("centres must hold at least one centre")
    m, n, d = chains.shape
    nearest = torch.cdist(chains.reshape(m * n, d), centres.to(chains)).argmin(1).view(m, n)
    return (nearest[:, 1:] != nearest[:, :-1]).sum(1)
