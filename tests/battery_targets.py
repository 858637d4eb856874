"""Known targets and statistical checks shared by the battery (tests/test_battery.py).

Every statistical assertion here fails a correct implementation with probability below about 1e-6:
means and variances are compared within ``Z = 5`` standard errors (two-sided normal tail 6e-7), laws on
finite spaces by Pearson's chi-square test at level 1e-6, and rates by 5 binomial standard errors. The
tests are seeded (tests/conftest.py), so they are also reproducible.
"""

from __future__ import annotations

import functools
import math

import torch
from scipy.stats import chi2
from torch import Tensor, nn

from ebmlib.data import all_binary_states, all_configurations, labels_to_one_hot

Z = 5.0
F64 = torch.float64


# ---------------------------------------------------------------------------------------------------------
# Statistical checks
# ---------------------------------------------------------------------------------------------------------
def assert_law(index: Tensor, probs: Tensor, level: float = 1e-6) -> None:
    """Pearson's chi-square test that the integer draws ``index`` follow ``probs`` (states with p = 0 never
    appear). States expected fewer than 5 times are pooled, smallest first, so the χ² approximation holds."""
    probs = probs.to(F64).cpu()
    counts = torch.bincount(index.reshape(-1).cpu(), minlength=len(probs)).to(F64)
    support = probs > 0
    assert len(counts) == len(probs) and counts[~support].sum() == 0, "draws outside the target's support"
    expected, observed = counts.sum() * probs[support], counts[support]
    order = expected.argsort()
    n_pooled = int((expected[order].cumsum(0) < 5).sum()) + 1 if expected.min() < 5 else 0
    if n_pooled:
        pooled = order[:n_pooled]
        kept = order[n_pooled:]
        expected = torch.cat([expected[kept], expected[pooled].sum(0, keepdim=True)])
        observed = torch.cat([observed[kept], observed[pooled].sum(0, keepdim=True)])
    assert len(expected) >= 2 and expected.min() >= 5, "too few draws for the chi-square approximation"
    statistic = ((observed - expected) ** 2 / expected).sum().item()
    threshold = chi2.isf(level, len(expected) - 1)
    assert statistic < threshold, (statistic, threshold, observed.tolist(), expected.tolist())


def assert_close_se(estimate: Tensor | float, expected: Tensor | float, se: Tensor | float, what: str = "") -> None:
    """``|estimate - expected| < Z · se`` elementwise."""
    estimate, expected, se = (torch.as_tensor(v, dtype=F64).cpu() for v in (estimate, expected, se))
    assert ((estimate - expected).abs() < Z * se).all(), (what, estimate, expected, se)


def assert_gaussian(x: Tensor, mean: Tensor | float, var: Tensor | float) -> None:
    """Mean and variance of the rows of ``x`` (``(N, d)``) against a Gaussian law: the standard errors are
    ``sqrt(var / N)`` for the mean and ``var · sqrt(2 / (N - 1))`` for the sample variance."""
    x = x.detach().to(F64).cpu()
    n = x.shape[0]
    var = torch.as_tensor(var, dtype=F64)
    assert_close_se(x.mean(0), mean, (var / n).sqrt(), "mean")
    assert_close_se(x.var(0), var, var * math.sqrt(2 / (n - 1)), "variance")


def assert_rate(hits: Tensor, p: float, what: str = "rate") -> None:
    """The mean of 0/1 outcomes ``hits`` against the probability ``p`` (exact when ``p`` is 0 or 1)."""
    rate = hits.to(F64).mean().item()
    if p in (0.0, 1.0):
        assert rate == p, (what, rate, p)
        return
    assert_close_se(rate, p, math.sqrt(p * (1 - p) / hits.numel()), what)


# ---------------------------------------------------------------------------------------------------------
# An exactly enumerated binary target on {0, 1}^3
# ---------------------------------------------------------------------------------------------------------
D_BITS = 3
_g = torch.Generator().manual_seed(1)
_a = 0.6 * torch.randn(D_BITS, D_BITS, generator=_g, dtype=F64)
BIT_W, BIT_B = (_a + _a.T) / 2, 0.5 * torch.randn(D_BITS, generator=_g, dtype=F64)


def bit_energy(x: Tensor) -> Tensor:
    """``E(x) = -xᵀWx - bᵀx``, following the dtype and device of ``x``."""
    return -((x @ BIT_W.to(x)) * x).sum(-1) - x @ BIT_B.to(x)


class BitEnergy(nn.Module):
    """:func:`bit_energy` with ``W`` and ``b`` as parameters (for gradient checks of losses)."""

    def __init__(self, dtype: torch.dtype = F64) -> None:
        super().__init__()
        self.w = nn.Parameter(BIT_W.to(dtype))
        self.b = nn.Parameter(BIT_B.to(dtype))

    def forward(self, x: Tensor) -> Tensor:
        return -((x @ self.w) * x).sum(-1) - x @ self.b


BITS = all_binary_states(D_BITS, dtype=F64)
BIT_PROBS = torch.softmax(-bit_energy(BITS), 0)


def bit_index(x: Tensor) -> Tensor:
    """Row ``k`` of :data:`BITS` for each state (first column most significant)."""
    weights = 2 ** torch.arange(x.shape[1] - 1, -1, -1, device=x.device)
    return (x.round().long() * weights).sum(1)


def exact_bits(n: int, dtype: torch.dtype = F64) -> Tensor:
    return BITS[torch.multinomial(BIT_PROBS, n, replacement=True)].to(dtype)


# ---------------------------------------------------------------------------------------------------------
# An exactly enumerated categorical target: one-hot blocks of sizes (2, 3), six configurations
# ---------------------------------------------------------------------------------------------------------
SIZES = (2, 3)
_c = 0.5 * torch.randn(5, 5, generator=_g, dtype=F64)
CAT_A, CAT_C = (_c + _c.T) / 2, 0.7 * torch.randn(5, generator=_g, dtype=F64)
CONFIGS = all_configurations(SIZES)
ONE_HOTS = labels_to_one_hot(CONFIGS, SIZES, dtype=F64)


def cat_energy(y: Tensor) -> Tensor:
    """``E(y) = -yᵀAy - cᵀy`` on concatenated one-hots ``(B, 5)``."""
    return -((y @ CAT_A.to(y)) * y).sum(-1) - y @ CAT_C.to(y)


CAT_PROBS = torch.softmax(-cat_energy(ONE_HOTS), 0)


def config_index(y: Tensor) -> Tensor:
    """Row of :data:`CONFIGS` of each one-hot state ``(B, 5)``."""
    return y[:, :2].argmax(1) * 3 + y[:, 2:].argmax(1)


# ---------------------------------------------------------------------------------------------------------
# A categorical table for rows [numeric | c1 c2] with n_classes (3, 2)
# ---------------------------------------------------------------------------------------------------------
N_CLASSES = (3, 2)
CODE_TABLE = 0.8 * torch.randn(3, 2, generator=_g, dtype=F64)
CODE_SLOPE = torch.tensor([0.0, 1.0, -1.0], dtype=F64)


def code_energy(rows: Tensor) -> Tensor:
    """``E = (x - 0.5)²/2 + T[c1, c2] + x·u[c1]`` for rows ``[x, c1, c2]``: the codes depend on ``x``."""
    x, c1, c2 = rows[:, 0], rows[:, 1].long(), rows[:, 2].long()
    return (x - 0.5) ** 2 / 2 + CODE_TABLE.to(rows)[c1, c2] + x * CODE_SLOPE.to(rows)[c1]


def code_probs_given(x: float) -> Tensor:
    """``p(c1, c2 | x)`` of :func:`code_energy`, flattened ``c1 * 2 + c2``."""
    logits = -(CODE_TABLE + x * CODE_SLOPE[:, None])
    return torch.softmax(logits.reshape(-1), 0)


# ---------------------------------------------------------------------------------------------------------
# Gaussian targets
# ---------------------------------------------------------------------------------------------------------
MU = torch.tensor([0.5, -1.0], dtype=F64)
S2 = 0.64


def gauss_energy(x: Tensor) -> Tensor:
    """``E(x) = |x - μ|² / (2 s²)``: the target is ``N(μ, s² I)``."""
    return ((x - MU.to(x)) ** 2).sum(-1) / (2 * S2)


def centred_energy(x: Tensor) -> Tensor:
    """``E(x) = |x|² / (2 s²)`` (any event shape): the target is ``N(0, s² I)``, a flow base's family."""
    return x.pow(2).flatten(1).sum(1) / (2 * S2)


class ScaledQuadratic(nn.Module):
    """``E_θ(x) = θ |x|² / 2``: its Langevin, Euler and ODE dynamics and its flow are all in closed form."""

    def __init__(self, theta: float = 1.0, dtype: torch.dtype = F64) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return self.theta * x.pow(2).flatten(1).sum(1) / 2


def ula_moments(x0: Tensor | float, mean: Tensor | float, s2: float, h: float, n: int, *, temperature: float = 1.0,
                noise_var: float | None = None) -> tuple[Tensor, float]:
    """Exact law after ``n`` steps of ``x ← x - (h/λ)(x - μ)/s² + σ ξ`` from ``x0``: the recursion is linear
    and Gaussian, ``a = 1 - h/(λ s²)``, mean ``μ + aⁿ(x0 - μ)``, variance ``σ² (1 - a²ⁿ)/(1 - a²)``."""
    a = 1 - h / (temperature * s2)
    sigma2 = 2 * h if noise_var is None else noise_var
    mean = torch.as_tensor(mean, dtype=F64) + a**n * (torch.as_tensor(x0, dtype=F64) - torch.as_tensor(mean, dtype=F64))
    return mean, sigma2 * (1 - a ** (2 * n)) / (1 - a**2)


@functools.cache
def mala_acceptance(h: float, s2: float, d: int, n: int = 400_000) -> tuple[float, float]:
    """Expected MALA acceptance on ``N(0, s² I_d)`` at stationarity, and the Monte-Carlo standard error.

    Computed from the Metropolis–Hastings ratio written out here (proposal ``N(x - h x/s², 2h I)``), with
    independent draws: a sampler that proposes or corrects with another variance accepts at another rate.
    """
    gen = torch.Generator().manual_seed(123)
    x = math.sqrt(s2) * torch.randn(n, d, generator=gen, dtype=F64)
    y = x - h * x / s2 + math.sqrt(2 * h) * torch.randn(n, d, generator=gen, dtype=F64)
    log_q_forward = -(y - x + h * x / s2).pow(2).sum(1) / (4 * h)
    log_q_reverse = -(x - y + h * y / s2).pow(2).sum(1) / (4 * h)
    log_alpha = (x.pow(2).sum(1) - y.pow(2).sum(1)) / (2 * s2) + log_q_reverse - log_q_forward
    alpha = log_alpha.clamp(max=0).exp()
    return alpha.mean().item(), alpha.std().item() / math.sqrt(n)


def assert_mala_acceptance(acceptance: Tensor, h: float, s2: float, d: int) -> None:
    """Mean acceptance of ``B`` chains at stationarity against :func:`mala_acceptance`. Per chain the rate is an
    average of steps that may be correlated, so its variance is at most ``α(1 - α)``: SE ``sqrt(α(1-α)/B)``."""
    alpha, mc_se = mala_acceptance(h, s2, d)
    se = math.sqrt(alpha * (1 - alpha) / acceptance.numel()) + mc_se
    assert_close_se(acceptance.to(F64).mean(), alpha, se, "MALA acceptance")


class AffineMap:
    """``x = T(z) = a z + b`` with ``log|det J| = d log a``: a transport map without ``torch.nn`` (duck-typed)."""

    def __init__(self, a: float, b: Tensor) -> None:
        self.a, self.b = a, b

    def __call__(self, z: Tensor) -> tuple[Tensor, Tensor]:
        log_det = torch.full((z.shape[0],), z.shape[1] * math.log(self.a), dtype=z.dtype, device=z.device)
        return self.a * z + self.b.to(z), log_det
