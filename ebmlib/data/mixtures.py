"""The synthetic targets of Grenioux, Moulines & Gabrié (2023), with exact samplers and log-densities.

* :class:`~ebmlib.data.GaussianMixture` — isotropic Gaussian mixtures in any dimension; :func:`~ebmlib.data.paper_mixture` builds the
  paper's 2:1 motivating example, the 4 modes with weights 0.1/0.2/0.3/0.4, the 8 Gaussians (radius 1,
  std 0.15) and the 4-mode mixture in ``d`` dimensions.
* :class:`~ebmlib.data.Rings` — four concentric rings of radii 1–4 (radial std 0.15), uniform in angle.

These are *not* the FFJORD-style toys of :func:`~ebmlib.data.sample_toy` (whose ``8gaussians`` and ``rings``
have other radii and widths): the metrics of chapter 4 need the paper's exact densities.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlib.utils import check_int, check_positive, check_tensor


HIGH_DIM_A = 0.5919
"""The paper's mean scale ``a`` of the high-dimensional 4-mode mixture (App. C.5)."""


MEAN_SCALINGS = ("sqrt_d", "unit")
"""The two readings of the high-dimensional means, entries ``±a√d`` (``"sqrt_d"``) or ``±a`` (``"unit"``)."""


class GaussianMixture:
    r"""Mixture :math:`\sum_k w_k N(\mu_k, s_k^2 I_d)`.

    Parameters
    ----------
    means
        ``(K, d)``.
    stds
        Per-component standard deviations ``(K,)`` (positive).
    weights
        Mixture weights ``(K,)``, positive, normalised here.
    """

    def __init__(self, means: Tensor, stds: Tensor, weights: Tensor) -> None:
        check_tensor(means, "means", ndim=2, floating=True)
        k = means.shape[0]
        check_tensor(stds, "stds", shape=(k,), floating=True)
        check_tensor(weights, "weights", shape=(k,), floating=True)
        if (stds <= 0).any():
            raise ValueError("stds must be positive")
        if (weights <= 0).any():
            raise ValueError("weights must be positive")
        self.means, self.stds, self.weights = means, stds.to(means), (weights / weights.sum()).to(means)

    @property
    def dim(self) -> int:
        """``d``."""
        return self.means.shape[1]

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` points ``(n, d)`` and their component labels ``(n,)`` (CPU draws, moved to the means' device)."""
        check_int(n, "n", minimum=1)
        labels = torch.multinomial(self.weights.cpu(), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        labels = labels.to(self.means.device)
        return self.means[labels] + self.stds[labels, None] * noise.to(self.means.device), labels

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact ``log p(x)``, ``(B, d) -> (B,)``."""
        check_tensor(x, "x", shape=(None, self.dim), floating=True)
        var = self.stds.to(x) ** 2
        sq = torch.cdist(x, self.means.to(x)).pow(2)
        log_comp = -0.5 * sq / var - 0.5 * self.dim * torch.log(2 * math.pi * var)
        return torch.logsumexp(log_comp + self.weights.to(x).log(), dim=1)

    def energy(self, x: Tensor) -> Tensor:
        """``-log p(x)``: the target as an energy for the samplers."""
        return -self.log_prob(x)

    def max_marginal_std(self) -> float:
        """Largest per-coordinate standard deviation of the mixture: the paper's choice of flow base ``σ``."""
        mean = self.weights @ self.means
        second = self.weights @ (self.means.pow(2) + self.stds[:, None] ** 2)
        return float((second - mean.pow(2)).max().sqrt())


def paper_mixture(name: str, *, dim: int = 16, mean_scaling: str = "sqrt_d",
                  dtype: torch.dtype = torch.float32) -> GaussianMixture:
    """The paper's Gaussian-mixture targets.

    * ``"two_modes"`` (§4, App. C.2): ``1/3 N(-1.5·1, 0.05 I) + 2/3 N(1.5·1, 0.1 I)`` (variances) in 2D.
    * ``"four_modes"`` (App. C.3): means ``(-3, 0), (-1, 0), (1, 0), (3, 0)``, variance 0.05,
      weights ``0.1, 0.2, 0.3, 0.4``.
    * ``"eight_gaussians"`` (App. C.4): equal weights, means ``(cos 2πi/8, sin 2πi/8)``, std 0.15.
    * ``"high_dim"`` (App. C.5): four equal ``N(μ_i, I_d)`` with ``μ_1 = a s 1``, ``μ_2 = a s (-1_{d/2}, 1_{d/2})``,
      ``μ_3 = -μ_2``, ``μ_4 = -μ_1``, ``a = 0.5919`` and ``s = √d`` (``mean_scaling="sqrt_d"``, the reading
      under which the paper's separation claim holds) or ``s = 1`` (``"unit"``, the literal text).
    """
    if name == "two_modes":
        means = torch.tensor([[-1.5, -1.5], [1.5, 1.5]], dtype=dtype)
        stds = torch.tensor([0.05, 0.1], dtype=dtype).sqrt()
        return GaussianMixture(means, stds, torch.tensor([1.0, 2.0], dtype=dtype))
    if name == "four_modes":
        means = torch.tensor([[-3.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [3.0, 0.0]], dtype=dtype)
        return GaussianMixture(means, torch.full((4,), 0.05, dtype=dtype).sqrt(),
                               torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=dtype))
    if name == "eight_gaussians":
        angle = 2 * math.pi * torch.arange(8, dtype=dtype) / 8
        means = torch.stack([angle.cos(), angle.sin()], dim=1)
        return GaussianMixture(means, torch.full((8,), 0.15, dtype=dtype), torch.ones(8, dtype=dtype))
    if name == "high_dim":
        check_int(dim, "dim", minimum=2)
        if mean_scaling not in MEAN_SCALINGS:
            raise ValueError(f"mean_scaling must be one of {MEAN_SCALINGS}, got {mean_scaling!r}")
        scale = HIGH_DIM_A * (math.sqrt(dim) if mean_scaling == "sqrt_d" else 1.0)
        half = torch.cat([-torch.ones(dim // 2, dtype=dtype), torch.ones(dim - dim // 2, dtype=dtype)])
        mu1, mu2 = scale * torch.ones(dim, dtype=dtype), scale * half
        ones = torch.ones(4, dtype=dtype)
        return GaussianMixture(torch.stack([mu1, mu2, -mu2, -mu1]), ones, ones)
    raise ValueError(f"name must be 'two_modes', 'four_modes', 'eight_gaussians' or 'high_dim', got {name!r}")


class Rings:
    r"""Rings of App. C.4: radius :math:`r \sim \frac14 \sum_{i=1}^{4} N(i, 0.15^2)`, angle uniform.

    The density in the plane is :math:`p(x) = p_r(\|x\|) / (2\pi \|x\|)` (polar change of variables); the
    radial Gaussians put negligible mass below ``r = 0``.
    """

    def __init__(self, radii: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0), std: float = 0.15) -> None:
        self.radii = torch.tensor(radii)
        self.std = check_positive(std, "std")
        self.dim = 2

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` points ``(n, 2)`` and their ring labels ``(n,)``."""
        check_int(n, "n", minimum=1)
        labels = torch.randint(len(self.radii), (n,), generator=generator)
        r = self.radii[labels] + self.std * torch.randn(n, generator=generator)
        phi = 2 * math.pi * torch.rand(n, generator=generator)
        return torch.stack([r * phi.cos(), r * phi.sin()], dim=1), labels

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact ``log p(x)``, ``(B, 2) -> (B,)``."""
        check_tensor(x, "x", shape=(None, 2), floating=True)
        r = x.norm(dim=1).clamp_min(1e-12)
        radii = self.radii.to(x)
        log_comp = -0.5 * ((r[:, None] - radii) / self.std) ** 2 - math.log(self.std * math.sqrt(2 * math.pi))
        log_pr = torch.logsumexp(log_comp, dim=1) - math.log(len(radii))
        return log_pr - torch.log(2 * math.pi * r)

    def max_marginal_std(self) -> float:
        """Per-coordinate standard deviation ``sqrt(E[r²]/2)``."""
        return math.sqrt(float((self.radii**2 + self.std**2).mean()) / 2)
