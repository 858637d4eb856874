"""Sample-based metrics: Hamming-kernel MMD, total variation and KL on enumerated spaces, mode weights,
coupling and mode-weight errors, log-density errors on a grid, and Fréchet distances between feature sets."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, reduce

import torch
from torch import Tensor

from ebmlib.data.codes import bit_weights
from ebmlib.utils import check_binary, check_energy_output, check_int, check_positive, check_tensor, grid_2d

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
    Shapes as in :func:`~ebmlib.metrics.hamming_distance`.
    """
    distance = hamming_distance(a, b)
    return a.shape[1] - distance


def exp_hamming_kernel(a: Tensor, b: Tensor, bandwidth: float = 0.1) -> Tensor:
    """``k(a, b) = exp(-bandwidth · H(a, b))``, the kernel of the energy-discrepancy and EB-GFN papers.

    A product of strictly positive definite one-bit kernels, so its MMD² vanishes only for ``P = Q``.
    Shapes as in :func:`~ebmlib.metrics.hamming_distance`.
    """
    bandwidth = check_positive(bandwidth, "bandwidth")
    return torch.exp(-bandwidth * hamming_distance(a, b))


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
        E.g. :func:`~ebmlib.metrics.linear_hamming_kernel`; see :data:`~ebmlib.metrics.Kernel`.
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
    """:func:`~ebmlib.metrics.mmd2` of binary samples ``(n, d)`` and ``(m, d)`` with a Hamming kernel.

    ``kernel="linear"`` uses :func:`~ebmlib.metrics.linear_hamming_kernel` (RMwGGIS), ``"exp"`` uses
    :func:`~ebmlib.metrics.exp_hamming_kernel` with ``bandwidth`` (ignored by ``"linear"``).
    """
    _check_pair(x, y, "x y", binary=True)
    if kernel == "linear":
        kernel_fn: Kernel = linear_hamming_kernel
    elif kernel == "exp":
        kernel_fn = partial(exp_hamming_kernel, bandwidth=check_positive(bandwidth, "bandwidth"))
    else:
        raise ValueError(f"kernel must be 'linear' or 'exp', got {kernel!r}")
    return mmd2(x, y, kernel_fn, unbiased=unbiased)


def empirical_distribution(states: Tensor, d: int) -> Tensor:
    """Frequencies ``p̂_k = #{n : index(x_n) = k} / N`` of all ``2^d`` states, shape ``(2^d,)``.

    ``states`` are ``N ≥ 1`` binary samples of shape ``(N, d)``, ``1 ≤ d ≤ 20``. Entry ``k`` is the state
    that spells ``k`` with the first column as the most significant bit (``(1, 0, 0)`` is entry 4), as in
    :func:`~ebmlib.data.all_binary_states`.
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
        Mode centres, shape ``(K, d)``, e.g. :func:`~ebmlib.data.toy_mode_centres`.
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

    Both are weight vectors ``(K,)`` as returned by :func:`~ebmlib.metrics.mode_weights`.
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
    check_tensor(x, "x", shape=(None, 2), floating=True)
    check_tensor(true_log_prob, "true_log_prob", shape=(x.shape[0],), floating=True)
    with torch.no_grad():
        points, area = grid_2d(lim, n, device=x.device, dtype=x.dtype)
        neg_energy = torch.cat([-check_energy_output(energy_fn(chunk), chunk.shape[0], "energy_fn", finite=False)
                                for chunk in points.split(65536)])
        log_z = torch.logsumexp(neg_energy, 0) + torch.log(torch.tensor(area, dtype=x.dtype, device=x.device))
        log_p = -check_energy_output(energy_fn(x), x.shape[0], "energy_fn", finite=False) - log_z
    if not torch.isfinite(log_p).all():
        raise ValueError("energy_fn returned NaN or infinite values")
    return (log_p - true_log_prob.to(log_p)).pow(2).median()


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
        scale = max(1.0, cov.abs().max().item())
        if not torch.allclose(cov, cov.T, atol=1e-8 * scale):
            raise ValueError(f"{name} must be symmetric")
        if torch.linalg.eigvalsh((cov + cov.T) / 2).min() < -1e-8 * scale:  # round-off below that is clipped
            raise ValueError(f"{name} must be positive semi-definite")
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
