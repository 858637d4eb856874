"""One battery for every public sampler and loss, as scikit-learn's ``check_estimator`` runs the same checks
on every estimator.

:data:`REGISTRY` holds one entry per public name of :mod:`ebmlib.samplers` and :mod:`ebmlib.losses`
(:data:`EXCLUDED` lists the others, with the reason); adding a public sampler or loss without an entry fails
:func:`test_registry_covers_every_public_sampler_and_loss`. Each entry gives a small valid call (a
:class:`corruption.Spec`, shared with the bad-input survey), the corruptions that make it invalid, and a check
against a known target. Every entry is then checked for

* its target: invariance of (or convergence to) an exactly enumerated discrete law, the exact law of a
  Gaussian chain, or, for losses, the exact value or gradient against enumeration on a tiny space;
* bit-for-bit determinism under a fixed seed (and, for random ones, different output under another seed);
* dtype following: float64 in gives float64 out, and float32 in gives float32 out even when torch's default
  dtype is float64 (a tensor created without ``dtype=`` from the input would promote the result);
* bad input: every corruption raises a ``ValueError`` whose message names the argument.

Statistical tolerances are derived from standard errors in tests/battery_targets.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from functools import partial
from typing import Any

import pytest
import torch
from battery_targets import (
    BIT_B,
    BIT_PROBS,
    BIT_W,
    BITS,
    CAT_PROBS,
    D_BITS,
    F64,
    MU,
    N_CLASSES,
    ONE_HOTS,
    S2,
    SIZES,
    AffineMap,
    BitEnergy,
    ScaledQuadratic,
    assert_close_se,
    assert_gaussian,
    assert_law,
    assert_mala_acceptance,
    assert_rate,
    bit_energy,
    bit_index,
    cat_energy,
    centred_energy,
    code_energy,
    code_probs_given,
    config_index,
    exact_bits,
    gauss_energy,
    mala_acceptance,
    ula_moments,
)
from corruption import Spec, corrupted_calls, outcome
from torch import Tensor

import ebmlib.losses as L
import ebmlib.samplers as S
from ebmlib.data import block_index, free_columns, labels_to_one_hot, node_pair_mask
from ebmlib.flows import RealNVP

N = 2000  # chains or draws per statistical check


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The battery's tensors are tiny: one thread avoids the thread pool's overhead (9x on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

# Corruptions by role (see tests/corruption.py).
COUNT = "zero negative frac bool"
NONNEG = "negative frac bool"
STEP = "zero negative nan inf str"
PROB = "zero above1 negative nan str"
EFN = "efn_nan efn_shape"
SEQ = "seq1 empty seqstr"


@dataclass(frozen=True)
class Entry:
    """A registry entry: the valid call, the target check, and which checks apply.

    ``steps`` names the argument that counts steps, sweeps or rounds (the host-read check of
    tests/test_device_following.py runs it at two values); ``random`` says that another seed must give
    another output.
    """

    spec: Spec
    target: Callable[[], None]
    random: bool = True
    steps: str | None = None


# ---------------------------------------------------------------------------------------------------------
# Small valid inputs
# ---------------------------------------------------------------------------------------------------------
def _bits(dt: torch.dtype, n: int = 6) -> Tensor:
    return torch.randint(0, 2, (n, D_BITS)).to(dt)


def _one_hots(dt: torch.dtype, n: int = 6) -> Tensor:
    return labels_to_one_hot(torch.stack([torch.randint(0, k, (n,)) for k in SIZES], 1), SIZES, dtype=dt)


def _rows(dt: torch.dtype, n: int = 6) -> Tensor:
    codes = torch.stack([torch.randint(0, k, (n,)) for k in N_CLASSES], 1).to(dt)
    return torch.cat([torch.randn(n, 1, dtype=dt), codes], 1)


def _joint(dt: torch.dtype, n: int = 6) -> Tensor:
    return torch.cat([torch.randn(n, 1, dtype=dt), _one_hots(dt, n)], 1)


def _draws(n: int, *, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | None = None,
           bits: bool = False) -> Tensor:
    """A buffer's ``init_fn``: ``n`` normal (or 0/1) draws on the device captured when the buffer was built."""
    device = torch.get_default_device() if device is None else device
    if bits:
        return torch.randint(0, 2, (n, *shape), device=device).to(dtype)
    return torch.randn(n, *shape, dtype=dtype, device=device)


def _joint_missing(dt: torch.dtype) -> Tensor:
    z = _joint(dt)
    z[:3, 3:] = 0  # block 1 unobserved in three rows
    return z


def _joint_energy(z: Tensor) -> Tensor:
    """``E(x, y) = (x - m·y)²/2 + cat_energy(y)``: ``x | y`` Gaussian with a label-dependent mean."""
    means = torch.tensor([0.0, 1.0, -0.5, 0.5, 1.5], dtype=z.dtype, device=z.device)
    x, y = z[:, 0], z[:, 1:]
    return (x - y @ means) ** 2 / 2 + cat_energy(y)


def _flow(dt: torch.dtype, base_std: float = math.sqrt(S2)) -> RealNVP:
    return RealNVP(2, n_layers=2, hidden_dims=(8,), base_std=base_std).to(dt)


def _ed_energy(dt: torch.dtype) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0)).to(dt)


def _mixed_energy(dt: torch.dtype) -> Callable[[Tensor], Tensor]:
    net = torch.nn.Linear(3, 1).to(dt)
    return lambda rows: net(rows).squeeze(1)


# ---------------------------------------------------------------------------------------------------------
# Targets of the samplers
# ---------------------------------------------------------------------------------------------------------
def _target_binary(sampler: Callable[[Tensor], Tensor]) -> None:
    """From all chains at 000, the law after the given number of moves matches the enumerated target (the
    counts were chosen to mix to within TV 1e-6 on this 8-state space)."""
    x = sampler(torch.zeros(N, D_BITS, dtype=F64))
    assert_law(bit_index(x), BIT_PROBS)


def target_gibbs_binary() -> None:
    for order in S.GIBBS_ORDERS:
        _target_binary(partial(S.gibbs_binary, bit_energy, n_sweeps=8, order=order))


def target_gibbs_random_site() -> None:
    _target_binary(partial(S.gibbs_random_site, bit_energy, n_steps=60))


def target_gwg_binary() -> None:
    _target_binary(lambda x: S.gwg_binary(bit_energy, x, 60)[0])


def _check_rate_keeping_sampler(sampler: Callable, function: Callable) -> None:
    """Started from exact draws of the enumerated law, the sampler's moves leave that law (invariance); the
    states and the kept acceptance rates are ``function``'s bit for bit under the same seed."""
    assert sampler.acceptance_rate is None
    x0 = exact_bits(N)
    torch.manual_seed(7)
    x = sampler(bit_energy, x0)
    assert_law(bit_index(x), BIT_PROBS)
    torch.manual_seed(7)
    expected, rate = function(bit_energy, x0)
    assert torch.equal(x, expected) and torch.equal(sampler.acceptance_rate, rate)
    assert sampler.acceptance_rate.shape == (N,)


def target_gwg_binary_sampler() -> None:
    """10 Gibbs-with-Gradients moves, as :func:`gwg_binary` makes them."""
    _check_rate_keeping_sampler(S.GWGBinarySampler(n_steps=10), partial(S.gwg_binary, n_steps=10))


def target_discrete_langevin_binary() -> None:
    """DMALA (with the Metropolis–Hastings test) reaches the enumerated law; DULA's own law is checked in
    tests/test_samplers.py against its closed form on independent bits."""
    _target_binary(lambda x: S.discrete_langevin_binary(bit_energy, x, 60, step_size=0.5, metropolis=True)[0])


def target_discrete_langevin_sampler() -> None:
    """10 DMALA moves, as :func:`discrete_langevin_binary` makes them."""
    _check_rate_keeping_sampler(S.DiscreteLangevinSampler(n_steps=10, step_size=0.5, metropolis=True),
                                partial(S.discrete_langevin_binary, n_steps=10, step_size=0.5, metropolis=True))


def target_langevin_flip_logits() -> None:
    """For a linear energy the first-order change is exact: the flip logit is minus half the enumerated energy
    change of flipping that bit, minus 1/(2α)."""
    b = torch.tensor([0.3, -1.2, 0.8], dtype=F64)
    x = BITS
    flipped = torch.stack([S.flip_bits(x, torch.full((8,), i)) for i in range(3)], 1)  # (8, 3, 3)
    change = flipped @ b - (x @ b)[:, None]
    torch.testing.assert_close(S.langevin_flip_logits(x, b.expand(8, 3), 0.25), -0.5 * change - 2.0)


def target_gibbs_within_nodes() -> None:
    """Graphs on 3 nodes have the 3 bits of the binary target; graphs on 2 nodes only bit (0, 1), whose
    conditional given the other two bits at 0 is a Bernoulli."""
    counts = torch.tensor([3, 2]).repeat(N // 2)
    x = S.gibbs_within_nodes(bit_energy, torch.zeros(N, 3, dtype=F64), counts, 8)
    assert_law(bit_index(x[counts == 3]), BIT_PROBS)
    small = x[counts == 2]
    assert (small[:, 1:] == 0).all()
    p_on = BIT_PROBS[4] / (BIT_PROBS[0] + BIT_PROBS[4])
    assert_law(small[:, 0].long(), torch.stack([1 - p_on, p_on]))


def target_flip_bits() -> None:
    x = torch.randint(0, 2, (50, 5)).double()
    index = torch.randint(5, (50,))
    out = S.flip_bits(x, index)
    expected = x.clone()
    expected[torch.arange(50), index] = 1 - x[torch.arange(50), index]
    assert torch.equal(out, expected)


def target_flip_log_proposal() -> None:
    """For a linear energy the first-order estimate is exact: ``log q`` is the log-softmax of the enumerated
    energy changes ``E(x) - E(x with bit i flipped)`` over the temperature."""
    b = torch.tensor([0.3, -1.2, 0.8], dtype=F64)
    x = BITS
    flipped = torch.stack([S.flip_bits(x, torch.full((8,), i)) for i in range(3)], 1)  # (8, 3, 3)
    exact = (x @ b)[:, None] - flipped @ b
    for temperature in (2.0, 0.5):
        expected = torch.log_softmax(-exact / temperature, 1)
        torch.testing.assert_close(S.flip_log_proposal(x, -b.expand(8, 3), temperature), expected)


def target_metropolis_accept() -> None:
    values = torch.tensor([-math.inf, -2.0, -0.5, 0.0, 1.0], dtype=F64)
    accepted = S.metropolis_accept(values.repeat(N))
    for k, a in enumerate(values.tolist()):
        assert_rate(accepted[k::5], min(1.0, math.exp(a)), f"log alpha = {a}")


def target_sample_categorical() -> None:
    probs = torch.tensor([0.5, 0.0, 0.2, 0.3], dtype=F64)
    assert_law(S.sample_categorical(probs.log().expand(N, 4)), probs)


def target_select_rows() -> None:
    accepted = torch.tensor([True, False, True])
    proposal, current = torch.ones(3, 2, 2), torch.zeros(3, 2, 2)
    out = S.select_rows(accepted, proposal, current)
    assert torch.equal(out, accepted.float().view(3, 1, 1).expand(3, 2, 2))


def _linear_one_hot_energy(y: Tensor) -> Tensor:
    return -y @ torch.tensor([0.2, -0.4, 1.0, 0.1, -0.7], dtype=y.dtype, device=y.device)


def target_categorical_log_proposal() -> None:
    """For a linear energy ``d_ak`` is the exact change of ``-E`` when attribute ``a`` moves to class ``k``;
    ``q = softmax(d/τ)`` over the moves of free blocks, enumerated here move by move."""
    y = ONE_HOTS
    index = block_index(SIZES)
    grad = torch.autograd.functional.jacobian(lambda v: _linear_one_hot_energy(v).sum(), y)
    free = free_columns(torch.tensor([False, False]), index, 2, 6, y.device)
    log_q, movable = S.categorical_log_proposal(y, grad, index, free, 2.0)
    for s in range(6):
        logits = torch.full((5,), -math.inf, dtype=F64)
        for col in range(5):
            if y[s, col] == 0:
                moved = y[s].clone()
                moved[index == index[col]] = 0
                moved[col] = 1
                logits[col] = (_linear_one_hot_energy(y[s : s + 1]) - _linear_one_hot_energy(moved[None]))[0] / 2
        torch.testing.assert_close(log_q[s], torch.log_softmax(logits, 0))
    assert movable.all()


def target_gwg_categorical_step() -> None:
    index = block_index(SIZES)
    free = free_columns(None, index, 2, N, "cpu")
    y = labels_to_one_hot(torch.zeros(N, 2, dtype=torch.long), SIZES, dtype=F64)
    for _ in range(40):
        y, _, finite, _ = S.gwg_categorical_step(cat_energy, y, index, free, 2.0)
    assert finite and bool(S.all_finite(y))
    assert_law(config_index(y), CAT_PROBS)


def target_gwg_categorical() -> None:
    y0 = labels_to_one_hot(torch.zeros(N, 2, dtype=torch.long), SIZES, dtype=F64)
    y, acceptance = S.gwg_categorical(cat_energy, y0, SIZES, n_steps=40)
    assert_law(config_index(y), CAT_PROBS)
    # Clamping block 0 at class 1 leaves the conditional of block 1.
    y1 = labels_to_one_hot(torch.tensor([[1, 0]]).expand(N, 2), SIZES, dtype=F64)
    y, _ = S.gwg_categorical(cat_energy, y1, SIZES, n_steps=20, clamp=torch.tensor([True, False]))
    assert (y[:, 1] == 1).all()
    assert_law(config_index(y) - 3, CAT_PROBS[3:] / CAT_PROBS[3:].sum())


def target_gibbs_categorical() -> None:
    rows = torch.zeros(N, 3, dtype=F64)
    rows[:, 0] = 0.7  # the numeric column stays fixed: the target is p(c1, c2 | x = 0.7)
    out = S.gibbs_categorical(code_energy, rows, N_CLASSES, 6, n_numeric=1)
    assert (out[:, 0] == 0.7).all()
    assert_law(out[:, 1].long() * 2 + out[:, 2].long(), code_probs_given(0.7))


def target_gibbs_categorical_sweep() -> None:
    rows = torch.zeros(N, 3, dtype=F64)
    rows[:, 0] = -0.4
    for _ in range(6):
        rows, finite = S.gibbs_categorical_sweep(code_energy, rows, N_CLASSES, n_numeric=1)
        assert finite.dtype == torch.bool and finite
    assert (rows[:, 0] == -0.4).all()
    assert_law(rows[:, 1].long() * 2 + rows[:, 2].long(), code_probs_given(-0.4))


def target_langevin_update() -> None:
    x, grad = torch.randn(N, 2, dtype=F64), torch.randn(N, 2, dtype=F64)
    torch.testing.assert_close(S.langevin_update(x, grad, 0.1, 0.0), x - 0.1 * grad, rtol=0, atol=1e-15)
    assert S.langevin_update(x, grad, 0.1, 0.0, (-0.2, 0.3)).aminmax() == (torch.tensor(-0.2, dtype=F64),
                                                                          torch.tensor(0.3, dtype=F64))
    moved = S.langevin_update(torch.zeros(N, 2, dtype=F64), torch.ones(N, 2, dtype=F64), 0.1, 0.5)
    assert_gaussian(moved, -0.1, 0.25)


def target_langevin() -> None:
    """ULA on ``N(μ, s²)`` is a linear Gaussian recursion: its law after ``n`` steps is exact, with the
    temperature dividing the drift and the noise ``√(2h)`` (or ``noise_scale``)."""
    x0 = torch.zeros(N, 2, dtype=F64)
    for kwargs in (dict(temperature=2.0), dict(noise_scale=0.3)):
        x = S.langevin(gauss_energy, x0, n_steps=12, step_size=0.1, **kwargs)
        noise = kwargs.get("noise_scale", math.sqrt(0.2)) ** 2
        assert_gaussian(x, *ula_moments(0.0, MU, S2, 0.1, 12, temperature=kwargs.get("temperature", 1.0),
                                        noise_var=noise))


def target_langevin_trajectory() -> None:
    """Every recorded step ``t`` has the exact law of ULA on ``N(μ, s²)`` after ``t`` steps, and under one seed
    the trajectory equals the states of ``t`` successive one-step calls of :func:`langevin` bit for bit."""
    x0 = torch.zeros(N, 2, dtype=F64)
    states = S.langevin_trajectory(gauss_energy, x0, n_steps=12, step_size=0.1, temperature=2.0,
                                   record_steps=[3, 12])
    assert states.shape == (2, N, 2)
    for row, t in zip(states, (3, 12)):
        assert_gaussian(row, *ula_moments(0.0, MU, S2, 0.1, t, temperature=2.0))
    torch.manual_seed(3)
    every = S.langevin_trajectory(gauss_energy, x0[:50], n_steps=4, step_size=0.1, noise_scale=0.3,
                                  clamp=(-1.0, 1.0))
    torch.manual_seed(3)
    x, expected = x0[:50], []
    for _ in range(4):
        x = S.langevin(gauss_energy, x, n_steps=1, step_size=0.1, noise_scale=0.3, clamp=(-1.0, 1.0))
        expected.append(x)
    assert torch.equal(every, torch.stack(expected))


def _centred_draws(n: int = N) -> Tensor:
    return math.sqrt(S2) * torch.randn(n, 2, dtype=F64)


def target_mala_step() -> None:
    x = _centred_draws()
    energy, grad = centred_energy(x), x / S2
    accepted = []
    for _ in range(3):
        x, energy, grad, acc = S.mala_step(centred_energy, x, energy, grad, torch.tensor(0.4, dtype=F64))
        accepted.append(acc)
    assert_gaussian(x, 0.0, S2)
    torch.testing.assert_close(energy, centred_energy(x))
    assert_mala_acceptance(torch.stack(accepted, 1).double().mean(1), 0.4, S2, 2)


def target_adapt_step_size() -> None:
    h = torch.tensor(0.1, dtype=F64)
    for rate, expected in ((0.9, 0.105), (0.5, 0.1 / 1.05), (0.75, 0.1)):
        accepted = torch.arange(100) < 100 * rate
        torch.testing.assert_close(S.adapt_step_size(h, accepted, 0.75, 1.05, 0.03), torch.tensor(expected, dtype=F64))


def target_mala() -> None:
    """At stationarity the law stays ``N(0, s²)`` and the acceptance equals the exact expectation; without the
    Metropolis correction (or with another proposal variance) the acceptance differs."""
    result = S.mala(centred_energy, _centred_draws(), n_steps=4, step_size=0.4)
    assert_gaussian(result.x, 0.0, S2)
    assert_mala_acceptance(result.acceptance, 0.4, S2, 2)
    # With a tiny step nearly every proposal is accepted (mean > 0.63), so each step multiplies h by 1.05.
    adapted = S.mala(centred_energy, _centred_draws(), n_steps=60, step_size=1e-3, target_accept=0.6)
    assert adapted.step_size == pytest.approx(1e-3 * 1.05**60, rel=1e-9)


def target_label_energy() -> None:
    x, y = torch.randn(4, 1, dtype=F64), _one_hots(F64, 8)
    expected = _joint_energy(torch.cat([x.repeat_interleave(2, 0), y], 1))
    assert torch.equal(S.label_energy(_joint_energy, x)(y), expected)


def _assert_mwg(sample: Callable[..., Tensor]) -> None:
    """GwG on ``y | x`` (``update_x=False``) leaves the enumerated conditional; Langevin on ``x | y`` (every block
    clamped) has the exact law of a Gaussian chain."""
    x = torch.full((N, 1), 0.8, dtype=F64)
    z0 = torch.cat([x, labels_to_one_hot(torch.zeros(N, 2, dtype=torch.long), SIZES, dtype=F64)], 1)
    z = sample(_joint_energy, z0, update_x=False, n_steps=40)
    assert torch.equal(z[:, :1], x)
    means = torch.tensor([0.0, 1.0, -0.5, 0.5, 1.5], dtype=F64)
    conditional = torch.softmax(-((0.8 - ONE_HOTS @ means) ** 2 / 2 + cat_energy(ONE_HOTS)), 0)
    assert_law(config_index(z[:, 1:]), conditional)
    z = sample(_joint_energy, z0, clamp=torch.tensor([True, True]), n_steps=10)
    mean_y = (z0[0, 1:] @ means).item()
    assert_gaussian(z[:, :1], *ula_moments(0.8, mean_y, 1.0, 0.05, 10))


def target_mwg_joint() -> None:
    _assert_mwg(partial(S.mwg_joint, x_dim=1, block_sizes=SIZES, step_size=0.05, temperature=1.0))


def target_mwg_sampler() -> None:
    sampler = S.MWGSampler(1, SIZES, n_steps=3, step_size=0.05, temperature=1.0)
    _assert_mwg(lambda energy, z, n_steps, **kw: sampler(energy, z, n_steps=n_steps, **kw))


def target_joint_noise() -> None:
    """``x`` uniform on ``[low, high]`` (variance ``w²/12``, fourth central moment ``w⁴/80``), each block
    categorical with its probabilities."""
    low, high = torch.tensor([-1.0, 0.0], dtype=F64), torch.tensor([1.0, 3.0], dtype=F64)
    probs = [torch.tensor([0.3, 0.7], dtype=F64), torch.tensor([0.2, 0.5, 0.3], dtype=F64)]
    z = S.JointNoise(low, high, probs)(N)
    width = high - low
    assert ((z[:, :2] >= low) & (z[:, :2] <= high)).all()
    assert_close_se(z[:, :2].mean(0), (low + high) / 2, (width**2 / 12 / N).sqrt())
    var_se = ((width**4 / 80 - width**4 / 144) / N).sqrt()
    assert_close_se(z[:, :2].var(0), width**2 / 12, var_se)
    assert_law(config_index(z[:, 2:]), (probs[0][:, None] * probs[1][None]).reshape(-1))


def target_impute_missing() -> None:
    """Missing blocks are drawn from ``p(y_miss | x, y_obs)``; observed ones never change."""
    x = torch.full((N, 1), 0.8, dtype=F64)
    y = labels_to_one_hot(torch.tensor([[1, 0]]).expand(N, 2), SIZES, dtype=F64)
    y[:, 2:] = 0  # block 1 unobserved
    noise = S.JointNoise(torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64),
                         [torch.full((2,), 0.5, dtype=F64), torch.full((3,), 1 / 3, dtype=F64)])
    z = S.impute_missing(_joint_energy, torch.cat([x, y], 1), noise, n_steps=20)
    assert (z[:, 2] == 1).all() and torch.equal(z[:, :1], x)
    means = torch.tensor([0.0, 1.0, -0.5, 0.5, 1.5], dtype=F64)
    energies = (0.8 - ONE_HOTS @ means) ** 2 / 2 + cat_energy(ONE_HOTS)
    assert_law(config_index(z[:, 1:]) - 3, torch.softmax(-energies[3:], 0))


def _independent_energy(rows: Tensor) -> Tensor:
    """``(x - μ)²/(2s²) + T[c1, c2]``: ``x`` independent of the codes, so both laws are exact (see below)."""
    x, c1, c2 = rows[:, 0], rows[:, 1].long(), rows[:, 2].long()
    table = torch.tensor([[0.0, 1.0], [0.5, -0.5], [1.0, 0.2]], dtype=rows.dtype, device=rows.device)
    return (x - 0.5) ** 2 / (2 * S2) + table[c1, c2]


def target_langevin_gibbs() -> None:
    """With ``x`` independent of the codes, ``x`` follows the exact ULA recursion and the codes the
    enumerated table after a few sweeps (a Gibbs sweep over two columns mixes geometrically)."""
    rows = torch.zeros(N, 3, dtype=F64)
    out = S.langevin_gibbs(_independent_energy, rows, N_CLASSES, n_numeric=1, n_rounds=15, step_size=0.05)
    assert_gaussian(out[:, :1], *ula_moments(0.0, 0.5, S2, 0.05, 15))
    table = torch.tensor([[0.0, 1.0], [0.5, -0.5], [1.0, 0.2]], dtype=F64)
    assert_law(out[:, 1].long() * 2 + out[:, 2].long(), torch.softmax(-table.reshape(-1), 0))


def target_isir_step() -> None:
    """With the flow equal to the target all weights are equal: a chain moves with probability ``(N-1)/N``,
    so after two steps from a point ``1/N²`` of the chains are still there and the others follow the target.
    With another proposal the target stays invariant."""
    flow = _flow(F64)
    x = torch.full((N, 2), 0.3, dtype=F64)
    moves = []
    for _ in range(2):
        x, moved = S.isir_step(centred_energy, x, flow, 4)
        moves.append(moved)
    assert_rate(moves[0], 3 / 4, "first move")
    at_start = (x == 0.3).all(1)
    assert_rate(at_start, 1 / 16, "never moved")
    assert_gaussian(x[~at_start], 0.0, S2)
    wide = _flow(F64, base_std=1.5)
    x = _centred_draws()
    for _ in range(3):
        x, _ = S.isir_step(centred_energy, x, wide, 4)
    assert_gaussian(x, 0.0, S2)


def target_flowmc() -> None:
    result = S.flowmc(centred_energy, _centred_draws(), _flow(F64), n_steps=6, n_local=2, n_particles=4,
                      step_size=0.4, record_steps=[3, 6])
    assert_gaussian(result.x, 0.0, S2)
    assert result.samples.shape == (2, N, 2) and torch.equal(result.samples[1], result.x)
    # Two global moves over N chains, each moving with probability 3/4; correlated at worst: SE over N chains.
    assert_close_se(result.global_acceptance, 0.75, math.sqrt(0.75 * 0.25 / N), "global acceptance")
    alpha, mc_se = mala_acceptance(0.4, S2, 2)
    assert_close_se(result.local_acceptance, alpha, math.sqrt(alpha * (1 - alpha) / N) + mc_se, "local acceptance")


def target_latent_energy() -> None:
    flow = AffineMap(2.0, torch.tensor([1.0, -1.0], dtype=F64))
    z = torch.randn(5, 2, dtype=F64)
    expected = gauss_energy(2.0 * z + torch.tensor([1.0, -1.0], dtype=F64)) - 2 * math.log(2.0)
    torch.testing.assert_close(S.latent_energy(gauss_energy, flow)(z), expected)


def target_latent_mala() -> None:
    """Through ``T(z) = a z + b`` the latent target is ``N((μ - b)/a, s²/a²)``; MALA leaves it invariant and
    accepts at the exact rate of MALA on that Gaussian."""
    b = torch.tensor([1.0, -1.0], dtype=F64)
    z0 = (MU - b) / 2 + math.sqrt(S2) / 2 * torch.randn(N, 2, dtype=F64)
    x, result = S.latent_mala(gauss_energy, AffineMap(2.0, b), z0, n_steps=4, step_size=0.1, target_accept=None)
    assert_gaussian(x, MU, S2)
    torch.testing.assert_close(x, 2 * result.x + b)
    assert_mala_acceptance(result.acceptance, 0.1, S2 / 4, 2)


def target_ode_sample() -> None:
    """The gradient flow of ``|x - μ|²/(2s²)`` is ``x_T = μ + (x_0 - μ) e^{-T/s²}``."""
    x0 = torch.randn(20, 2, dtype=F64)
    expected = MU + (x0 - MU) * math.exp(-0.3 / S2)
    torch.testing.assert_close(S.ode_sample(gauss_energy, x0, T=0.3, rtol=1e-9, atol=1e-9), expected)
    fixed = S.ode_sample(gauss_energy, x0, T=0.3, method="rk4", step_size=0.03)
    torch.testing.assert_close(fixed, expected, rtol=1e-6, atol=1e-6)


def target_euler_sample() -> None:
    """``x_K = μ + (1 - h/s²)^K (x_0 - μ)``; with ``create_graph`` the θ-derivative of the unrolled path of
    ``θ|x|²/2`` is ``-hK(1 - hθ)^{K-1} x_0``."""
    x0 = torch.randn(20, 2, dtype=F64)
    expected = MU + (1 - 0.1 / S2) ** 7 * (x0 - MU)
    torch.testing.assert_close(S.euler_sample(gauss_energy, x0, n_steps=7, step_size=0.1), expected)
    energy = ScaledQuadratic(1.3)
    x_k = S.euler_sample(energy, x0, n_steps=5, step_size=0.1, create_graph=True)
    (grad,) = torch.autograd.grad(x_k.sum(), energy.theta)
    torch.testing.assert_close(grad, (-0.1 * 5 * (1 - 0.13) ** 4 * x0).sum())


def target_noisy_sample() -> None:
    x = S.noisy_sample(gauss_energy, torch.zeros(N, 2, dtype=F64), n_steps=10, step_size=0.1, noise_scale=0.2)
    assert_gaussian(x, *ula_moments(0.0, MU, S2, 0.1, 10, noise_var=0.04))


_A = torch.tensor([[2.0, 0.5, 0.0], [0.3, 1.0, -0.4], [0.0, 0.2, 3.0]], dtype=F64)


def _quadratic_form(x: Tensor) -> Tensor:
    return 0.5 * ((x @ _A.to(x)) * x).sum(-1)


def target_hessian_trace() -> None:
    x = torch.randn(7, 3, dtype=F64)
    grad, trace = S.hessian_trace(_quadratic_form, x)
    torch.testing.assert_close(grad, x @ ((_A + _A.T) / 2))
    torch.testing.assert_close(trace, torch.full((7,), 6.0, dtype=F64))


def target_hutchinson_trace() -> None:
    x, v = torch.randn(7, 3, dtype=F64), torch.randn(7, 3, dtype=F64)
    grad, estimate = S.hutchinson_trace(_quadratic_form, x, v)
    torch.testing.assert_close(grad, x @ ((_A + _A.T) / 2))
    torch.testing.assert_close(estimate, ((v @ ((_A + _A.T) / 2)) * v).sum(1))


def target_standard_normal_log_prob() -> None:
    x = torch.randn(5, 2, 3, dtype=F64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum((1, 2))
    torch.testing.assert_close(S.standard_normal_log_prob(x), expected)
    torch.testing.assert_close(S.standard_normal_log_prob(x[:, 0, 0]), torch.distributions.Normal(0.0, 1.0)
                               .log_prob(x[:, 0, 0]))


def target_flow_log_prob() -> None:
    """The ODE flow of ``θ|x|²/2`` from ``N(0, I)`` is ``x = x_0 e^{-θT}``, so ``p_T = N(0, e^{-2θT} I)``; both
    trace estimators are exact for this isotropic energy."""
    x = torch.randn(6, 2, dtype=F64)
    expected = torch.distributions.Normal(0.0, math.exp(-0.5 * 0.2)).log_prob(x).sum(1)
    for trace in ("exact", "hutchinson"):
        log_p, x0 = S.flow_log_prob(ScaledQuadratic(0.5), x, T=0.2, rtol=1e-9, atol=1e-9, trace=trace)
        torch.testing.assert_close(log_p.detach(), expected)
        torch.testing.assert_close(x0.detach(), x * math.exp(0.5 * 0.2))


def target_replay_buffer() -> None:
    """Drawn indices are distinct and uniform over the buffer; a fraction ``reinit_prob`` is re-initialised."""
    buffer = S.ReplayBuffer(lambda n: torch.randn(n, 2, dtype=F64), capacity=8, reinit_prob=0.3)
    buffer.update(torch.arange(8), torch.zeros(8, 2, dtype=F64))
    indices, fresh = [], []
    for _ in range(N // 3):
        states, index = buffer.sample(3)
        assert index.unique().numel() == 3
        indices.append(index)
        fresh.append((states != 0).any(1))
    # The 3 indices of one draw are dependent (without replacement), which only shrinks the chi-square.
    assert_law(torch.cat(indices), torch.full((8,), 1 / 8, dtype=F64))
    assert_rate(torch.cat(fresh), 0.3, "re-initialised")
    buffer.update(torch.tensor([2]), torch.ones(1, 2, dtype=F64))
    assert torch.equal(buffer.states[2], torch.ones(2, dtype=F64))


# ---------------------------------------------------------------------------------------------------------
# Targets of the losses: exact values and gradients by enumeration
# ---------------------------------------------------------------------------------------------------------
def _grads(loss: Tensor, module: torch.nn.Module) -> Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(module.parameters()))])


def _per_state_grads(module: torch.nn.Module, states: Tensor) -> Tensor:
    """``∇_θ E(s)`` for every state, ``(S, P)``."""
    return torch.stack([_grads(module(s[None]).sum(), module) for s in states])


def _assert_ml_gradient(loss_fn: Callable[[torch.nn.Module, Tensor], Tensor], n_neg: int) -> None:
    """The θ-gradient of a contrastive loss with ``n_neg`` exact negatives estimates the likelihood gradient
    ``mean ∇E(x⁺) - E_p[∇E]``, enumerated over the 8 states; its SE is ``sqrt(Var_p(∇E) / n_neg)``."""
    model = BitEnergy()
    x_pos = BITS[torch.tensor([0, 3, 5, 5, 6, 7])]
    per_state = _per_state_grads(model, BITS).detach()
    exact = per_state[bit_index(x_pos)].mean(0) - BIT_PROBS @ per_state
    se = ((BIT_PROBS @ per_state**2 - (BIT_PROBS @ per_state) ** 2) / n_neg).sqrt() + 1e-12
    assert_close_se(_grads(loss_fn(model, x_pos), model), exact, se, "likelihood gradient")


def target_contrastive_divergence() -> None:
    _assert_ml_gradient(lambda model, x: L.contrastive_divergence(model, x, exact_bits(N))[0], N)
    # The energy-magnitude term adds α(mean E(x⁺)² + mean E(x⁻)²), checked on fixed negatives.
    model, x_pos, x_neg = BitEnergy(), BITS[:4], BITS[4:]
    loss, _ = L.contrastive_divergence(model, x_pos, x_neg, l2_reg=0.1)
    e_pos, e_neg = bit_energy(x_pos), bit_energy(x_neg)
    expected = e_pos.mean() - e_neg.mean() + 0.1 * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    torch.testing.assert_close(loss, expected)


def target_persistent_contrastive_divergence() -> None:
    """With a buffer of exact draws (fresh ones exact too) and an invariant sampler, the negatives stay exact."""
    buffer = S.ReplayBuffer(exact_bits, capacity=N, reinit_prob=0.05)
    pcd = L.PersistentContrastiveDivergence(buffer, partial(S.gibbs_binary, n_sweeps=1), n_negatives=N)
    _assert_ml_gradient(lambda model, x: pcd(model, x)[0], N)


def _exact_rm(energy: Callable[[Tensor], Tensor], x: Tensor, allowed: Tensor | None = None) -> Tensor:
    """``Σ_i (p(x_{-i}) / p(x))²`` per row from the enumerated energies of all states (no log-space tricks)."""
    energies = energy(BITS)
    probs = torch.exp(-energies) / torch.exp(-energies).sum()
    terms = []
    for i in range(x.shape[1]):
        flipped = x.clone()
        flipped[:, i] = 1 - flipped[:, i]
        terms.append((probs[bit_index(flipped)] / probs[bit_index(x)]) ** 2)
    terms = torch.stack(terms, 1)
    return (terms if allowed is None else terms * allowed).sum(1)


def target_ratio_matching() -> None:
    model, x = BitEnergy(), BITS[torch.tensor([0, 1, 5, 7, 7])]
    for chunk_size in (None, 4):
        loss, _ = L.ratio_matching(model, x, chunk_size=chunk_size)
        exact = _exact_rm(model, x).mean()
        torch.testing.assert_close(loss, exact)
        torch.testing.assert_close(_grads(loss, model), _grads(exact, model))


def _linear_bits(x: Tensor) -> Tensor:
    return x @ torch.tensor([0.4, -0.9, 1.3], dtype=x.dtype, device=x.device)


def target_rmwggis_proposal() -> None:
    """For a linear energy the gradient proposal is the optimal ``n*_i ∝ (p(x_{-i})/p(x))²`` (Theorem 1)."""
    energy, log_q = L.rmwggis_proposal(_linear_bits, BITS)
    torch.testing.assert_close(energy, _linear_bits(BITS))
    terms = torch.stack([_exact_rm(_linear_bits, BITS, torch.eye(3, dtype=F64)[i]) for i in range(3)], 1)
    torch.testing.assert_close(log_q.exp(), terms / terms.sum(1, keepdim=True))
    _, log_uniform = L.rmwggis_proposal(_linear_bits, BITS, proposal="uniform")
    torch.testing.assert_close(log_uniform, torch.full((8, 3), -math.log(3), dtype=F64))


def target_rmwggis() -> None:
    """Linear energy: the optimal proposal makes every unbiased estimate exact. Quadratic energy: the unbiased
    estimate averages to ``J`` and the biased one to ``s Σ_i ñ_i f_i``, both enumerated; SEs from the
    per-point estimates."""
    loss, _ = L.rmwggis(_linear_bits, BITS, n_samples=2)
    torch.testing.assert_close(loss, _exact_rm(_linear_bits, BITS).mean())
    x = BITS.repeat(N // 8, 1)
    # ñ written out: ∇E = -2Wx - b, d̃ = (2x - 1) ⊙ ∇E, ñ = softmax(2 d̃).
    proposal = torch.softmax(2 * (2 * BITS - 1) * (-2 * BITS @ BIT_W - BIT_B), 1)
    f = torch.stack([_exact_rm(bit_energy, BITS, torch.eye(3, dtype=F64)[i]) for i in range(3)], 1)
    for estimator in L.RM_ESTIMATORS:
        loss, _ = L.rmwggis(bit_energy, x, n_samples=3, estimator=estimator)
        # Per point the estimate is a sum of 3 i.i.d. terms h: f/(3ñ) (unbiased, mean J/3) or f (biased).
        h = f / (3 * proposal) if estimator == "unbiased" else f
        expected = 3 * (proposal * h).sum(1)
        var = 3 * ((proposal * h**2).sum(1) - (proposal * h).sum(1) ** 2)
        assert_close_se(loss, expected.mean(), (var.mean() / len(x)).sqrt(), estimator)


def target_ratio_matching_within_nodes() -> None:
    """Only flips inside each graph's node set count; with ``n_samples >= P_b`` the sum is exact too."""
    x = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=F64)
    counts = torch.tensor([3, 2, 3])
    allowed = node_pair_mask(counts, 3).to(F64)
    exact = _exact_rm(bit_energy, x, allowed).mean()
    torch.testing.assert_close(L.ratio_matching_within_nodes(bit_energy, x, counts)[0], exact)
    torch.testing.assert_close(L.ratio_matching_within_nodes(bit_energy, x, counts, n_samples=3)[0], exact)


def target_discrepancy_from_energies() -> None:
    e_pos, e_neg = torch.randn(5, dtype=F64), torch.randn(5, 4, dtype=F64)
    for w in (0.0, 1.0, 2.5):
        direct = torch.log(w + torch.exp(e_pos[:, None] - e_neg).sum(1))
        torch.testing.assert_close(L.discrepancy_from_energies(e_pos, e_neg, w=w, reduction="none"), direct)
        torch.testing.assert_close(L.discrepancy_from_energies(e_pos, e_neg, w=w), direct.mean())


def _ed_moments(w: float, epsilon: float = 0.2) -> tuple[Tensor, Tensor]:
    """Mean and variance of one data point's loss ``log(w + e^{v_1} + e^{v_2})`` with two negatives,
    enumerated exactly: ``y ~ q(·|x)``, then ``x'_1, x'_2 ~ q(·|y)`` independently, ``v_j = E(x) - E(x'_j)``."""
    q = L.BernoulliPerturbation(epsilon, dim=3).transition_matrix()
    energies = bit_energy(BITS)
    v = energies[:, None] - energies[None, :]  # (x, x')
    # loss[x, a, b] for negatives a, b; weight[x, a, b] = Σ_y q(y|x) q(a|y) q(b|y).
    loss = torch.log(w + v.exp()[:, :, None] + v.exp()[:, None, :])
    weight = torch.einsum("xy,ya,yb->xab", q, q, q)
    mean = (weight * loss).sum((1, 2))
    return mean, (weight * loss**2).sum((1, 2)) - mean**2


def target_energy_discrepancy() -> None:
    x = BITS.repeat(N // 8, 1)
    mean, var = _ed_moments(1.0)
    loss, _ = L.energy_discrepancy(bit_energy, x, L.BernoulliPerturbation(0.2), n_negatives=2, w=1.0)
    assert_close_se(loss, mean.mean(), (var.mean() / len(x)).sqrt(), "energy discrepancy")


def target_energy_discrepancy_class() -> None:
    x = BITS.repeat(N // 8, 1)
    mean, var = _ed_moments(0.0)
    loss, _ = L.EnergyDiscrepancy(L.BernoulliPerturbation(0.2, dim=3), n_negatives=2, w=0.0)(bit_energy, x)
    assert_close_se(loss, mean.mean(), (var.mean() / len(x)).sqrt(), "energy discrepancy")


def target_exact_energy_discrepancy() -> None:
    """Against the formula written as loops, and the paper's theorem: for symmetric ``q`` the data's own
    energy ``-log p_data`` minimises the functional."""
    q = L.BernoulliPerturbation(0.2, dim=3).transition_matrix()
    energies, data = bit_energy(BITS), torch.softmax(torch.randn(8, dtype=F64), 0)
    loops = 0.0
    for x in range(8):
        inner = sum(q[x, y] * math.log(sum(q[xp, y] * math.exp(-energies[xp]) for xp in range(8))) for y in range(8))
        loops += data[x] * (energies[x] + inner)
    torch.testing.assert_close(L.exact_energy_discrepancy(energies, data, q), torch.as_tensor(loops, dtype=F64))
    best = L.exact_energy_discrepancy(-data.log(), data, q)
    for _ in range(5):
        assert best < L.exact_energy_discrepancy(-data.log() + 0.3 * torch.randn(8, dtype=F64), data, q)


def target_enumerate_states() -> None:
    states = L.enumerate_states((2, 3))
    assert states.tolist() == [[a, b] for a in range(2) for b in range(3)]


def target_product_matrix() -> None:
    a, b = torch.rand(2, 2, dtype=F64), torch.rand(3, 3, dtype=F64)
    out = L.product_matrix([a, b])
    for i in range(6):
        for j in range(6):
            assert out[i, j] == a[i // 3, j // 3] * b[i % 3, j % 3]


def target_heat_kernel() -> None:
    """Against ``exp(tL)`` of each graph's Laplacian, by ``torch.linalg.matrix_exp``."""
    k, t = 5, 0.7
    eye = torch.eye(k, dtype=F64)
    cycle = torch.roll(eye, 1, 0) + torch.roll(eye, -1, 0)
    path = torch.diag(torch.ones(k - 1, dtype=F64), 1) + torch.diag(torch.ones(k - 1, dtype=F64), -1)
    laplacians = {"cyclical": cycle - 2 * eye, "ordinal": path - torch.diag(path.sum(1)),
                  "uniform": torch.full((k, k), 1 / k, dtype=F64) - eye}
    for graph, lap in laplacians.items():
        torch.testing.assert_close(L.heat_kernel(k, t, graph), torch.linalg.matrix_exp(t * lap))


def _assert_kernel_law(perturbation: Any, x_row: Tensor, index: Callable[[Tensor], Tensor]) -> None:
    """``sample_y`` from one state follows its row of the transition matrix; ``contrast`` its row of the
    contrast matrix (two independent steps, or one for the grid)."""
    states = perturbation.states()
    start = int((states == x_row.to(F64)).all(1).nonzero())
    x = x_row.expand(N, -1).clone()
    assert_law(index(perturbation.sample_y(x)), perturbation.transition_matrix()[start])
    negatives = perturbation.contrast(x[: N // 4], 4)
    assert_law(index(negatives.reshape(N, -1)), perturbation.contrast_matrix()[start])


def _code_index(n_classes: tuple[int, ...]) -> Callable[[Tensor], Tensor]:
    weights = torch.tensor([math.prod(n_classes[i + 1 :]) for i in range(len(n_classes))])
    return lambda x: (x.round().long() * weights).sum(1)


def target_bernoulli() -> None:
    _assert_kernel_law(L.BernoulliPerturbation(0.2, dim=3), torch.tensor([1.0, 0.0, 1.0], dtype=F64), bit_index)


def target_bit_flip() -> None:
    _assert_kernel_law(L.BitFlipPerturbation(3), torch.tensor([1.0, 0.0, 1.0], dtype=F64), bit_index)


def target_gaussian_perturbation() -> None:
    """``y = x + σξ``; a negative is ``x + σ(ξ + ξ')``, i.e. ``N(x, 2σ²)``."""
    x = torch.tensor([[0.5, -1.0]], dtype=F64).expand(N, 2)
    perturbation = L.GaussianPerturbation(0.3)
    assert_gaussian(perturbation.sample_y(x), x[0], 0.09)
    negatives = perturbation.contrast(x[:1], N)[0]
    # The N negatives of one point share y: given y they are N(y, σ²) around one common y.
    assert_gaussian(negatives - negatives.mean(0), 0.0, 0.09)
    assert_gaussian(perturbation.contrast(x, 1)[:, 0], x[0], 0.18)


def target_node_set() -> None:
    """Bits inside the node set flip with probability ``ε``, padding bits never, the node count stays; the grid
    version flips exactly one allowed bit, uniformly."""
    rows = torch.tensor([[1.0, 0.0, 0.0, 2.0], [1.0, 0.0, 1.0, 3.0]], dtype=F64).repeat(N // 2, 1)
    max_nodes = 3
    y = L.NodeSetPerturbation(max_nodes, 0.2).sample_y(rows)
    flips = y[:, :3] != rows[:, :3]
    assert torch.equal(y[:, 3], rows[:, 3]) and not flips[0::2, 1:].any()
    assert_rate(torch.cat([flips[0::2, 0], flips[1::2].reshape(-1)]), 0.2, "Bernoulli flips")
    grid = L.NodeSetPerturbation(max_nodes).sample_y(rows)
    changed = grid[:, :3] != rows[:, :3]
    assert (changed.sum(1) == 1).all() and not changed[0::2, 1:].any()
    assert_law(changed[1::2].long().argmax(1), torch.full((3,), 1 / 3, dtype=F64))


def target_heat() -> None:
    perturbation = L.HeatPerturbation((3, 4), [0.3, 0.5], ["cyclical", "ordinal"])
    _assert_kernel_law(perturbation, torch.tensor([2.0, 1.0], dtype=F64), _code_index((3, 4)))
    torch.testing.assert_close(perturbation.transition_matrix(),
                               torch.kron(L.heat_kernel(3, 0.3, "cyclical"), L.heat_kernel(4, 0.5, "ordinal")))


def target_uniform() -> None:
    perturbation = L.UniformPerturbation((3, 2), keep=0.4)
    _assert_kernel_law(perturbation, torch.tensor([2.0, 0.0], dtype=F64), _code_index((3, 2)))
    one_column = 0.4 * torch.eye(3, dtype=F64) + 0.6 / 3
    torch.testing.assert_close(perturbation.matrices[0], one_column)


def target_cyclical() -> None:
    perturbation = L.CyclicalPerturbation((4, 3), 0.02)
    _assert_kernel_law(perturbation, torch.tensor([0.0, 2.0], dtype=F64), _code_index((4, 3)))
    torch.testing.assert_close(perturbation.matrices[0], L.heat_kernel(4, 0.02 * 16, "cyclical"))


def target_ordinal() -> None:
    perturbation = L.OrdinalPerturbation((4, 3), 0.02)
    _assert_kernel_law(perturbation, torch.tensor([3.0, 1.0], dtype=F64), _code_index((4, 3)))
    torch.testing.assert_close(perturbation.matrices[1], L.heat_kernel(3, 0.02 * 9, "ordinal"))


def target_grid() -> None:
    _assert_kernel_law(L.GridPerturbation((3, 2)), torch.tensor([1.0, 1.0], dtype=F64), _code_index((3, 2)))


def target_mixed_perturbation() -> None:
    perturbation = L.MixedPerturbation(1, 0.3, L.UniformPerturbation((3, 2), keep=0.4))
    x = torch.tensor([[0.5, 2.0, 0.0]], dtype=F64).expand(N, 3)
    y = perturbation.sample_y(x)
    assert_gaussian(y[:, :1], 0.5, 0.09)
    assert_law(_code_index((3, 2))(y[:, 1:]), perturbation.categorical.transition_matrix()[4])


def target_frozen() -> None:
    model, x = BitEnergy(), torch.rand(4, 3, dtype=F64, requires_grad=True)
    value = L.frozen(model)(x)
    torch.testing.assert_close(value, model(x))
    (grad_x,) = torch.autograd.grad(value.sum(), x, retain_graph=True)
    torch.testing.assert_close(grad_x, torch.autograd.grad(model(x).sum(), x)[0])
    assert all(g is None for g in torch.autograd.grad(value.sum(), list(model.parameters()), allow_unused=True))


def target_self_adversarial_loss() -> None:
    """For ``E_θ = θ|x|²/2`` and ``x_K = (1 - hθ)^K x_0``: the critic gradient is ``mean|x⁺|²/2 - mean|x_K|²/2``
    (``x_K`` held fixed) and the generator term adds ``λ θ mean(x_K · ∂x_K/∂θ)``, ``∂x_K/∂θ = -hK(1-hθ)^{K-1} x_0``;
    ``l2_reg = α`` adds ``2α(mean E⁺ ∂E⁺ + mean E⁻ ∂E⁻)``."""
    theta, h, k, lam, alpha = 1.3, 0.1, 4, 0.7, 0.2
    energy = ScaledQuadratic(theta)
    x_pos, x0 = torch.randn(10, 2, dtype=F64), torch.randn(12, 2, dtype=F64)
    x_k = S.euler_sample(energy, x0, n_steps=k, step_size=h, create_graph=True)
    loss, _ = L.self_adversarial_loss(energy, x_pos, x_k, generator_weight=lam, l2_reg=alpha)
    (grad,) = torch.autograd.grad(loss, energy.theta)
    r2_pos, r2_neg = x_pos.pow(2).sum(1) / 2, (1 - h * theta) ** (2 * k) * x0.pow(2).sum(1) / 2
    generator = lam * theta * ((1 - h * theta) ** (2 * k - 1) * -h * k * x0.pow(2).sum(1)).mean()
    l2 = 2 * alpha * ((theta * r2_pos * r2_pos).mean() + (theta * r2_neg * r2_neg).mean())
    torch.testing.assert_close(grad, r2_pos.mean() - r2_neg.mean() + generator + l2)


def target_self_adversarial_class() -> None:
    """Averaged over ``x_0 ~ N(0, I_d)``: ``E|x_0|² = d`` with variance ``2d``, so the gradient of the class's
    loss (Euler dynamics, generator on) has a closed-form mean and standard error."""
    theta, h, k, d = 1.3, 0.1, 3, 2
    energy = ScaledQuadratic(theta)
    x_pos = torch.randn(N, d, dtype=F64)
    loss_fn = L.SelfAdversarialLoss("euler", generator=True, n_steps=k, step_size=h)
    (grad,) = torch.autograd.grad(loss_fn(energy, x_pos)[0], energy.theta)
    c_neg = -(1 - h * theta) ** (2 * k) / 2 + theta * (1 - h * theta) ** (2 * k - 1) * -h * k
    expected = x_pos.pow(2).sum(1).mean() / 2 + c_neg * d
    assert_close_se(grad, expected, abs(c_neg) * math.sqrt(2 * d / N), "self-adversarial gradient")


def target_flow_maximum_likelihood() -> None:
    """``-log p_T(x) = (d/2) log 2π - dθT + e^{2θT}|x|²/2`` for ``E_θ = θ|x|²/2``; θ-derivative
    ``-dT + T e^{2θT}|x|²``."""
    theta, t, x = 0.5, 0.2, torch.randn(6, 2, dtype=F64)
    energy = ScaledQuadratic(theta)
    loss, _ = L.FlowMaximumLikelihood(T=t, rtol=1e-9, atol=1e-9)(energy, x)
    r2 = x.pow(2).sum(1)
    torch.testing.assert_close(loss, (math.log(2 * math.pi) - 2 * theta * t + math.exp(2 * theta * t) * r2 / 2).mean())
    (grad,) = torch.autograd.grad(loss, energy.theta)
    torch.testing.assert_close(grad, (-2 * t + t * math.exp(2 * theta * t) * r2).mean())


def target_flow_ebm_loss() -> None:
    """With the pool at ``p = N(0, I)`` (the energy ``|x|²/2``) and an invariant sampler, the negatives follow
    ``p`` and the θ-gradient estimates ``mean|x⁺|²/2 - d/2`` with SE ``sqrt(d/(2n))``; ULA's negatives follow its
    exact Gaussian recursion instead. Negatives recorded at several steps of the same chains are correlated,
    so their SE is taken over chains only."""
    x_pos = torch.randn(50, 2, dtype=F64)
    for method in L.FLOW_EBM_METHODS:
        energy, flow = ScaledQuadratic(1.0), _flow(F64, base_std=1.0)
        loss_fn = L.FlowEBMLoss(method, torch.randn(N, 2, dtype=F64), n_chains=N, n_steps=4, step_size=0.2,
                                flow=flow, flow_optimizer=torch.optim.SGD(flow.parameters(), lr=1e-3),
                                n_local=1, n_particles=3, record_steps=[2, 4], target_accept=None)
        (grad,) = torch.autograd.grad(loss_fn(energy, x_pos)[0], energy.theta)
        # Negatives N(0, v I_2): E|x⁻|²/2 = v and Var(|x⁻|²/2) = v².
        # (CoopFlow's chains run the same ULA from the flow, here the identity map of N(0, I))
        v = ula_moments(0.0, 0.0, 1.0, 0.2, 4)[1] + 0.8**8 if method in ("ula", "coop") else 1.0
        assert_close_se(grad, x_pos.pow(2).sum(1).mean() / 2 - v, v / math.sqrt(N), method)


def target_mixed_noise() -> None:
    rows = L.mixed_noise(N, 1, (3, 2))
    assert_gaussian(rows[:, :1], 0.0, 1.0)
    assert_law(_code_index((3, 2))(rows[:, 1:]), torch.full((6,), 1 / 6, dtype=F64))


def target_tabular_losses() -> None:
    """Table 1's order and kernels: Uni keeps with 0.1, Cyc and Ord use ``0.005 K²`` and ``0.01 K²``, Str the
    ordinal kernel on flagged columns and the uniform one elsewhere; σ 0.05 (Uni, Grid) or 0.1."""
    losses = L.tabular_losses(1, (3, 4), (True, False), cd_rounds=1)
    assert list(losses) == ["TabED-Uni", "TabED-Grid", "TabED-Cyc", "TabED-Ord", "TabED-Str", "TabCD"]
    kernels = {name: loss.perturbation for name, loss in losses.items() if name != "TabCD"}
    assert [k.numeric.sigma for k in kernels.values()] == [0.05, 0.05, 0.1, 0.1, 0.1]
    uniform = lambda k: 0.1 * torch.eye(k, dtype=F64) + 0.9 / k  # noqa: E731
    expected = {"TabED-Uni": [uniform(3), uniform(4)],
                "TabED-Cyc": [L.heat_kernel(3, 0.045, "cyclical"), L.heat_kernel(4, 0.08, "cyclical")],
                "TabED-Ord": [L.heat_kernel(3, 0.09, "ordinal"), L.heat_kernel(4, 0.16, "ordinal")],
                "TabED-Str": [L.heat_kernel(3, 0.09, "ordinal"), uniform(4)]}
    for name, matrices in expected.items():
        for got, want in zip(kernels[name].categorical.matrices, matrices):
            torch.testing.assert_close(got, want)
    assert isinstance(kernels["TabED-Grid"].categorical, L.GridPerturbation)


def target_tabcd_loss() -> None:
    """``E_θ(x, c) = θx²/2`` at θ = 1 is the law of the buffer's starting rows (normal ``x``, uniform codes); one
    round of Langevin-Gibbs moves the variance to ``v = 1 + h²`` exactly. With ``u = x²`` and the L2 penalty 0.3
    the θ-gradient is ``mean g⁺(u⁺) + mean g⁻(u⁻)``, ``g± = ±u/2 + 0.15u²``, and under ``N(0, v)``
    (``E uᵏ = vᵏ (2k-1)!!``) ``E g⁻ = -v/2 + 0.45v²``, ``E g⁻² = 0.75v² - 2.25v³ + 2.3625v⁴``."""
    loss_fn = L.tabcd_loss(1, (3, 2), cd_rounds=1, dtype=F64)
    energy = ScaledQuadratic(1.0)
    x_pos = torch.cat([torch.randn(N, 1, dtype=F64), torch.zeros(N, 2, dtype=F64)], 1)
    (grad,) = torch.autograd.grad(loss_fn(lambda rows: energy(rows[:, :1]), x_pos)[0], energy.theta)
    u = x_pos[:, 0] ** 2
    v = 1 + 2.5e-4**2
    mean_neg = -v / 2 + 0.45 * v**2
    var_neg = 0.75 * v**2 - 2.25 * v**3 + 2.3625 * v**4 - mean_neg**2
    assert_close_se(grad, (u / 2 + 0.15 * u**2).mean() + mean_neg, math.sqrt(var_neg / N), "TabCD gradient")


# ---------------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------------
EXCLUDED = {
    # constants
    "GIBBS_ORDERS": "constant", "TRACE_ESTIMATORS": "constant", "ADAPTIVE_METHODS": "constant",
    "RM_ESTIMATORS": "constant", "RM_PROPOSALS": "constant", "RM_PAIRINGS": "constant", "MAX_STATES": "constant",
    "HEAT_GRAPHS": "constant",
    "DYNAMICS": "constant", "FLOW_EBM_METHODS": "constant",
    # types: protocols, a type alias, result containers, abstract bases without a noise law of their own
    "FlowProposal": "protocol", "TransportMap": "protocol", "PerturbationKernel": "protocol",
    "LinearFirstLayer": "protocol",
    "Sampler": "type alias", "MALAResult": "result container", "FlowMCResult": "result container",
    **{n: "abstract base (draws nothing itself)" for n in ("Perturbation", "BinaryPerturbation",
                                                          "CategoricalPerturbation")},
    # validation helpers: their job is raising ValueError (tested by every entry's bad-input check)
    "all_finite": "finiteness helper", "raise_unless_finite": "finiteness helper",
    "check_binary_states": "validation helper", "check_noise_scale": "validation helper",
    "check_clamp": "validation helper", "check_adaptation": "validation helper", "check_flow": "validation helper",
    "check_perturbation": "validation helper",
}

def _flow_ebm_args(dt: torch.dtype) -> dict[str, Any]:
    flow = _flow(dt)
    return dict(method="flowmc", pool=torch.randn(8, 2, dtype=dt), n_chains=4, n_steps=3, step_size=0.1, flow=flow,
                flow_optimizer=torch.optim.SGD(flow.parameters(), lr=1e-3), n_local=1, n_particles=3,
                record_steps=[2, 3], target_accept=0.6, flow_steps=1, energy_l2=1e-4,
                energy_fn=ScaledQuadratic(1.0, dt), x_pos=torch.randn(6, 2, dtype=dt))


def _gwg_step(energy_fn: Callable, y: Tensor, index: Tensor, free: Tensor, temperature: float) -> tuple:
    return S.gwg_categorical_step(energy_fn, y, index, free, temperature)


def _bool_free(dt: torch.dtype, n: int = 6) -> Tensor:
    return free_columns(None, block_index(SIZES), 2, n, "cpu")


REGISTRY: dict[str, Entry] = {
    # --- samplers: core kernels (metadata-only checks by design: they run inside sampling loops, so values
    # are checked once per run by the caller, never per step) ---
    "flip_bits": Entry(Spec(S.flip_bits, lambda dt: dict(x=_bits(dt), index=torch.randint(3, (6,))),
                            {"x": "ndim flat list", "index": "ndim float rows list"}), target_flip_bits, random=False),
    "flip_log_proposal": Entry(
        Spec(S.flip_log_proposal, lambda dt: dict(x=_bits(dt), grad=torch.randn(6, 3, dtype=dt), temperature=2.0),
             {"x": "ndim flat list", "grad": "rows cols list", "temperature": STEP}),
        target_flip_log_proposal, random=False),
    "langevin_flip_logits": Entry(
        Spec(S.langevin_flip_logits, lambda dt: dict(x=_bits(dt), grad=torch.randn(6, 3, dtype=dt), step_size=0.5),
             {"x": "ndim flat list", "grad": "rows cols list", "step_size": STEP}),
        target_langevin_flip_logits, random=False),
    "metropolis_accept": Entry(Spec(S.metropolis_accept, lambda dt: dict(log_alpha=torch.randn(6, dtype=dt)),
                                    {"log_alpha": "ndim int list"}), target_metropolis_accept),
    "sample_categorical": Entry(Spec(S.sample_categorical, lambda dt: dict(log_probs=torch.randn(6, 4, dtype=dt)),
                                     {"log_probs": "ndim flat int list"}), target_sample_categorical),
    "select_rows": Entry(
        Spec(S.select_rows, lambda dt: dict(accepted=torch.rand(6) < 0.5, proposal=torch.randn(6, 2, dtype=dt),
                                            current=torch.randn(6, 2, dtype=dt)),
             {"accepted": "ndim rows float list", "proposal": "rows cols list", "current": "list"}),
        target_select_rows, random=False),
    "categorical_log_proposal": Entry(
        Spec(S.categorical_log_proposal,
             lambda dt: dict(y=_one_hots(dt), grad=torch.randn(6, 5, dtype=dt), index=block_index(SIZES),
                             free=_bool_free(dt), temperature=2.0),
             {"y": "ndim cols list", "grad": "rows cols list", "index": "rows float list",
              "free": "rows cols float list", "temperature": STEP}),
        target_categorical_log_proposal, random=False),
    "gwg_categorical_step": Entry(
        Spec(_gwg_step, lambda dt: dict(energy_fn=cat_energy, y=_one_hots(dt), index=block_index(SIZES),
                                        free=_bool_free(dt), temperature=2.0),
             {"energy_fn": "efn_shape", "y": "ndim cols int list", "index": "rows float list",
              "free": "rows float list", "temperature": STEP}),
        target_gwg_categorical_step),
    "langevin_update": Entry(
        Spec(S.langevin_update, lambda dt: dict(x=torch.randn(6, 2, dtype=dt), grad=torch.randn(6, 2, dtype=dt),
                                                step_size=0.1, noise_scale=0.3, clamp=(-1.0, 1.0)),
             {"x": "list", "grad": "rows cols ndim list", "step_size": STEP, "noise_scale": "negative nan inf str",
              "clamp": "reversed seqstr"}),
        target_langevin_update),
    "mala_step": Entry(
        Spec(lambda energy_fn, x, energy, grad, step_size: S.mala_step(energy_fn, x, energy, grad, step_size),
             lambda dt: dict(energy_fn=centred_energy, x=torch.randn(6, 2, dtype=dt), energy=torch.randn(6, dtype=dt),
                             grad=torch.randn(6, 2, dtype=dt), step_size=torch.tensor(0.1, dtype=dt)),
             {"energy_fn": "efn_shape", "x": "ndim flat list", "energy": "rows ndim list",
              "grad": "rows cols list", "step_size": "ndim int list"}),
        target_mala_step),
    "adapt_step_size": Entry(
        Spec(S.adapt_step_size, lambda dt: dict(step_size=torch.tensor(0.1, dtype=dt), accepted=torch.rand(6) < 0.5,
                                                target_accept=0.75, adapt_factor=1.05, tolerance=0.03),
             {"step_size": "ndim int list", "accepted": "ndim float list", "target_accept": PROB,
              "adapt_factor": "zero negative nan str", "tolerance": "negative above1 nan str"}),
        target_adapt_step_size, random=False),
    # --- samplers of binary and categorical states ---
    "gibbs_binary": Entry(
        Spec(S.gibbs_binary, lambda dt: dict(energy_fn=bit_energy, x=_bits(dt), n_sweeps=2, order="random"),
             {"energy_fn": EFN, "x": "nan inf ndim flat int binary list", "n_sweeps": COUNT, "order": "choice"}),
        target_gibbs_binary, steps="n_sweeps"),
    "gibbs_random_site": Entry(
        Spec(S.gibbs_random_site, lambda dt: dict(energy_fn=bit_energy, x=_bits(dt), n_steps=3),
             {"energy_fn": EFN, "x": "nan inf ndim flat int binary list", "n_steps": COUNT}),
        target_gibbs_random_site, steps="n_steps"),
    "gwg_binary": Entry(
        Spec(S.gwg_binary, lambda dt: dict(energy_fn=bit_energy, x=_bits(dt), n_steps=3),
             {"energy_fn": EFN, "x": "nan inf ndim flat int binary list", "n_steps": COUNT}),
        target_gwg_binary, steps="n_steps"),
    "GWGBinarySampler": Entry(
        Spec(lambda energy_fn, x, n_steps: S.GWGBinarySampler(n_steps)(energy_fn, x),
             lambda dt: dict(energy_fn=bit_energy, x=_bits(dt), n_steps=3),
             {"energy_fn": EFN, "x": "nan inf ndim flat int binary list", "n_steps": COUNT}),
        target_gwg_binary_sampler, steps="n_steps"),
    "discrete_langevin_binary": Entry(
        Spec(S.discrete_langevin_binary,
             lambda dt: dict(energy_fn=bit_energy, x=_bits(dt), n_steps=3, step_size=0.5, metropolis=True),
             {"energy_fn": EFN, "x": "nan inf ndim flat int binary list", "n_steps": COUNT, "step_size": STEP,
              "metropolis": "str none"}),
        target_discrete_langevin_binary, steps="n_steps"),
    "DiscreteLangevinSampler": Entry(
        Spec(lambda energy_fn, x, n_steps, step_size: S.DiscreteLangevinSampler(n_steps, step_size)(energy_fn, x),
             lambda dt: dict(energy_fn=bit_energy, x=_bits(dt), n_steps=3, step_size=0.5),
             {"energy_fn": EFN, "x": "nan inf ndim flat int binary list", "n_steps": COUNT, "step_size": STEP}),
        target_discrete_langevin_sampler, steps="n_steps"),
    "gibbs_within_nodes": Entry(
        Spec(S.gibbs_within_nodes,
             lambda dt: dict(energy_fn=bit_energy, x=torch.zeros(6, 3, dtype=dt), node_counts=torch.tensor([2, 3] * 3),
                             n_sweeps=2),
             {"energy_fn": EFN, "x": "nan inf ndim flat cols int binary list",
              "node_counts": "ndim rows float big list", "n_sweeps": COUNT}),
        target_gibbs_within_nodes, steps="n_sweeps"),
    "gwg_categorical": Entry(
        Spec(S.gwg_categorical,
             lambda dt: dict(energy_fn=cat_energy, y=_one_hots(dt), block_sizes=SIZES, n_steps=2,
                             clamp=torch.tensor([False, False]), temperature=2.0),
             {"energy_fn": EFN, "y": "nan inf ndim cols int codefrac list", "block_sizes": SEQ, "n_steps": COUNT,
              "clamp": "rows float list", "temperature": STEP}),
        target_gwg_categorical, steps="n_steps"),
    "gibbs_categorical": Entry(
        Spec(S.gibbs_categorical,
             lambda dt: dict(energy_fn=code_energy, x=_rows(dt), n_classes=N_CLASSES, n_sweeps=2, n_numeric=1),
             {"energy_fn": EFN, "x": "nan inf ndim cols int codebig codefrac list", "n_classes": SEQ,
              "n_sweeps": COUNT, "n_numeric": NONNEG}),
        target_gibbs_categorical, steps="n_sweeps"),
    "gibbs_categorical_sweep": Entry(
        Spec(lambda energy_fn, x, n_classes, n_numeric: S.gibbs_categorical_sweep(energy_fn, x, n_classes,
                                                                                 n_numeric=n_numeric),
             lambda dt: dict(energy_fn=code_energy, x=_rows(dt), n_classes=N_CLASSES, n_numeric=1),
             {"energy_fn": "efn_shape", "x": "ndim cols list"}),
        target_gibbs_categorical_sweep),
    # --- samplers of continuous states ---
    "langevin": Entry(
        Spec(S.langevin,
             lambda dt: dict(energy_fn=gauss_energy, x=torch.randn(6, 2, dtype=dt), n_steps=3, step_size=0.1,
                             temperature=1.0, noise_scale=0.2, clamp=(-3.0, 3.0)),
             {"energy_fn": EFN, "x": "nan inf int list", "n_steps": COUNT, "step_size": STEP, "temperature": STEP,
              "noise_scale": "negative nan inf str", "clamp": "reversed seqstr"}),
        target_langevin, steps="n_steps"),
    "langevin_trajectory": Entry(
        Spec(S.langevin_trajectory,
             lambda dt: dict(energy_fn=gauss_energy, x=torch.randn(6, 2, dtype=dt), n_steps=3, step_size=0.1,
                             temperature=1.0, noise_scale=0.2, clamp=(-3.0, 3.0), record_steps=[1, 3]),
             {"energy_fn": EFN, "x": "nan inf int list", "n_steps": COUNT, "step_size": STEP, "temperature": STEP,
              "noise_scale": "negative nan inf str", "clamp": "reversed seqstr",
              "record_steps": "empty seqneg seqstr"}),
        target_langevin_trajectory, steps="n_steps"),
    "mala": Entry(
        Spec(S.mala,
             lambda dt: dict(energy_fn=gauss_energy, x=torch.randn(6, 2, dtype=dt), n_steps=3, step_size=0.1,
                             target_accept=0.6, adapt_factor=1.05, tolerance=0.03),
             {"energy_fn": EFN, "x": "nan inf ndim flat int list", "n_steps": COUNT, "step_size": STEP,
              "target_accept": PROB, "adapt_factor": "zero negative nan str", "tolerance": "negative above1 nan str"}),
        target_mala, steps="n_steps"),
    # --- samplers of mixed states ---
    "label_energy": Entry(
        Spec(lambda energy_fn, x, y: S.label_energy(energy_fn, x)(y),
             lambda dt: dict(energy_fn=_joint_energy, x=torch.randn(3, 1, dtype=dt), y=_one_hots(dt)),
             {"x": "ndim flat int list", "y": "rows ndim list"}),
        target_label_energy, random=False),
    "mwg_joint": Entry(
        Spec(S.mwg_joint,
             lambda dt: dict(energy_fn=_joint_energy, z=_joint(dt), x_dim=1, block_sizes=SIZES, n_steps=2,
                             step_size=0.1, temperature=1.0, clamp=torch.tensor([False, True]), gwg_temperature=2.0,
                             x_bounds=(-3.0, 3.0)),
             {"energy_fn": EFN, "z": "nan inf ndim cols int codefrac list", "x_dim": COUNT, "block_sizes": SEQ,
              "n_steps": COUNT, "step_size": STEP, "temperature": STEP, "clamp": "rows float list",
              "gwg_temperature": STEP, "x_bounds": "reversed seqstr"}),
        target_mwg_joint, steps="n_steps"),
    "MWGSampler": Entry(
        Spec(lambda energy_fn, z, x_dim, block_sizes, n_steps, step_size, temperature, call_steps:
             S.MWGSampler(x_dim, block_sizes, n_steps=n_steps, step_size=step_size, temperature=temperature)(
                 energy_fn, z, n_steps=call_steps),
             lambda dt: dict(energy_fn=_joint_energy, z=_joint(dt), x_dim=1, block_sizes=SIZES, n_steps=2,
                             step_size=0.1, temperature=1.0, call_steps=3),
             {"energy_fn": EFN, "z": "nan inf ndim cols int codefrac list", "x_dim": COUNT, "block_sizes": SEQ,
              "n_steps": COUNT, "step_size": STEP, "temperature": STEP, "call_steps": COUNT},
             names={"call_steps": "n_steps"}),
        target_mwg_sampler, steps="call_steps"),
    "JointNoise": Entry(
        Spec(lambda low, high, probs, n: S.JointNoise(low, high, probs)(n),
             lambda dt: dict(low=torch.zeros(2, dtype=dt), high=torch.ones(2, dtype=dt),
                             probs=[torch.tensor([0.5, 0.5], dtype=dt), torch.full((3,), 1 / 3, dtype=dt)], n=4),
             {"low": "nan inf ndim flat int list", "high": "nan inf neg cols int list", "probs": "empty seqstr",
              "n": COUNT}),
        target_joint_noise),
    "impute_missing": Entry(
        Spec(S.impute_missing,
             lambda dt: dict(energy_fn=_joint_energy, z=_joint_missing(dt),
                             noise=S.JointNoise(torch.zeros(1, dtype=dt), torch.ones(1, dtype=dt),
                                                [torch.full((2,), 0.5, dtype=dt), torch.full((3,), 1 / 3, dtype=dt)]),
                             n_steps=2),
             {"z": "nan inf ndim cols int codefrac list", "noise": "object", "n_steps": COUNT}),
        target_impute_missing, steps="n_steps"),
    "langevin_gibbs": Entry(
        Spec(S.langevin_gibbs,
             lambda dt: dict(energy_fn=code_energy, x=_rows(dt), n_classes=N_CLASSES, n_numeric=1, n_rounds=2,
                             step_size=0.05),
             {"energy_fn": EFN, "x": "nan inf ndim cols int codebig codefrac list", "n_classes": SEQ,
              "n_numeric": NONNEG, "n_rounds": COUNT, "step_size": STEP}),
        target_langevin_gibbs, steps="n_rounds"),
    # --- flow-assisted samplers ---
    "isir_step": Entry(
        Spec(S.isir_step, lambda dt: dict(energy_fn=centred_energy, x=torch.randn(6, 2, dtype=dt), flow=_flow(dt),
                                          n_particles=3),
             {"energy_fn": EFN, "x": "nan inf ndim flat cols int list", "flow": "object", "n_particles": COUNT}),
        target_isir_step),
    "flowmc": Entry(
        Spec(S.flowmc,
             lambda dt: dict(energy_fn=centred_energy, x=torch.randn(6, 2, dtype=dt), flow=_flow(dt), n_steps=4,
                             n_local=1, n_particles=3, step_size=0.1, target_accept=0.6, record_steps=[2, 4],
                             adapt_factor=1.05, tolerance=0.03),
             {"energy_fn": EFN, "x": "nan inf ndim flat cols int list", "flow": "object", "n_steps": COUNT,
              "n_local": NONNEG, "n_particles": COUNT, "step_size": STEP, "target_accept": PROB,
              "record_steps": "empty seqneg seqstr", "adapt_factor": "zero negative nan str",
              "tolerance": "negative above1 nan str"}),
        target_flowmc, steps="n_steps"),
    "latent_energy": Entry(
        Spec(lambda energy_fn, flow, z: S.latent_energy(energy_fn, flow)(z),
             lambda dt: dict(energy_fn=gauss_energy, flow=_flow(dt), z=torch.randn(6, 2, dtype=dt)),
             {"flow": "object", "z": "ndim flat cols list"}),
        target_latent_energy, random=False),
    "latent_mala": Entry(
        Spec(S.latent_mala,
             lambda dt: dict(energy_fn=gauss_energy, flow=_flow(dt), z=torch.randn(6, 2, dtype=dt), n_steps=3,
                             step_size=0.1, target_accept=0.6),
             {"energy_fn": EFN, "flow": "object", "z": "nan inf ndim flat cols int list", "n_steps": COUNT,
              "step_size": STEP, "target_accept": PROB}),
        target_latent_mala, steps="n_steps"),
    # --- the noise-free generator and its density ---
    "ode_sample": Entry(
        Spec(S.ode_sample,
             lambda dt: dict(energy_fn=gauss_energy, x0=torch.randn(6, 2, dtype=dt), T=0.2, rtol=1e-5, atol=1e-5,
                             method="rk4", step_size=0.05),
             {"energy_fn": EFN, "x0": "nan inf int list", "T": STEP, "rtol": STEP, "atol": STEP, "method": "choice",
              "step_size": STEP}),
        target_ode_sample, random=False),
    "euler_sample": Entry(
        Spec(S.euler_sample,
             lambda dt: dict(energy_fn=gauss_energy, x0=torch.randn(6, 2, dtype=dt), n_steps=3, step_size=0.1,
                             clamp=(-3.0, 3.0)),
             {"energy_fn": EFN, "x0": "nan inf int list", "n_steps": COUNT, "step_size": STEP,
              "clamp": "reversed seqstr"}),
        target_euler_sample, random=False, steps="n_steps"),
    "noisy_sample": Entry(
        Spec(S.noisy_sample,
             lambda dt: dict(energy_fn=gauss_energy, x0=torch.randn(6, 2, dtype=dt), n_steps=3, step_size=0.1,
                             noise_scale=0.1, clamp=(-3.0, 3.0)),
             {"energy_fn": EFN, "x0": "nan inf int list", "n_steps": COUNT, "step_size": STEP,
              "noise_scale": "negative nan inf str", "clamp": "reversed seqstr"}),
        target_noisy_sample, steps="n_steps"),
    "hessian_trace": Entry(
        Spec(S.hessian_trace, lambda dt: dict(energy_fn=_quadratic_form, x=torch.randn(6, 3, dtype=dt)),
             {"energy_fn": EFN, "x": "nan inf ndim flat int list"}),
        target_hessian_trace, random=False),
    "hutchinson_trace": Entry(
        Spec(S.hutchinson_trace, lambda dt: dict(energy_fn=_quadratic_form, x=torch.randn(6, 3, dtype=dt),
                                                 noise=torch.randn(6, 3, dtype=dt)),
             {"energy_fn": EFN, "x": "nan inf int list", "noise": "nan inf rows cols list"}),
        target_hutchinson_trace, random=False),
    "standard_normal_log_prob": Entry(
        Spec(S.standard_normal_log_prob, lambda dt: dict(x=torch.randn(6, 2, dtype=dt)),
             {"x": "nan inf scalar int list"}),
        target_standard_normal_log_prob, random=False),
    "flow_log_prob": Entry(
        Spec(S.flow_log_prob,
             lambda dt: dict(energy_fn=centred_energy, x=torch.randn(6, 2, dtype=dt), T=0.2, method="rk4",
                             step_size=0.05, trace="exact"),
             {"energy_fn": EFN, "x": "nan inf ndim int list", "T": STEP, "method": "choice", "step_size": STEP,
              "trace": "choice"}),
        target_flow_log_prob, random=False),
    "ReplayBuffer": Entry(
        Spec(lambda init_fn, capacity, reinit_prob, n: S.ReplayBuffer(init_fn, capacity, reinit_prob).sample(n),
             lambda dt: dict(init_fn=partial(_draws, shape=(2,), dtype=dt, device=torch.get_default_device()),
                             capacity=8, reinit_prob=0.1, n=3),
             {"init_fn": "efn_nan notcallable", "capacity": COUNT, "reinit_prob": "negative above1 nan str",
              "n": COUNT + " huge"}),
        target_replay_buffer),
    # --- losses ---
    "contrastive_divergence": Entry(
        Spec(L.contrastive_divergence,
             lambda dt: dict(energy_fn=BitEnergy(dt), x_pos=_bits(dt), x_neg=_bits(dt, 4), l2_reg=0.1),
             {"energy_fn": EFN, "x_pos": "nan inf int list", "x_neg": "nan inf cols int list",
              "l2_reg": "negative nan inf str"}),
        target_contrastive_divergence, random=False),
    "PersistentContrastiveDivergence": Entry(
        Spec(lambda buffer, sampler, l2_reg, n_negatives, energy_fn, x_pos:
             L.PersistentContrastiveDivergence(buffer, sampler, l2_reg=l2_reg, n_negatives=n_negatives)(
                 energy_fn, x_pos),
             lambda dt: dict(buffer=S.ReplayBuffer(partial(_draws, shape=(3,), dtype=dt, bits=True,
                                                                   device=torch.get_default_device()), 16),
                             sampler=partial(S.gibbs_binary, n_sweeps=1), l2_reg=0.1, n_negatives=4,
                             energy_fn=BitEnergy(dt), x_pos=_bits(dt)),
             {"buffer": "object", "sampler": "notcallable", "l2_reg": "negative nan str", "n_negatives": COUNT,
              "energy_fn": EFN, "x_pos": "nan inf cols int list"}),
        target_persistent_contrastive_divergence, steps=None),
    "ratio_matching": Entry(
        Spec(L.ratio_matching, lambda dt: dict(energy_fn=BitEnergy(dt), x=_bits(dt), chunk_size=5, rank_one=False),
             {"energy_fn": EFN, "x": "nan inf ndim flat int binary list", "chunk_size": COUNT, "rank_one": "str"}),
        target_ratio_matching, random=False),
    "rmwggis_proposal": Entry(
        Spec(L.rmwggis_proposal, lambda dt: dict(energy_fn=BitEnergy(dt), x=_bits(dt), proposal="gradient"),
             {"energy_fn": EFN, "x": "nan inf ndim flat int binary list", "proposal": "choice"}),
        target_rmwggis_proposal, random=False),
    "rmwggis": Entry(
        Spec(L.rmwggis, lambda dt: dict(energy_fn=BitEnergy(dt), x=_bits(dt), n_samples=2, estimator="unbiased",
                                        proposal="gradient", replacement=False),
             {"energy_fn": EFN, "x": "nan inf ndim flat int binary list", "n_samples": COUNT + " huge",
              "estimator": "choice", "proposal": "choice"}),
        target_rmwggis),
    "ratio_matching_within_nodes": Entry(
        Spec(L.ratio_matching_within_nodes,
             lambda dt: dict(energy_fn=BitEnergy(dt), x=torch.tensor([[1.0, 0, 0], [1, 1, 0]] * 2, dtype=dt),
                             node_counts=torch.tensor([2, 3] * 2), n_samples=2),
             {"energy_fn": EFN, "x": "nan inf ndim flat cols int binary list",
              "node_counts": "ndim rows float big list", "n_samples": COUNT}),
        target_ratio_matching_within_nodes),
    "discrepancy_from_energies": Entry(
        Spec(L.discrepancy_from_energies,
             lambda dt: dict(e_pos=torch.randn(6, dtype=dt), e_neg=torch.randn(6, 4, dtype=dt), w=1.0,
                             reduction="mean"),
             {"e_pos": "nan inf ndim int list", "e_neg": "nan inf flat rows int list", "w": "negative nan inf str",
              "reduction": "choice"}),
        target_discrepancy_from_energies, random=False),
    "energy_discrepancy": Entry(
        Spec(L.energy_discrepancy,
             lambda dt: dict(energy_fn=_ed_energy(dt), x=_bits(dt), perturbation=L.BernoulliPerturbation(0.2),
                             n_negatives=3, w=1.0, reduction="mean"),
             {"energy_fn": EFN, "x": "nan inf ndim flat int binary list", "perturbation": "object",
              "n_negatives": COUNT, "w": "negative nan inf str", "reduction": "choice"}),
        target_energy_discrepancy),
    "EnergyDiscrepancy": Entry(
        Spec(lambda perturbation, n_negatives, w, energy_fn, x:
             L.EnergyDiscrepancy(perturbation, n_negatives=n_negatives, w=w)(energy_fn, x),
             lambda dt: dict(perturbation=L.BitFlipPerturbation(3), n_negatives=3, w=1.0, energy_fn=_ed_energy(dt),
                             x=_bits(dt)),
             {"perturbation": "object", "n_negatives": COUNT, "w": "negative nan inf str", "energy_fn": EFN,
              "x": "nan inf ndim flat cols int binary list"}),
        target_energy_discrepancy_class),
    "exact_energy_discrepancy": Entry(
        Spec(L.exact_energy_discrepancy,
             lambda dt: dict(energies=torch.randn(8, dtype=dt), data_probs=torch.full((8,), 1 / 8, dtype=dt),
                             transition=L.BernoulliPerturbation(0.2, dim=3).transition_matrix().to(dt)),
             {"energies": "nan inf ndim int list", "data_probs": "nan neg big rows int list",
              "transition": "nan neg big rows cols list"}),
        target_exact_energy_discrepancy, random=False),
    "enumerate_states": Entry(Spec(L.enumerate_states, lambda dt: dict(n_classes=(2, 3)),
                                   {"n_classes": SEQ + " seqneg"}), target_enumerate_states, random=False),
    "product_matrix": Entry(Spec(L.product_matrix, lambda dt: dict(matrices=[torch.eye(2, dtype=dt)] * 2),
                                 {"matrices": "empty seqstr"}), target_product_matrix, random=False),
    "heat_kernel": Entry(Spec(L.heat_kernel, lambda dt: dict(n_classes=4, t=0.3, graph="ordinal"),
                              {"n_classes": COUNT, "t": STEP, "graph": "choice"}), target_heat_kernel, random=False),
    # --- the perturbations of energy discrepancy (their noise laws, through contrast) ---
    "BernoulliPerturbation": Entry(
        Spec(lambda epsilon, dim, x, n: L.BernoulliPerturbation(epsilon, dim).contrast(x, n),
             lambda dt: dict(epsilon=0.2, dim=3, x=_bits(dt), n=2),
             {"epsilon": PROB, "dim": COUNT, "x": "nan inf ndim flat cols int binary list", "n": COUNT}),
        target_bernoulli),
    "BitFlipPerturbation": Entry(
        Spec(lambda dim, x, n: L.BitFlipPerturbation(dim).contrast(x, n), lambda dt: dict(dim=3, x=_bits(dt), n=2),
             {"dim": COUNT, "x": "nan inf ndim flat cols int binary list", "n": COUNT}),
        target_bit_flip),
    "GaussianPerturbation": Entry(
        Spec(lambda sigma, x, n: L.GaussianPerturbation(sigma).contrast(x, n),
             lambda dt: dict(sigma=0.1, x=torch.randn(6, 2, dtype=dt), n=2),
             {"sigma": STEP, "x": "nan inf ndim flat int list", "n": COUNT}),
        target_gaussian_perturbation),
    "NodeSetPerturbation": Entry(
        Spec(lambda max_nodes, epsilon, x, n: L.NodeSetPerturbation(max_nodes, epsilon).contrast(x, n),
             lambda dt: dict(max_nodes=3, epsilon=0.2, x=torch.tensor([[1.0, 0, 0, 2], [1, 1, 0, 3]] * 3, dtype=dt),
                             n=2),
             {"max_nodes": COUNT, "epsilon": PROB, "x": "nan inf ndim flat cols int binary codebig codefrac list",
              "n": COUNT}),
        target_node_set),
    "HeatPerturbation": Entry(
        Spec(lambda n_classes, t, graph, scaling, x, n:
             L.HeatPerturbation(n_classes, t, graph, scaling=scaling).contrast(x, n),
             lambda dt: dict(n_classes=N_CLASSES, t=0.3, graph="cyclical", scaling="none", x=_rows(dt)[:, 1:],
                             n=2),
             {"n_classes": SEQ, "t": STEP, "graph": "choice", "scaling": "choice",
              "x": "nan inf ndim flat cols int codebig codefrac list", "n": COUNT}),
        target_heat),
    "UniformPerturbation": Entry(
        Spec(lambda n_classes, keep, x, n: L.UniformPerturbation(n_classes, keep).contrast(x, n),
             lambda dt: dict(n_classes=N_CLASSES, keep=0.3, x=_rows(dt)[:, 1:], n=2),
             {"n_classes": SEQ, "keep": PROB, "x": "nan inf ndim flat cols int codebig codefrac list", "n": COUNT}),
        target_uniform),
    "CyclicalPerturbation": Entry(
        Spec(lambda n_classes, t, x, n: L.CyclicalPerturbation(n_classes, t).contrast(x, n),
             lambda dt: dict(n_classes=N_CLASSES, t=0.01, x=_rows(dt)[:, 1:], n=2),
             {"n_classes": SEQ, "t": STEP, "x": "nan inf ndim flat cols int codebig codefrac list", "n": COUNT}),
        target_cyclical),
    "OrdinalPerturbation": Entry(
        Spec(lambda n_classes, t, x, n: L.OrdinalPerturbation(n_classes, t).contrast(x, n),
             lambda dt: dict(n_classes=N_CLASSES, t=0.01, x=_rows(dt)[:, 1:], n=2),
             {"n_classes": SEQ, "t": STEP, "x": "nan inf ndim flat cols int codebig codefrac list", "n": COUNT}),
        target_ordinal),
    "GridPerturbation": Entry(
        Spec(lambda n_classes, x, n: L.GridPerturbation(n_classes).contrast(x, n),
             lambda dt: dict(n_classes=N_CLASSES, x=_rows(dt)[:, 1:], n=2),
             {"n_classes": SEQ, "x": "nan inf ndim flat cols int codebig codefrac list", "n": COUNT}),
        target_grid),
    "MixedPerturbation": Entry(
        Spec(lambda n_numeric, sigma, categorical, x, n:
             L.MixedPerturbation(n_numeric, sigma, categorical).contrast(x, n),
             lambda dt: dict(n_numeric=1, sigma=0.1, categorical=L.UniformPerturbation(N_CLASSES), x=_rows(dt), n=2),
             {"n_numeric": NONNEG, "sigma": STEP, "categorical": "object",
              "x": "nan inf ndim cols int codebig codefrac list", "n": COUNT}),
        target_mixed_perturbation),
    # --- the noise-free and flow-based objectives ---
    "frozen": Entry(Spec(lambda energy, x: L.frozen(energy)(x),
                         lambda dt: dict(energy=BitEnergy(dt), x=torch.rand(4, 3, dtype=dt)),
                         {"energy": "object notcallable"}), target_frozen, random=False),
    "self_adversarial_loss": Entry(
        Spec(L.self_adversarial_loss,
             lambda dt: dict(energy=ScaledQuadratic(1.0, dt), x_pos=torch.randn(6, 2, dtype=dt),
                             x_k=torch.randn(6, 2, dtype=dt, requires_grad=True), generator=True, generator_weight=1.0,
                             l2_reg=0.1),
             {"energy": "object", "x_pos": "nan inf cols int list", "x_k": "nan inf cols list",
              "generator_weight": "zero negative nan str", "l2_reg": "negative nan str"}),
        target_self_adversarial_loss, random=False),
    "SelfAdversarialLoss": Entry(
        Spec(lambda dynamics, generator_weight, l2_reg, n_steps, step_size, energy, x_pos:
             L.SelfAdversarialLoss(dynamics, generator=True, generator_weight=generator_weight, l2_reg=l2_reg,
                                   n_steps=n_steps, step_size=step_size)(energy, x_pos),
             lambda dt: dict(dynamics="euler", generator_weight=1.0, l2_reg=0.1, n_steps=2, step_size=0.1,
                             energy=ScaledQuadratic(1.0, dt), x_pos=torch.randn(6, 2, dtype=dt)),
             {"dynamics": "choice", "generator_weight": "zero negative nan str", "l2_reg": "negative nan str",
              "n_steps": COUNT, "step_size": STEP, "x_pos": "nan inf int list"}),
        target_self_adversarial_class),
    "FlowMaximumLikelihood": Entry(
        Spec(lambda T, method, trace, energy, x: L.FlowMaximumLikelihood(T=T, method=method, trace=trace,
                                                                         step_size=0.05)(energy, x),
             lambda dt: dict(T=0.2, method="rk4", trace="exact", energy=ScaledQuadratic(1.0, dt),
                             x=torch.randn(6, 2, dtype=dt)),
             {"T": STEP, "method": "choice", "trace": "choice", "x": "nan inf ndim int list"}),
        target_flow_maximum_likelihood, random=False),
    "FlowEBMLoss": Entry(
        Spec(lambda method, pool, n_chains, n_steps, step_size, flow, flow_optimizer, n_local, n_particles,
             record_steps, target_accept, flow_steps, energy_l2, energy_fn, x_pos:
             L.FlowEBMLoss(method, pool, n_chains=n_chains, n_steps=n_steps, step_size=step_size, flow=flow,
                           flow_optimizer=flow_optimizer, n_local=n_local, n_particles=n_particles,
                           record_steps=record_steps, target_accept=target_accept,
                           flow_steps=flow_steps, energy_l2=energy_l2)(energy_fn, x_pos),
             _flow_ebm_args,
             {"method": "choice", "pool": "nan inf ndim flat int list", "n_chains": COUNT + " huge",
              "n_steps": COUNT, "step_size": STEP, "flow": "object", "flow_optimizer": "object", "n_local": NONNEG,
              "n_particles": COUNT, "record_steps": "empty seqneg seqstr", "target_accept": PROB,
              "flow_steps": COUNT, "energy_l2": "negative nan inf str", "energy_fn": EFN,
              "x_pos": "nan inf cols int list"}),
        target_flow_ebm_loss, steps="n_steps"),
    # --- the tabular objectives ---
    "mixed_noise": Entry(Spec(L.mixed_noise, lambda dt: dict(n=6, n_numeric=1, n_classes=N_CLASSES, dtype=dt,
                                                             device=torch.get_default_device()),
                              {"n": COUNT, "n_numeric": NONNEG, "n_classes": SEQ, "dtype": "none intdtype",
                               "device": "choice"}),
                         target_mixed_noise),
    "tabular_losses": Entry(
        Spec(lambda n_numeric, n_classes, ordinal, cd_rounds, device, energy, x:
             L.tabular_losses(n_numeric, n_classes, ordinal, cd_rounds=cd_rounds, device=device)["TabED-Str"](
                 energy, x),
             lambda dt: dict(n_numeric=1, n_classes=N_CLASSES, ordinal=(True, False), cd_rounds=1,
                             device=torch.get_default_device(), energy=_mixed_energy(dt), x=_rows(dt)),
             {"n_numeric": NONNEG, "n_classes": SEQ, "ordinal": "empty seqstr", "cd_rounds": COUNT,
              "x": "nan inf cols int codebig list"}),
        target_tabular_losses),
    "tabcd_loss": Entry(
        Spec(lambda n_numeric, n_classes, cd_rounds, dtype, device, energy, x_pos:
             L.tabcd_loss(n_numeric, n_classes, cd_rounds=cd_rounds, dtype=dtype, device=device)(energy, x_pos),
             lambda dt: dict(n_numeric=1, n_classes=N_CLASSES, cd_rounds=1, dtype=dt,
                             device=torch.get_default_device(), energy=_mixed_energy(dt), x_pos=_rows(dt)),
             {"n_numeric": NONNEG, "n_classes": SEQ, "cd_rounds": COUNT, "dtype": "none intdtype",
              "x_pos": "nan inf cols int list"}),
        target_tabcd_loss, steps="cd_rounds"),
}
NO_TENSOR_INPUT = {"enumerate_states", "heat_kernel"}  # float64 by design: nothing to follow
NO_FLOAT_OUTPUT = {"metropolis_accept", "sample_categorical"}  # a boolean mask, integer indices


# ---------------------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------------------
def tensors_of(out: Any) -> list[Tensor]:
    """Every tensor in an output (tuples, lists, dicts, dataclasses), detached."""
    if isinstance(out, Tensor):
        return [out.detach()]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in tensors_of(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in tensors_of(o)]
    if is_dataclass(out):
        return [t for f in fields(out) for t in tensors_of(getattr(out, f.name))]
    return []


def run_entry(spec: Spec, dtype: torch.dtype = F64, *, input_seed: int = 1, call_seed: int = 1) -> Any:
    """Build the valid arguments under one seed and call under another."""
    torch.manual_seed(input_seed)
    args = spec.make(dtype)
    torch.manual_seed(call_seed)
    return spec.fn(**args)


def test_registry_covers_every_public_sampler_and_loss():
    public = set(S.__all__) | set(L.__all__)
    assert not set(REGISTRY) & set(EXCLUDED)
    assert not public - set(REGISTRY) - set(EXCLUDED), "public sampler or loss without a battery entry"
    assert not (set(REGISTRY) | set(EXCLUDED)) - public, "stale registry entry"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_target(name):
    REGISTRY[name].target()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_seeded_determinism(name):
    """The same seed gives the same bits; another seed gives another output exactly for the random entries
    (a deterministic one must not depend on the generator's state, a random one must draw from it)."""
    entry = REGISTRY[name]
    first, again = tensors_of(run_entry(entry.spec)), tensors_of(run_entry(entry.spec))
    assert first and len(first) == len(again)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    other = tensors_of(run_entry(entry.spec, call_seed=2))
    same = all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other))
    assert same != entry.random


@pytest.mark.parametrize("name", sorted(set(REGISTRY) - NO_TENSOR_INPUT - NO_FLOAT_OUTPUT))
def test_dtype_follows_the_input(name):
    """float64 in gives float64 out; float32 in gives float32 out even under a float64 default dtype."""
    spec = REGISTRY[name].spec
    out = [t for t in tensors_of(run_entry(spec, F64)) if t.is_floating_point()]
    assert out and all(t.dtype == F64 for t in out), [t.dtype for t in out]
    torch.manual_seed(1)
    args = spec.make(torch.float32)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        out = [t for t in tensors_of(spec.fn(**args)) if t.is_floating_point()]
    finally:
        torch.set_default_dtype(previous)
    assert out and all(t.dtype == torch.float32 for t in out), [t.dtype for t in out]


BAD_CALLS = [call for name in sorted(REGISTRY) for call in corrupted_calls(name, REGISTRY[name].spec)]


@pytest.mark.parametrize("name, arg, kind", BAD_CALLS, ids=["-".join(c) for c in BAD_CALLS])
def test_bad_input_raises_a_value_error_naming_the_argument(name, arg, kind):
    assert outcome(REGISTRY[name].spec, arg, kind) == "ok"
