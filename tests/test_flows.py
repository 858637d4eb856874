"""RealNVP: identity at initialisation, invertibility, log-determinants, normalisation, maximum likelihood."""

import math

import pytest
import torch

from ebmlib.flows import AffineCoupling, RealNVP, flow_ml_step
from ebmlib.utils import grid_2d


def _random_flow(dim: int, scale: float = 0.3, **kwargs) -> RealNVP:
    """A flow moved away from the identity (the identity would make every check trivial)."""
    flow = RealNVP(dim, **kwargs).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn_like(p))
    return flow


def test_identity_at_initialisation():
    flow = RealNVP(3, n_layers=4, base_std=1.7)
    z = torch.randn(50, 3)
    x, log_det = flow(z)
    assert torch.equal(x, z) and torch.equal(log_det, torch.zeros(50))
    assert torch.allclose(flow.log_prob(z), flow.base_log_prob(z))
    expected = torch.distributions.Normal(0.0, 1.7).log_prob(z).sum(-1)
    assert torch.allclose(flow.base_log_prob(z), expected, atol=1e-5)


@pytest.mark.parametrize("dim", [2, 5])
def test_inverse_undoes_forward(dim):
    flow = _random_flow(dim)
    z = 2 * torch.randn(200, dim, dtype=torch.float64)
    x, log_det = flow(z)
    assert (x - z).abs().max() > 0.1, "the perturbed flow should not be the identity"
    z_back, log_det_inv = flow.inverse(x)
    assert (z_back - z).abs().max() < 1e-5
    assert (log_det + log_det_inv).abs().max() < 1e-5


def test_log_det_matches_autograd_jacobian():
    flow = _random_flow(4, n_layers=3)
    z = torch.randn(6, 4, dtype=torch.float64)
    _, log_det = flow(z)
    for i in range(6):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z[i])
        assert torch.allclose(log_det[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-8)


def test_log_prob_integrates_to_one_on_a_grid():
    flow = _random_flow(2, scale=0.2, base_std=1.0)
    points, area = grid_2d(9.0, 500, dtype=torch.float64)
    mass = (flow.log_prob(points).exp() * area).sum().item()
    assert abs(mass - 1) < 1e-2, mass


def test_sample_with_log_prob_agrees_with_log_prob():
    flow = _random_flow(3)
    x, log_q = flow.sample_with_log_prob(100)
    assert x.shape == (100, 3)
    assert torch.allclose(log_q, flow.log_prob(x), atol=1e-6)


def test_maximum_likelihood_fits_a_gaussian():
    target_mean, target_std = torch.tensor([1.0, -2.0]), torch.tensor([0.3, 1.5])
    data = target_mean + target_std * torch.randn(4000, 2)
    flow = RealNVP(2, n_layers=4, hidden_dims=(16, 16))
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    first = flow_ml_step(flow, optimizer, data[:256])
    for _ in range(400):
        last = flow_ml_step(flow, optimizer, data[torch.randint(4000, (256,))])
    samples = flow.sample(4000).detach()
    assert last < first
    assert torch.allclose(samples.mean(0), target_mean, atol=0.1)
    assert torch.allclose(samples.std(0), target_std, rtol=0.15)
    exact = torch.distributions.Normal(target_mean, target_std).log_prob(data).sum(-1).mean()
    assert abs(flow.log_prob(data).mean().item() - exact.item()) < 0.05


def test_bad_input_raises():
    with pytest.raises(ValueError, match="dim"):
        RealNVP(1)
    with pytest.raises(ValueError, match="base_std"):
        RealNVP(2, base_std=0.0)
    with pytest.raises(ValueError, match="mask"):
        AffineCoupling(torch.ones(3), (8,))
    flow = RealNVP(2)
    with pytest.raises(ValueError, match="x"):
        flow.log_prob(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="z"):
        flow(torch.zeros(5))
    with pytest.raises(ValueError, match="n"):
        flow.sample(0)
    assert math.isfinite(flow.log_prob(torch.zeros(1, 2)).item())
