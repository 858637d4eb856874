"""Likelihoods on discrete spaces: the log-partition function ``log Z = log Σ_x e^{-E(x)}`` exactly by enumeration
on up to ``2**20`` states, or estimated by importance sampling with a kernel-density proposal or by annealed
importance sampling (AIS); and the pseudo-log-likelihood, which needs no ``log Z``. The exact log-density of
the noise-free ODE generator is :func:`~ebmlib.samplers.flow_log_prob`."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ebmlib.data.codes import MAX_ENUMERATION_DIM, all_binary_states
from ebmlib.ledger import recorded_steps
from ebmlib.samplers.discrete import gwg_binary
from ebmlib.utils import check_binary, check_device, check_energy_output, check_int, check_probability, check_tensor


def enumerated_log_probs(energy_fn: Callable[[Tensor], Tensor], dim: int, *, batch_size: int = 65536,
                         device: torch.device | str | None = None) -> Tensor:
    """Exact normalised ``log p(x) = -E(x) - log Σ_x' e^{-E(x')}`` of every state of ``{0, 1}^dim``.

    The ``2**dim`` states (``dim <= 20``) are those of :func:`~ebmlib.data.all_binary_states`, in its order,
    evaluated in batches of ``batch_size`` on ``device`` (default: the energy's, when it is a module) and
    normalised in float64. Returns shape ``(2**dim,)``, float64; with it, ``KL(p_data ‖ p_θ)`` on a 16-bit
    space is exact.
    """
    if check_int(dim, "dim", minimum=1) > MAX_ENUMERATION_DIM:
        raise ValueError(f"dim must be <= {MAX_ENUMERATION_DIM} to enumerate 2**dim states, got {dim}")
    check_int(batch_size, "batch_size", minimum=1)
    if device is not None:
        device = check_device(device)
    elif isinstance(energy_fn, torch.nn.Module):
        device = next(iter(energy_fn.parameters()), torch.empty(0)).device
    states = all_binary_states(dim, device=device)
    with torch.no_grad():
        neg_energy = torch.cat([-energy_fn(chunk) for chunk in states.split(batch_size)]).double()
    check_energy_output(neg_energy, states.shape[0], "energy_fn")
    return neg_energy - torch.logsumexp(neg_energy, dim=0)


def importance_log_partition(energy_fn: Callable[[Tensor], Tensor], samples: Tensor, log_q: Tensor,
                             *, batch_size: int = 8192) -> Tensor:
    """``log Z = log Σ_x e^{-E(x)} ≈ logsumexp_i(-E(x_i) - log q(x_i)) - log n`` for ``x_i ~ q``.

    ``samples`` ``(n, d)`` are draws from a normalised proposal with log-probabilities ``log_q`` ``(n,)``.
    The estimate of ``Z`` is unbiased; that of ``log Z`` is biased low (Jensen), so an NLL built from it is
    optimistic when the proposal misses mass. Returns a float64 scalar.
    """
    check_tensor(samples, "samples", ndim=2)
    check_tensor(log_q, "log_q", shape=(samples.shape[0],), floating=True)
    check_int(batch_size, "batch_size", minimum=1)
    with torch.no_grad():
        energy = torch.cat([energy_fn(chunk) for chunk in samples.split(batch_size)]).double()
    check_tensor(energy, "energy_fn(samples)", shape=(samples.shape[0],))
    return torch.logsumexp(-energy - log_q.double(), dim=0) - math.log(samples.shape[0])


class CodeKernelDensity:
    """Kernel density on codes ``{0..K-1}^d`` around reference points: a proposal for
    :func:`~ebmlib.metrics.importance_log_partition`.

    ``q(x) = (1/N) Σ_n Π_j κ(x_j | c_nj)`` with ``κ(a | b) = 1 - ε`` if ``a = b`` else ``ε / (K - 1)``: pick a
    reference point, then replace each digit by a uniformly drawn other value with probability ``ε``. With
    ``K = 2`` it is the bit-flip (Bernoulli) density around the data, a sharper cousin of the paper's
    factorised "variational Bernoulli" proposal.

    Parameters
    ----------
    centres
        Reference points ``(N, d)`` with integer values in ``[0, K)`` (e.g. training data).
    n_classes
        ``K >= 2``.
    epsilon
        Per-digit change probability in ``(0, 1)``.
    """

    def __init__(self, centres: Tensor, n_classes: int, epsilon: float) -> None:
        check_tensor(centres, "centres", ndim=2)
        self.n_classes = check_int(n_classes, "n_classes", minimum=2)
        if not ((centres == centres.round()) & (centres >= 0) & (centres < n_classes)).all():
            raise ValueError(f"centres must hold integer values in [0, {n_classes})")
        self.centres = centres.long()
        self.epsilon = check_probability(epsilon, "epsilon")

    def sample(self, n: int) -> Tensor:
        """``(n, d)`` float draws."""
        check_int(n, "n", minimum=1)
        base = self.centres[torch.randint(len(self.centres), (n,), device=self.centres.device)]
        change = torch.rand(base.shape, device=base.device) < self.epsilon
        shift = torch.randint(1, self.n_classes, base.shape, device=base.device)
        return torch.where(change, (base + shift) % self.n_classes, base).float()

    def log_prob(self, x: Tensor, *, chunk_size: int = 1024) -> Tensor:
        """``log q(x)`` of ``(n, d)`` codes, shape ``(n,)`` float64."""
        check_tensor(x, "x", shape=(None, self.centres.shape[1]))
        if not ((x == x.round()) & (x >= 0) & (x < self.n_classes)).all():
            raise ValueError(f"x must hold integer values in [0, {self.n_classes})")
        check_int(chunk_size, "chunk_size", minimum=1)
        same, diff = math.log(1 - self.epsilon), math.log(self.epsilon / (self.n_classes - 1))
        dim = self.centres.shape[1]
        # Matching digits as one product of one-hot codes: integer counts (exact in float32 for d < 2**24), without
        # the (chunk, N, d) comparison a broadcast would build.
        centres = nn.functional.one_hot(self.centres, self.n_classes).flatten(1).float()
        out = []
        for chunk in x.long().split(chunk_size):
            matches = (nn.functional.one_hot(chunk, self.n_classes).flatten(1).float() @ centres.T).double()
            log_k = matches * same + (dim - matches) * diff  # (chunk, N)
            out.append(torch.logsumexp(log_k, dim=1) - math.log(len(self.centres)))
        return torch.cat(out)


def ais_log_partition(energy_fn: Callable[[Tensor], Tensor], base_probs: Tensor, *, n_chains: int, n_steps: int,
                      mcmc_steps: int = 1) -> Tensor:
    """Annealed importance sampling (Neal 2001) estimate of ``log Z = log Σ_x e^{-E(x)}`` on ``{0, 1}^d``.

    The chains start from the factorised Bernoulli base ``π₀(x) = Π_j μ_j^{x_j} (1 - μ_j)^{1 - x_j}`` and
    move through ``log f_β(x) = -β E(x) + (1 - β) log π₀(x)`` for ``β`` on a linear grid of ``n_steps + 1``
    points in ``[0, 1]``. At each level the log-weight gains ``log f_{β_k}(x) - log f_{β_{k-1}}(x)`` and the
    state then makes ``mcmc_steps`` Gibbs-with-Gradients moves (:func:`~ebmlib.samplers.gwg_binary`) that
    leave ``f_{β_k}`` invariant, as in the energy-discrepancy authors' ``ais.py``. Since ``π₀`` is normalised,
    ``log Ẑ = logsumexp(log w) - log n_chains``; it is biased low for finite ``n_steps``.

    Parameters
    ----------
    energy_fn
        ``(B, d) -> (B,)``, differentiable in ``x``.
    base_probs
        ``μ``, shape ``(d,)``, entries in ``(0, 1)`` (e.g. the clipped data mean).
    n_chains, n_steps, mcmc_steps
        Number of chains, of annealing levels after ``β = 0``, and of MCMC moves per level (all ``>= 1``).

    Returns
    -------
    Tensor
        Scalar float64 estimate.
    """
    check_tensor(base_probs, "base_probs", ndim=1, floating=True)
    if not ((base_probs > 0) & (base_probs < 1)).all():
        raise ValueError("base_probs must lie in (0, 1)")
    check_int(n_chains, "n_chains", minimum=1)
    check_int(n_steps, "n_steps", minimum=1)
    check_int(mcmc_steps, "mcmc_steps", minimum=1)
    log_mu, log_1m = base_probs.log(), torch.log1p(-base_probs)

    def log_base(x: Tensor) -> Tensor:
        return x @ log_mu + (1 - x) @ log_1m

    x = (torch.rand(n_chains, base_probs.shape[0], device=base_probs.device) < base_probs).to(base_probs.dtype)
    log_w = torch.zeros(n_chains, dtype=torch.float64, device=base_probs.device)
    betas = torch.linspace(0, 1, n_steps + 1, device="cpu").tolist()
    for t in recorded_steps(n_steps, "ais_log_partition"):
        previous, beta = betas[t], betas[t + 1]
        with torch.no_grad():
            energy = check_energy_output(energy_fn(x), n_chains, "energy_fn", finite=False)
            log_w += -(beta - previous) * (energy + log_base(x)).double()

        def annealed(z: Tensor, beta: float = beta) -> Tensor:
            return beta * energy_fn(z) - (1 - beta) * log_base(z)

        x = gwg_binary(annealed, x, mcmc_steps)[0]
    return torch.logsumexp(log_w, dim=0) - math.log(n_chains)


def pseudo_log_likelihood(energy_fn: Callable[[Tensor], Tensor], x: Tensor, *, mask: Tensor | None = None,
                          batch_size: int = 65536) -> Tensor:
    r"""Pseudo-log-likelihood (Besag 1975) of binary states under :math:`p(x) \propto e^{-E(x)}`, per state.

    With :math:`x^{(i)}` the state ``x`` with bit ``i`` flipped, the conditional of one bit given the others
    needs no normaliser, :math:`p(x_i \mid x_{-i}) = \sigma\big(E(x^{(i)}) - E(x)\big)` (the probability a
    Gibbs step keeps bit ``i``), and

    .. math:: \mathrm{PLL}(x_b) = \sum_{i \in S_b} \log \sigma\big(E(x_b^{(i)}) - E(x_b)\big)

    over the bits :math:`S_b` of row ``b`` that ``mask`` marks (all ``d`` by default). Higher is better; for
    a product of Bernoulli(:math:`\rho_i`) bits it is the exact log-likelihood of the marked bits. For graphs
    on their node sets pass ``mask=node_pair_mask(node_counts, max_nodes)``
    (:func:`~ebmlib.data.node_pair_mask`).

    Parameters
    ----------
    energy_fn
        ``(B, d) -> (B,)``.
    x
        Binary states ``(B, d)``, floating dtype.
    mask
        ``(B, d)`` of 0/1 (any dtype): the bits whose conditionals are summed; default every bit.
    batch_size
        Flipped states per energy evaluation (all ``|S_b|`` flips of all rows are evaluated in batches).

    Returns
    -------
    Tensor
        ``(B,)`` float64 on the device of ``x``; 0 for a row with no marked bit.
    """
    check_tensor(x, "x", ndim=2, floating=True)
    check_binary(x, "x")
    if mask is None:
        mask = torch.ones_like(x)
    check_tensor(mask, "mask", shape=tuple(x.shape))
    check_binary(mask, "mask")
    check_int(batch_size, "batch_size", minimum=1)
    row, bit = mask.to(x.device).nonzero(as_tuple=True)
    with torch.no_grad():
        energy = check_energy_output(energy_fn(x), x.shape[0], "energy_fn").double()
        log_conditionals = []
        for rows, bits in zip(row.split(batch_size), bit.split(batch_size)):
            flipped = x[rows].clone()
            at = torch.arange(len(rows), device=x.device)
            flipped[at, bits] = 1 - flipped[at, bits]
            energy_flipped = check_energy_output(energy_fn(flipped), len(rows), "energy_fn").double()
            log_conditionals.append(torch.nn.functional.logsigmoid(energy_flipped - energy[rows]))
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    return total.index_add_(0, row, torch.cat(log_conditionals)) if log_conditionals else total
