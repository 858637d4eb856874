"""Tests of ebmlib.metrics: Hamming kernels, MMD², total variation and exact distributions on {0,1}^d.

tests/conftest.py seeds torch before every test; every tolerance below is derived from the Monte-Carlo error.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from ebmlib.data import all_binary_states
from ebmlib.metrics import (
    empirical_distribution,
    exp_hamming_kernel,
    hamming_distance,
    linear_hamming_kernel,
    log_rmse,
    mmd2,
    mmd_hamming,
    total_variation,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def bernoulli_samples(probs: Tensor, n: int) -> Tensor:
    """n samples of independent bits with P(x_k = 1) = probs[k], shape (n, len(probs))."""
    return torch.bernoulli(probs.expand(n, -1))


# ---------------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), m=st.integers(1, 6), d=st.integers(1, 9), seed=st.integers(0, 2**31 - 1))
def test_kernels_match_brute_force(n: int, m: int, d: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 2, (n, d), generator=gen)
    b = torch.randint(0, 2, (m, d), generator=gen)
    loop = torch.tensor(
        [[sum(int(a[i, k] != b[j, k]) for k in range(d)) for j in range(m)] for i in range(n)]
    )
    loop = loop.to(torch.get_default_dtype())
    assert torch.equal(hamming_distance(a, b), loop)
    assert torch.equal(linear_hamming_kernel(a, b), d - loop)
    torch.testing.assert_close(exp_hamming_kernel(a, b, bandwidth=0.3), torch.exp(-0.3 * loop))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_outputs_keep_dtype_and_device(dtype: torch.dtype, device: str) -> None:
    x = torch.randint(0, 2, (6, 4), device=device).to(dtype)
    y = torch.randint(0, 2, (5, 4), device=device).to(dtype)
    outputs = [
        hamming_distance(x, y),
        linear_hamming_kernel(x, y),
        exp_hamming_kernel(x, y),
        mmd2(x, y, linear_hamming_kernel),
        mmd_hamming(x, y, kernel="exp"),
        empirical_distribution(x, 4),
        total_variation(empirical_distribution(x, 4), empirical_distribution(y, 4)),
        all_binary_states(3, dtype=dtype, device=device),
    ]
    for out in outputs:
        assert out.dtype == dtype and out.device == x.device


# ---------------------------------------------------------------------------------------------------------
# MMD²
# ---------------------------------------------------------------------------------------------------------
def naive_mmd2(x: Tensor, y: Tensor, kernel, unbiased: bool) -> Tensor:
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    n, m = len(x), len(y)
    if unbiased:
        term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
        term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    else:
        term_xx, term_yy = k_xx.mean(), k_yy.mean()
    return term_xx + term_yy - 2 * k_xy.mean()


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("kernel", [linear_hamming_kernel, exp_hamming_kernel])
def test_chunked_mmd2_equals_full_matrix_formula(kernel, unbiased: bool) -> None:
    x = torch.randint(0, 2, (10, 5)).double()
    y = torch.randint(0, 2, (7, 5)).double()
    expected = naive_mmd2(x, y, kernel, unbiased)
    for chunk_size in (1, 3, 10, 1024):
        torch.testing.assert_close(mmd2(x, y, kernel, unbiased=unbiased, chunk_size=chunk_size), expected)


def linear_mmd2_null_sd(probs: Tensor, n: int, m: int) -> float:
    """Standard deviation of the unbiased linear-kernel MMD² when both samples have independent bits ~ probs.

    The linear kernel is φ(x)·φ(y) with φ(x) = (x, 1 - x), so with centred features the estimator is
    U_xx + U_yy - 2 c̄_x·c̄_y, three uncorrelated zero-mean terms of variances 2T/(n(n-1)), 2T/(m(m-1)) and
    4T/(nm), T = ‖Cov φ‖_F² = 4 Σ_k (p_k (1 - p_k))².
    """
    t = 4 * ((probs * (1 - probs)) ** 2).sum().item()
    return math.sqrt(t * (2 / (n * (n - 1)) + 2 / (m * (m - 1)) + 4 / (n * m)))


def test_mmd_of_two_samples_of_one_distribution_is_near_zero_and_of_different_ones_positive() -> None:
    n, d = 4000, 32
    p = torch.rand(d)
    q = p + 0.1 * torch.where(p < 0.5, 1.0, -1.0)  # stays in [0, 1]
    tolerance = 5 * linear_mmd2_null_sd(p, n, n)  # ≈ 0.007
    same = mmd_hamming(bernoulli_samples(p, n), bernoulli_samples(p, n))
    assert abs(same.item()) < tolerance
    different = mmd_hamming(bernoulli_samples(p, n), bernoulli_samples(q, n))
    population = 2 * ((p - q) ** 2).sum().item()  # ‖E_P φ - E_Q φ‖² = 0.64
    assert different.item() > 10 * tolerance
    assert abs(different.item() - population) < 0.1 * population


def test_mmd2_evaluates_the_kernel_in_row_blocks() -> None:
    """4000 × 4000 with d = 32 never builds a Gram block larger than chunk_size × 4000 (16 MB in float32)."""
    x = torch.randint(0, 2, (4000, 32)).float()
    y = torch.randint(0, 2, (4000, 32)).float()
    shapes = []

    def spy_kernel(a: Tensor, b: Tensor) -> Tensor:
        shapes.append(tuple(a.shape[:1] + b.shape[:1]))
        return linear_hamming_kernel(a, b)

    value = mmd2(x, y, spy_kernel, chunk_size=1024)
    assert max(rows * cols for rows, cols in shapes) == 1024 * 4000
    assert sum(rows for rows, _ in shapes) == 3 * 4000  # every row of the xx, yy and xy terms, once
    torch.testing.assert_close(value, mmd2(x, y, linear_hamming_kernel, chunk_size=4000))


def population_mmd2(p: Tensor, q: Tensor, kernel) -> float:
    """Exact MMD² = (p - q)ᵀ K (p - q) with K the Gram matrix of all 2^d states."""
    states = all_binary_states(3, dtype=torch.float64)
    diff = p - q
    return (diff @ kernel(states, states) @ diff).item()


@pytest.mark.parametrize("kernel", ["linear", "exp"])
@pytest.mark.parametrize("same", [True, False])
def test_unbiased_mmd2_mean_matches_population_value(kernel: str, same: bool) -> None:
    """On d = 3 the exact MMD² is enumerable; the U-statistic must be unbiased for it, the V-statistic not."""
    gen = torch.Generator().manual_seed(3)
    p = torch.softmax(torch.randn(8, generator=gen, dtype=torch.float64), 0)
    q = p if same else torch.softmax(torch.randn(8, generator=gen, dtype=torch.float64), 0)
    states = all_binary_states(3, dtype=torch.float64)
    kernel_fn = linear_hamming_kernel if kernel == "linear" else exp_hamming_kernel
    exact = population_mmd2(p, q, kernel_fn)
    reps, n = 400, 30
    unbiased, biased = [], []
    for _ in range(reps):
        x = states[torch.multinomial(p, n, replacement=True)]
        y = states[torch.multinomial(q, n, replacement=True)]
        unbiased.append(mmd_hamming(x, y, kernel=kernel).item())
        biased.append(mmd_hamming(x, y, kernel=kernel, unbiased=False).item())
    unbiased_t, biased_t = torch.tensor(unbiased), torch.tensor(biased)
    # Repetitions are i.i.d., so the standard error of their mean is sd / sqrt(reps); allow 4 of them.
    se = unbiased_t.std().item() / math.sqrt(reps)
    assert abs(unbiased_t.mean().item() - exact) < 4 * se
    # Power: the biased estimator's O(1/n) offset is many standard errors large and is detected.
    assert biased_t.mean().item() - exact > 4 * biased_t.std().item() / math.sqrt(reps)
    if same:
        assert unbiased_t.min().item() < 0  # the unbiased estimator does go negative under the null


# ---------------------------------------------------------------------------------------------------------
# Exact distributions and total variation
# ---------------------------------------------------------------------------------------------------------
def test_empirical_distribution_uses_first_column_as_most_significant_bit() -> None:
    states = torch.tensor([[1, 0, 0], [0, 0, 1], [0, 0, 1], [1, 1, 1]])
    expected = torch.zeros(8)
    expected[4], expected[1], expected[7] = 0.25, 0.5, 0.25
    assert torch.equal(empirical_distribution(states, 3), expected)
    all_states = all_binary_states(3)
    assert torch.equal(all_states[4], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(empirical_distribution(all_states, 3), torch.full((8,), 1 / 8))


def test_total_variation_known_values() -> None:
    p = torch.tensor([0.5, 0.5, 0.0])
    assert total_variation(p, p).item() == 0.0
    assert total_variation(p, torch.tensor([0.0, 0.0, 1.0])).item() == 1.0
    assert total_variation(p, torch.tensor([0.25, 0.5, 0.25])).item() == pytest.approx(0.25)


X = torch.randint(0, 2, (5, 4), generator=torch.Generator().manual_seed(0)).float()
P3 = torch.tensor([0.2, 0.3, 0.5])
BAD_CALLS = {
    "hamming non-binary": ("a", lambda: hamming_distance(X + 0.5, X)),
    "hamming ndim": ("a", lambda: hamming_distance(X[0], X)),
    "hamming widths": ("a and b", lambda: hamming_distance(X, X[:, :3])),
    "exp bandwidth": ("bandwidth", lambda: exp_hamming_kernel(X, X, bandwidth=0.0)),
    "mmd2 widths": ("x and y", lambda: mmd2(X, X[:, :3], linear_hamming_kernel)),
    "mmd2 ndim": ("x", lambda: mmd2(X[0], X, linear_hamming_kernel)),
    "mmd2 one sample": ("x", lambda: mmd2(X[:1], X, linear_hamming_kernel)),
    "mmd2 kernel shape": ("kernel", lambda: mmd2(X, X, lambda a, b: a @ b.T[:, :2])),
    "mmd2 kernel not callable": ("kernel", lambda: mmd2(X, X, "linear")),
    "mmd2 chunk_size": ("chunk_size", lambda: mmd2(X, X, linear_hamming_kernel, chunk_size=0)),
    "mmd_hamming non-binary": ("x", lambda: mmd_hamming(X * 2, X)),
    "mmd_hamming widths": ("x and y", lambda: mmd_hamming(X, X[:, :2])),
    "mmd_hamming kernel": ("kernel", lambda: mmd_hamming(X, X, kernel="rbf")),
    "mmd_hamming bandwidth": ("bandwidth", lambda: mmd_hamming(X, X, kernel="exp", bandwidth=-1.0)),
    "tv negative": ("p", lambda: total_variation(torch.tensor([1.5, -0.5, 0.0]), P3)),
    "tv sum": ("p", lambda: total_variation(torch.tensor([0.2, 0.3, 0.4]), P3)),
    "tv shape": ("p and q", lambda: total_variation(torch.tensor([0.5, 0.5]), P3)),
    "tv ndim": ("p", lambda: total_variation(P3[None], P3[None])),
    "empirical width": ("states", lambda: empirical_distribution(X, 3)),
    "empirical non-binary": ("states", lambda: empirical_distribution(X + 2, 4)),
    "empirical d too large": ("d", lambda: empirical_distribution(torch.zeros(2, 21), 21)),
    "all states d": ("d", lambda: all_binary_states(0)),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_inputs_raise_value_error_naming_the_argument(name: str) -> None:
    argument, call = BAD_CALLS[name]
    with pytest.raises(ValueError, match=rf"^{argument}\b"):
        call()


def test_log_rmse_matches_its_definition():
    target = torch.zeros(3, 3)
    estimate = torch.full((3, 3), 0.1)
    torch.testing.assert_close(log_rmse(estimate, target), torch.tensor(math.log(0.1)))
    with pytest.raises(ValueError, match="target"):
        log_rmse(estimate, torch.zeros(2, 2))
