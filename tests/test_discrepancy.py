"""Energy discrepancy: perturbation kernels against closed forms, sampling frequencies, the loss against its formula."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from ebmlib.data import BaseQCode, sample_toy
from ebmlib.losses import (
    BernoulliPerturbation,
    BitFlipPerturbation,
    CyclicalPerturbation,
    EnergyDiscrepancy,
    GaussianPerturbation,
    GridPerturbation,
    HeatPerturbation,
    MixedPerturbation,
    OrdinalPerturbation,
    UniformPerturbation,
    discrepancy_from_energies,
    energy_discrepancy,
    exact_energy_discrepancy,
    heat_kernel,
)
from ebmlib.metrics import CodeKernelDensity, importance_log_partition


def _laplacian(k: int, graph: str) -> np.ndarray:
    if graph == "uniform":
        return np.ones((k, k)) / k - np.eye(k)
    adjacency = np.zeros((k, k))
    for a in range(k - 1):
        adjacency[a, a + 1] = adjacency[a + 1, a] = 1
    if graph == "cyclical":  # for k = 2 the cycle has a double edge
        adjacency[0, k - 1] += 1
        adjacency[k - 1, 0] += 1
    return adjacency - np.diag(adjacency.sum(1))


@pytest.mark.parametrize("graph", ["uniform", "cyclical", "ordinal"])
@pytest.mark.parametrize("k", [2, 3, 7])
def test_heat_kernel_is_the_matrix_exponential_of_the_laplacian(graph, k):
    for t in (0.05, 0.8, 3.0):
        q = heat_kernel(k, t, graph).numpy()
        np.testing.assert_allclose(q, scipy.linalg.expm(t * _laplacian(k, graph)), atol=1e-12)
        np.testing.assert_allclose(q, q.T, atol=1e-14)
        np.testing.assert_allclose(q.sum(1), 1, atol=1e-14)


def test_cyclical_example_from_the_spec():
    q = CyclicalPerturbation([4], 0.005).matrices[0]  # t = 0.005 · 4² = 0.08
    assert q[0, 0] == pytest.approx(0.858, abs=1e-3)
    assert q[0, 1] == pytest.approx(0.068, abs=1e-3) and q[0, 3] == pytest.approx(0.068, abs=1e-3)
    assert q[0, 2] == pytest.approx(0.005, abs=1e-3)


def _all_perturbations():
    return {
        "bernoulli": BernoulliPerturbation(0.2, dim=3),
        "bitflip": BitFlipPerturbation(dim=3),
        "uniform": UniformPerturbation([3, 2], keep=0.3),
        "cyclical": CyclicalPerturbation([4, 3], 0.05),
        "ordinal": OrdinalPerturbation([4, 3], 0.05),
        "grid": GridPerturbation([3, 4]),
        "mixed-graphs": HeatPerturbation([3, 5], [0.4, 0.2], ["ordinal", "cyclical"]),
    }


@pytest.mark.parametrize("name", list(_all_perturbations()))
def test_transition_matrix_is_symmetric_and_stochastic(name):
    q = _all_perturbations()[name].transition_matrix()
    assert (q >= 0).all()
    torch.testing.assert_close(q.sum(1), torch.ones(len(q), dtype=q.dtype))
    torch.testing.assert_close(q, q.T)


def test_closed_forms():
    e = 0.2
    q = BernoulliPerturbation(e, dim=2).transition_matrix()
    hamming = torch.tensor([[bin(a ^ b).count("1") for b in range(4)] for a in range(4)], dtype=torch.float64)
    torch.testing.assert_close(q, e**hamming * (1 - e) ** (2 - hamming))
    t = 0.3
    torch.testing.assert_close(BernoulliPerturbation.from_time(t, dim=1).transition_matrix(),
                               torch.from_numpy(scipy.linalg.expm(t * _laplacian(2, "ordinal"))))
    q = UniformPerturbation([4], keep=0.25).transition_matrix()
    torch.testing.assert_close(q, 0.25 * torch.eye(4, dtype=torch.float64) + 0.75 / 4)
    # Grid on two columns (3 and 2 classes): move only within a row or a column of the 3 × 2 grid.
    q = GridPerturbation([3, 2]).transition_matrix()
    states = GridPerturbation([3, 2]).states()
    differ = (states[:, None, :] != states[None]).sum(-1)
    same_first = states[:, None, 0] == states[None, :, 0]
    one_move = torch.where(same_first, 0.25, 1 / 6)  # resample column 1 (prob 1/2 · 1/2) or column 0 (1/2 · 1/3)
    expected = torch.where(differ == 0, 0.5 / 3 + 0.5 / 2, torch.where(differ == 1, one_move, 0.0)).double()
    torch.testing.assert_close(q, expected)
    # One bit flip: the hypercube adjacency divided by d.
    q = BitFlipPerturbation(dim=3).transition_matrix()
    hamming = torch.tensor([[bin(a ^ b).count("1") for b in range(8)] for a in range(8)])
    torch.testing.assert_close(q, (hamming == 1).double() / 3)


def _frequencies(samples: torch.Tensor, radix: list[int]) -> torch.Tensor:
    weights = torch.tensor([math.prod(radix[i + 1:]) for i in range(len(radix))], dtype=torch.float64)
    index = (samples.double() * weights).sum(-1).long()
    return torch.bincount(index, minlength=math.prod(radix)).double() / len(index)


@pytest.mark.parametrize("name", list(_all_perturbations()))
def test_sampling_frequencies_match_the_matrices(name):
    torch.manual_seed(0)
    pert = _all_perturbations()[name]
    states = pert.states().float()
    radix = [int(v) + 1 for v in states.max(0).values]
    start = states[len(states) // 3].expand(40_000, -1).contiguous()
    q, q2 = pert.transition_matrix(), pert.contrast_matrix()
    row = len(states) // 3
    one_step = _frequencies(pert.sample_y(start), radix)
    # Negatives: 4000 rows × 10 particles, each row with its own y.
    negatives = pert.contrast(start[:4000], 10).reshape(-1, states.shape[1])
    # 40,000 draws: a frequency's standard error is <= 0.0025; 0.012 is about five of them.
    assert (one_step - q[row]).abs().max() < 0.012
    assert (_frequencies(negatives, radix) - q2[row]).abs().max() < 0.015


def test_negatives_share_y():
    torch.manual_seed(1)
    x = torch.zeros(2000, 6)
    negatives = BernoulliPerturbation(0.1).contrast(x, 2)
    # Given a shared y, two negatives agree on a bit with probability 0.9² + 0.1² = 0.82; independent
    # two-step draws would agree with probability 0.82² + 0.18² ≈ 0.705.
    agree = (negatives[:, 0] == negatives[:, 1]).float().mean()
    assert abs(agree - 0.82) < 0.01
    grid = GridPerturbation([5] * 4).contrast(torch.zeros(500, 4), 8)
    changed_columns = (grid != 0).any(dim=1).sum(dim=1)
    assert (changed_columns <= 1).all(), "all negatives of a point must resample the same column"


def test_gaussian_and_mixed_perturbations():
    torch.manual_seed(2)
    x = torch.zeros(20_000, 2)
    negatives = GaussianPerturbation(0.5).contrast(x, 2)
    # x' = x + σ(ξ + ξ_j): variance 2σ², and two negatives of a point share σξ (covariance σ²).
    assert negatives.var(dim=(0, 1)).sub(0.5).abs().max() < 0.02
    cov = (negatives[:, 0, 0] * negatives[:, 1, 0]).mean()
    assert abs(cov - 0.25) < 0.02
    mixed = MixedPerturbation(2, 0.1, UniformPerturbation([3, 4]))
    rows = torch.cat([torch.randn(50, 2), torch.randint(0, 3, (50, 1)), torch.randint(0, 4, (50, 1))], 1).float()
    out = mixed.contrast(rows, 5)
    assert out.shape == (50, 5, 4)
    assert (out[..., 2:] == out[..., 2:].round()).all() and (out[..., 2] < 3).all() and (out[..., 3] < 4).all()


def test_loss_formula_and_reduction():
    e_pos = torch.tensor([0.3, -1.0])
    e_neg = torch.tensor([[0.1, 0.5, 2.0], [-1.0, 0.0, -3.0]])
    for w in (0.0, 1.0, 2.5):
        manual = torch.stack([torch.log(w + torch.exp(e_pos[i] - e_neg[i]).sum()) for i in range(2)])
        torch.testing.assert_close(discrepancy_from_energies(e_pos, e_neg, w=w, reduction="none"), manual)
        torch.testing.assert_close(discrepancy_from_energies(e_pos, e_neg, w=w), manual.mean())


def _toy_space():
    pert = HeatPerturbation([3, 4], [0.3, 0.5], ["ordinal", "cyclical"])
    gen = torch.Generator().manual_seed(3)
    p = torch.rand(12, generator=gen, dtype=torch.float64) ** 3
    return pert, p / p.sum(), pert.states()


def test_inner_mean_is_unbiased_for_the_two_step_kernel():
    """E[(1/M) Σ_j e^{E(x) - E(x'_j)}] = e^{E(x)} Σ_x' Q²[x, x'] e^{-E(x')} (w = 0): checks the sampling path."""
    torch.manual_seed(4)
    pert, _, states = _toy_space()
    table = torch.randn(12, dtype=torch.float64)
    radix = torch.tensor([4.0, 1.0], dtype=torch.float64)

    def energy(x):
        return table[(x.double() * radix).sum(-1).long()]

    x = states[5:6].expand(20_000, -1).contiguous()
    per_point = energy_discrepancy(energy, x, pert, n_negatives=4, w=0.0, reduction="none")[0]
    estimate = (per_point - math.log(4)).exp().mean()
    exact = table[5].exp() * (pert.contrast_matrix()[5] * (-table).exp()).sum()
    assert abs(estimate / exact - 1) < 0.02


def test_large_m_loss_tends_to_the_exact_functional():
    torch.manual_seed(5)
    pert, p, states = _toy_space()
    table = torch.randn(12, dtype=torch.float64)
    radix = torch.tensor([4.0, 1.0], dtype=torch.float64)

    def energy(x):
        return table[(x.double() * radix).sum(-1).long()]

    # Every state 400 times, weighted by p afterwards: no data-sampling noise, only that of the negatives.
    data = states.repeat_interleave(400, dim=0)
    m = 400
    per_point = energy_discrepancy(energy, data, pert, n_negatives=m, w=0.0, reduction="none")[0]
    loss = (p * per_point.view(12, 400).mean(1)).sum() - math.log(m)
    exact = exact_energy_discrepancy(table, p, pert.transition_matrix())
    assert abs(loss - exact) < 0.01


def test_exact_discrepancy_is_minimised_by_the_data_distribution():
    pert, p, _ = _toy_space()
    q = pert.transition_matrix()
    at_data = exact_energy_discrepancy(-p.log(), p, q)
    gen = torch.Generator().manual_seed(6)
    for _ in range(50):
        other = -p.log() + 0.5 * torch.randn(12, generator=gen, dtype=torch.float64)
        assert exact_energy_discrepancy(other, p, q) > at_data
    # Adding a constant to the energy leaves ED unchanged.
    torch.testing.assert_close(exact_energy_discrepancy(-p.log() + 3, p, q), at_data)


def test_training_a_table_with_the_estimator_recovers_the_data():
    """Minimising the sampled loss (M = 32, w = 1) over a free energy table learns p on a 12-state space."""
    torch.manual_seed(7)
    pert, p, states = _toy_space()
    table = torch.zeros(12, dtype=torch.float64, requires_grad=True)
    radix = torch.tensor([4.0, 1.0], dtype=torch.float64)
    loss_fn = EnergyDiscrepancy(pert, n_negatives=32, w=1.0)
    opt = torch.optim.Adam([table], lr=0.05)
    for _ in range(600):
        batch = states[torch.multinomial(p, 256, replacement=True)]
        loss, _ = loss_fn(lambda x: table[(x.double() * radix).sum(-1).long()], batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    learned = torch.softmax(-table.detach(), 0)
    assert 0.5 * (learned - p).abs().sum() < 0.08


class _FixedNegatives:
    """A perturbation kernel (anything with ``contrast(x, n)``) that returns given negatives."""

    def __init__(self, negatives: torch.Tensor) -> None:
        self.negatives = negatives

    def contrast(self, x: torch.Tensor, n: int) -> torch.Tensor:
        return self.negatives[:, :n]


def test_gradient_matches_the_closed_form_for_a_linear_energy():
    """Replaces a check that some gradient was non-zero. For ``E(z) = aᵀz + b`` and fixed negatives the loss is
    ``mean_i log(w + Σ_j e^{aᵀ(x_i - x'_ij)})``, so ``∂/∂a = mean_i Σ_j s_ij (x_i - x'_ij)`` with
    ``s_ij = e^{v_ij} / (w + Σ_k e^{v_ik})``, and ``∂/∂b = 0``: only energy differences matter. Catches a
    gradient cut from the positives or the negatives, a wrong sign, a misplaced offset ``w``, and a bias that
    leaks into the loss."""
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1).double()
    x = torch.randint(0, 2, (8, 4)).double()
    negatives = torch.randint(0, 2, (8, 3, 4)).double()
    loss, logs = energy_discrepancy(lambda z: net(z).squeeze(-1), x, _FixedNegatives(negatives), n_negatives=3,
                                    w=0.7)
    loss.backward()
    a = net.weight.detach()[0]
    v = (x[:, None, :] - negatives) @ a  # (8, 3)
    s = v.exp() / (0.7 + v.exp().sum(1, keepdim=True))
    expected = (s[:, :, None] * (x[:, None, :] - negatives)).sum(1).mean(0)
    torch.testing.assert_close(net.weight.grad[0], expected)
    torch.testing.assert_close(net.bias.grad, torch.zeros(1, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(loss, torch.log(0.7 + v.exp().sum(1)).mean())
    assert set(logs) == {"energy_pos", "energy_neg"}


def test_bad_input_raises():
    with pytest.raises(ValueError, match="epsilon"):
        BernoulliPerturbation(1.2)
    with pytest.raises(ValueError, match="epsilon"):
        BernoulliPerturbation(0.0)
    with pytest.raises(ValueError, match="t"):
        CyclicalPerturbation([4], 0.0)
    with pytest.raises(ValueError, match="t"):
        heat_kernel(4, -1.0, "ordinal")
    with pytest.raises(ValueError, match="graph"):
        heat_kernel(4, 1.0, "star")
    with pytest.raises(ValueError, match="keep"):
        UniformPerturbation([3], keep=1.0)
    with pytest.raises(ValueError, match="n_classes"):
        GridPerturbation([1, 3])
    with pytest.raises(ValueError, match="sigma"):
        GaussianPerturbation(0)
    energy = lambda z: z.sum(-1)  # noqa: E731
    with pytest.raises(ValueError, match="n_negatives"):
        energy_discrepancy(energy, torch.zeros(2, 3), BernoulliPerturbation(0.1), n_negatives=0)
    with pytest.raises(ValueError, match="w"):
        energy_discrepancy(energy, torch.zeros(2, 3), BernoulliPerturbation(0.1), w=-1.0)
    with pytest.raises(ValueError, match="x"):
        energy_discrepancy(energy, torch.full((2, 3), 0.5), BernoulliPerturbation(0.1))
    with pytest.raises(ValueError, match="categorical"):  # a code out of range / a non-integer code
        MixedPerturbation(1, 0.1, GridPerturbation([3])).contrast(torch.tensor([[0.2, 3.0]]), 2)
    with pytest.raises(ValueError, match="categorical"):
        MixedPerturbation(1, 0.1, GridPerturbation([3])).contrast(torch.tensor([[0.2, 1.5]]), 2)
    with pytest.raises(ValueError, match="columns"):
        UniformPerturbation([3, 3]).contrast(torch.zeros(2, 3), 2)
    with pytest.raises(ValueError, match="perturbation"):
        energy_discrepancy(energy, torch.zeros(2, 3), "bernoulli")
    with pytest.raises(ValueError, match="dim"):
        BernoulliPerturbation(0.1).transition_matrix()
    with pytest.raises(ValueError, match="continuous"):
        GaussianPerturbation(0.1).transition_matrix()


def test_base_q_code_round_trip_and_errors():
    points = sample_toy("pinwheel", 2000, generator=torch.Generator().manual_seed(0))
    code = BaseQCode.from_samples(points, base=5, n_digits=8)
    digits = code.encode(points)
    assert digits.shape == (2000, 16) and digits.min() >= 0 and digits.max() <= 4
    assert (code.decode(digits) - points).abs().max() <= 1 / code.int_scale + 1e-6
    assert torch.equal(code.encode(code.decode(digits)), digits)
    # The first digit splits the range into q equal slabs: a point left of centre has a low leading digit.
    assert code.encode(torch.tensor([[-code.f_scale + 0.01, 0.0]]))[0, 0] == 0
    with pytest.raises(ValueError, match="points"):
        code.encode(torch.tensor([[code.f_scale, 0.0]]))
    with pytest.raises(ValueError, match="codes"):
        code.decode(torch.full((1, 16), 5.0))
    with pytest.raises(ValueError, match="base"):
        BaseQCode(1.0, base=1)


def test_importance_log_partition_matches_enumeration():
    torch.manual_seed(8)
    states = BernoulliPerturbation(0.1, dim=10).states().float()
    table = 2 * torch.randn(len(states), dtype=torch.float64)
    weights = 2 ** torch.arange(9, -1, -1, dtype=torch.float64)

    def energy(x):
        return table[(x.double() * weights).sum(-1).long()]

    exact = torch.logsumexp(-table, 0)
    proposal = CodeKernelDensity(states[torch.multinomial(torch.softmax(-table, 0), 200)], 2, 0.1)
    samples = proposal.sample(50_000)
    # log q sums to one over the space:
    assert abs(torch.logsumexp(proposal.log_prob(states), 0).item()) < 1e-9
    estimate = importance_log_partition(energy, samples, proposal.log_prob(samples))
    assert abs(estimate - exact) < 0.05
