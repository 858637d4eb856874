"""Annealed importance sampling against the exact log-partition of small enumerable models."""

import pytest
import torch

from ebmlib.data import IsingLattice, all_binary_states
from ebmlib.metrics import ais_log_partition, enumerated_log_probs
from ebmlib.nets import MLPEnergy


def test_ais_matches_enumeration_for_a_random_network():
    torch.manual_seed(0)
    net = MLPEnergy(10, hidden=16, depth=2)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)  # a rugged energy: log Z far from that of the base
        exact = torch.logsumexp(-net(all_binary_states(10)).double(), 0)
    estimate = ais_log_partition(net, torch.full((10,), 0.5), n_chains=200, n_steps=300)
    assert abs(estimate - exact) < 0.1


def test_ais_matches_enumeration_for_an_ising_model():
    torch.manual_seed(1)
    lattice = IsingLattice(3, 0.4, periodic=False, bias=0.2)
    exact = torch.logsumexp(-lattice.energy(all_binary_states(9, dtype=torch.float64)), 0)
    estimate = ais_log_partition(lattice, torch.full((9,), 0.3), n_chains=200, n_steps=300)
    assert abs(estimate - exact) < 0.1
    # With a single annealing level AIS is plain importance sampling from the base: less accurate.
    crude = torch.stack([ais_log_partition(lattice, torch.full((9,), 0.3), n_chains=20, n_steps=1)
                         for _ in range(20)])
    assert (crude - exact).abs().mean() > 2 * (estimate - exact).abs()


def test_ais_bad_input():
    energy = MLPEnergy(4, hidden=4, depth=1)
    with pytest.raises(ValueError, match="base_probs"):
        ais_log_partition(energy, torch.tensor([0.5, 0.5, 1.0, 0.5]), n_chains=2, n_steps=2)
    with pytest.raises(ValueError, match="n_steps"):
        ais_log_partition(energy, torch.full((4,), 0.5), n_chains=2, n_steps=0)


def test_enumerated_log_probs_normalise_every_state_in_order():
    torch.manual_seed(2)
    net = MLPEnergy(7, hidden=8, depth=1)
    log_p = enumerated_log_probs(net, 7, batch_size=10)
    states = all_binary_states(7)
    by_hand = torch.stack([-net(s[None])[0] for s in states]).double()
    assert log_p.dtype == torch.float64 and log_p.shape == (128,)
    assert torch.allclose(log_p, by_hand - torch.logsumexp(by_hand, 0), atol=1e-6)
    with pytest.raises(ValueError, match="energy_fn"):
        enumerated_log_probs(lambda x: torch.full((len(x),), float("nan")), 3)
