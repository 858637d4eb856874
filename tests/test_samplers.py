"""Tests of ebmlib.samplers against exactly known targets.

Discrete samplers: a random quadratic energy on d = 6 bits, whose 64 probabilities are enumerated exactly.
Continuous sampler: a Gaussian target, for which the stationary law of ULA is known in closed form.
tests/conftest.py seeds torch before every test; every tolerance below is derived from the Monte-Carlo error.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from ebmlib.data import all_binary_states
from ebmlib.metrics import empirical_distribution, total_variation
from ebmlib.samplers import (
    discrete_langevin_binary,
    flip_bits,
    flip_log_proposal,
    gibbs_binary,
    gibbs_random_site,
    gwg_binary,
    langevin,
    langevin_flip_logits,
)
from ebmlib.utils import energy_and_grad

D = 6
N_CHAINS = 10_000
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ---------------------------------------------------------------------------------------------------------
# Exactly enumerated binary target
# ---------------------------------------------------------------------------------------------------------
def quadratic_energy(seed: int = 0, scale: float = 0.5) -> Callable[[Tensor], Tensor]:
    """E(x) = -xᵀWx - bᵀx with a random symmetric W; follows the dtype/device of x."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(D, D, generator=gen, dtype=torch.float64) * scale
    w, b = (a + a.T) / 2, torch.randn(D, generator=gen, dtype=torch.float64) * scale

    def energy(x: Tensor) -> Tensor:
        return -((x @ w.to(x)) * x).sum(-1) - x @ b.to(x)

    return energy


ENERGY = quadratic_energy()
STATES = all_binary_states(D, dtype=torch.float64)
PROBS = torch.softmax(-ENERGY(STATES), dim=0)


def tv_threshold(probs: Tensor, n: int, delta: float = 1e-6) -> float:
    """A bound that TV(p̂_n, p) of n i.i.d. draws from p exceeds with probability < delta.

    E|p̂_k - p_k| ≤ sqrt(p_k (1 - p_k) / n) (Jensen), so E TV ≤ ½ Σ_k sqrt(p_k (1 - p_k) / n); one draw moves
    TV by at most 1/n, so McDiarmid's inequality gives P(TV ≥ E TV + t) ≤ exp(-2 n t²).
    """
    mean_bound = 0.5 * torch.sqrt(probs * (1 - probs) / n).sum().item()
    return mean_bound + math.sqrt(math.log(1 / delta) / (2 * n))


# For 10,000 chains this is ≈ 0.058, while the TV of the biased control below is ≈ 0.14.
THRESHOLD = tv_threshold(PROBS, N_CHAINS)


def exact_samples(n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    return STATES[torch.multinomial(PROBS, n, replacement=True)].to(dtype)


def uniform_samples(n: int) -> Tensor:
    return torch.randint(0, 2, (n, D), dtype=torch.float64)


def tv_to_target(states: Tensor) -> float:
    return total_variation(empirical_distribution(states, D), PROBS).item()


def test_target_is_non_trivial() -> None:
    assert PROBS.max().item() > 5 / 2**D


# Independent chains started from exact samples end, for a kernel that leaves p invariant, as n i.i.d.
# draws from p, so THRESHOLD applies with failure probability < 1e-6. From uniform starts the chain's
# marginal must also have converged: the exact 64×64 transition matrices of this target (computed while
# writing the test) give TV(marginal, p) < 1e-8 after 20 systematic sweeps or 100 GwG steps, and after
# 20 random-order sweeps for each of 200 random permutation sequences tried.
@pytest.mark.parametrize("order", ["systematic", "random"])
def test_gibbs_leaves_target_invariant(order: str) -> None:
    assert tv_to_target(gibbs_binary(ENERGY, exact_samples(N_CHAINS), 3, order=order)) < THRESHOLD


@pytest.mark.parametrize("order", ["systematic", "random"])
def test_gibbs_converges_from_uniform(order: str) -> None:
    assert tv_to_target(gibbs_binary(ENERGY, uniform_samples(N_CHAINS), 20, order=order)) < THRESHOLD


def test_random_site_gibbs_leaves_target_invariant_and_converges() -> None:
    assert tv_to_target(gibbs_random_site(ENERGY, exact_samples(N_CHAINS), 20)) < THRESHOLD
    assert tv_to_target(gibbs_random_site(ENERGY, uniform_samples(N_CHAINS), 150)) < THRESHOLD


@pytest.mark.parametrize("order", ["systematic", "random"])
def test_gibbs_visits_every_coordinate_once_per_sweep(order: str) -> None:
    """With E = -1000 Σ_k x_k a 0 → 1 flip is always, a 1 → 0 flip never taken: the calls show the order."""
    calls = []

    def energy(x: Tensor) -> Tensor:
        calls.append(x.clone())
        return -1000 * x.sum(-1)

    d = 12
    out = gibbs_binary(energy, torch.zeros(3, d), n_sweeps=2, order=order)
    assert torch.equal(out, torch.ones(3, d))
    # calls[0] is the initial state. In sweep 1 the state before call k is calls[k - 1]; in sweep 2 it is
    # all ones. Each call flips one coordinate, the same in every chain.
    before = calls[:d] + [torch.ones(3, d)] * d
    changed = [(calls[k] != before[k - 1]) for k in range(1, 2 * d + 1)]
    assert all(bool((c == c[0]).all()) and int(c[0].sum()) == 1 for c in changed)
    visits = [int(c[0].nonzero()) for c in changed]
    first, second = visits[:d], visits[d:]
    if order == "systematic":
        assert first == second == list(range(d))
    else:
        assert sorted(first) == sorted(second) == list(range(d))
        assert first != second  # a fresh permutation per sweep (a repeat has probability 1/12!)


def test_gwg_leaves_target_invariant() -> None:
    states, acceptance = gwg_binary(ENERGY, exact_samples(N_CHAINS), n_steps=30)
    assert tv_to_target(states) < THRESHOLD
    assert acceptance.shape == (N_CHAINS,)
    assert bool(((acceptance > 0) & (acceptance <= 1)).all())
    assert acceptance.mean().item() < 1  # the MH test does reject on this target


def test_gwg_converges_from_uniform() -> None:
    states, _ = gwg_binary(ENERGY, uniform_samples(N_CHAINS), n_steps=100)
    assert tv_to_target(states) < THRESHOLD


def test_control_gwg_without_mh_correction_fails_the_threshold() -> None:
    """Power check: always accepting the GwG proposal is biased here, and the same test catches it."""
    x = exact_samples(N_CHAINS)
    for _ in range(30):
        _, grad = energy_and_grad(ENERGY, x)
        index = torch.multinomial(flip_log_proposal(x, grad).exp(), 1).squeeze(1)
        x = flip_bits(x, index)
    assert tv_to_target(x) > THRESHOLD


def test_dmala_leaves_target_invariant_and_converges_from_uniform() -> None:
    states, acceptance = discrete_langevin_binary(ENERGY, exact_samples(N_CHAINS), 30, step_size=0.5, metropolis=True)
    assert tv_to_target(states) < THRESHOLD
    assert 0 < acceptance.mean().item() < 1  # several bits move at once, and the MH test rejects some moves
    states, _ = discrete_langevin_binary(ENERGY, uniform_samples(N_CHAINS), 100, step_size=0.5, metropolis=True)
    assert tv_to_target(states) < THRESHOLD


def test_dula_without_correction_is_biased_here() -> None:
    """Power check: DULA (no MH test) at the same step size misses the target, as its paper says it may."""
    states, acceptance = discrete_langevin_binary(ENERGY, exact_samples(N_CHAINS), 30, step_size=0.5)
    assert tv_to_target(states) > THRESHOLD and bool((acceptance == 1).all())


def test_dula_on_independent_bits_reaches_its_closed_form_stationary_law() -> None:
    """For E(x) = bᵀx the proposal's gradient is exact and bits move independently: bit i is a two-state chain
    with p(0→1) = σ(-b_i/2 - 1/(2α)) and p(1→0) = σ(b_i/2 - 1/(2α)), so P(x_i = 1) = p01 / (p01 + p10)."""
    b, alpha = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0], dtype=torch.float64), 0.7
    states, _ = discrete_langevin_binary(lambda x: x @ b, torch.zeros(N_CHAINS, 5, dtype=torch.float64), 50,
                                         step_size=alpha)
    p01, p10 = torch.sigmoid(-b / 2 - 0.5 / alpha), torch.sigmoid(b / 2 - 0.5 / alpha)
    expected = p01 / (p01 + p10)
    # 4.9 standard errors of a Bernoulli mean, each of 5 bits: fails by chance with probability < 1e-5
    assert torch.allclose(states.mean(0), expected, atol=4.9 * 0.5 / math.sqrt(N_CHAINS))
    assert not torch.allclose(expected, torch.sigmoid(-b), atol=0.05)  # ... which is not the target's law


def test_langevin_flip_logits_follow_the_first_order_energy_change() -> None:
    x = torch.tensor([[0.0, 1.0]])
    grad = torch.tensor([[2.0, 2.0]])
    # flipping 0→1 raises E by ≈ 2 (logit -1 - 1/(2α)); 1→0 lowers it by ≈ 2 (logit +1 - 1/(2α))
    assert torch.allclose(langevin_flip_logits(x, grad, 0.5), torch.tensor([[-2.0, 0.0]]))


# ---------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------
def test_flip_bits_flips_exactly_one_bit_per_chain() -> None:
    x = torch.randint(0, 2, (5, 4)).double()
    index = torch.tensor([0, 3, 1, 1, 2])
    flipped = flip_bits(x, index)
    expected = x.clone()
    expected[torch.arange(5), index] = 1 - expected[torch.arange(5), index]
    assert torch.equal(flipped, expected)
    assert not torch.equal(flipped, x)


def test_flip_log_proposal_is_exact_for_linear_energy() -> None:
    """For E(x) = cᵀx the first-order estimate E(x) - E(x with bit i flipped) = (2x_i - 1) c_i is exact."""
    c = torch.randn(D, dtype=torch.float64)
    x = uniform_samples(8)
    _, grad = energy_and_grad(lambda v: v @ c, x)
    log_q = flip_log_proposal(x, grad, temperature=2.0)
    exact_gain = torch.stack([x @ c - flip_bits(x, torch.full((8,), i)) @ c for i in range(D)], dim=1)
    torch.testing.assert_close(log_q, torch.log_softmax(exact_gain / 2, dim=1))
    torch.testing.assert_close(log_q.exp().sum(1), torch.ones(8, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------------
# Langevin on a Gaussian target
# ---------------------------------------------------------------------------------------------------------
MU = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
S2 = 0.64  # target variance s² of E(x) = |x - μ|² / (2 s²)


def gaussian_energy(x: Tensor) -> Tensor:
    return ((x - MU.to(x)) ** 2).sum(-1) / (2 * S2)


def ula_stationary_variance(step_size: float, temperature: float, noise: float) -> float:
    """x' - μ = (1 - h/(λs²))(x - μ) + σξ, so v = σ² / (1 - (1 - h/(λs²))²).

    For σ = √(2h) this is λs² / (1 - h/(2λs²)): the tempered target variance λs², inflated by the step.
    """
    rho = 1 - step_size / temperature / S2
    return noise**2 / (1 - rho**2)


@pytest.mark.parametrize(
    ("step_size", "temperature", "noise_scale"),
    [(0.32, 1.0, None), (0.18, 0.5, None), (0.08, 2.0, None), (0.32, 1.0, 0.3)],
)
def test_langevin_matches_exact_stationary_law(
    step_size: float, temperature: float, noise_scale: float | None
) -> None:
    n = 4000
    x0 = 3 * torch.randn(n, 3, dtype=torch.float64)
    # 300 steps: the slowest case contracts by (1 - h/(λs²))^300 = 0.9375^300 ≈ 4e-9.
    x = langevin(
        gaussian_energy,
        x0,
        n_steps=300,
        step_size=step_size,
        temperature=temperature,
        noise_scale=noise_scale,
    )
    noise = math.sqrt(2 * step_size) if noise_scale is None else noise_scale
    var = ula_stationary_variance(step_size, temperature, noise)
    # Chains are independent, so after burn-in the n·3 coordinates are i.i.d. N(μ_k, var): standard errors
    # sqrt(var/n) for each mean and var·sqrt(2/(3(n-1))) for the pooled variance; we allow 4 of them.
    assert torch.all((x.mean(0) - MU).abs() < 4 * math.sqrt(var / n))
    var_hat = x.var(dim=0).mean().item()
    se_var = var * math.sqrt(2 / (3 * (n - 1)))
    assert abs(var_hat - var) < 4 * se_var
    if noise_scale is None and step_size / temperature / (2 * S2) > 0.2:
        # Power: the test tells the chain's law apart from the tempered target N(μ, λ s²) itself.
        assert abs(var_hat - temperature * S2) > 4 * se_var


def test_langevin_without_noise_descends_to_the_mode() -> None:
    x0 = 3 * torch.randn(16, 3, dtype=torch.float64)
    x = langevin(gaussian_energy, x0, n_steps=100, step_size=0.32, noise_scale=0.0)
    torch.testing.assert_close(x, MU.expand(16, 3))


def test_langevin_clamps_and_keeps_event_shape() -> None:
    def energy(x: Tensor) -> Tensor:
        return (x**2).flatten(1).sum(1)

    x0 = torch.randn(7, 2, 3)
    x = langevin(energy, x0, n_steps=5, step_size=1.0, clamp=(-0.1, 0.2))
    assert x.shape == x0.shape
    assert bool(((x >= -0.1) & (x <= 0.2)).all())


# ---------------------------------------------------------------------------------------------------------
# Contracts: no in-place changes, detached outputs, dtype and device, errors
# ---------------------------------------------------------------------------------------------------------
SAMPLERS = {
    "gibbs": lambda e, x: gibbs_binary(e, x, 2, order="random"),
    "gwg": lambda e, x: gwg_binary(e, x, 3)[0],
    "gibbs_random_site": lambda e, x: gibbs_random_site(e, x, 3),
    "langevin": lambda e, x: langevin(e, x, n_steps=3, step_size=0.1),
}


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_samplers_keep_dtype_device_and_input(name: str, dtype: torch.dtype, device: str) -> None:
    x = torch.randint(0, 2, (11, D), dtype=dtype, device=device).requires_grad_(True)
    before = x.detach().clone()
    out = SAMPLERS[name](ENERGY, x)
    assert out.dtype == dtype and out.device == x.device and out.shape == x.shape
    assert not out.requires_grad
    assert torch.equal(x.detach(), before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gwg_acceptance_rate_dtype(dtype: torch.dtype) -> None:
    _, acceptance = gwg_binary(ENERGY, torch.zeros(4, D, dtype=dtype), n_steps=2)
    assert acceptance.dtype == dtype and acceptance.shape == (4,)


def _wrong_shape_energy(x: Tensor) -> Tensor:
    return x.sum(-1, keepdim=True)


def _nan_after_a_flip_energy(x: Tensor) -> Tensor:
    """Finite at the all-zeros state, NaN once any bit is 1."""
    return torch.log(0.5 - x.sum(-1))


BINARY = torch.zeros(4, D)
BAD_CALLS = {
    "gibbs non-binary": ("x", lambda: gibbs_binary(ENERGY, BINARY + 0.5)),
    "gibbs integer dtype": ("x", lambda: gibbs_binary(ENERGY, BINARY.long())),
    "gibbs ndim": ("x", lambda: gibbs_binary(ENERGY, BINARY[0])),
    "gibbs n_sweeps": ("n_sweeps", lambda: gibbs_binary(ENERGY, BINARY, 0)),
    "gibbs order": ("order", lambda: gibbs_binary(ENERGY, BINARY, order="reverse")),
    "gibbs energy shape": ("energy_fn", lambda: gibbs_binary(_wrong_shape_energy, BINARY)),
    "gibbs energy nan": ("energy_fn", lambda: gibbs_binary(_nan_after_a_flip_energy, BINARY)),
    "gwg non-binary": ("x", lambda: gwg_binary(ENERGY, BINARY - 1)),
    "gwg ndim": ("x", lambda: gwg_binary(ENERGY, BINARY.unsqueeze(0))),
    "gwg n_steps": ("n_steps", lambda: gwg_binary(ENERGY, BINARY, 0)),
    "gwg energy shape": ("energy_fn", lambda: gwg_binary(_wrong_shape_energy, BINARY)),
    "gwg energy nan": ("energy_fn", lambda: gwg_binary(_nan_after_a_flip_energy, BINARY, 3)),
    "langevin n_steps": ("n_steps", lambda: langevin(ENERGY, BINARY, n_steps=0, step_size=0.1)),
    "langevin step_size": ("step_size", lambda: langevin(ENERGY, BINARY, n_steps=1, step_size=-1)),
    "langevin temperature": (
        "temperature",
        lambda: langevin(ENERGY, BINARY, n_steps=1, step_size=0.1, temperature=0),
    ),
    "langevin noise_scale": (
        "noise_scale",
        lambda: langevin(ENERGY, BINARY, n_steps=1, step_size=0.1, noise_scale=-1.0),
    ),
    "langevin clamp": ("clamp", lambda: langevin(ENERGY, BINARY, n_steps=1, step_size=0.1, clamp=(1.0, 0.0))),
    "langevin integer x": ("x", lambda: langevin(ENERGY, BINARY.long(), n_steps=1, step_size=0.1)),
    "langevin energy shape": (
        "energy_fn",
        lambda: langevin(_wrong_shape_energy, BINARY, n_steps=1, step_size=0.1),
    ),
    "langevin energy nan": (
        "energy_fn",
        lambda: langevin(_nan_after_a_flip_energy, BINARY, n_steps=3, step_size=0.5),
    ),
    "flip_bits index dtype": ("index", lambda: flip_bits(BINARY, torch.zeros(4))),
    "flip_bits index shape": ("index", lambda: flip_bits(BINARY, torch.zeros(3, dtype=torch.long))),
    "flip_log_proposal grad shape": ("grad", lambda: flip_log_proposal(BINARY, torch.zeros(4, D + 1))),
    "flip_log_proposal temperature": (
        "temperature",
        lambda: flip_log_proposal(BINARY, BINARY, temperature=0.0),
    ),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_inputs_raise_value_error_naming_the_argument(name: str) -> None:
    argument, call = BAD_CALLS[name]
    with pytest.raises(ValueError, match=rf"^{argument}\b"):
        call()
