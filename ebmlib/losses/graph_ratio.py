"""Ratio matching restricted to each graph's node set (chapter 1's graph experiment)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlib.data.graphs import check_node_counts, max_nodes_of_bits, node_pair_mask
from ebmlib.losses.ratio import rmwggis_proposal
from ebmlib.samplers.core import all_finite, raise_unless_finite
from ebmlib.utils import EnergyFn, check_binary, check_energy_output, check_int, check_tensor


def ratio_matching_within_nodes(
    energy_fn: EnergyFn, x: Tensor, node_counts: Tensor, *, n_samples: int | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Ratio matching of the model conditioned on each graph's node set: only flips among its nodes count.

    Exact ratio matching (RMwGGIS eq. 4) sums over all ``D`` bit flips, but for padded graphs most flips add an edge
    to a padding node, which the data never do; those terms dominate the loss while the sampler
    (:func:`~ebmlib.samplers.gibbs_within_nodes`) never visits them. Here the sum runs over the ``P_b = n_b (n_b -
    1)/2`` pairs of graph ``b``'s node set ``S_b`` (:func:`~ebmlib.data.node_pair_mask`), which is ratio matching
    for the conditional :math:`p(x \mid n) \propto e^{-E(x)}` on those bits,

    .. math:: J(x) = \sum_{i \in S_b} e^{2(E(x) - E(x_{-i}))}.

    ``n_samples = s`` gives the biased RMwGGIS estimate (eq. 12) of it: ``min(s, P_b)`` distinct flips drawn
    without replacement from the gradient proposal (eq. 11, :func:`~ebmlib.losses.rmwggis_proposal`)
    restricted to ``S_b``, their terms summed; graphs with ``P_b ≤ s`` get the exact sum.

    Parameters
    ----------
    energy_fn
        ``(N, D) -> (N,)``, differentiable in the bits when ``n_samples`` is given.
    x
        0/1 floats ``(B, D)``, zero outside each graph's node set.
    node_counts
        Integers ``(B,)`` in ``[2, max_nodes]``.
    n_samples
        ``None``: exact sum over ``S_b``; otherwise ``s ≥ 1``.

    Returns
    -------
    loss, logs
        Batch mean of ``J``; ``logs`` holds ``objective`` (detached) and ``max_log_term``.
    """
    check_tensor(x, "x", ndim=2, floating=True)
    check_binary(x, "x")
    max_nodes = max_nodes_of_bits(x)
    check_node_counts(node_counts, max_nodes)
    if node_counts.shape != (x.shape[0],):
        raise ValueError(f"node_counts must have shape ({x.shape[0]},), got {tuple(node_counts.shape)}")
    mask = node_pair_mask(node_counts.to(x.device), max_nodes).to(x)
    if (x * (1 - mask)).any():
        raise ValueError("x has edges outside its node set (see node_pair_mask)")
    if n_samples is None:
        energy = check_energy_output(energy_fn(x), x.shape[0], "energy_fn", finite=False)
        graph, bit = mask.nonzero(as_tuple=True)  # every allowed flip of every graph, in one batch
        kept = torch.ones_like(bit)
    else:
        check_int(n_samples, "n_samples", minimum=1)
        energy, log_q = rmwggis_proposal(energy_fn, x)
        # Gumbel-top-k on the proposal with the other bits at -inf: a draw without replacement within S_b;
        # draws beyond P_b land on excluded bits and are dropped through `kept`.
        gumbel = -torch.empty_like(log_q).exponential_().log()
        index = (log_q.masked_fill(mask == 0, -math.inf) + gumbel).topk(min(n_samples, x.shape[1]), dim=1).indices
        kept = mask.gather(1, index).reshape(-1)
        graph = torch.arange(x.shape[0], device=x.device).repeat_interleave(index.shape[1])
        bit = index.reshape(-1)
    rows = torch.arange(len(bit), device=x.device)
    flipped = x[graph].clone()
    flipped[rows, bit] = 1 - flipped[rows, bit]
    energy_flipped = check_energy_output(energy_fn(flipped), len(bit), "energy_fn", finite=False)
    raise_unless_finite(all_finite(energy, energy_flipped))
    # Excluded draws may have huge log-terms (padding flips are untrained): -inf, not 0 * inf = NaN.
    log_terms = (2 * (energy[graph] - energy_flipped)).masked_fill(kept == 0, -math.inf)
    loss = torch.zeros_like(energy).index_add(0, graph, log_terms.exp()).mean()
    max_log = log_terms.max()
    return loss, {"objective": loss.detach(), "max_log_term": max_log.detach()}
