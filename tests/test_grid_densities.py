"""A model on the plane by quadrature: decoded log-densities of coded points and mode weights of energies."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlib.data import BaseQCode, GrayCode
from ebmlib.metrics import decoded_log_density, energy_mode_weights
from ebmlib.utils import grid_2d


def plane_energy(u: torch.Tensor) -> torch.Tensor:
    """An asymmetric energy with its minimum at (1, 0): a transposed or flipped grid is caught."""
    return (u[:, 0] - 1).pow(2) + 3 * u[:, 1].pow(2)


def test_decoded_log_density_is_the_model_on_the_grid_cells():
    code = GrayCode(f_scale=5.0, n_bits=16)

    def energy_of_bits(bits):
        return plane_energy(code.decode(bits, dtype=torch.float64))

    n, lim = 40, 3.0
    out = decoded_log_density(energy_of_bits, code, lim, n)
    points, _ = grid_2d(lim, n)
    coded = code.decode(code.encode(points), dtype=torch.float64)  # each cell centre, as the code sees it
    expected = torch.log_softmax(-plane_energy(coded), 0).view(n, n)
    assert out.shape == (n, n)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)
    # decode(encode(u)) is u up to half a code cell (3/2^15), and |∇E| < 26 on the grid: within 3e-3.
    plane = torch.log_softmax(-plane_energy(points.double()), 0).view(n, n)
    torch.testing.assert_close(out.double(), plane, rtol=0, atol=3e-3)
    assert out.exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    row, col = divmod(int(out.argmax()), n)
    assert abs(points[row * n + col, 0] - 1) < 2 * lim / n and abs(points[row * n + col, 1]) < 2 * lim / n


def test_decoded_log_density_clamps_points_outside_the_code():
    code = BaseQCode(f_scale=2.0, base=5, n_digits=4)  # encodes only |v| < 2: the grid reaches 3

    def energy_of_digits(digits):
        return plane_energy(code.decode(digits, dtype=torch.float64))

    n = 12
    out = decoded_log_density(energy_of_digits, code, 3.0, n)
    points, _ = grid_2d(3.0, n)
    outside = (points.abs() > 2).any(1).view(n, n)
    assert outside.any() and torch.isfinite(out).all()
    # Cells beyond x = 2 in a row see the code of the border point, so they all share one value.
    right = points.view(n, n, 2)[:, :, 0] > 2
    assert torch.equal(out[right].view(n, -1), out[right].view(n, -1)[:, :1].expand(n, right[0].sum()))


def test_decoded_log_density_rejects_bad_arguments():
    code = GrayCode(f_scale=5.0, n_bits=4)
    with pytest.raises(ValueError, match="code"):
        decoded_log_density(lambda b: b.sum(1), object())
    with pytest.raises(ValueError, match="lim"):
        decoded_log_density(lambda b: b.sum(1), code, lim=0.0)
    with pytest.raises(ValueError, match="energy_fn"):
        decoded_log_density(lambda b: b, code, n=4)
    with pytest.raises(ValueError, match="energy_fn"):
        decoded_log_density(lambda b: b.sum(1) * math.nan, code, n=4)


def test_energy_mode_weights_of_a_gaussian_split_by_a_voronoi_edge():
    # N(0, I) with centres (0, 0) and (1, 0): the cells split at x = 1/2, so the second holds 1 - Φ(1/2).
    # n = 240 on [-6, 6] puts x = 1/2 on a cell edge, where the midpoint rule is accurate to ~1e-5.
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    w = energy_mode_weights(lambda u: u.pow(2).sum(1) / 2, centres, 6.0, 240)
    right = 0.5 * math.erfc(0.5 / math.sqrt(2))
    assert w.dtype == torch.float64 and w.shape == (2,)
    torch.testing.assert_close(w, torch.tensor([1 - right, right], dtype=torch.float64), rtol=0, atol=1e-4)


def test_energy_mode_weights_recover_mixture_weights():
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
    weights = torch.tensor([0.2, 0.5, 0.3])

    def mixture_energy(u):
        log_components = -(u[:, None] - means[None]).pow(2).sum(-1) / (2 * 0.3**2)
        return -torch.logsumexp(log_components + weights.log(), 1)

    w = energy_mode_weights(mixture_energy, means, 5.0, 200)
    torch.testing.assert_close(w, weights, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="centres"):
        energy_mode_weights(mixture_energy, means[:, :1], 5.0)
    with pytest.raises(ValueError, match="centres"):
        energy_mode_weights(mixture_energy, means[:0], 5.0)
    with pytest.raises(ValueError, match="lim"):
        energy_mode_weights(mixture_energy, means, -1.0)
    with pytest.raises(ValueError, match="energy_fn"):
        energy_mode_weights(lambda u: u, means, 5.0, 10)
