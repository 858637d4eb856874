"""Tests of ebmlib.joint: categorical Gibbs-with-Gradients, the joint MWG sampler, prediction, validation.

Discrete targets are enumerated exactly; the mixed target is a Gaussian mixture with a categorical label whose
joint law is known in closed form. tests/conftest.py seeds torch before every test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from ebmlib.data import all_configurations, block_index, check_one_hot, labels_to_one_hot, one_hot_to_labels
from ebmlib.metrics import attribute_accuracy, predict_energy, predict_sample
from ebmlib.nets import JointEnergy, conv_features
from ebmlib.samplers import (
    JointNoise,
    MWGSampler,
    categorical_log_proposal,
    gwg_categorical,
    impute_missing,
    mwg_joint,
)
from ebmlib.train import linear_warmup

SIZES = (2, 3, 3)  # 18 configurations
N_CHAINS = 10_000


def _quadratic(seed: int = 0, k: int = sum(SIZES)):
    gen = torch.Generator().manual_seed(seed)
    a = 0.5 * torch.randn(k, k, generator=gen, dtype=torch.float64)
    w, b = (a + a.T) / 2, 0.5 * torch.randn(k, generator=gen, dtype=torch.float64)
    return lambda y: -((y @ w.to(y)) * y).sum(-1) - y @ b.to(y)


ENERGY = _quadratic()
CONFIGS = all_configurations(SIZES)
STATES = labels_to_one_hot(CONFIGS, SIZES, dtype=torch.float64)
PROBS = torch.softmax(-ENERGY(STATES), 0)


def _config_index(y: Tensor) -> Tensor:
    labels = one_hot_to_labels(y, SIZES)
    return (labels[:, 0] * 3 + labels[:, 1]) * 3 + labels[:, 2]


def _tv(y: Tensor, probs: Tensor) -> float:
    empirical = torch.bincount(_config_index(y), minlength=len(probs)).double() / y.shape[0]
    return 0.5 * (empirical - probs).abs().sum().item()


def _tv_threshold(probs: Tensor, n: int, delta: float = 1e-6) -> float:
    """TV(p̂_n, p) of n i.i.d. draws exceeds this with probability < delta (Jensen + McDiarmid)."""
    return 0.5 * torch.sqrt(probs * (1 - probs) / n).sum().item() + math.sqrt(math.log(1 / delta) / (2 * n))


# ---------------------------------------------------------------------------------------------------------
# One-hot blocks
# ---------------------------------------------------------------------------------------------------------
def test_one_hot_round_trip_and_configurations():
    assert CONFIGS.shape == (18, 3) and len(set(map(tuple, CONFIGS.tolist()))) == 18
    assert torch.equal(one_hot_to_labels(STATES, SIZES), CONFIGS)
    check_one_hot(STATES, SIZES)


@pytest.mark.parametrize(
    "y, message",
    [
        (torch.zeros(4, 8), "exactly one 1"),  # all blocks empty
        (torch.ones(4, 8), "exactly one 1"),  # several ones per block
        (torch.full((4, 8), 0.5), "0/1"),  # not binary
        (torch.zeros(4, 7), "8 columns"),  # wrong total size
        (torch.zeros(8), "2 dimensions"),
    ],
)
def test_bad_one_hot_raises(y, message):
    with pytest.raises(ValueError, match=message):
        check_one_hot(y, SIZES)


def test_wrong_block_sizes_raise():
    y = labels_to_one_hot(torch.tensor([[1, 0, 0]]), SIZES)
    with pytest.raises(ValueError, match="one 1 per block"):
        check_one_hot(y, (3, 2, 3))  # same total width, other blocks
    for bad in [(), (1, 3), (2, 2.5), "23"]:
        with pytest.raises(ValueError, match="block_sizes"):
            check_one_hot(y, bad)
    with pytest.raises(ValueError, match="labels"):
        labels_to_one_hot(torch.tensor([[0, 3, 0]]), SIZES)


def test_missing_blocks_allowed_only_when_asked():
    y = labels_to_one_hot(torch.tensor([[1, 2, 0]]), SIZES)
    y[:, 2:5] = 0
    check_one_hot(y, SIZES, allow_missing=True)
    with pytest.raises(ValueError):
        check_one_hot(y, SIZES)


# ---------------------------------------------------------------------------------------------------------
# Categorical Gibbs-with-Gradients
# ---------------------------------------------------------------------------------------------------------
def test_gwg_categorical_converges_to_the_enumerated_target():
    y0 = labels_to_one_hot(torch.zeros(N_CHAINS, 3, dtype=torch.long), SIZES, dtype=torch.float64)
    y, acceptance = gwg_categorical(ENERGY, y0, SIZES, n_steps=40)
    check_one_hot(y, SIZES)
    assert _tv(y, PROBS) < _tv_threshold(PROBS, N_CHAINS)


def _exact_gwg_acceptance() -> float:
    """Expected acceptance of one GwG step from the target, enumerated: Σ_y π(y) Σ_moves q(move | y) α(y, y'),
    with the Metropolis–Hastings ratio α = min(1, e^{E(y) - E(y')} q(back | y') / q(move | y)) written out here."""
    index, free = block_index(SIZES), torch.ones(1, sum(SIZES), dtype=torch.bool)

    def log_q(y: Tensor) -> Tensor:
        y = y[None].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(ENERGY(y).sum(), y)
        return categorical_log_proposal(y.detach(), grad, index, free, 2.0)[0][0]

    total = 0.0
    for state, p in zip(STATES, PROBS):
        forward = log_q(state)
        for column in torch.nonzero(forward > -math.inf).flatten().tolist():
            moved = state.clone()
            block = index == index[column]
            back = int(torch.nonzero(state * block).flatten())
            moved[block] = 0
            moved[column] = 1
            log_alpha = ENERGY(state[None]) - ENERGY(moved[None]) + log_q(moved)[back] - forward[column]
            total += p * forward[column].exp() * log_alpha.clamp(max=0).exp()
    return float(total)


def test_gwg_categorical_leaves_the_target_invariant():
    """From exact draws the law stays the target, and the acceptance rate equals its enumerated expectation
    (this replaces a check that it merely lay in (0.05, 1)): a Metropolis–Hastings ratio without the reverse
    proposal, or with the wrong one, accepts at another rate. Per chain the rate averages 3 steps that may be
    correlated, so its variance is at most α(1 - α): 5 standard errors over N chains."""
    exact = STATES[torch.multinomial(PROBS, N_CHAINS, replacement=True)]
    y, acceptance = gwg_categorical(ENERGY, exact, SIZES, n_steps=3)
    assert _tv(y, PROBS) < _tv_threshold(PROBS, N_CHAINS)
    alpha = _exact_gwg_acceptance()
    assert abs(acceptance.mean().item() - alpha) < 5 * math.sqrt(alpha * (1 - alpha) / N_CHAINS), alpha


def test_clamped_blocks_never_change_and_free_blocks_follow_the_conditional():
    y0 = labels_to_one_hot(torch.tensor([[1, 2, 0]]).expand(N_CHAINS, 3), SIZES, dtype=torch.float64)
    clamp = torch.tensor([True, False, True])
    y, _ = gwg_categorical(ENERGY, y0, SIZES, n_steps=20, clamp=clamp)
    labels = one_hot_to_labels(y, SIZES)
    assert (labels[:, 0] == 1).all() and (labels[:, 2] == 0).all()
    mask = (CONFIGS[:, 0] == 1) & (CONFIGS[:, 2] == 0)
    conditional = torch.where(mask, PROBS, 0) / PROBS[mask].sum()
    assert _tv(y, conditional) < _tv_threshold(conditional[mask], N_CHAINS)


def test_per_chain_clamp_and_fully_clamped_chains():
    y0 = labels_to_one_hot(torch.tensor([[0, 0, 0], [1, 1, 1]]).repeat(50, 1), SIZES, dtype=torch.float64)
    clamp = torch.tensor([[True, True, True], [False, False, False]]).repeat(50, 1)
    y, acceptance = gwg_categorical(ENERGY, y0, SIZES, n_steps=10, clamp=clamp)
    assert torch.equal(y[::2], y0[::2]) and (acceptance[::2] == 0).all()
    assert (y[1::2] != y0[1::2]).any()
    with pytest.raises(ValueError, match="clamp"):
        gwg_categorical(ENERGY, y0, SIZES, clamp=torch.tensor([True, False]))


# ---------------------------------------------------------------------------------------------------------
# Joint Metropolis-within-Gibbs on a Gaussian mixture with a categorical label
# ---------------------------------------------------------------------------------------------------------
MEANS = torch.tensor([-1.0, 0.0, 1.5], dtype=torch.float64)
WEIGHTS = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)


def mixture_energy(z: Tensor) -> Tensor:
    """E(x, y) = (x - μ_y)²/2 - log π_y: p(y) = π, p(x | y) = N(μ_y, 1)."""
    x, y = z[:, :1], z[:, 1:]
    return (y * ((x - MEANS.to(z)) ** 2 / 2 - WEIGHTS.to(z).log())).sum(1)


def test_mwg_samples_the_joint_mixture():
    z0 = torch.cat([torch.zeros(N_CHAINS, 1, dtype=torch.float64),
                    labels_to_one_hot(torch.zeros(N_CHAINS, 1, dtype=torch.long), (3,), dtype=torch.float64)], 1)
    # h = 0.045, λ = 1: ULA inflates the variance by 1 / (1 - h/4) ≈ 1.011, below the tolerances.
    z = mwg_joint(mixture_energy, z0, 1, (3,), n_steps=400, step_size=0.045, temperature=1.0)
    labels = one_hot_to_labels(z[:, 1:], (3,))[:, 0]
    frequencies = torch.bincount(labels, minlength=3).double() / N_CHAINS
    assert (frequencies - WEIGHTS).abs().max() < 4 * math.sqrt(0.25 / N_CHAINS)
    for k in range(3):
        x_k = z[labels == k, 0]
        assert abs(x_k.mean().item() - MEANS[k].item()) < 5 / math.sqrt(len(x_k))
        assert abs(x_k.var().item() - 1) < 0.1


def test_mwg_conditional_sampling_keeps_clamped_labels():
    z0 = torch.cat([torch.zeros(2000, 1, dtype=torch.float64),
                    labels_to_one_hot(torch.full((2000, 1), 2), (3,), dtype=torch.float64)], 1)
    z = mwg_joint(mixture_energy, z0, 1, (3,), n_steps=300, step_size=0.3, temperature=1.0,
                  clamp=torch.tensor([True]))
    assert torch.equal(z[:, 1:], z0[:, 1:])
    assert abs(z[:, 0].mean().item() - 1.5) < 5 / math.sqrt(2000)
    with pytest.raises(ValueError, match="nothing to sample"):
        mwg_joint(mixture_energy, z0, 1, (3,), n_steps=1, step_size=0.3, temperature=1.0,
                  clamp=torch.tensor([True]), update_x=False)


def test_mwg_x_bounds_keep_chains_in_the_box():
    z0 = torch.cat([torch.zeros(500, 1, dtype=torch.float64),
                    labels_to_one_hot(torch.zeros(500, 1, dtype=torch.long), (3,), dtype=torch.float64)], 1)
    # a drift of ε²/(2λ) = 50 throws unclamped chains far out of [-2, 2]
    free = mwg_joint(mixture_energy, z0, 1, (3,), n_steps=5, step_size=1.0, temperature=0.01)
    assert free[:, 0].abs().max() > 2
    boxed = MWGSampler(1, (3,), n_steps=5, step_size=1.0, temperature=0.01, x_bounds=(-2.0, 2.0))(mixture_energy, z0)
    assert boxed[:, 0].abs().max() <= 2 and torch.isfinite(boxed).all()
    with pytest.raises(ValueError, match="x_bounds"):
        mwg_joint(mixture_energy, z0, 1, (3,), n_steps=1, step_size=0.1, temperature=1.0, x_bounds=(1.0, -1.0))


class _CachingMixture:
    """``mixture_energy`` flagged as caching features: mwg_joint then takes its three-evaluation path."""

    caches_features = True

    def __call__(self, z: Tensor) -> Tensor:
        return mixture_energy(z)


def test_mwg_fused_and_separate_evaluations_give_the_same_chain():
    """The fused step reuses ∇_x E from GwG's evaluations; with the same random numbers it must reproduce the
    step that evaluates E(x | y_new) again, chain for chain."""
    z0 = torch.cat([torch.randn(300, 1, dtype=torch.float64),
                    labels_to_one_hot(torch.randint(3, (300, 1)), (3,), dtype=torch.float64)], 1)
    runs = []
    for energy in (mixture_energy, _CachingMixture()):
        torch.manual_seed(5)
        runs.append(mwg_joint(energy, z0, 1, (3,), n_steps=30, step_size=0.5, temperature=1.0))
    assert not torch.equal(runs[0], z0) and (runs[0][:, 1:] != z0[:, 1:]).any()
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=1e-9)


def _count_host_reads(monkeypatch) -> list[int]:
    """Count calls that read a tensor's value back to the host (a device synchronisation on a GPU)."""
    calls = [0]
    for name in ("__bool__", "__int__", "__float__", "item", "tolist", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            calls[0] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


@pytest.mark.parametrize("update_x", [True, False])
def test_mwg_reads_values_back_a_fixed_number_of_times(monkeypatch, update_x):
    """Validation and the final finiteness check read values once per call, never once per step."""
    z0 = torch.cat([torch.zeros(8, 1), labels_to_one_hot(torch.zeros(8, 1, dtype=torch.long), (3,))], 1)
    counts = []
    for n_steps in (1, 6):
        calls = _count_host_reads(monkeypatch)
        mwg_joint(mixture_energy, z0, 1, (3,), n_steps=n_steps, step_size=0.3, temperature=1.0, update_x=update_x,
                  x_bounds=(-3.0, 3.0))
        gwg_categorical(ENERGY, STATES[:8].float(), SIZES, n_steps=n_steps)
        counts.append(calls[0])
        monkeypatch.undo()
    assert counts[0] == counts[1] > 0, counts


def test_mwg_raises_on_non_finite_energies():
    def nan_energy(z: Tensor) -> Tensor:
        return mixture_energy(z) + torch.where(z[:, 0] > 1e9, torch.nan, 0.0)  # NaN once x runs away

    z0 = torch.cat([torch.zeros(8, 1), labels_to_one_hot(torch.zeros(8, 1, dtype=torch.long), (3,))], 1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        mwg_joint(lambda z: nan_energy(z) - 1e3 * z[:, 0] ** 3, z0, 1, (3,), n_steps=20, step_size=1.0,
                  temperature=1.0)


def test_mwg_validates_arguments():
    z = torch.zeros(4, 4)
    for kwargs, match in [(dict(step_size=0.0), "step_size"), (dict(temperature=-1.0), "temperature")]:
        args = dict(n_steps=1, step_size=0.1, temperature=1.0) | kwargs
        with pytest.raises(ValueError, match=match):
            mwg_joint(mixture_energy, torch.cat([z[:, :1], torch.eye(3)[:4 % 3].repeat(4, 1)[:4]], 1), 1, (3,),
                      **args)
    with pytest.raises(ValueError, match="one 1"):
        mwg_joint(mixture_energy, z, 1, (3,), n_steps=1, step_size=0.1, temperature=1.0)


# ---------------------------------------------------------------------------------------------------------
# The joint energy network and prediction
# ---------------------------------------------------------------------------------------------------------
def test_energy_prediction_equals_brute_force_argmin():
    model = JointEnergy((2,), (2, 3), [16, 16]).double()
    x = torch.randn(50, 2, dtype=torch.float64)
    predicted = predict_energy(model, x, (2, 3), max_rows=37)  # chunks that do not divide the batch
    configs = all_configurations((2, 3))
    for i in range(len(x)):
        energies = [model(torch.cat([x[i:i + 1], labels_to_one_hot(c[None], (2, 3), torch.float64)], 1))
                    for c in configs]
        assert torch.equal(predicted[i], configs[int(torch.stack(energies).argmin())])


def test_label_energy_matches_the_full_forward_and_gradients_flow():
    model = JointEnergy((1, 32, 32), (16, 16), [32], activation="silu", features=conv_features(4),
                        feature_dim=256)
    z = torch.cat([torch.randn(3, 1024), labels_to_one_hot(torch.tensor([[0, 1], [2, 3], [15, 15]]), (16, 16))], 1)
    assert torch.allclose(model.label_energy(z[:, :1024])(z[:, 1024:]), model(z))
    model(z).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert conv_features(16)(torch.zeros(2, 1, 32, 32)).shape == (2, 256)
    with pytest.raises(ValueError, match="z must have shape"):
        model(z[:, :-1])


def test_sample_prediction_recovers_a_peaked_conditional():
    def energy(z: Tensor) -> Tensor:  # p(y | x) puts almost all mass on class round(x) of each attribute
        x, y = z[:, :1], z[:, 1:]
        target = labels_to_one_hot(x.round().long().clamp(0, 2).repeat(1, 2), (3, 3), dtype=z.dtype)
        return -8 * (y * target).sum(1)

    x = torch.randint(0, 3, (200, 1)).double()
    noise = JointNoise(torch.zeros(1, dtype=torch.float64), torch.full((1,), 2.0, dtype=torch.float64),
                       [torch.full((3,), 1 / 3, dtype=torch.float64)] * 2)
    predicted = predict_sample(energy, x, noise, n_samples=5, n_steps=30)
    accuracy = attribute_accuracy(predicted, x.long().repeat(1, 2))
    assert accuracy.shape == (2,) and (accuracy > 0.99).all()
    assert torch.equal(predict_energy(energy, x, (3, 3)), x.long().repeat(1, 2))


# ---------------------------------------------------------------------------------------------------------
# Initial distributions, partial labels, warm-up, PCD glue
# ---------------------------------------------------------------------------------------------------------
def test_joint_noise_from_batch():
    x = torch.tensor([[0.0, -1.0], [2.0, 3.0]])
    y = labels_to_one_hot(torch.tensor([[0, 1], [0, 2]]), (2, 3))
    noise = JointNoise.from_batch(x, y, (2, 3))
    z = noise(5000)
    assert z.shape == (5000, 7)
    assert (z[:, 0] >= 0).all() and (z[:, 0] <= 2).all() and (z[:, 1] >= -1).all() and (z[:, 1] <= 3).all()
    labels = one_hot_to_labels(z[:, 2:], (2, 3))
    assert (labels[:, 0] == 0).all() and (labels[:, 1] != 0).all()  # probabilities ∝ the batch's counts
    uniform = JointNoise.from_batch(x, y, (2, 3), uniform_y=True)
    assert torch.allclose(uniform.probs[1], torch.full((3,), 1 / 3))
    with pytest.raises(ValueError, match="probs"):
        JointNoise(x[0], x[0] + 1, [torch.tensor([0.5, 0.6])])


def test_impute_missing_fills_only_unobserved_blocks():
    x = torch.randn(300, 1, dtype=torch.float64)
    y = labels_to_one_hot(torch.randint(0, 3, (300, 1)), (3,), dtype=torch.float64)
    y[:100] = 0  # the first 100 labels are missing
    noise = JointNoise(torch.full((1,), -3.0, dtype=torch.float64), torch.full((1,), 3.0, dtype=torch.float64),
                       [WEIGHTS])
    z = impute_missing(mixture_energy, torch.cat([x, y], 1), noise, n_steps=10)
    check_one_hot(z[:, 1:], (3,))
    assert torch.equal(z[100:], torch.cat([x, y], 1)[100:]) and torch.equal(z[:, :1], x)


def test_linear_warmup_and_sampler_object():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1.0)
    callback = linear_warmup(opt, 4)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25)
    callback(2, None)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.75)
    callback(10, None)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)
    sampler = MWGSampler(1, (3,), n_steps=2, step_size=0.1, temperature=1.0)
    z0 = torch.cat([torch.zeros(5, 1), torch.eye(3)[[0, 1, 2, 0, 1]]], 1)
    assert sampler(mixture_energy, z0).shape == (5, 4)
    with pytest.raises(ValueError, match="step_size"):
        MWGSampler(1, (3,), n_steps=2, step_size=0.0, temperature=1.0)


def test_sample_toy_mixture_returns_components():
    from ebmlib.data import sample_toy_mixture, toy_mode_centres

    x, k = sample_toy_mixture("8gaussians", 4000, generator=torch.Generator().manual_seed(0))
    nearest = torch.cdist(x, toy_mode_centres("8gaussians")).argmin(1)
    assert x.shape == (4000, 2) and (nearest == k).float().mean() > 0.99
    assert abs((x - toy_mode_centres("8gaussians")[k]).std().item() - 0.5 / 1.414) < 0.01
    with pytest.raises(ValueError, match="name"):
        sample_toy_mixture("moons", 3)
