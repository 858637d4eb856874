"""Tests of ratio matching and RMwGGIS (ebmlib.losses) against brute force and exact expectations.

Everything runs in float64 on d <= 8 bits, where the exact objective is a sum of d terms per point. The
Monte-Carlo checks average many independent draws and compare with the exact value within 4 standard errors
estimated from the draws themselves; each check is paired with a control showing that the tolerance is tight
enough to detect the error it guards against.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch
from torch import Tensor, nn

from ebmlib.losses import ratio_matching, rmwggis, rmwggis_proposal
from ebmlib.nets import MLPEnergy
from ebmlib.train import fit
from ebmlib.utils import measure

D = 8
N_CALLS = 30  # independent loss evaluations in the Monte-Carlo tests
N_COPIES = 2000  # copies of each data point per evaluation: one evaluation averages N_COPIES draws per point


# ---------------------------------------------------------------------------------------------------------
# Energies and brute-force references
# ---------------------------------------------------------------------------------------------------------
class Quadratic(nn.Module):
    """E(x) = -xᵀWx - bᵀx with symmetric W; ``zero_diagonal`` makes one-bit changes of E exactly linear."""

    def __init__(self, d: int, *, zero_diagonal: bool = False, quadratic: bool = True, scale: float = 0.5):
        super().__init__()
        self.w = nn.Parameter(torch.randn(d, d, dtype=torch.float64) * scale * quadratic)
        self.b = nn.Parameter(torch.randn(d, dtype=torch.float64) * scale)
        mask = torch.ones(d, d, dtype=torch.float64)
        self.register_buffer("mask", mask.fill_diagonal_(0.0) if zero_diagonal else mask)

    def forward(self, x: Tensor) -> Tensor:
        w = (self.w + self.w.T) / 2 * self.mask
        return -((x @ w) * x).sum(-1) - x @ self.b


def mlp_energy(d: int = D, out_scale: float = 20.0) -> MLPEnergy:
    """A small random MLP energy whose one-bit energy gaps are O(1), so the d terms differ visibly."""
    energy = MLPEnergy(d, hidden=32, depth=2).double()
    with torch.no_grad():
        energy.mlp.net[-1].weight.mul_(out_scale)
    return energy


ENERGIES: dict[str, Callable[[], nn.Module]] = {
    "mlp": mlp_energy,
    "quadratic": lambda: Quadratic(D),
}


def random_bits(n: int, d: int = D) -> Tensor:
    return torch.randint(0, 2, (n, d), dtype=torch.float64)


def flip(x: Tensor, i: int) -> Tensor:
    y = x.clone()
    y[..., i] = 1 - y[..., i]
    return y


def brute_force_rm(energy: nn.Module, x: Tensor) -> Tensor:
    """Eq. 4 by a double loop over points and bits, one single-point energy call per term."""
    total = torch.zeros((), dtype=torch.float64)
    for b in range(x.shape[0]):
        point = x[b : b + 1]
        for i in range(x.shape[1]):
            total = total + torch.exp(2 * (energy(point) - energy(flip(point, i)))).squeeze()
    return total / x.shape[0]


def optimal_proposal(energy: nn.Module, x: Tensor) -> Tensor:
    """Theorem 1: n*_i ∝ exp(2(E(x) - E(x_{-i}))), by brute force, shape (B, d)."""
    with torch.no_grad():
        gaps = torch.stack([energy(x) - energy(flip(x, i)) for i in range(x.shape[1])], dim=1)
    return torch.softmax(2 * gaps, dim=1)


def flat_grad(loss: Tensor, module: nn.Module) -> Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(module.parameters()))])


# ---------------------------------------------------------------------------------------------------------
# Exact ratio matching
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ENERGIES))
def test_ratio_matching_equals_brute_force(name: str) -> None:
    energy, x = ENERGIES[name](), random_bits(5)
    loss, logs = ratio_matching(energy, x)
    expected = brute_force_rm(energy, x)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(logs["objective"], expected, rtol=1e-12, atol=0)
    assert not logs["objective"].requires_grad
    grad = flat_grad(loss, energy)
    assert grad.abs().max() > 0  # the gradient reaches the energy's parameters
    torch.testing.assert_close(grad, flat_grad(expected, energy), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 7, 39, 40, 10**6])
def test_ratio_matching_chunked_equals_unchunked(chunk_size: int) -> None:
    energy, x = mlp_energy(), random_bits(5)  # B·d = 40 rows
    loss, _ = ratio_matching(energy, x)
    loss_chunked, _ = ratio_matching(energy, x, chunk_size=chunk_size)
    torch.testing.assert_close(loss_chunked, loss, rtol=1e-13, atol=0)
    torch.testing.assert_close(flat_grad(loss_chunked, energy), flat_grad(loss, energy), rtol=1e-11, atol=1e-13)
    with torch.no_grad():
        torch.testing.assert_close(ratio_matching(energy, x, chunk_size=chunk_size)[0], loss.detach())


def test_chunking_bounds_training_memory() -> None:
    """With autograd, chunks are checkpointed: peak memory of forward + backward falls with chunk_size."""
    energy = MLPEnergy(64, hidden=64, depth=2)
    x = torch.randint(0, 2, (32, 64)).float()  # 2048 neighbour rows

    def peak(chunk_size: int | None) -> int:
        return measure(lambda: ratio_matching(energy, x, chunk_size=chunk_size)[0].backward(), repeats=1).peak_bytes

    assert peak(128) < peak(None) / 3


# ---------------------------------------------------------------------------------------------------------
# Proposal distribution
# ---------------------------------------------------------------------------------------------------------
def test_gradient_proposal_matches_eq_11() -> None:
    energy, x = mlp_energy(), random_bits(6)
    e, log_q = rmwggis_proposal(energy, x)
    q = log_q.exp()
    assert q.shape == x.shape and (q >= 0).all() and not log_q.requires_grad
    torch.testing.assert_close(q.sum(1), torch.ones(6, dtype=torch.float64))
    # eq. 11 by hand: softmax of 2 (2x - 1) ⊙ ∇_x E(x)
    x_req = x.clone().requires_grad_(True)
    (grad_x,) = torch.autograd.grad(energy(x_req).sum(), x_req)
    torch.testing.assert_close(q, torch.softmax(2 * (2 * x - 1) * grad_x, dim=1))
    torch.testing.assert_close(e, energy(x))
    assert e.requires_grad  # E(x) stays differentiable for the loss
    assert q.std(dim=1).min() > 1e-3  # a genuinely non-uniform proposal, unlike the control below
    _, log_uniform = rmwggis_proposal(energy, x, proposal="uniform")
    torch.testing.assert_close(log_uniform.exp(), torch.full_like(x, 1 / D))


@pytest.mark.parametrize("quadratic", [True, False], ids=["zero-diagonal quadratic", "linear"])
def test_gradient_proposal_is_optimal_when_taylor_is_exact(quadratic: bool) -> None:
    energy, x = Quadratic(D, zero_diagonal=True, quadratic=quadratic), random_bits(6)
    _, log_q = rmwggis_proposal(energy, x)
    torch.testing.assert_close(log_q.exp(), optimal_proposal(energy, x), rtol=1e-10, atol=1e-14)
    # Control: with a diagonal the first-order expansion is wrong and so is the proposal.
    full = Quadratic(D)
    assert (rmwggis_proposal(full, x)[1].exp() - optimal_proposal(full, x)).abs().max() > 1e-2


def test_unbiased_estimator_has_zero_variance_with_the_optimal_proposal() -> None:
    energy, x = Quadratic(D, zero_diagonal=True), random_bits(4)
    exact = ratio_matching(energy, x)[0].detach()
    with torch.no_grad():
        gradient = torch.stack([rmwggis(energy, x, n_samples=3)[0] for _ in range(50)])
        uniform = torch.stack([rmwggis(energy, x, n_samples=3, proposal="uniform")[0] for _ in range(50)])
    torch.testing.assert_close(gradient, exact.expand(50), rtol=1e-12, atol=0)
    assert uniform.std() > 1e-3 * exact  # control: another proposal does have variance


# ---------------------------------------------------------------------------------------------------------
# Unbiasedness of eq. 7 (value and parameter gradient)
# ---------------------------------------------------------------------------------------------------------
def mc_statistics(
    loss_fn: Callable[[], tuple[Tensor, dict]], energy: nn.Module, directions: Tensor
) -> tuple[Tensor, Tensor]:
    """Mean and standard error over N_CALLS calls of (loss, gradient · direction for each direction)."""
    samples = []
    for _ in range(N_CALLS):
        loss, _ = loss_fn()
        samples.append(torch.cat([loss.detach().view(1), directions @ flat_grad(loss, energy)]))
    stacked = torch.stack(samples)
    return stacked.mean(0), stacked.std(0) / N_CALLS**0.5


def exact_statistics(energy: nn.Module, x: Tensor, directions: Tensor) -> Tensor:
    loss = ratio_matching(energy, x)[0]
    return torch.cat([loss.detach().view(1), directions @ flat_grad(loss, energy)])


def undetached_expected_gradient(energy: nn.Module, x: Tensor) -> Tensor:
    """E[∇θ Ĵ] when the weights 1/ñ are NOT detached (create_graph=True), by enumeration over i (s = 1)."""
    x_req = x.clone().requires_grad_(True)
    e = energy(x_req)
    (grad_x,) = torch.autograd.grad(e.sum(), x_req, create_graph=True)
    log_q = torch.log_softmax(2 * (2 * x - 1) * grad_x, dim=1)
    gaps = torch.stack([e - energy(flip(x, i)) for i in range(x.shape[1])], dim=1)
    surrogate = (log_q.detach().exp() * torch.exp(2 * gaps - log_q)).sum(1).mean()
    return flat_grad(surrogate, energy)


@pytest.mark.parametrize(("proposal", "replacement"), [("gradient", True), ("uniform", True), ("uniform", False)])
def test_unbiased_estimator_value_and_gradient_average_to_exact_rm(proposal: str, replacement: bool) -> None:
    energy, x = mlp_energy(), random_bits(4)
    exact_grad = flat_grad(ratio_matching(energy, x)[0], energy)
    bias_of_undetached = undetached_expected_gradient(energy, x) - exact_grad
    directions = torch.stack([exact_grad / exact_grad.norm(), bias_of_undetached / bias_of_undetached.norm()])
    x_rep = x.repeat(N_COPIES, 1)
    loss_fn = partial(rmwggis, energy, x_rep, n_samples=3, proposal=proposal, replacement=replacement)
    mean, se = mc_statistics(loss_fn, energy, directions)
    exact = exact_statistics(energy, x, directions)
    assert ((mean - exact).abs() < 4 * se).all(), f"mean {mean}, exact {exact}, se {se}"
    # Power: the bias that gradients through ñ would add is far outside the tolerance.
    if proposal == "gradient":
        assert (directions[1] @ bias_of_undetached).abs() > 4 * se[2]


def test_biased_estimator_differs_from_exact_rm() -> None:
    """Control for the test above: eq. 12's mean, s Σ_i ñ_i f_i, is measurably not J."""
    energy, x = mlp_energy(), random_bits(4)
    directions = torch.zeros(0, sum(p.numel() for p in energy.parameters()), dtype=torch.float64)
    loss_fn = partial(rmwggis, energy, x.repeat(N_COPIES, 1), n_samples=3, estimator="biased")
    mean, se = mc_statistics(loss_fn, energy, directions)
    assert (mean[0] - exact_statistics(energy, x, directions)[0]).abs() > 10 * se[0]


@pytest.mark.parametrize(
    ("proposal", "estimator"), [("gradient", "biased"), ("uniform", "biased"), ("uniform", "unbiased")]
)
def test_all_terms_without_replacement_is_exact_rm(proposal: str, estimator: str) -> None:
    """With s = d and no replacement every neighbour is drawn exactly once: eq. 12 is then J, and so is
    eq. 7 for ñ = 1/d (duplicates or missed neighbours would change the sum)."""
    energy, x = mlp_energy(), random_bits(5)
    loss, _ = rmwggis(energy, x, n_samples=D, replacement=False, proposal=proposal, estimator=estimator)
    torch.testing.assert_close(loss, ratio_matching(energy, x)[0], rtol=1e-12, atol=0)


def test_authors_pairing_is_their_stack_and_reshape() -> None:
    """The reference code stacks the flipped copies bit by bit, ``cat([x with bit i flipped for i])``, and reshapes
    the energies to ``(B, d)`` row by row; ``pairing="authors"`` must give exactly that loss, and differ from eq. 4."""
    energy, x = mlp_energy(), random_bits(6)
    stacked = torch.cat([torch.cat([x[:, :i], 1 - x[:, i:i + 1], x[:, i + 1:]], dim=1) for i in range(D)])
    reference = (2 * (energy(x)[:, None] - energy(stacked).reshape(-1, D))).exp().sum(dim=1).mean()
    for rank_one in (True, False):
        loss, _ = ratio_matching(energy, x, pairing="authors", rank_one=rank_one)
        torch.testing.assert_close(loss, reference, rtol=1e-12, atol=0)
    assert not torch.isclose(reference, ratio_matching(energy, x)[0])


def test_authors_pairing_of_the_estimators_follows_their_stack_of_draws() -> None:
    """The authors' code stacks draw k of every point as block k (``cat`` over draws) and reshapes the energies to
    ``(B, s)`` row by row; rebuilt here from the neighbours the estimator evaluated, with the same draws."""
    energy, x = mlp_energy(), random_bits(5)
    batches = []

    def recording(z: Tensor) -> Tensor:
        batches.append(z.detach().clone())
        return energy(z)

    s = 3
    torch.manual_seed(3)
    loss, _ = rmwggis(recording, x, n_samples=s, estimator="biased", pairing="authors")
    drawn = batches[-1]  # row b·s + k: point b with its k-th drawn flip
    stacked = torch.stack([drawn[b * s + k] for k in range(s) for b in range(len(x))])
    reference = (2 * (energy(x)[:, None] - energy(stacked).reshape(len(x), s))).exp().sum(dim=1).mean()
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=0)
    torch.manual_seed(3)
    assert not torch.isclose(loss, rmwggis(energy, x, n_samples=s, estimator="biased")[0])


# ---------------------------------------------------------------------------------------------------------
# Diagnostics, training loop, validation
# ---------------------------------------------------------------------------------------------------------
def test_logs_and_training_loop() -> None:
    energy, x = mlp_energy(), random_bits(64)
    _, logs = rmwggis(energy, x, proposal="uniform")
    torch.testing.assert_close(logs["proposal_entropy"], torch.log(torch.tensor(float(D), dtype=torch.float64)))
    torch.testing.assert_close(logs["proposal_max"], torch.tensor(1 / D, dtype=torch.float64))
    for loss_fn in (partial(ratio_matching, chunk_size=100), partial(rmwggis, n_samples=2, estimator="biased")):
        result = fit(energy, loss_fn, lambda: x, n_iters=3, log_every=1, progress=False)
        assert len(result.history["objective"]) == 3
        assert result.history["loss"] == result.history["objective"]


def wrong_shape_energy(x: Tensor) -> Tensor:
    return x.sum(1, keepdim=True)


GOOD = torch.eye(D, dtype=torch.float64)[:3]
BAD_CALLS = {
    "non-binary x": (lambda: ratio_matching(mlp_energy(), GOOD * 0.5), "x"),
    "non-binary x (rmwggis)": (lambda: rmwggis(mlp_energy(), GOOD + 1), "x"),
    "1-d x": (lambda: ratio_matching(mlp_energy(), GOOD[0]), "x"),
    "3-d x": (lambda: rmwggis(mlp_energy(), GOOD.unsqueeze(0)), "x"),
    "integer x": (lambda: rmwggis(mlp_energy(), GOOD.long()), "x"),
    "chunk_size 0": (lambda: ratio_matching(mlp_energy(), GOOD, chunk_size=0), "chunk_size"),
    "n_samples 0": (lambda: rmwggis(mlp_energy(), GOOD, n_samples=0), "n_samples"),
    "n_samples > d": (lambda: rmwggis(mlp_energy(), GOOD, n_samples=D + 1, replacement=False), "n_samples"),
    "estimator": (lambda: rmwggis(mlp_energy(), GOOD, estimator="sum"), "estimator"),
    "proposal": (lambda: rmwggis(mlp_energy(), GOOD, proposal="optimal"), "proposal"),
    "proposal (rmwggis_proposal)": (lambda: rmwggis_proposal(mlp_energy(), GOOD, proposal="x"), "proposal"),
    "pairing (rm)": (lambda: ratio_matching(mlp_energy(), GOOD, pairing="shuffled"), "pairing"),
    "pairing (rmwggis)": (lambda: rmwggis(mlp_energy(), GOOD, pairing="shuffled"), "pairing"),
    "energy shape (rm)": (lambda: ratio_matching(wrong_shape_energy, GOOD), "energy_fn"),
    "energy shape (rmwggis)": (lambda: rmwggis(wrong_shape_energy, GOOD), "energy_fn"),
    "energy shape (uniform)": (lambda: rmwggis(wrong_shape_energy, GOOD, proposal="uniform"), "energy_fn"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_raises_value_error(case: str) -> None:
    call, name = BAD_CALLS[case]
    with pytest.raises(ValueError, match=f"^{name} "):
        call()


def test_more_samples_than_bits_with_replacement_is_allowed() -> None:
    loss, _ = rmwggis(mlp_energy(), GOOD, n_samples=3 * D)
    assert torch.isfinite(loss)
