"""Samplers in the forms training and diagnostics need: recorded Langevin trajectories and a
Gibbs-with-Gradients sampler callable as ``sampler(energy_fn, x) -> x``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from ebmlib.data import all_binary_states
from ebmlib.fingerprint import describe_config
from ebmlib.losses import PersistentContrastiveDivergence
from ebmlib.metrics import empirical_distribution, total_variation
from ebmlib.samplers import GWGBinarySampler, ReplayBuffer, gwg_binary, langevin, langevin_trajectory

S2 = 0.5  # variance of the Gaussian target E(x) = x² / (2 s²)


def gaussian_energy(x: Tensor) -> Tensor:
    return x.pow(2).flatten(1).sum(1) / (2 * S2)


def test_langevin_trajectory_equals_one_step_calls():
    # Recording the state before the move, or drawing the noise differently, breaks the equality.
    x0 = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.manual_seed(1)
    states = langevin_trajectory(gaussian_energy, x0, n_steps=6, step_size=0.1, clamp=(-2.0, 2.0))
    torch.manual_seed(1)
    x, expected = x0, []
    for _ in range(6):
        x = langevin(gaussian_energy, x, n_steps=1, step_size=0.1, clamp=(-2.0, 2.0))
        expected.append(x)
    assert states.shape == (6, 5, 2, 3) and states.dtype == torch.float64
    assert torch.equal(states, torch.stack(expected))
    torch.manual_seed(1)
    picked = langevin_trajectory(gaussian_energy, x0, n_steps=6, step_size=0.1, clamp=(-2.0, 2.0),
                                 record_steps=[2, 5])
    assert torch.equal(picked, states[[1, 4]])
    torch.manual_seed(1)
    final = langevin(gaussian_energy, x0, n_steps=6, step_size=0.1, clamp=(-2.0, 2.0))
    assert torch.equal(final, states[-1])


def test_langevin_trajectory_has_the_ar1_autocorrelation_of_ula():
    # For E = x²/(2s²), ULA is x_t = ρ x_{t-1} + √(2h) ξ_t with ρ = 1 - h/s²: started in its stationary law
    # N(0, v), v = 2h / (1 - ρ²), every lag-k correlation is ρ^k. A trajectory that repeats or skips states
    # has the wrong correlations.
    h, n_chains = 0.1, 20_000
    rho = 1 - h / S2
    v = 2 * h / (1 - rho**2)
    x0 = math.sqrt(v) * torch.randn(n_chains, 1, dtype=torch.float64)
    states = langevin_trajectory(gaussian_energy, x0, n_steps=3, step_size=h)[:, :, 0]  # (3, n_chains)
    path = torch.cat([x0.T, states])  # (4, n_chains)
    se = 1 / math.sqrt(n_chains)  # standard error of a correlation near ρ^k is below 1/√n
    for lag in (1, 2, 3):
        corr = (path[lag:] * path[:-lag]).mean() / v
        assert abs(corr.item() - rho**lag) < 5 * se, (lag, corr.item())
    assert abs(states.var().item() / v - 1) < 5 * math.sqrt(2 / n_chains)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        (dict(record_steps=[0]), "record_steps"),
        (dict(record_steps=[7]), "record_steps"),
        (dict(record_steps=[3, 2]), "record_steps"),
        (dict(record_steps=[2, 2]), "record_steps"),
        (dict(record_steps=[]), "record_steps"),
        (dict(record_steps=[True]), "record_steps"),
        (dict(record_steps=[1.0]), "record_steps"),
        (dict(n_steps=0), "n_steps"),
        (dict(step_size=0.0), "step_size"),
    ],
)
def test_langevin_trajectory_rejects_bad_arguments(kwargs, argument):
    settings = dict(n_steps=6, step_size=0.1) | kwargs
    with pytest.raises(ValueError, match=argument):
        langevin_trajectory(gaussian_energy, torch.zeros(2, 3), **settings)
    with pytest.raises(ValueError, match="x"):
        langevin_trajectory(gaussian_energy, torch.full((2, 3), math.nan), n_steps=2, step_size=0.1)
    with pytest.raises(ValueError, match="energy_fn"):
        langevin_trajectory(lambda x: x.sum(1) * math.nan, torch.zeros(2, 3), n_steps=2, step_size=0.1)


WEIGHTS = torch.tensor([1.5, -0.7, 0.4, -1.1, 0.9], dtype=torch.float64)
COUPLING = torch.tensor(0.8, dtype=torch.float64)


def small_energy(x: Tensor) -> Tensor:
    """A 5-bit energy with one interaction, so that p ∝ exp(-E) is neither uniform nor a product."""
    return x @ WEIGHTS.to(x) - COUPLING.to(x) * x[:, 0] * x[:, 1]


def test_gwg_binary_sampler_is_gwg_binary_states_and_keeps_the_acceptance():
    x0 = torch.randint(0, 2, (64, 5)).double()
    sampler = GWGBinarySampler(n_steps=7)
    torch.manual_seed(3)
    states = sampler(small_energy, x0)
    torch.manual_seed(3)
    expected, acceptance = gwg_binary(small_energy, x0, 7)
    assert torch.equal(states, expected) and torch.equal(sampler.acceptance_rate, acceptance)
    assert repr(sampler) == "GWGBinarySampler(n_steps=7)"
    # The acceptance rate is a diagnostic: a used sampler describes the same configuration as a fresh one, so a
    # resumed run that reuses it still matches its checkpoint.
    assert describe_config({"s": sampler}) == describe_config({"s": GWGBinarySampler(n_steps=7)})
    with pytest.raises(ValueError, match="n_steps"):
        GWGBinarySampler(0)


def test_pcd_with_the_gwg_sampler_keeps_its_chains_at_the_target():
    # Persistent chains started from the exact distribution stay there under a fixed energy: the sampler
    # plugged into PersistentContrastiveDivergence must leave p ∝ exp(-E) invariant.
    states = all_binary_states(5, dtype=torch.float64)
    probs = torch.softmax(-small_energy(states), 0)
    n = 4000
    start = states[torch.multinomial(probs, n, replacement=True)]
    buffer = ReplayBuffer(lambda k: start[:k].clone(), capacity=n, reinit_prob=0.0)
    pcd = PersistentContrastiveDivergence(buffer, GWGBinarySampler(n_steps=3), n_negatives=n)
    for _ in range(5):
        pcd(small_energy, start[:8])
    chains = buffer.sample(n)[0]
    # Total variation of n exact draws on 32 states is about 0.03 (√(32/n)/2·√(2/π)); 0.06 leaves margin.
    assert total_variation(empirical_distribution(chains, 5), probs) < 0.06
