"""MCMC diagnostics: rank-normalised split-R̂ (Vehtari et al. 2021)."""

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


def _split_rhat_plain(draws: Tensor) -> Tensor:
    """Split-R̂ of ``(m, n, d)`` draws (Gelman et al. 2013): per coordinate ``(d,)``."""
    half = draws.shape[1] // 2
    chains = torch.cat([draws[:, :half], draws[:, -half:]], dim=0)  # (2m, half, d)
    length = chains.shape[1]
    chain_means = chains.mean(1)
    within = chains.var(1, unbiased=True).mean(0)
    between = length * chain_means.var(0, unbiased=True)
    var_plus = (length - 1) / length * within + between / length
    constant = torch.where(between > 0, torch.inf, 1.0).to(within.dtype)  # two Python numbers: default dtype
    return torch.where(within > 0, (var_plus / within).sqrt(), constant)


def split_rhat(chains: Tensor) -> Tensor:
    r"""Rank-normalised split-:math:`\hat R` of Vehtari et al. (2021), per coordinate.

    Each chain is split in two halves; with ``M`` half-chains of length ``N``, within-chain variance ``W``
    and between-chain variance ``B``, :math:`\hat R = \sqrt{((N-1)/N\, W + B/N) / W}`. It is computed on the
    rank-normalised draws and on the rank-normalised folded draws :math:`|x - \mathrm{median}(x)|`, and the
    larger value is returned (Vehtari et al. 2021, §4.2; ArviZ ``rhat(method="rank")``). Values near 1 mean the
    chains agree; chains stuck in different modes give values well above 1 (the paper reports the maximum
    over coordinates, Table 2).

    Parameters
    ----------
    chains
        Draws of shape ``(m, n, d)``: ``m ≥ 2`` chains, ``n ≥ 4`` steps, ``d`` coordinates.

    Returns
    -------
    Tensor
        ``(d,)``; ``inf`` where a coordinate is constant within every half-chain but differs between them.
    """
    check_tensor(chains, "chains", ndim=3, floating=True)
    if chains.shape[0] < 2 or chains.shape[1] < 4:
        raise ValueError(f"chains must have shape (m >= 2, n >= 4, d), got {tuple(chains.shape)}")
    bulk = _split_rhat_plain(_rank_normalise(chains))
    folded = (chains - chains.reshape(-1, chains.shape[2]).median(0).values).abs()
    tail = _split_rhat_plain(_rank_normalise(folded))
    return torch.maximum(bulk, tail)
