import math

import numpy as np
import pytest
import torch

from ebmlib import utils


def test_get_device_defaults_to_cpu_without_accelerators(monkeypatch):
    monkeypatch.delenv("EBMLIB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert utils.get_device() == torch.device("cpu")


def test_get_device_honours_environment_and_rejects_missing_cuda(monkeypatch):
    monkeypatch.setenv("EBMLIB_DEVICE", "cpu")
    assert utils.get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="prefer"):
        utils.get_device("cuda")


def test_seed_everything_makes_draws_reproducible():
    utils.seed_everything(3)
    a = (torch.randn(4), np.random.rand(), utils.seed_everything(3))
    b = (torch.randn(4), np.random.rand())
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    with pytest.raises(ValueError, match="seed"):
        utils.seed_everything(-1)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: utils.check_int(1.5, "n"), "n"),
        (lambda: utils.check_int(True, "n"), "n"),
        (lambda: utils.check_int(0, "n", minimum=1), "n"),
        (lambda: utils.check_positive(0.0, "step_size"), "step_size"),
        (lambda: utils.check_positive(float("nan"), "step_size"), "step_size"),
        (lambda: utils.check_probability(1.0, "eps"), "eps"),
        (lambda: utils.check_probability(-0.1, "eps", closed=True), "eps"),
        (lambda: utils.check_tensor([1.0], "x"), "x"),
        (lambda: utils.check_tensor(torch.zeros(3), "x", ndim=2), "x"),
        (lambda: utils.check_tensor(torch.zeros(3, 4), "x", shape=(None, 2)), "x"),
        (lambda: utils.check_tensor(torch.zeros(3, dtype=torch.long), "x", floating=True), "x"),
        (lambda: utils.check_tensor(torch.tensor([0.0, float("nan")]), "x"), "x"),
        (lambda: utils.check_binary(torch.tensor([[0.0, 0.5]]), "x"), "x"),
        (lambda: utils.check_energy_output(torch.zeros(3, 1), 3), "energy"),
    ],
)
def test_validators_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_validators_accept_good_input():
    assert utils.check_int(np.int64(3), "n", minimum=1) == 3
    assert utils.check_probability(0.0, "p", closed=True) == 0.0
    x = torch.tensor([[0, 1], [1, 1]])
    assert utils.check_binary(x, "x") is x
    # with finite=False no value is read back, so NaN passes (inner loops rely on it)
    utils.check_tensor(torch.tensor([float("nan")]), "x", finite=False)


def test_energy_and_grad_matches_the_analytic_gradient():
    a = torch.tensor([1.0, 2.0, -1.0])

    def quadratic(x):
        return 0.5 * (a * x**2).sum(-1)

    x = torch.randn(5, 3)
    energy, grad = utils.energy_and_grad(quadratic, x)
    torch.testing.assert_close(energy, quadratic(x))
    torch.testing.assert_close(grad, a * x)
    assert not energy.requires_grad and not grad.requires_grad


def test_energy_and_grad_create_graph_allows_second_derivatives():
    x = torch.randn(4, 2)
    _, grad = utils.energy_and_grad(lambda z: (z**3).sum(-1), x, create_graph=True)
    assert grad.requires_grad
    with pytest.raises(ValueError, match="energy"):
        utils.energy_and_grad(lambda z: z, x)  # returns (B, 2), not (B,)


def test_measure_times_and_finds_the_peak_of_live_cpu_tensors():
    def two_blocks_alive():
        first = torch.ones(16 * 2**20)  # 64 MiB of float32
        second = first + 1  # both alive: 128 MiB
        del first
        return (second * 2).sum()  # the product replaces `first`: still 128 MiB at most

    result = utils.measure(two_blocks_alive, "cpu", repeats=2)
    assert result.seconds > 0
    assert 128 * 2**20 <= result.peak_bytes < 129 * 2**20, result
    assert utils.measure(lambda: None, "cpu").peak_bytes == 0
    with pytest.raises(ValueError, match="repeats"):
        utils.measure(lambda: None, repeats=0)


def test_grid_2d_cells_tile_the_square():
    points, area = utils.grid_2d(2.0, 4)
    assert points.shape == (16, 2)
    assert math.isclose(area * 16, 16.0)
    # row-major: first row has the smallest y, x increasing along it
    assert torch.allclose(points[:4, 0], torch.tensor([-1.5, -0.5, 0.5, 1.5]))
    assert torch.allclose(points[:4, 1], torch.full((4,), -1.5))


def test_grid_log_density_recovers_a_gaussian():
    sigma = torch.tensor([0.7, 1.2])

    def energy(x):
        return 0.5 * ((x - torch.tensor([0.5, -0.3])) / sigma).pow(2).sum(-1)

    lim, n = 8.0, 400
    log_p = utils.grid_log_density(energy, lim, n)
    points, area = utils.grid_2d(lim, n)
    exact = torch.distributions.Normal(torch.tensor([0.5, -0.3]), sigma).log_prob(points).sum(-1).view(n, n)
    assert math.isclose(float(log_p.exp().sum() * area), 1.0, rel_tol=1e-5)
    torch.testing.assert_close(log_p, exact, atol=1e-3, rtol=0)


def test_describe_hardware_names_the_device():
    assert utils.describe_hardware("cpu").startswith("CPU (")
