"""Sample-quality metrics: MMD² with Hamming kernels, exact distributions on ``{0,1}^d``, Fréchet distances,
importance-sampling estimates of log Z on discrete codes.

Binary samples are ``(n, d)`` tensors of 0/1 values; floating inputs keep their dtype, integer and boolean
ones are computed in the default floating dtype. State ``(x_1, …, x_d)`` has index ``Σ_j x_j 2^{d-j}``
(first column = most significant bit) in :func:`ebmlib.data.all_binary_states` and :func:`empirical_distribution`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial, reduce

import torch
from torch import Tensor

from ebmlib.data import bit_weights
from ebmlib.utils import check_binary, check_int, check_positive, check_tensor

Kernel = Callable[[Tensor, Tensor], Tensor]
"""``kernel(a, b)`` maps ``(n, d)`` and ``(m, d)`` to the Gram matrix ``(n, m)``."""


def _check_pair(a: Tensor, b: Tensor, names: str, *, binary: bool, min_rows: int = 1) -> None:
    """Validate two ``(·, d)`` sample tensors of one width; ``names`` is e.g. ``"x y"``."""
    name_a, name_b = names.split()
    for value, name in ((a, name_a), (b, name_b)):
        check_tensor(value, name, ndim=2)
        if binary:
            check_binary(value, name)
        if value.shape[0] < min_rows:
            raise ValueError(f"{name} must hold at least {min_rows} samples, got {value.shape[0]}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{name_a} and {name_b} must have the same width, got {a.shape[1]} and {b.shape[1]}")


def _float_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = reduce(torch.promote_types, (t.dtype for t in tensors))
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


# ---------------------------------------------------------------------------------------------------------
# Kernels on binary vectors
# ---------------------------------------------------------------------------------------------------------
def hamming_distance(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise Hamming distances ``H(a_i, b_j) = Σ_k [a_ik ≠ b_jk]``, computed as ``a (1-b)ᵀ + (1-a) bᵀ``.

    ``a`` and ``b`` are binary, shapes ``(n, d)`` and ``(m, d)``; the result has shape ``(n, m)`` and holds
    exact integers for ``d < 2^24``, even in float32.
    """
    _check_pair(a, b, "a b", binary=True)
    dtype = _float_dtype(a, b)
    a, b = a.to(dtype), b.to(dtype)
    return a @ (1 - b).T + (1 - a) @ b.T


def linear_hamming_kernel(a: Tensor, b: Tensor) -> Tensor:
    """``k(a, b) = d - H(a, b)``, the number of agreeing bits: the RMwGGIS paper's linear kernel.

    ``k`` is the inner product of the features ``φ(x) = (x, 1 - x)``, so its MMD² is
    ``‖E_P φ - E_Q φ‖² = 2 Σ_k (P(x_k = 1) - Q(x_k = 1))²``: it only compares one-bit marginals.
    Shapes as in :func:`hamming_distance`.
    """
    distance = hamming_distance(a, b)
    return a.shape[1] - distance


def exp_hamming_kernel(a: Tensor, b: Tensor, bandwidth: float = 0.1) -> Tensor:
    """``k(a, b) = exp(-bandwidth · H(a, b))``, the kernel of the energy-discrepancy and EB-GFN papers.

    A product of strictly positive definite one-bit kernels, so its MMD² vanishes only for ``P = Q``.
    Shapes as in :func:`hamming_distance`.
    """
    bandwidth = check_positive(bandwidth, "bandwidth")
    return torch.exp(-bandwidth * hamming_distance(a, b))


# ---------------------------------------------------------------------------------------------------------
# Maximum mean discrepancy
# ---------------------------------------------------------------------------------------------------------
def _kernel_mean(kernel: Kernel, a: Tensor, b: Tensor, *, exclude_diagonal: bool, chunk_size: int) -> Tensor:
    """Mean of ``kernel(a, b)`` over all (or all off-diagonal) entries, one block of rows at a time."""
    n, m = a.shape[0], b.shape[0]
    # MMD² is a small difference of large means: accumulate in float64 where the device has it.
    acc_dtype = torch.float32 if a.device.type == "mps" else torch.float64
    total = torch.zeros((), dtype=acc_dtype, device=a.device)
    for start in range(0, n, chunk_size):
        rows = a[start : start + chunk_size]
        gram = kernel(rows, b)
        if not isinstance(gram, Tensor) or gram.shape != (rows.shape[0], m):
            got = tuple(gram.shape) if isinstance(gram, Tensor) else type(gram).__name__
            raise ValueError(f"kernel must return a Gram matrix of shape ({rows.shape[0]}, {m}), got {got}")
        total = total + gram.sum(dtype=acc_dtype)
        if exclude_diagonal:
            total = total - gram.diagonal(offset=start).sum(dtype=acc_dtype)
    return total / (n * (n - 1) if exclude_diagonal else n * m)


def mmd2(x: Tensor, y: Tensor, kernel: Kernel, *, unbiased: bool = True, chunk_size: int = 1024) -> Tensor:
    """Squared maximum mean discrepancy ``MMD² = E k(x, x') + E k(y, y') - 2 E k(x, y)``, x ~ P, y ~ Q.

    The unbiased estimator (U-statistic) averages ``k(x_i, x_i')`` over ``i ≠ i'`` and ``k(y_j, y_j')`` over
    ``j ≠ j'``, so it can be negative when ``P = Q``; the biased one (V-statistic) keeps the diagonal terms.

    Parameters
    ----------
    x, y
        Samples, shapes ``(n, d)`` and ``(m, d)``; ``n, m ≥ 2`` for the unbiased estimator.
    kernel
        E.g. :func:`linear_hamming_kernel`; see :data:`Kernel`.
    unbiased
        Exclude the diagonal terms.
    chunk_size
        Rows per Gram-matrix block: memory is ``O(chunk_size · max(n, m))`` instead of ``O(n m)``.

    Returns
    -------
    Tensor
        Scalar in the floating dtype of the inputs.
    """
    _check_pair(x, y, "x y", binary=False, min_rows=2 if unbiased else 1)
    if not callable(kernel):
        raise ValueError(f"kernel must be callable, got {type(kernel).__name__}")
    mean = partial(_kernel_mean, kernel, chunk_size=check_int(chunk_size, "chunk_size", minimum=1))
    value = mean(x, x, exclude_diagonal=unbiased) + mean(y, y, exclude_diagonal=unbiased)
    value = value - 2 * mean(x, y, exclude_diagonal=False)
    return value.to(_float_dtype(x, y))


def mmd_hamming(
    x: Tensor, y: Tensor, kernel: str = "linear", bandwidth: float = 0.1, *, unbiased: bool = True
) -> Tensor:
    """:func:`mmd2` of binary samples ``(n, d)`` and ``(m, d)`` with a Hamming kernel.

    ``kernel="linear"`` uses :func:`linear_hamming_kernel` (RMwGGIS), ``"exp"`` uses
    :func:`exp_hamming_kernel` with ``bandwidth`` (ignored by ``"linear"``).
    """
    _check_pair(x, y, "x y", binary=True)
    if kernel == "linear":
        kernel_fn: Kernel = linear_hamming_kernel
    elif kernel == "exp":
        kernel_fn = partial(exp_hamming_kernel, bandwidth=check_positive(bandwidth, "bandwidth"))
    else:
        raise ValueError(f"kernel must be 'linear' or 'exp', got {kernel!r}")
    return mmd2(x, y, kernel_fn, unbiased=unbiased)


# ---------------------------------------------------------------------------------------------------------
# Exact distributions on {0,1}^d
# ---------------------------------------------------------------------------------------------------------
def empirical_distribution(states: Tensor, d: int) -> Tensor:
    """Frequencies ``p̂_k = #{n : index(x_n) = k} / N`` of all ``2^d`` states, shape ``(2^d,)``.

    ``states`` are ``N ≥ 1`` binary samples of shape ``(N, d)``, ``1 ≤ d ≤ 20``. Entry ``k`` is the state
    that spells ``k`` with the first column as the most significant bit (``(1, 0, 0)`` is entry 4), as in
    :func:`ebmlib.data.all_binary_states`.
    """
    weights = bit_weights(d, states.device if isinstance(states, Tensor) else None)
    check_tensor(states, "states", ndim=2)
    check_binary(states, "states")
    if states.shape[1] != d or states.shape[0] == 0:
        raise ValueError(f"states must have shape (N >= 1, {d}), got {tuple(states.shape)}")
    counts = torch.bincount((states.long() * weights).sum(dim=1), minlength=2**d)
    return counts.to(_float_dtype(states)) / states.shape[0]


def _check_probability_vector(p: Tensor, name: str, atol: float) -> None:
    check_tensor(p, name, ndim=1, floating=True)
    if (p < 0).any():
        raise ValueError(f"{name} must be non-negative")
    if abs(float(p.sum()) - 1.0) > check_positive(atol, "atol"):
        raise ValueError(f"{name} must sum to 1 within {atol}, got {float(p.sum())}")


def total_variation(p: Tensor, q: Tensor, *, atol: float = 1e-5) -> Tensor:
    """Total variation distance ``TV(p, q) = ½ Σ_k |p_k - q_k| ∈ [0, 1]``, a scalar.

    ``p`` and ``q`` are probability vectors of one shape ``(K,)`` and floating dtype: non-negative and
    summing to 1 within ``atol``.
    """
    _check_probability_vector(p, "p", atol)
    _check_probability_vector(q, "q", atol)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return 0.5 * (p - q).abs().sum()


def kl_divergence(p: Tensor, q: Tensor, *, atol: float = 1e-5) -> Tensor:
    r"""Kullback–Leibler divergence :math:`\mathrm{KL}(p \,\|\, q) = \sum_k p_k \log(p_k / q_k)` in nats.

    ``p`` and ``q`` are probability vectors of one shape ``(K,)`` (e.g. the cell probabilities of two
    grid-normalised 2D densities). Terms with ``p_k = 0`` contribute 0; the result is ``inf`` when ``q``
    puts zero mass where ``p`` does not.
    """
    _check_probability_vector(p, "p", atol)
    _check_probability_vector(q, "q", atol)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return torch.where(p > 0, p * (p.log() - q.log()), torch.zeros_like(p)).sum()


def mode_weights(x: Tensor, centres: Tensor, *, weights: Tensor | None = None) -> Tensor:
    """Share of (weighted) points nearest to each centre: a partition of space into Voronoi cells.

    Parameters
    ----------
    x
        Points, shape ``(N, d)``.
    centres
        Mode centres, shape ``(K, d)``, e.g. :func:`ebmlib.data.toy_mode_centres`.
    weights
        Optional non-negative point weights ``(N,)`` (e.g. grid-cell probabilities, giving the exact mass
        of each mode's cell); default equal weights (the share of samples per mode).

    Returns
    -------
    Tensor
        Shape ``(K,)``, summing to 1.
    """
    check_tensor(x, "x", ndim=2, floating=True)
    check_tensor(centres, "centres", shape=(None, x.shape[1]), floating=True)
    if weights is None:
        weights = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
    check_tensor(weights, "weights", shape=(x.shape[0],), floating=True)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    nearest = torch.cdist(x, centres.to(x)).argmin(dim=1)
    mass = torch.zeros(centres.shape[0], dtype=weights.dtype, device=x.device).index_add_(0, nearest, weights)
    return mass / mass.sum()



def log_rmse(estimate: Tensor, target: Tensor) -> Tensor:
    r"""Natural log of the root-mean-squared error, :math:`\log \sqrt{\overline{(\hat J - J)^2}}`.

    The Ising experiments of Gibbs-with-Gradients and RMwGGIS score a learned coupling matrix
    :math:`\hat J` against the true :math:`J` (both ``(D, D)``) this way; lower is better.
    """
    check_tensor(estimate, "estimate", min_ndim=1, floating=True)
    check_tensor(target, "target", shape=tuple(estimate.shape), floating=True)
    return (estimate - target.to(estimate)).pow(2).mean().sqrt().log()


def mode_weight_mse(estimate: Tensor, target: Tensor) -> Tensor:
    r"""Mean squared error of mode weights, :math:`\frac1K \sum_k (\hat w_k - w_k)^2` (Grenioux et al., Table 3).

    Both are weight vectors ``(K,)`` as returned by :func:`mode_weights`.
    """
    check_tensor(estimate, "estimate", ndim=1, floating=True)
    check_tensor(target, "target", shape=tuple(estimate.shape), floating=True)
    return (estimate - target.to(estimate)).pow(2).mean()


def median_squared_log_density_error(energy_fn: Callable[[Tensor], Tensor], x: Tensor, true_log_prob: Tensor,
                                     *, lim: float, n: int = 400) -> Tensor:
    r"""Median over points ``x`` of :math:`(\log p_\theta(x) - \log p^*(x))^2` (Grenioux et al., Table 1).

    :math:`p_\theta \propto e^{-E}` is normalised on the ``n × n`` grid of :func:`ebmlib.utils.grid_2d` over
    ``[-lim, lim]²`` (as :func:`ebmlib.utils.grid_log_density` does) and evaluated exactly at ``x``.

    Parameters
    ----------
    energy_fn
        2D energy ``(B, 2) -> (B,)``.
    x
        Evaluation points ``(N, 2)``, e.g. samples of the target.
    true_log_prob
        :math:`\log p^*(x)`, shape ``(N,)``.
    lim, n
        Grid half-width and cells per side.
    """
    from ebmlib.utils import grid_2d  # local: keeps this addition self-contained

    check_tensor(x, "x", shape=(None, 2), floating=True)
    check_tensor(true_log_prob, "true_log_prob", shape=(x.shape[0],), floating=True)
    with torch.no_grad():
        points, area = grid_2d(lim, n, device=x.device, dtype=x.dtype)
        neg_energy = torch.cat([-energy_fn(chunk) for chunk in points.split(65536)])
        log_z = torch.logsumexp(neg_energy, 0) + torch.log(torch.tensor(area, dtype=x.dtype, device=x.device))
        log_p = -energy_fn(x) - log_z
    if not torch.isfinite(log_p).all():
        raise ValueError("energy_fn returned NaN or infinite values")
    return (log_p - true_log_prob.to(log_p)).pow(2).median()


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
    return torch.where(within > 0, (var_plus / within).sqrt(), torch.where(between > 0, torch.inf, 1.0))


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


# ---------------------------------------------------------------------------------------------------------
# Fréchet distance between feature sets (the statistic behind FID)
# ---------------------------------------------------------------------------------------------------------
def gaussian_frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> Tensor:
    r"""Fréchet (2-Wasserstein²) distance between :math:`N(\mu_1, \Sigma_1)` and :math:`N(\mu_2, \Sigma_2)`,

    .. math:: \|\mu_1 - \mu_2\|^2 + \mathrm{tr}\big(\Sigma_1 + \Sigma_2
              - 2\,(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2})^{1/2}\big),

    computed in float64 from symmetric eigendecompositions (the symmetric form of the
    :math:`\mathrm{tr}(\Sigma_1\Sigma_2)^{1/2}` term of Heusel et al., 2017). Means ``(d,)``, covariances
    ``(d, d)`` symmetric positive semi-definite; returns a 0-dim tensor.
    """
    check_tensor(mu1, "mu1", ndim=1)
    d = mu1.shape[0]
    check_tensor(mu2, "mu2", shape=(d,))
    check_tensor(cov1, "cov1", shape=(d, d))
    check_tensor(cov2, "cov2", shape=(d, d))
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    for cov, name in ((cov1, "cov1"), (cov2, "cov2")):
        if not torch.allclose(cov, cov.T, atol=1e-8 * max(1.0, cov.abs().max().item())):
            raise ValueError(f"{name} must be symmetric")
    evals1, evecs1 = torch.linalg.eigh(cov1)
    sqrt1 = evecs1 @ torch.diag(evals1.clamp_min(0).sqrt()) @ evecs1.T
    middle = sqrt1 @ cov2 @ sqrt1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    return (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * trace_sqrt


def frechet_distance(x: Tensor, y: Tensor) -> Tensor:
    """Fréchet distance between Gaussians fitted to two feature sets ``(n, d)`` and ``(m, d)``.

    With Inception-v3 pool features of images this is the FID (Heusel et al., 2017); with the features of
    another network it is a Fréchet distance in *that* network's feature space, comparable only within it.
    The covariances are the unbiased sample covariances; ``n, m >= 2``.
    """
    _check_pair(x, y, "x y", binary=False, min_rows=2)
    x, y = x.double(), y.double()
    return gaussian_frechet_distance(x.mean(0), torch.cov(x.T).reshape(x.shape[1], -1),
                                     y.mean(0), torch.cov(y.T).reshape(y.shape[1], -1))



# ---------------------------------------------------------------------------------------------------------
# Importance-sampling estimates of log Z on discrete codes
# ---------------------------------------------------------------------------------------------------------
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
    """Kernel density on codes ``{0..K-1}^d`` around reference points: a proposal for :func:`importance_log_partition`.

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
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon must lie in (0, 1), got {epsilon}")
        self.centres = centres.long()
        self.epsilon = float(epsilon)

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
        same, diff = math.log(1 - self.epsilon), math.log(self.epsilon / (self.n_classes - 1))
        out = []
        for chunk in x.long().split(chunk_size):
            mismatches = (chunk[:, None, :] != self.centres[None]).sum(-1).double()  # (chunk, N)
            log_k = mismatches * diff + (self.centres.shape[1] - mismatches) * same
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
    from ebmlib.samplers import gwg_binary  # samplers do not import metrics: no cycle

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
    betas = torch.linspace(0, 1, n_steps + 1).tolist()
    for previous, beta in zip(betas[:-1], betas[1:]):
        with torch.no_grad():
            log_w += -(beta - previous) * (energy_fn(x) + log_base(x)).double()

        def annealed(z: Tensor, beta: float = beta) -> Tensor:
            return beta * energy_fn(z) - (1 - beta) * log_base(z)

        x = gwg_binary(annealed, x, mcmc_steps)[0]
    return torch.logsumexp(log_w, dim=0) - math.log(n_chains)
