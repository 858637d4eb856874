"""Ratio matching for binary data (Hyvärinen 2007; Lyu 2009) and its gradient-guided importance-sampling
estimate RMwGGIS (Liu, Liu & Ji 2023)."""

from __future__ import annotations

import math
from functools import partial
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ebmlib.samplers.core import all_finite, flip_bits, flip_log_proposal, raise_unless_finite, sample_categorical
from ebmlib.utils import EnergyFn, check_binary, check_energy_output, check_int, check_tensor

RM_ESTIMATORS = ("unbiased", "biased")
RM_PROPOSALS = ("gradient", "uniform")
RM_PAIRINGS = ("matched", "authors")


@runtime_checkable
class LinearFirstLayer(Protocol):
    r"""An energy :math:`E(x) = h(Wx + b)` that exposes its linear first layer, as
    :class:`~ebmlib.nets.MLPEnergy` and :class:`~ebmlib.nets.Ensemble` of them do.

    Flipping bit :math:`i` changes the first layer's pre-activation by a rank-one term,
    :math:`W x_{-i} + b = W x + b + W_{:,i}(1 - 2x_i)`, so :func:`~ebmlib.losses.ratio_matching` gets all
    :math:`B \cdot d` neighbours' pre-activations from one product and never builds the ``(B·d, d)`` stack of
    flipped inputs.
    """

    def first_layer(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``W x + b`` per row, ``(N, H)``, and ``Wᵀ`` per group of rows, ``(G, d, H)``: the ``N = G·n`` rows come
        in ``G`` consecutive groups of ``n`` that share a weight (``G = 1`` for a single network, ``K`` for an
        ensemble of ``K``)."""

    def head(self, h: Tensor) -> Tensor:
        """The rest of the energy: pre-activations ``(M, H)`` to energies ``(M,)``, rows grouped as above."""


def _check_binary_data(x: Tensor) -> None:
    # One host synchronisation per call (the 0/1 check); everything after it is metadata-only.
    check_tensor(x, "x", ndim=2, floating=True, finite=False)
    check_binary(x, "x")


def _paired(neighbours: Tensor, pairing: str, n_members: int) -> Tensor:
    """The ``(N, s)`` neighbour energies each ``E(x_b)`` is compared with; row ``b`` holds ``x_b``'s own neighbours.

    ``"authors"`` reproduces the pairing of the RMwGGIS authors' code, which stacks the flipped copies flip by flip
    (``s`` blocks of ``B`` rows) and reshapes the energies to ``(B, s)`` row by row: row ``b`` then holds flipped
    copies of *other* points (``x_{(b·s + k) mod B}``). Per member of an ensemble, as a separate run would.
    """
    if pairing == "matched":
        return neighbours
    rows, s = neighbours.shape
    return neighbours.view(n_members, rows // n_members, s).transpose(1, 2).reshape(rows, s)


def _neighbour_energies(energy_fn: EnergyFn, x: Tensor, start: int, stop: int) -> Tensor:
    """Energies of rows ``start:stop`` of the ``(B·d, d)`` stack of neighbours (row ``b·d + i`` is ``x_b``
    with bit ``i`` flipped), built by indexing rather than a loop over bits; one forward pass."""
    rows = torch.arange(start, stop, device=x.device)
    neighbours = flip_bits(x[rows // x.shape[1]], rows % x.shape[1])
    return check_energy_output(energy_fn(neighbours), stop - start, "energy_fn", finite=False)


def _all_neighbour_energies(energy_fn: EnergyFn, x: Tensor, chunk_size: int | None) -> Tensor:
    """``E(x_{-i})`` for every point and bit, shape ``(B, d)``, in passes of at most ``chunk_size`` rows."""
    batch, dim = x.shape
    total = batch * dim
    step = total if chunk_size is None else min(chunk_size, total)
    # Under autograd every chunk's activations (and its flipped inputs, which the first linear layer saves)
    # stay alive until backward, so plain chunking would not lower the peak. Checkpointing keeps only each
    # chunk's energies and recomputes its forward during backward: memory O(chunk_size) for one extra forward.
    recompute = step < total and torch.is_grad_enabled()
    parts = []
    for start in range(0, total, step):
        stop = min(start + step, total)
        if recompute:
            parts.append(checkpoint(_neighbour_energies, energy_fn, x, start, stop, use_reentrant=False))
        else:
            parts.append(_neighbour_energies(energy_fn, x, start, stop))
    return torch.cat(parts).view(batch, dim)


def _rank_one_block(energy_fn: LinearFirstLayer, pre: Tensor, x: Tensor, weight_t: Tensor) -> Tensor:
    """``E(x_{-i})``, ``(B, d)``, for the rows ``x`` ``(B, d)`` whose pre-activations are ``pre`` ``(B, H)``."""
    batch, dim = x.shape
    groups, width = weight_t.shape[0], pre.shape[1]
    n = batch // groups
    # Row (g·n + b)·d + i is x_{g·n+b} with bit i flipped: the generic path's order, grouped like the energy's rows.
    flip = (1 - 2 * x).to(pre.dtype).view(groups, n, dim, 1)
    flipped = torch.addcmul(pre.view(groups, n, 1, width), flip, weight_t.unsqueeze(1))
    neighbours = energy_fn.head(flipped.view(batch * dim, width))
    return check_energy_output(neighbours, batch * dim, "energy_fn.head", finite=False).view(batch, dim)


def _rank_one_energies(energy_fn: LinearFirstLayer, x: Tensor, chunk_size: int | None) -> tuple[Tensor, Tensor]:
    """``E(x)``, ``(B,)``, and ``E(x_{-i})`` for every point and bit, ``(B, d)``, from one first-layer product."""
    batch, dim = x.shape
    pre, weight_t = energy_fn.first_layer(x)
    groups, width = weight_t.shape[0], pre.shape[1]
    if weight_t.shape[1:] != (dim, width) or pre.shape[0] != batch or batch % groups:
        raise ValueError(f"energy_fn.first_layer must return (B, H) and (G, d, H) with G dividing B = {batch}, got "
                         f"{tuple(pre.shape)} and {tuple(weight_t.shape)}")
    # Contiguous (d·H numbers): the (G, n, d, H) sum is then contiguous, and its view copies nothing.
    weight_t = weight_t.contiguous()
    energy = check_energy_output(energy_fn.head(pre), batch, "energy_fn.head", finite=False)
    rows = batch if chunk_size is None else max(1, chunk_size // dim)  # whole data points per chunk
    if rows >= batch:
        return energy, _rank_one_block(energy_fn, pre, x, weight_t)
    # As in the generic path: each chunk's activations are recomputed in the backward pass instead of kept.
    run = partial(checkpoint, _rank_one_block, use_reentrant=False) if torch.is_grad_enabled() else _rank_one_block
    parts = [run(energy_fn, pre[s:s + rows], x[s:s + rows], weight_t) for s in range(0, batch, rows)]
    return energy, torch.cat(parts)


def ratio_matching(
    energy_fn: EnergyFn, x: Tensor, *, chunk_size: int | None = None, rank_one: bool | None = None,
    pairing: str = "matched",
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Exact ratio-matching objective for binary data (Lyu 2009; RMwGGIS paper eq. 4).

    With :math:`x_{-i}` = :math:`x` with bit :math:`i` flipped,

    .. math:: J(x) = \sum_{i=1}^d \big[p_\theta(x_{-i}) / p_\theta(x)\big]^2
                   = \sum_{i=1}^d e^{2(E_\theta(x) - E_\theta(x_{-i}))},

    averaged over the batch. It pushes ``E`` down at the data and up at all ``d`` Hamming neighbours, so a
    step costs ``B·d`` energy evaluations and, under autograd, ``B·d`` rows of activations.

    Each term is ``exp`` of the energy gap ``2(E(x) - E(x_{-i}))``, formed in log space first (never as a
    ratio of two exponentials). It is not clamped: a clamp would change the objective and zero the gradient
    of exactly the most offending neighbours. A log-term above ≈ 88 in float32 (≈ 709 in float64) overflows
    to ``inf``, which :func:`ebmlib.train.fit` reports; ``logs["max_log_term"]`` shows how close it is.

    Parameters
    ----------
    energy_fn
        ``(N, d) -> (N,)``.
    x
        Binary data as floats, shape ``(B, d)``.
    chunk_size
        ``None``: all ``B·d`` neighbours in one forward pass. Otherwise at most this many rows per pass.
        Without autograd (e.g. monitoring the objective) this bounds memory to ``O(chunk_size · (d + width))``.
        With autograd each chunk is checkpointed (:func:`torch.utils.checkpoint.checkpoint`): only the
        ``B·d`` energies are kept and each chunk's forward is recomputed during backward, so peak memory is
        that of one chunk, for one extra forward pass. On a CPU, chunks of a few thousand rows can also be
        *faster* once the ``B·d`` rows' activations outgrow the cache: the extra pass costs less than moving every
        activation through main memory (``python -m ebmlib.bench rmwggis --chunk-size`` measures it). The value
        and gradient are the same for every ``chunk_size`` up to float rounding. (Modules whose forward has side
        effects, such as batch-norm running statistics, see them twice.)
    rank_one
        For an energy that exposes its linear first layer (:class:`~ebmlib.losses.LinearFirstLayer`, e.g.
        :class:`~ebmlib.nets.MLPEnergy`): the neighbours' first-layer pre-activations are
        :math:`Wx + b + W_{:,i}(1 - 2x_i)`, one product plus rank-one updates, so neither the ``(B·d, d)``
        flipped inputs nor the first layer's ``B·d`` products exist; value and gradient are those of the
        generic path up to float rounding. With ``chunk_size`` it evaluates whole data points' neighbours in
        checkpointed chunks of at most ``chunk_size`` rows (at least one point's ``d``). ``None`` (default) takes
        this path whenever the energy allows it; ``False`` forces the generic path (as a baseline), ``True``
        requires the fast one.
    pairing
        ``"matched"`` (default): each ``E(x)`` is compared with its own neighbours, as in eq. 4. ``"authors"``
        compares it with the neighbours of other points of the batch, as the authors' code does (its flipped
        copies are stacked bit by bit and reshaped row by row); chapter 1 uses it to show what this does to Table 1.

    Returns
    -------
    loss, logs
        Scalar batch mean of ``J(x)``; ``logs`` holds ``objective`` (the same value, detached) and
        ``max_log_term``, the largest ``2(E(x) - E(x_{-i}))`` in the batch.
    """
    _check_binary_data(x)
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size", minimum=1)
    if rank_one not in (None, True, False):
        raise ValueError(f"rank_one must be None, True or False, got {rank_one!r}")
    if rank_one and not isinstance(energy_fn, LinearFirstLayer):
        raise ValueError("rank_one=True needs an energy_fn with first_layer and head (LinearFirstLayer)")
    rank_one = isinstance(energy_fn, LinearFirstLayer) if rank_one is None else rank_one
    n_members = getattr(energy_fn, "n_members", 1)
    if n_members > 1 and chunk_size is not None:
        raise ValueError("chunk_size would split an ensemble's member-grouped rows; leave it None")
    if pairing not in RM_PAIRINGS:
        raise ValueError(f"pairing must be one of {RM_PAIRINGS}, got {pairing!r}")
    if rank_one:
        energy, neighbours = _rank_one_energies(energy_fn, x, chunk_size)
    else:
        energy = check_energy_output(energy_fn(x), x.shape[0], "energy_fn", finite=False)
        neighbours = _all_neighbour_energies(energy_fn, x, chunk_size)
    raise_unless_finite(all_finite(energy, neighbours))
    neighbours = _paired(neighbours, pairing, n_members)
    log_terms = 2 * (energy.unsqueeze(1) - neighbours)
    loss = log_terms.exp().sum(dim=1).mean()
    return loss, {"objective": loss.detach(), "max_log_term": log_terms.max().detach()}


def rmwggis_proposal(energy_fn: EnergyFn, x: Tensor, *, proposal: str = "gradient") -> tuple[Tensor, Tensor]:
    r"""Energies ``E(x)`` and the importance distribution over the ``d`` neighbours of each point.

    ``"gradient"`` is RMwGGIS's eq. 11: the first-order estimate (eq. 10)
    :math:`E(x) - E(x_{-i}) \approx [(2x - 1) \odot \nabla_x E(x)]_i` plugged into the optimal proposal of
    Theorem 1, :math:`n^*_i \propto e^{2(E(x) - E(x_{-i}))}`, gives

    .. math:: \tilde n_i \propto \exp\big(2\,[(2x - 1) \odot \nabla_x E(x)]_i\big),

    i.e. :func:`~ebmlib.samplers.flip_log_proposal` at temperature 1/2. It is exact (``ñ = n*``) whenever
    flipping one bit changes ``E`` linearly, e.g. for linear energies and quadratics ``xᵀWx`` with zero
    diagonal. ``"uniform"`` is ``ñ_i = 1/d`` (the paper's RMwRAND ablation) and needs no gradient.

    Parameters
    ----------
    energy_fn
        ``(N, d) -> (N,)``, differentiable in ``x`` for the gradient proposal.
    x
        Binary data as floats, shape ``(B, d)``.
    proposal
        ``"gradient"`` or ``"uniform"``.

    Returns
    -------
    energy, log_q
        ``E(x)``, shape ``(B,)``, differentiable with respect to the parameters when autograd is enabled;
        ``log ñ``, shape ``(B, d)``, detached: the importance weights ``1/ñ`` are constants (see
        :func:`~ebmlib.losses.rmwggis`), so the gradient ``∇_x E`` is taken once without ``create_graph``.
    """
    _check_binary_data(x)
    if proposal not in RM_PROPOSALS:
        raise ValueError(f"proposal must be one of {RM_PROPOSALS}, got {proposal!r}")
    energy, log_q = _energy_and_log_proposal(energy_fn, x, proposal)
    raise_unless_finite(all_finite(energy, log_q))
    return energy, log_q


def _energy_and_log_proposal(energy_fn: EnergyFn, x: Tensor, proposal: str) -> tuple[Tensor, Tensor]:
    batch, dim = x.shape
    if proposal == "uniform":
        energy = check_energy_output(energy_fn(x), batch, "energy_fn", finite=False)
        return energy, torch.full_like(x, -math.log(dim))
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        x_req = x.detach().requires_grad_(True)
        energy = check_energy_output(energy_fn(x_req), batch, "energy_fn", finite=False)
        # retain_graph: the loss backpropagates through E(x) once more; no create_graph, because the
        # proposal is a constant of the estimator.
        (grad,) = torch.autograd.grad(energy.sum(), x_req, retain_graph=keep_graph)
    log_q = flip_log_proposal(x, grad.detach(), temperature=0.5)
    return (energy if keep_graph else energy.detach()), log_q


def _draw_flips(log_q: Tensor, n_samples: int, replacement: bool) -> Tensor:
    """``n_samples`` bit indices per row of ``log_q`` (shape ``(B, d)``), returned as ``(B, n_samples)``.

    Both branches draw from the Gumbel-perturbed log-probabilities, so nothing is read back to the host and
    tiny probabilities are not rounded away as in an inverse-CDF draw; memory stays ``O(B·d)``.
    """
    if replacement:
        return torch.stack([sample_categorical(log_q) for _ in range(n_samples)], dim=1)
    # Gumbel-top-k: the k largest perturbed values are a draw without replacement, item by item ∝ ñ.
    gumbel = -torch.empty_like(log_q).exponential_().log()
    return (log_q + gumbel).topk(n_samples, dim=1).indices


def rmwggis(
    energy_fn: EnergyFn,
    x: Tensor,
    *,
    n_samples: int = 10,
    estimator: str = "unbiased",
    proposal: str = "gradient",
    replacement: bool = True,
    pairing: str = "matched",
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Ratio matching with gradient-guided importance sampling (RMwGGIS; Liu, Liu & Ji).

    For each point, ``s = n_samples`` neighbours :math:`i_1, …, i_s` are drawn from the proposal ``ñ`` of
    :func:`~ebmlib.losses.rmwggis_proposal`, and the ratio-matching objective :math:`J(x)` of
    :func:`~ebmlib.losses.ratio_matching` is
    estimated by

    .. math::

        \hat J_{\text{unbiased}} = \sum_{k=1}^s \frac{e^{2(E(x) - E(x_{-i_k}))}}{s\,\tilde n_{i_k}}
        \quad\text{(eq. 7)},

        \hat J_{\text{biased}} = \sum_{k=1}^s e^{2(E(x) - E(x_{-i_k}))} \quad\text{(eq. 12)},

    averaged over the batch. The unbiased terms are formed in log space, ``exp(2Δ - log ñ - log s)``, so a
    small ``ñ`` does not overflow ``1/ñ``; large energy gaps overflow as in :func:`~ebmlib.losses.ratio_matching`.

    Why ``ñ`` is detached: with ``f_i = e^{2(E(x) - E(x_{-i}))}`` and ``replacement=True``,
    ``E[Ĵ] = Σ_i ñ_i f_i/ñ_i = J`` and, holding ``1/ñ`` constant, ``E[∇_θ Ĵ] = Σ_i ∇_θ f_i = ∇_θ J``: the
    loss's gradient is an unbiased estimate of the exact ratio-matching gradient. Letting gradients flow
    through ``ñ`` (``create_graph=True``, as the authors' code does) adds ``-Σ_i f_i ∇_θ log ñ_i``, a bias,
    and costs a double-backward pass. The biased estimator does not contain ``ñ``, so there it only saves
    work.

    Cost: one energy-and-gradient evaluation at ``x`` (a forward only for ``"uniform"``) and one batched
    forward pass over the ``B·s`` drawn neighbours; per point, only ``∇_x E``, ``ñ`` and the ``s``
    flipped copies are of size ``d``.

    Parameters
    ----------
    energy_fn
        ``(N, d) -> (N,)``, differentiable in ``x`` for the gradient proposal.
    x
        Binary data as floats, shape ``(B, d)``.
    n_samples
        ``s ≥ 1`` neighbours per point (the paper uses 10).
    estimator
        ``"unbiased"`` (eq. 7) or ``"biased"`` (eq. 12; better in the paper's experiments).
    proposal
        ``"gradient"`` (eq. 11, RMwGGIS) or ``"uniform"`` (RMwRAND).
    replacement
        Draw with replacement (default), which makes eq. 7 exactly unbiased. ``False`` follows the authors'
        code and needs ``n_samples <= d``; the inclusion probabilities of a draw without replacement are then
        not ``s·ñ_i``, so eq. 7 is only approximately unbiased (exactly so for the uniform proposal).
    pairing
        As in :func:`~ebmlib.losses.ratio_matching`: ``"authors"`` compares ``E(x_b)`` with drawn neighbours of
        other points, as the authors' code does (the weights ``1/ñ`` stay those of ``x_b``'s own draws, as there).

    Returns
    -------
    loss, logs
        Scalar batch mean of the estimate; ``logs`` holds ``objective`` (the same value, detached),
        ``max_log_term`` (the largest drawn ``2(E(x) - E(x_{-i}))``), ``proposal_entropy`` (mean, in nats;
        ``log d`` is uniform) and ``proposal_max`` (mean of ``max_i ñ_i``).
    """
    _check_binary_data(x)
    check_int(n_samples, "n_samples", minimum=1)
    if not replacement and n_samples > x.shape[1]:
        raise ValueError(f"n_samples must be <= d = {x.shape[1]} when replacement=False, got {n_samples}")
    if estimator not in RM_ESTIMATORS:
        raise ValueError(f"estimator must be one of {RM_ESTIMATORS}, got {estimator!r}")
    if proposal not in RM_PROPOSALS:
        raise ValueError(f"proposal must be one of {RM_PROPOSALS}, got {proposal!r}")
    if pairing not in RM_PAIRINGS:
        raise ValueError(f"pairing must be one of {RM_PAIRINGS}, got {pairing!r}")
    batch = x.shape[0]
    energy, log_q = _energy_and_log_proposal(energy_fn, x, proposal)
    index = _draw_flips(log_q, n_samples, replacement)
    neighbours = flip_bits(x.repeat_interleave(n_samples, dim=0), index.reshape(-1))
    energy_flipped = check_energy_output(energy_fn(neighbours), batch * n_samples, "energy_fn", finite=False)
    raise_unless_finite(all_finite(energy, log_q, energy_flipped))
    energy_flipped = _paired(energy_flipped.view(batch, n_samples), pairing, getattr(energy_fn, "n_members", 1))
    log_terms = 2 * (energy.unsqueeze(1) - energy_flipped)
    if estimator == "unbiased":
        log_weighted = log_terms - log_q.gather(1, index) - math.log(n_samples)
    else:
        log_weighted = log_terms
    loss = log_weighted.exp().sum(dim=1).mean()
    logs = {
        "objective": loss.detach(),
        "max_log_term": log_terms.max().detach(),
        "proposal_entropy": torch.special.entr(log_q.exp()).sum(dim=1).mean(),
        "proposal_max": log_q.max(dim=1).values.exp().mean(),
    }
    return loss, logs
