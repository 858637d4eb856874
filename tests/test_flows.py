"""RealNVP: identity at initialisation, invertibility, log-determinants, normalisation, maximum likelihood; the
same for the image flow (checkerboard and channel masks, convolutional couplings)."""

import math

import pytest
import torch

from ebmlib.flows import AffineCoupling, RealNVP, flow_ml_step, image_masks
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


IMAGE = (2, 4, 4)  # C·H·W = 32 pixels: small enough for an exact Jacobian


def test_image_masks_alternate_checkerboard_and_channels():
    board, inverse, first, second = (m.reshape(IMAGE) for m in image_masks(IMAGE, 4))
    assert board[0, 0, 0] == 1 and board[0, 0, 1] == 0 and board[0, 1, 0] == 0 and torch.equal(inverse, 1 - board)
    assert first[0].eq(1).all() and first[1].eq(0).all() and torch.equal(second, 1 - first)
    one_channel = image_masks((1, 4, 4), 3)  # no channel mask: the checkerboard again
    assert torch.equal(one_channel[2], one_channel[0]) and torch.equal(one_channel[1], 1 - one_channel[0])


def test_an_image_flow_is_the_identity_at_first_then_invertible_with_the_exact_log_det():
    dim = math.prod(IMAGE)
    z = torch.randn(5, dim, dtype=torch.float64)
    assert torch.equal(RealNVP(dim, 4, (8,), image_shape=IMAGE).double()(z)[0], z)
    flow = _random_flow(dim, scale=0.1, n_layers=4, hidden_dims=(8, 8), image_shape=IMAGE)
    x, log_det = flow(z)
    assert (x - z).abs().max() > 0.1
    z_back, log_det_inv = flow.inverse(x)
    assert (z_back - z).abs().max() < 1e-8 and (log_det + log_det_inv).abs().max() < 1e-8
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z[i])
        assert torch.allclose(log_det[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-8)
    samples, log_q = flow.sample_with_log_prob(7)
    assert samples.shape == (7, dim) and torch.allclose(log_q, flow.log_prob(samples), atol=1e-8)


def test_image_flows_reject_shapes_that_do_not_hold_the_dimension():
    with pytest.raises(ValueError, match="image_shape"):
        RealNVP(32, image_shape=(2, 4, 5))
    with pytest.raises(ValueError, match="image_shape"):
        RealNVP(32, image_shape=(32,))
    with pytest.raises(ValueError, match="image_shape"):
        image_masks("abc", 2)
