"""MALA, i-SIR and flowMC against a known 2D Gaussian mixture; split R-hat; the flowMC-EBM training step."""

import copy
import math

import pytest
import torch

from ebmlib.data import GaussianMixture, Rings, paper_mixture
from ebmlib.flows import RealNVP
from ebmlib.losses import FlowEBMLoss
from ebmlib.metrics import median_squared_log_density_error, mode_weight_mse, mode_weights, split_rhat
from ebmlib.nets import TiltedEnergy, toy_energy_net
from ebmlib.samplers import flowmc, isir_step, latent_mala, mala

# The motivating example: 1/3 N(-1.5·1, 0.05 I) + 2/3 N(1.5·1, 0.1 I). Exact moments per coordinate:
# mean = 1.5 (2/3 - 1/3) = 0.5, variance = E[x²] - mean² = (2.25 + 0.05/3 + 0.2/3) - 0.25.
TARGET = paper_mixture("two_modes")
MEAN, VAR, WEIGHTS = 0.5, 2.25 + 0.25 / 3 - 0.25, torch.tensor([1 / 3, 2 / 3])
N_CHAINS = 4000
# Standard errors with 4000 independent chains: mean 0.023, weight 0.0075; tolerances are ~4 of them.
MEAN_TOL, VAR_RTOL, WEIGHT_TOL = 0.1, 0.08, 0.03


def _check_moments_and_weights(x):
    assert torch.isfinite(x).all()
    assert (x.mean(0) - MEAN).abs().max() < MEAN_TOL, x.mean(0)
    assert ((x.var(0) / VAR) - 1).abs().max() < VAR_RTOL, x.var(0)
    weights = mode_weights(x, TARGET.means)
    assert (weights - WEIGHTS).abs().max() < WEIGHT_TOL, weights
    # Within-mode spread: the MH correction keeps the narrow modes' variances (0.05 and 0.1) exact.
    nearest = torch.cdist(x, TARGET.means).argmin(1)
    for k, var in enumerate((0.05, 0.1)):
        assert abs(x[nearest == k].var(0).mean().item() / var - 1) < 0.1


def test_mixture_sampler_and_log_prob():
    x, labels = TARGET.sample(N_CHAINS)
    _check_moments_and_weights(x)
    assert abs(labels.float().mean().item() - 2 / 3) < WEIGHT_TOL
    assert abs(TARGET.max_marginal_std() - math.sqrt(VAR)) < 1e-5


def _mala_acceptance_on_target(h: float, n: int = 200_000) -> tuple[float, float]:
    """Expected MALA acceptance at stationarity on TARGET and its Monte-Carlo standard error, from the
    Metropolis–Hastings ratio written out here (proposal N(x - h∇E(x), 2h I)) and independent exact draws."""
    gen = torch.Generator().manual_seed(11)
    x, _ = TARGET.sample(n, generator=gen)
    x = x.double().requires_grad_(True)
    energy = lambda z: TARGET.energy(z.float()).double()  # noqa: E731 - the target is float32
    (grad_x,) = torch.autograd.grad(energy(x).sum(), x)
    y = (x - h * grad_x + math.sqrt(2 * h) * torch.randn(x.shape, generator=gen, dtype=torch.float64)).detach()
    y.requires_grad_(True)
    (grad_y,) = torch.autograd.grad(energy(y).sum(), y)
    with torch.no_grad():
        log_q_forward = -(y - x + h * grad_x).pow(2).sum(1) / (4 * h)
        log_q_reverse = -(x - y + h * grad_y).pow(2).sum(1) / (4 * h)
        alpha = (energy(x) - energy(y) + log_q_reverse - log_q_forward).clamp(max=0).exp()
    return alpha.mean().item(), alpha.std().item() / math.sqrt(n)


def test_mala_leaves_the_mixture_invariant():
    """The law stays the target, and the acceptance equals its expectation at stationarity (this replaces a
    check that it merely lay in (0.3, 0.99)): a proposal or correction with the wrong variance (ε = √(2h) read
    as h) or no correction at all accepts at another rate. Per chain the rate averages correlated steps, so its
    variance is at most α(1 - α): 5 standard errors over N chains, plus the expectation's own error."""
    x0, _ = TARGET.sample(N_CHAINS)
    # A step this large biases unadjusted Langevin by ~25% in the narrow modes' variance; MALA must not.
    result = mala(TARGET.energy, x0, n_steps=30, step_size=0.02)
    _check_moments_and_weights(result.x)
    alpha, mc_se = _mala_acceptance_on_target(0.02)
    tolerance = 5 * (math.sqrt(alpha * (1 - alpha) / N_CHAINS) + mc_se)
    assert abs(result.acceptance.mean().item() - alpha) < tolerance, (result.acceptance.mean(), alpha)


def test_mala_adapts_its_step_size_towards_the_target():
    x0, _ = TARGET.sample(1000)
    result = mala(TARGET.energy, x0, n_steps=150, step_size=1e-4, target_accept=0.75)
    assert result.step_size > 1e-3
    late = mala(TARGET.energy, result.x, n_steps=50, step_size=result.step_size)
    assert abs(late.acceptance.mean().item() - 0.75) < 0.08


def test_isir_leaves_the_mixture_invariant_and_restores_weights():
    flow = RealNVP(2, base_std=TARGET.max_marginal_std())  # identity: the proposal is the Gaussian base
    x0, _ = TARGET.sample(N_CHAINS)
    x = x0
    for _ in range(5):
        x, _ = isir_step(TARGET.energy, x, flow, 16)
    _check_moments_and_weights(x)
    # From all chains in the small mode, global moves alone restore the 1:2 balance.
    x = TARGET.means[0] + 0.2 * torch.randn(N_CHAINS, 2)
    for _ in range(20):
        x, _ = isir_step(TARGET.energy, x, flow, 16)
    assert (mode_weights(x, TARGET.means) - WEIGHTS).abs().max() < WEIGHT_TOL


@pytest.mark.parametrize("n_particles", [2, 4, 10])
def test_isir_with_a_perfect_proposal_accepts_at_rate_n_minus_1_over_n(n_particles):
    flow = RealNVP(2, base_std=1.3)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = flow.sample(20_000).detach()
    _, accepted = isir_step(lambda y: -flow.log_prob(y), x, flow, n_particles)
    expected = (n_particles - 1) / n_particles
    assert abs(accepted.float().mean().item() - expected) < 0.015  # 5 standard errors


class _ListedFlow:
    """A proposal whose draws are the next rows of a fixed list (so chunked and whole draws coincide)."""

    def __init__(self, rows):
        self.rows, self.calls = rows, []

    def sample_with_log_prob(self, n):
        start = sum(self.calls)
        self.calls.append(n)
        return self.rows[start:start + n], self.log_prob(self.rows[start:start + n])

    def log_prob(self, x):
        return -0.5 * x.pow(2).sum(-1)


def test_isir_draws_its_particles_in_chunks_that_change_nothing(monkeypatch):
    import ebmlib.samplers.flow as flow_module

    x, rows = torch.randn(5, 3), torch.randn(5 * 7, 3)
    moves = {}
    for chunk_values in (flow_module._ISIR_CHUNK_VALUES, 4 * 3):  # one chunk; chunks of 4 particles
        monkeypatch.setattr(flow_module, "_ISIR_CHUNK_VALUES", chunk_values)
        flow, energies = _ListedFlow(rows), []
        torch.manual_seed(0)
        moves[chunk_values] = isir_step(lambda y, seen=energies: seen.append(len(y)) or y.pow(2).sum(-1), x, flow, 8)
        assert sum(flow.calls) == 35 and sum(energies) == 35 + 5
    (whole, whole_accepted), (chunked, chunked_accepted) = moves.values()
    assert flow.calls == [4] * 8 + [3] and torch.equal(whole, chunked) and torch.equal(whole_accepted, chunked_accepted)


def test_isir_acceptance_with_an_imperfect_proposal_matches_its_expectation():
    """Replaces a check that flowMC's global acceptance merely lay in (0.05, 0.95). At stationarity an i-SIR
    step with N particles leaves the current state with probability E[1 - w(x) / Σ_j w(y_j)], x ~ π and
    y_2..y_N ~ λ, w = π/λ; here λ = N(0, σ² I) (the identity flow) and the expectation is estimated from
    independent draws with the densities written out. Catches a current state weighted without its λ(x), or
    weights of the wrong sign. Tolerance: 5 binomial standard errors over the chains plus the expectation's."""
    sigma, n_particles, m = TARGET.max_marginal_std(), 4, 200_000
    flow = RealNVP(2, base_std=sigma)
    gen = torch.Generator().manual_seed(12)
    x, _ = TARGET.sample(m, generator=gen)
    y = sigma * torch.randn(m, n_particles - 1, 2, generator=gen)

    def log_weight(z):  # log π(z) - log λ(z), λ = N(0, σ² I) in 2D
        return TARGET.log_prob(z) + z.pow(2).sum(-1) / (2 * sigma**2) + math.log(2 * math.pi * sigma**2)

    log_w = torch.cat([log_weight(x)[:, None], log_weight(y.reshape(-1, 2)).view(m, -1)], dim=1).double()
    moves = 1 - torch.softmax(log_w, dim=1)[:, 0]
    expected, mc_se = moves.mean().item(), moves.std().item() / math.sqrt(m)
    x0, _ = TARGET.sample(N_CHAINS)
    _, accepted = isir_step(TARGET.energy, x0, flow, n_particles)
    tolerance = 5 * (math.sqrt(expected * (1 - expected) / N_CHAINS) + mc_se)
    assert abs(accepted.float().mean().item() - expected) < tolerance, (accepted.float().mean(), expected)


def test_flowmc_converges_to_the_mixture_from_one_mode():
    flow = RealNVP(2, base_std=TARGET.max_marginal_std())
    x0 = TARGET.means[0] + 0.2 * torch.randn(N_CHAINS, 2)
    result = flowmc(TARGET.energy, x0, flow, n_steps=100, n_local=4, n_particles=32, step_size=0.02,
                    record_steps=[50, 100])
    assert result.samples.shape == (2, N_CHAINS, 2) and torch.equal(result.samples[-1], result.x)
    _check_moments_and_weights(result.x)
    # MALA alone cannot cross the gap between the modes in as many steps.
    stuck = mala(TARGET.energy, x0, n_steps=100, step_size=0.02).x
    assert mode_weights(stuck, TARGET.means)[1] < 0.05


def test_latent_mala_with_the_identity_flow_is_mala():
    flow = RealNVP(2, base_std=1.0)
    x0, _ = TARGET.sample(N_CHAINS)
    x, result = latent_mala(TARGET.energy, flow, x0, n_steps=30, step_size=0.02, target_accept=None)
    assert torch.equal(x, result.x)
    _check_moments_and_weights(x)


def test_mala_records_its_trajectory_without_changing_the_chains():
    x0, _ = TARGET.sample(64)
    torch.manual_seed(1)
    plain = mala(TARGET.energy, x0, n_steps=6, step_size=0.05, target_accept=0.75)
    torch.manual_seed(1)
    recorded = mala(TARGET.energy, x0, n_steps=6, step_size=0.05, target_accept=0.75, record_steps=[2, 6])
    assert plain.samples is None and recorded.samples.shape == (2, 64, 2)
    assert torch.equal(recorded.x, plain.x) and torch.equal(recorded.samples[-1], plain.x)
    torch.manual_seed(1)
    two = mala(TARGET.energy, x0, n_steps=2, step_size=0.05, target_accept=0.75)
    assert torch.equal(recorded.samples[0], two.x)
    flow = RealNVP(2, base_std=1.0)
    _, latent = latent_mala(TARGET.energy, flow, x0, n_steps=3, step_size=0.02, record_steps=[1, 2, 3])
    assert latent.samples.shape == (3, 64, 2) and torch.equal(latent.samples[-1], latent.x)
    for bad in ([], [0], [7], [True], [2.0]):
        with pytest.raises(ValueError, match="record_steps"):
            mala(TARGET.energy, x0, n_steps=6, step_size=0.05, record_steps=bad)


def test_latent_mala_with_a_curved_flow_targets_pi_in_data_space():
    # A non-affine flow makes log|det J_T| vary with z; dropping it or its sign shifts the law of T(z).
    torch.manual_seed(0)
    flow = RealNVP(2, base_std=1.0)
    with torch.no_grad():
        for layer in flow.layers:
            layer.net.net[-1].weight.normal_(0.0, 2.0)
    z = torch.randn(2000, 2)
    assert flow(z)[1].std() > 0.3  # the log-determinant is far from constant
    # Target N(m, diag(s²)); chains start at the flow's samples, which are far from it.
    m, s = torch.tensor([0.5, -0.3]), torch.tensor([0.6, 1.2])

    def energy(x):
        return 0.5 * ((x - m) / s).pow(2).sum(-1)

    x, result = latent_mala(energy, flow, z, n_steps=500, step_size=0.05, target_accept=None)
    assert result.acceptance.mean() > 0.5
    # 2000 chains: standard errors 0.013-0.027 on the means, 3% on the variances; tolerances ~3-4 of them.
    # Without the log-determinant the second mean is off by about 0.2.
    assert (x.mean(0) - m).abs().max() < 0.1, x.mean(0)
    assert ((x.var(0) / s**2) - 1).abs().max() < 0.1, x.var(0)


def test_split_rhat_detects_stuck_chains():
    iid = torch.randn(8, 500, 3, dtype=torch.float64)
    assert split_rhat(iid).max() < 1.02
    stuck = iid.clone()
    stuck[:4] += 3.0  # half of the chains in another mode
    assert split_rhat(stuck).min() > 1.5
    # Chains that drift (first half differs from the second half) are caught by the split.
    drift = iid + torch.linspace(0, 4, 500, dtype=torch.float64)[None, :, None]
    assert split_rhat(drift).min() > 1.3
    # The folded (tail) part catches chains with equal means but different scales.
    scales = iid * torch.tensor([0.2] * 4 + [3.0] * 4, dtype=torch.float64)[:, None, None]
    assert split_rhat(scales).min() > 1.3


def test_split_rhat_matches_the_formula_without_ranks_on_gaussian_draws():
    draws = torch.randn(4, 200, 1, dtype=torch.float64) + torch.tensor([0.0, 0.0, 1.0, 1.0])[:, None, None]
    halves = torch.cat([draws[:, :100], draws[:, 100:]])[..., 0]
    w, b = halves.var(1).mean(), 100 * halves.mean(1).var()
    plain = math.sqrt(((99 / 100) * w + b / 100) / w)
    # Rank normalisation is monotone, so for Gaussian draws it changes R-hat only slightly.
    assert abs(split_rhat(draws).item() - plain) < 0.03 and plain > 1.05


def test_metrics_for_densities_and_weights():
    eight = paper_mixture("eight_gaussians")
    x, _ = eight.sample(2000)
    err = median_squared_log_density_error(eight.energy, x, eight.log_prob(x), lim=2.5, n=400)
    assert err < 1e-4
    shifted = median_squared_log_density_error(lambda y: eight.energy(y) + y[:, 0], x, eight.log_prob(x), lim=2.5)
    assert shifted > 0.05
    rings = Rings()
    xr, _ = rings.sample(2000)
    assert median_squared_log_density_error(lambda y: -rings.log_prob(y), xr, rings.log_prob(xr), lim=5.0) < 1e-3
    assert torch.isclose(mode_weight_mse(torch.tensor([0.5, 0.5]), torch.tensor([0.4, 0.6])), torch.tensor(0.01))


def test_high_dim_mixture_modes_are_separated():
    for scaling, separated in (("sqrt_d", True), ("unit", False)):
        mix = paper_mixture("high_dim", dim=16, mean_scaling=scaling)
        x, labels = mix.sample(4000)
        wrong = (torch.cdist(x, mix.means).argmin(1) != labels).float().mean().item()
        assert (wrong < 1e-3) == separated, (scaling, wrong)


def test_training_step_moves_chains_and_fits_the_flow():
    flow = RealNVP(2, base_std=1.5)
    energy = TiltedEnergy(toy_energy_net(2, (16, 16)), 2, base_std=1.5)
    x_data, _ = TARGET.sample(64)
    assert torch.allclose(energy(x_data), -flow.log_prob(x_data), atol=1e-5)  # E_θ0 = 0: EBM = flow
    pool = flow.sample(256).detach()
    loss_fn = FlowEBMLoss("flowmc", pool, n_chains=32, n_steps=10, step_size=0.01, flow=flow,
                          flow_optimizer=torch.optim.Adam(flow.parameters(), lr=1e-2), n_local=4,
                          n_particles=8, record_steps=[5, 10])
    loss, logs = loss_fn(energy, x_data)
    loss.backward()
    assert loss_fn.last_negatives.shape == (64, 2) and loss_fn.last_init.shape == (32, 2)
    assert not torch.equal(loss_fn.pool, pool)
    assert all(p.grad is not None for p in energy.parameters())
    assert all(math.isfinite(float(v)) for v in logs.values())
    assert float(logs["step_size"]) == loss_fn.step_size  # the adapted MALA step, logged for diagnostics
    assert any(p.abs().sum() > 0 for p in flow.layers[0].net.net[-1].parameters()), "flow was not updated"
    for method in ("ula", "nt", "coop"):
        loss_fn = FlowEBMLoss(method, pool, n_chains=32, n_steps=5, step_size=0.1, flow=flow,
                              flow_optimizer=torch.optim.Adam(flow.parameters(), lr=1e-2))
        assert math.isfinite(loss_fn(energy, x_data)[0].item())
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    loss_fn = FlowEBMLoss("flowmc", pool, n_chains=32, n_steps=5, step_size=0.1, flow=flow, n_local=2,
                          n_particles=4, flow_optimizer=optimizer, flow_steps=3)
    loss_fn(energy, x_data)
    assert next(iter(optimizer.state.values()))["step"].item() == 3  # three ML steps on the same negatives


def test_the_energy_penalty_acts_on_the_untilted_energy():
    """App. C.6: λ Σ E(x⁻)² + E(x⁺)² with E = U + log ρ; at initialisation E ≡ 0, so the penalty is 0 however
    large the tilt U = -log ρ is (about 2 nats per point here)."""
    flow = RealNVP(2, base_std=1.5)
    energy = TiltedEnergy(toy_energy_net(2, (16, 16)), 2, base_std=1.5)
    x_data, _ = TARGET.sample(64)
    pool = flow.sample(64).detach()

    def loss(energy_l2):
        torch.manual_seed(0)
        loss_fn = FlowEBMLoss("ula", pool.clone(), n_chains=32, n_steps=3, step_size=0.1, flow=flow,
                              flow_optimizer=torch.optim.Adam(flow.parameters()), energy_l2=energy_l2)
        return loss_fn(energy, x_data)

    plain, (penalised, logs) = loss(0.0)[0], loss(1e-4)
    assert float(logs["energy_l2"]) == 0 and torch.equal(plain, penalised)
    with torch.no_grad():
        energy.net.net[-1].bias.fill_(2.0)  # E ≡ 2 everywhere
    _, logs = loss(1e-4)
    assert float(logs["energy_l2"]) == pytest.approx(4.0 * (64 + 32))  # Σ over x⁺ (64) and x⁻ (32) of 2²
    with pytest.raises(ValueError, match="energy_l2"):
        FlowEBMLoss("ula", pool, n_chains=8, n_steps=1, step_size=0.1, energy_l2=1e-4)


def test_coopflow_starts_fresh_chains_from_the_flow_and_fits_it_to_the_revised_samples():
    torch.manual_seed(0)
    flow = RealNVP(2, base_std=1.5)
    energy = TiltedEnergy(toy_energy_net(2, (16, 16)), 2, base_std=1.5)
    pool = flow.sample(64).detach()
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    loss_fn = FlowEBMLoss("coop", pool, n_chains=32, n_steps=3, step_size=0.01, flow=flow,
                          flow_optimizer=optimizer, noise_scale=0.0)
    x_data, twin = TARGET.sample(32)[0], copy.deepcopy(flow)
    torch.manual_seed(1)
    loss, logs = loss_fn(energy, x_data)
    torch.manual_seed(1)
    starts = twin.sample_with_log_prob(32)[0]  # the flow before its update, the same draws
    assert torch.allclose(loss_fn.last_init, starts)
    assert torch.equal(loss_fn.pool, pool)  # nothing persists between calls
    # without noise, three gradient-descent steps on the energy: the negatives have lower energy than the starts
    assert (energy(loss_fn.last_negatives) <= energy(loss_fn.last_init) + 1e-6).all()
    assert "flow_nll" in logs and next(iter(optimizer.state.values()))["step"].item() == 1
    with pytest.raises(ValueError, match="noise_scale"):
        FlowEBMLoss("coop", pool, n_chains=32, n_steps=3, step_size=0.01, flow=flow, flow_optimizer=optimizer,
                    noise_scale=-1.0)


def test_bad_input_raises():
    flow = RealNVP(2)
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="step_size"):
        mala(TARGET.energy, x, n_steps=1, step_size=0.0)
    with pytest.raises(ValueError, match="target_accept"):
        mala(TARGET.energy, x, n_steps=1, step_size=0.1, target_accept=1.5)
    with pytest.raises(ValueError, match="n_particles"):
        isir_step(TARGET.energy, x, flow, 1)
    with pytest.raises(ValueError, match="flow"):
        isir_step(TARGET.energy, torch.zeros(4, 3), flow, 4)
    with pytest.raises(ValueError, match="record_steps"):
        flowmc(TARGET.energy, x, flow, n_steps=5, n_local=2, n_particles=4, step_size=0.1, record_steps=[6])
    with pytest.raises(ValueError, match="x"):
        mala(TARGET.energy, torch.full((4, 2), float("nan")), n_steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="energy_fn"):
        mala(lambda y: y.sum(1) * float("nan"), x, n_steps=2, step_size=0.1)
    with pytest.raises(ValueError, match="method"):
        FlowEBMLoss("cd", x, n_chains=2, n_steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="flow"):
        FlowEBMLoss("flowmc", x, n_chains=2, n_steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="flow_steps"):
        FlowEBMLoss("flowmc", x, n_chains=2, n_steps=1, step_size=0.1, flow=flow,
                    flow_optimizer=torch.optim.Adam(flow.parameters()), flow_steps=0)
    with pytest.raises(ValueError, match="chains"):
        split_rhat(torch.zeros(1, 10, 2))
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(torch.zeros(2, 2), torch.ones(2), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="mean_scaling"):
        paper_mixture("high_dim", mean_scaling="half")
