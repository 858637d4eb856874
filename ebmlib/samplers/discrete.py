"""Samplers of binary states: systematic and random-scan Gibbs, Gibbs-with-Gradients, the discrete Langevin
proposal (DULA / DMALA), and Gibbs restricted to each graph's node set."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ebmlib.data.graphs import check_node_counts, max_nodes_of_bits, node_pair_mask
from ebmlib.ledger import recorded_steps
from ebmlib.samplers.core import (
    all_finite,
    check_binary_states,
    flip_bits,
    flip_log_proposal,
    metropolis_accept,
    raise_unless_finite,
    sample_categorical,
    select_rows,
)
from ebmlib.utils import (
    EnergyFn,
    check_binary,
    check_energy_output,
    check_int,
    check_positive,
    check_tensor,
    energy_and_grad,
)

GIBBS_ORDERS = ("systematic", "random")


def gibbs_binary(energy_fn: EnergyFn, x: Tensor, n_sweeps: int = 1, *, order: str = "systematic") -> Tensor:
    """Gibbs sampling of binary states, one coordinate at a time.

    For coordinate ``i`` with ``x^{(i)}`` = ``x`` with bit ``i`` flipped, the exact conditional gives

        p(x_i flips | x_{-i}) = e^{-E(x^{(i)})} / (e^{-E(x)} + e^{-E(x^{(i)})}) = sigmoid(E(x) - E(x^{(i)})).

    Each coordinate costs one batched evaluation of ``E`` at the flipped states; the current energies are
    carried along, so a sweep costs ``d`` evaluations (plus one at the start).

    Parameters
    ----------
    energy_fn
        Maps ``(B, d)`` to ``(B,)``.
    x
        Initial binary states (floating dtype), shape ``(B, d)``.
    n_sweeps
        Number of sweeps; one sweep updates every coordinate once.
    order
        ``"systematic"`` visits coordinates ``0, …, d-1``; ``"random"`` draws a fresh permutation per sweep,
        shared by all chains.

    Returns
    -------
    Tensor
        Final states, shape ``(B, d)``, dtype and device of ``x``.
    """
    check_binary_states(x)
    check_int(n_sweeps, "n_sweeps", minimum=1)
    if order not in GIBBS_ORDERS:
        raise ValueError(f"order must be one of {GIBBS_ORDERS}, got {order!r}")
    batch, dim = x.shape
    with torch.no_grad():
        x = x.detach().clone()
        energy = check_energy_output(energy_fn(x), batch, "energy_fn", finite=False)
        # Finiteness is checked once at the end: a check per coordinate would synchronise with the device.
        finite = all_finite(energy)
        # The visiting orders are drawn on the host, all at once: one read per call, not one per sweep.
        orders = (torch.stack([torch.randperm(dim, device="cpu") for _ in range(n_sweeps)]).tolist()
                  if order == "random" else [range(dim)] * n_sweeps)
        for sweep in recorded_steps(n_sweeps, "gibbs_binary"):
            for i in orders[sweep]:
                flipped = x.clone()
                flipped[:, i] = 1 - x[:, i]
                energy_flipped = check_energy_output(energy_fn(flipped), batch, "energy_fn", finite=False)
                finite &= all_finite(energy_flipped)
                flip = torch.rand_like(energy) < torch.sigmoid(energy - energy_flipped)
                x[:, i] = torch.where(flip, flipped[:, i], x[:, i])
                energy = torch.where(flip, energy_flipped, energy)
    raise_unless_finite(finite)
    return x


def gibbs_random_site(energy_fn: EnergyFn, x: Tensor, n_steps: int = 1) -> Tensor:
    """Random-scan Gibbs sampling of binary states: one uniformly chosen coordinate per chain and step.

    Each step draws ``i_b ~ U{0, …, d-1}`` independently for every chain ``b`` and resamples that bit from its
    exact conditional, ``p(x_i flips | x_{-i}) = sigmoid(E(x) - E(x^{(i)}))``, which leaves ``p ∝ exp(-E)``
    invariant. This is the "Gibbs step" counted by Gibbs-with-Gradients and RMwGGIS when they compare
    samplers at equal numbers of steps; one step costs one batched energy evaluation (plus one at the start),
    against ``d`` for a sweep of :func:`~ebmlib.samplers.gibbs_binary`.

    Parameters
    ----------
    energy_fn
        Maps ``(B, d)`` to ``(B,)``.
    x
        Initial binary states (floating dtype), shape ``(B, d)``.
    n_steps
        Number of single-site updates per chain.

    Returns
    -------
    Tensor
        Final states, shape ``(B, d)``, dtype and device of ``x``.
    """
    check_binary_states(x)
    check_int(n_steps, "n_steps", minimum=1)
    batch, dim = x.shape
    with torch.no_grad():
        x = x.detach()
        energy = check_energy_output(energy_fn(x), batch, "energy_fn", finite=False)
        finite = all_finite(energy)
        for _ in recorded_steps(n_steps, "gibbs_random_site"):
            proposal = flip_bits(x, torch.randint(dim, (batch,), device=x.device))
            energy_flipped = check_energy_output(energy_fn(proposal), batch, "energy_fn", finite=False)
            finite &= all_finite(energy_flipped)
            flip = torch.rand_like(energy) < torch.sigmoid(energy - energy_flipped)
            x = select_rows(flip, proposal, x)
            energy = torch.where(flip, energy_flipped, energy)
    raise_unless_finite(finite)
    return x


def gwg_binary(energy_fn: EnergyFn, x: Tensor, n_steps: int = 1) -> tuple[Tensor, Tensor]:
    """Gibbs-with-Gradients for binary states (Grathwohl et al. 2021), one bit flip per step.

    With ``log q(i | x) = log_softmax(d̃(x) / 2)_i`` from :func:`~ebmlib.samplers.flip_log_proposal`, each step draws
    ``i ~ q(· | x)``, proposes ``x'`` = ``x`` with bit ``i`` flipped, and accepts with the Metropolis–Hastings
    probability

        min(1, exp(E(x) - E(x')) q(i | x') / q(i | x)),

    computed in log space (flipping bit ``i`` of ``x'`` is the reverse move). This leaves ``p ∝ exp(-E)``
    invariant. Energy and gradient of the current state are carried along, so ``n_steps`` cost
    ``n_steps + 1`` batched energy-and-gradient evaluations.

    Parameters
    ----------
    energy_fn
        Maps ``(B, d)`` to ``(B,)``; must be differentiable in ``x``.
    x
        Initial binary states (floating dtype), shape ``(B, d)``.
    n_steps
        Number of proposals per chain.

    Returns
    -------
    states, acceptance_rate
        Final states, shape ``(B, d)``, and the fraction of accepted proposals per chain, shape ``(B,)``;
        dtype and device of ``x``.
    """
    check_binary_states(x)
    check_int(n_steps, "n_steps", minimum=1)
    with torch.no_grad():
        x = x.detach()
        energy, grad = energy_and_grad(energy_fn, x)
        log_q = flip_log_proposal(x, grad)
        finite = all_finite(energy, grad)
        n_accepted = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for _ in recorded_steps(n_steps, "gwg_binary"):
            index = sample_categorical(log_q)
            proposal = flip_bits(x, index)
            energy_prop, grad_prop = energy_and_grad(energy_fn, proposal)
            log_q_prop = flip_log_proposal(proposal, grad_prop)
            finite &= all_finite(energy_prop, grad_prop)
            column = index.unsqueeze(1)
            log_q_reverse = log_q_prop.gather(1, column).squeeze(1)
            log_q_forward = log_q.gather(1, column).squeeze(1)
            accepted = metropolis_accept(energy - energy_prop + log_q_reverse - log_q_forward)
            x = select_rows(accepted, proposal, x)
            energy = select_rows(accepted, energy_prop, energy)
            log_q = select_rows(accepted, log_q_prop, log_q)
            n_accepted += accepted
    raise_unless_finite(finite)
    return x, n_accepted / n_steps


class GWGBinarySampler:
    """:func:`~ebmlib.samplers.gwg_binary` with a fixed number of steps, callable as ``sampler(energy_fn, x) -> x``.

    The form a sampler takes inside :class:`~ebmlib.losses.PersistentContrastiveDivergence`: it returns only
    the new states ``(B, d)`` and keeps the per-chain acceptance rate ``(B,)`` of the latest call in
    ``acceptance_rate``, for logging.

    Parameters
    ----------
    n_steps
        Gibbs-with-Gradients proposals per chain and call.

    Examples
    --------
    >>> pcd = PersistentContrastiveDivergence(buffer, GWGBinarySampler(n_steps=10))  # doctest: +SKIP
    """

    def __init__(self, n_steps: int) -> None:
        self.n_steps = check_int(n_steps, "n_steps", minimum=1)
        self._acceptance_rate: Tensor | None = None

    @property
    def acceptance_rate(self) -> Tensor | None:
        """Per-chain acceptance rate ``(B,)`` of the latest call (``None`` before the first); a diagnostic, not
        part of the sampler's configuration."""
        return self._acceptance_rate

    def __call__(self, energy_fn: EnergyFn, x: Tensor) -> Tensor:
        x, self._acceptance_rate = gwg_binary(energy_fn, x, self.n_steps)
        return x

    def __repr__(self) -> str:
        return f"GWGBinarySampler(n_steps={self.n_steps})"


def langevin_flip_logits(x: Tensor, grad: Tensor, step_size: float) -> Tensor:
    r"""Per-bit flip logits of the discrete Langevin proposal (Zhang, Liu & Liu 2022, eq. 3, binary case).

    The proposal factorises over bits, :math:`q(x' \mid x) = \prod_i q_i(x'_i \mid x)` with
    :math:`q_i(x'_i \mid x) \propto \exp\big(-\tfrac12 \partial_i E(x)\,(x'_i - x_i) - (x'_i - x_i)^2 / (2\alpha)\big)`,
    so bit :math:`i` flips with probability :math:`\sigma(\ell_i)`,
    :math:`\ell_i = -\tfrac12 \partial_i E(x)(1 - 2x_i) - 1/(2\alpha)`. Returns :math:`\ell`, shape ``(B, d)``,
    for states ``x`` and gradients ``grad`` of shape ``(B, d)``; only metadata is checked (it runs inside
    sampling loops).
    """
    check_tensor(x, "x", ndim=2, finite=False)
    check_tensor(grad, "grad", shape=tuple(x.shape), finite=False)
    return -0.5 * grad * (1 - 2 * x) - 0.5 / check_positive(step_size, "step_size")


def _log_flip_probability(logits: Tensor, flips: Tensor) -> Tensor:
    """``log q(x' | x)`` per chain of the bit flips ``flips`` (0/1, ``(B, d)``) under ``logits``."""
    return (flips * nn.functional.logsigmoid(logits) + (1 - flips) * nn.functional.logsigmoid(-logits)).sum(1)


def discrete_langevin_binary(energy_fn: EnergyFn, x: Tensor, n_steps: int = 1, *, step_size: float = 0.1,
                             metropolis: bool = False) -> tuple[Tensor, Tensor]:
    r"""The discrete Langevin proposal for binary states (Zhang, Liu & Liu 2022): every bit may flip at once.

    Each step draws every bit's flip independently with probability :math:`\sigma(\ell_i)` of
    :func:`langevin_flip_logits` — a gradient step in the discrete space, :math:`\alpha` = ``step_size`` setting
    how far it moves (about :math:`d\,\sigma(-1/(2\alpha))` flips where the gradient is flat). Without
    ``metropolis`` the proposal is always taken (DULA, the sampler of the energy discrepancy paper's CD
    baselines): cheap, and biased by an amount that vanishes as :math:`\alpha \to 0`. With ``metropolis`` it is
    accepted with probability :math:`\min\big(1, e^{E(x) - E(x')} q(x \mid x') / q(x' \mid x)\big)` (DMALA),
    which leaves :math:`p \propto e^{-E}` invariant.

    Parameters
    ----------
    energy_fn
        Maps ``(B, d)`` to ``(B,)``; must be differentiable in ``x``.
    x
        Initial binary states (floating dtype), shape ``(B, d)``.
    n_steps
        Proposals per chain.
    step_size
        :math:`\alpha > 0` (the authors' energy-based-model training uses 0.1).
    metropolis
        Correct each proposal with Metropolis–Hastings (DMALA) instead of always taking it (DULA).

    Returns
    -------
    states, acceptance_rate
        Final states ``(B, d)`` and the fraction of accepted proposals per chain ``(B,)`` (all ones for DULA).
    """
    check_binary_states(x)
    check_int(n_steps, "n_steps", minimum=1)
    step_size = check_positive(step_size, "step_size")
    if not isinstance(metropolis, bool):
        raise ValueError(f"metropolis must be True or False, got {metropolis!r}")
    with torch.no_grad():
        x = x.detach()
        energy, grad = energy_and_grad(energy_fn, x)
        finite = all_finite(energy, grad)
        n_accepted = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for _ in recorded_steps(n_steps, "discrete_langevin_binary"):
            logits = langevin_flip_logits(x, grad, step_size)
            flips = (torch.rand_like(x) < torch.sigmoid(logits)).to(x.dtype)
            proposal = x + flips * (1 - 2 * x)
            energy_prop, grad_prop = energy_and_grad(energy_fn, proposal)
            finite &= all_finite(energy_prop, grad_prop)
            if metropolis:  # the reverse move flips the same bits back, from the proposal's gradient
                log_reverse = _log_flip_probability(langevin_flip_logits(proposal, grad_prop, step_size), flips)
                accepted = metropolis_accept(energy - energy_prop + log_reverse - _log_flip_probability(logits, flips))
            else:
                accepted = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            x = select_rows(accepted, proposal, x)
            energy = select_rows(accepted, energy_prop, energy)
            grad = select_rows(accepted, grad_prop, grad)
            n_accepted += accepted
    raise_unless_finite(finite)
    return x, n_accepted / n_steps


class DiscreteLangevinSampler:
    """:func:`~ebmlib.samplers.discrete_langevin_binary` with fixed settings, callable as
    ``sampler(energy_fn, x) -> x`` (the form :class:`~ebmlib.losses.PersistentContrastiveDivergence` takes); the
    per-chain acceptance rate ``(B,)`` of the latest call is kept in ``acceptance_rate``.

    Examples
    --------
    >>> pcd = PersistentContrastiveDivergence(buffer, DiscreteLangevinSampler(n_steps=1))  # doctest: +SKIP
    """

    def __init__(self, n_steps: int, step_size: float = 0.1, metropolis: bool = False) -> None:
        self.n_steps = check_int(n_steps, "n_steps", minimum=1)
        self.step_size = check_positive(step_size, "step_size")
        if not isinstance(metropolis, bool):
            raise ValueError(f"metropolis must be True or False, got {metropolis!r}")
        self.metropolis = metropolis
        self._acceptance_rate: Tensor | None = None

    @property
    def acceptance_rate(self) -> Tensor | None:
        """Per-chain acceptance rate ``(B,)`` of the latest call (``None`` before the first)."""
        return self._acceptance_rate

    def __call__(self, energy_fn: EnergyFn, x: Tensor) -> Tensor:
        x, self._acceptance_rate = discrete_langevin_binary(energy_fn, x, self.n_steps, step_size=self.step_size,
                                                            metropolis=self.metropolis)
        return x

    def __repr__(self) -> str:
        return (f"DiscreteLangevinSampler(n_steps={self.n_steps}, step_size={self.step_size}, "
                f"metropolis={self.metropolis})")


def gibbs_within_nodes(
    energy_fn: EnergyFn, x: Tensor, node_counts: Tensor, n_sweeps: int = 1
) -> Tensor:
    """Systematic-scan Gibbs sampling of adjacency bits, graph ``b`` restricted to its first ``node_counts[b]`` nodes.

    Samples ``p(x_in | x_out = 0) ∝ exp(-E(x))`` where ``x_in`` are the bits of :func:`~ebmlib.data.node_pair_mask`
    and the padding bits ``x_out`` stay 0: a sweep resamples every allowed bit once from its exact conditional,
    ``p(flip) = sigmoid(E(x) - E(x^{(i)}))``, as :func:`~ebmlib.samplers.gibbs_binary` does for all bits. This is
    sampling conditioned on the number of nodes, as GraphRNN-style generators do: the energy is still defined on the
    padded ``max_nodes`` adjacency, but no chain can grow beyond its node set into regions of the padded space that
    training never visited. Chains are sorted by node count, so bit ``(i, j)`` is resampled on a leading block of
    chains only (those with ``n_b > j``), and a sweep costs about ``Σ_b n_b (n_b - 1)/2`` single-graph energy
    evaluations instead of ``B · D``.

    Parameters
    ----------
    energy_fn
        Maps bits ``(B, D)`` to energies ``(B,)``.
    x
        Initial 0/1 states, floating dtype, shape ``(B, D)``; 0 outside each chain's node set (e.g. all zeros:
        chains started from empty graphs).
    node_counts
        Integer tensor ``(B,)`` in ``[2, max_nodes]``, on any device (see :func:`~ebmlib.data.sample_node_counts`).
    n_sweeps
        Number of sweeps over the allowed bits.

    Returns
    -------
    Tensor
        Final states ``(B, D)``, in the order of the input chains.
    """
    check_tensor(x, "x", ndim=2, floating=True)
    check_binary(x, "x")
    max_nodes = max_nodes_of_bits(x)
    check_int(n_sweeps, "n_sweeps", minimum=1)
    counts = check_node_counts(node_counts, max_nodes).cpu()
    if counts.shape[0] != x.shape[0]:
        raise ValueError(f"node_counts must have one entry per chain ({x.shape[0]}), got {counts.shape[0]}")
    if (x * (1 - node_pair_mask(counts, max_nodes).to(x))).any():
        raise ValueError("x has edges outside its chain's node set; start from states inside node_pair_mask")
    order = torch.argsort(counts, descending=True)
    _, cols = torch.triu_indices(max_nodes, max_nodes, offset=1, device="cpu")
    # Chains with n_b > j form a prefix after sorting; their number per bit is known before the loop, so the
    # loop needs no host synchronisation.
    n_active = (counts[order][None, :] > cols[:, None]).sum(1).tolist()
    with torch.no_grad():
        x = x[order.to(x.device)].clone()
        energy = check_energy_output(energy_fn(x), x.shape[0], "energy_fn", finite=False)
        finite = torch.isfinite(energy).all()
        for _ in recorded_steps(n_sweeps, "gibbs_within_nodes"):
            for bit, k in enumerate(n_active):
                if k == 0:
                    continue
                flipped = x[:k].clone()
                flipped[:, bit] = 1 - flipped[:, bit]
                energy_flipped = check_energy_output(energy_fn(flipped), k, "energy_fn", finite=False)
                finite &= torch.isfinite(energy_flipped).all()
                flip = torch.rand_like(energy_flipped) < torch.sigmoid(energy[:k] - energy_flipped)
                x[:k, bit] = torch.where(flip, flipped[:, bit], x[:k, bit])
                energy[:k] = torch.where(flip, energy_flipped, energy[:k])
    if not finite:
        raise ValueError("energy_fn returned NaN or infinite values")
    return x[torch.argsort(order).to(x.device)]
