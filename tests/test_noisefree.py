"""Noise-free EBMs: ODE/Euler samplers, flow log-density, Hutchinson, the eq. 12 loss, Fréchet distance."""

import itertools
import math
import sys

import pytest
import scipy.linalg
import torch
from torch import nn

from ebmlib.losses import FlowMaximumLikelihood, SelfAdversarialLoss, frozen, self_adversarial_loss
from ebmlib.metrics import frechet_distance, gaussian_frechet_distance, inception_fid
from ebmlib.nets import ConvEnergy, FeatureClassifier, MLPEnergy
from ebmlib.samplers import euler_sample, flow_log_prob, hessian_trace, hutchinson_trace, noisy_sample, ode_sample

A = torch.tensor([[1.5, 0.4], [0.4, 0.7]], dtype=torch.float64)  # symmetric positive definite
T = 0.3


def quadratic(x):
    """E(x) = x^T A x / 2, so -∇E = -A x: a linear flow x_T = exp(-A T) x_0."""
    return 0.5 * ((x @ A) * x).sum(-1)


class DiagonalQuadratic(nn.Module):
    """E_θ(x) = Σ_i a_i x_i² / 2 + b_i x_i with θ = (a, b): the Euler path has a closed form."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = nn.Parameter(a.clone()), nn.Parameter(b.clone())

    def forward(self, x):
        return (0.5 * self.a * x**2 + self.b * x).sum(-1)


def test_ode_flow_of_quadratic_energy_is_linear():
    x0 = torch.randn(50, 2, dtype=torch.float64)
    expected = x0 @ torch.linalg.matrix_exp(-A * T).T
    got = ode_sample(quadratic, x0, T=T, rtol=1e-9, atol=1e-9)
    assert torch.allclose(got, expected, atol=1e-7)


def test_flow_log_prob_of_quadratic_energy_matches_closed_form():
    # p_T = N(0, Σ) with Σ = exp(-A T) exp(-A T)^T = exp(-2 A T).
    cov = torch.linalg.matrix_exp(-2 * A * T)
    x = torch.randn(200, 2, dtype=torch.float64)
    exact = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), cov).log_prob(x)
    log_p, x0 = flow_log_prob(quadratic, x, T=T, rtol=1e-8, atol=1e-8)
    assert (log_p - exact).abs().max() < 1e-4
    assert torch.allclose(x0, x @ torch.linalg.matrix_exp(A * T).T, atol=1e-4)


def test_flow_log_prob_step_cap_raises_only_when_exceeded():
    x = torch.randn(20, 2, dtype=torch.float64)
    uncapped, _ = flow_log_prob(quadratic, x, T=T, rtol=1e-8, atol=1e-8)
    capped, _ = flow_log_prob(quadratic, x, T=T, rtol=1e-8, atol=1e-8, max_num_steps=10_000)
    assert torch.equal(capped, uncapped)
    with pytest.raises(RuntimeError, match="max_num_steps"):
        flow_log_prob(quadratic, x, T=T, rtol=1e-8, atol=1e-8, max_num_steps=2)


def test_flow_log_prob_is_normalised_on_a_grid():
    # A non-quadratic energy: the flow density must still integrate to one (base mass inside [-6, 6]² ≈ 1).
    torch.manual_seed(1)
    net = MLPEnergy(2, hidden=16, depth=2).double()
    n = 120
    axis = torch.linspace(-6, 6, n + 1, dtype=torch.float64)
    centres = (axis[1:] + axis[:-1]) / 2
    grid = torch.cartesian_prod(centres, centres)
    log_p, _ = flow_log_prob(net, grid, T=0.5, rtol=1e-6, atol=1e-6)
    mass = log_p.exp().sum() * (12 / n) ** 2
    assert abs(mass.item() - 1) < 2e-3


def test_fixed_step_rk4_matches_the_linear_flow_and_its_density():
    # RK4 has local error O(h^5): 8 steps over T = 0.3 on this mild quadratic are accurate to ~1e-7, one step not.
    x0 = torch.randn(50, 2, dtype=torch.float64)
    expected = x0 @ torch.linalg.matrix_exp(-A * T).T
    got = ode_sample(quadratic, x0, T=T, method="rk4", step_size=T / 8)
    assert torch.allclose(got, expected, atol=1e-6)
    one_step = ode_sample(quadratic, x0, T=T, method="rk4")
    assert (one_step - expected).abs().max() > 10 * (got - expected).abs().max()
    cov = torch.linalg.matrix_exp(-2 * A * T)
    exact = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), cov).log_prob(got)
    log_p, _ = flow_log_prob(quadratic, got, T=T, method="rk4", step_size=T / 8)
    assert (log_p - exact).abs().max() < 1e-5


def test_euler_sampler_on_quadratic_energy():
    x0 = torch.randn(10, 2, dtype=torch.float64)
    step = torch.eye(2, dtype=torch.float64) - 0.05 * A
    expected = x0 @ torch.linalg.matrix_power(step, 7).T
    assert torch.allclose(euler_sample(quadratic, x0, n_steps=7, step_size=0.05), expected, atol=1e-12)


def test_noisy_sampler_reduces_to_euler_without_noise_and_spreads_with_it():
    x0 = torch.randn(4000, 2, dtype=torch.float64)
    clean = euler_sample(quadratic, x0, n_steps=5, step_size=0.2)
    assert torch.allclose(noisy_sample(quadratic, x0, n_steps=5, step_size=0.2, noise_scale=0.0), clean)
    noisy = noisy_sample(quadratic, x0, n_steps=5, step_size=0.2, noise_scale=0.1)
    # Linear dynamics: the noise adds Σ_k M^k (0.1² I) M^kᵀ to the covariance, M = I - 0.1 A.
    m = torch.eye(2, dtype=torch.float64) - 0.1 * A
    added = sum(0.01 * torch.linalg.matrix_power(m, k) @ torch.linalg.matrix_power(m, k).T for k in range(5))
    diff_cov = torch.cov((noisy - clean).T)
    assert torch.allclose(diff_cov, added, atol=0.01)


def test_hessian_trace_exact_on_quadratic():
    x = torch.randn(5, 2, dtype=torch.float64)
    grad, trace = hessian_trace(quadratic, x)
    assert torch.allclose(grad, x @ A) and torch.allclose(trace, A.trace().expand(5))


def _autograd_grad_and_trace(net, x):
    """The reference: one backward pass per coordinate, through a wrapper without the forward Laplacian."""
    return hessian_trace(lambda z: net(z), x)


@pytest.mark.parametrize("activation", ["swish", "silu", "elu", "relu", "leaky_relu", "tanh"])
@pytest.mark.parametrize("depth", [1, 3])
def test_forward_laplacian_equals_autograd(activation, depth):
    torch.manual_seed(depth)
    net = MLPEnergy(3, hidden=8, depth=depth, activation=activation).double()
    with torch.no_grad():  # a learnable Swish beta away from 1, so that beta enters the derivatives
        for module in net.modules():
            if getattr(module, "beta", None) is not None:
                module.beta.fill_(1.7)
    x = torch.randn(7, 3, dtype=torch.float64)
    energy, grad, laplacian = net.grad_and_laplacian(x)
    ref_grad, ref_trace = _autograd_grad_and_trace(net, x)
    assert torch.allclose(energy, net(x), rtol=1e-10, atol=1e-12)
    assert torch.allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)
    assert torch.allclose(laplacian, ref_trace, rtol=1e-10, atol=1e-12)
    fast_grad, fast_trace = hessian_trace(net, x)  # the public function takes the fast path
    assert torch.equal(fast_grad, grad.detach()) and torch.equal(fast_trace, laplacian.detach())


def test_forward_laplacian_of_a_linear_energy():
    net = MLPEnergy(3, depth=0).double()  # E = w·x + b: autograd's second derivative does not even exist here
    x = torch.randn(4, 3, dtype=torch.float64)
    energy, grad, laplacian = net.grad_and_laplacian(x)
    assert torch.allclose(energy, net(x)) and torch.equal(laplacian, torch.zeros(4, dtype=torch.float64))
    assert torch.allclose(grad, net.mlp.net[0].weight.expand(4, 3))


def test_forward_laplacian_refuses_an_activation_it_has_no_derivatives_for():
    net = MLPEnergy(2, hidden=4, depth=1)
    net.mlp.net[1] = nn.Softplus()  # swapped in by hand: its f'' is not the piecewise-linear zero
    with pytest.raises(ValueError, match="Softplus"):
        net.grad_and_laplacian(torch.randn(3, 2))


def test_flow_likelihood_gradient_is_the_same_through_the_forward_laplacian():
    torch.manual_seed(4)
    net = MLPEnergy(2, hidden=16, depth=3, activation="swish").double()
    x = torch.randn(9, 2, dtype=torch.float64)
    ode = dict(T=0.2, method="rk4", step_size=0.05, create_graph=True)
    fast = flow_log_prob(net, x, **ode)[0].mean()
    slow = flow_log_prob(lambda z: net(z), x, **ode)[0].mean()
    fast_grads = torch.autograd.grad(fast, list(net.parameters()), materialize_grads=True)
    slow_grads = torch.autograd.grad(slow, list(net.parameters()), materialize_grads=True)
    assert torch.allclose(fast, slow, rtol=1e-10)
    for a, b in zip(fast_grads, slow_grads):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_hutchinson_is_unbiased_against_the_exact_trace():
    torch.manual_seed(2)
    net = MLPEnergy(3, hidden=16, depth=2).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    _, exact = hessian_trace(net, x)
    # The mean over all 2^d Rademacher probes is exactly E[v^T H v] = tr H.
    probes = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)), dtype=torch.float64)
    mean = sum(hutchinson_trace(net, x, v.expand(6, 3))[1] for v in probes) / len(probes)
    assert torch.allclose(mean, exact, atol=1e-10)
    single = hutchinson_trace(net, x, probes[1].expand(6, 3))[1]
    assert not torch.allclose(single, exact, atol=1e-3), "one probe should not be exact (test has power)"
    # Gaussian probes: Monte Carlo mean within 5 standard errors.
    draws = torch.stack([hutchinson_trace(net, x, torch.randn(6, 3, dtype=torch.float64))[1] for _ in range(2000)])
    se = draws.std(0) / math.sqrt(len(draws))
    assert ((draws.mean(0) - exact).abs() < 5 * se).all()


def test_hutchinson_flow_log_prob_averages_to_exact():
    torch.manual_seed(3)
    net = MLPEnergy(2, hidden=16, depth=2).double()
    x = torch.randn(8, 2, dtype=torch.float64)
    exact, _ = flow_log_prob(net, x, T=0.3, rtol=1e-9, atol=1e-9)
    probes = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=2)), dtype=torch.float64)
    estimates = [flow_log_prob(net, x, T=0.3, rtol=1e-9, atol=1e-9, trace="hutchinson", noise=v.expand(8, 2))[0]
                 for v in probes]
    assert torch.allclose(sum(estimates) / len(estimates), exact, atol=1e-6)


def test_flow_maximum_likelihood_gradient_matches_closed_form():
    # E = s |x|²/2: log p_T(x) = -log(2π) + 2 s T - e^{2sT} |x|²/2 in 2D, d/ds = 2T - T e^{2sT} |x|².
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.tensor(0.8, dtype=torch.float64))

        def forward(self, x):
            return 0.5 * self.s * x.pow(2).sum(-1)

    model = Scaled()
    x = torch.randn(30, 2, dtype=torch.float64)
    nll, logs = FlowMaximumLikelihood(T=T, rtol=1e-9, atol=1e-9)(model, x)
    nll.backward()
    s = 0.8
    log_p = -math.log(2 * math.pi) + 2 * s * T - math.exp(2 * s * T) * x.pow(2).sum(-1) / 2
    grad = 2 * T - T * math.exp(2 * s * T) * x.pow(2).sum(-1)
    assert abs(logs["log_likelihood"].item() - log_p.mean().item()) < 1e-6
    assert abs(model.s.grad.item() + grad.mean().item()) < 1e-5


# ---------------------------------------------------------------------------------------------------------
# The self-adversarial loss (eq. 12)
# ---------------------------------------------------------------------------------------------------------
def _hand_gradients(a, b, x_pos, x0, n_steps, h):
    """Gradients of the critic and generator terms of eq. 12 for DiagonalQuadratic, by hand."""
    c = 1 - h * a  # x_{k+1} = c x_k - h b, per coordinate
    powers = torch.stack([c**j for j in range(n_steps)])
    s = powers.sum(0)
    ds_dc = sum(j * c ** (j - 1) for j in range(1, n_steps))
    x_k = c**n_steps * x0 - h * b * s
    dxk_da = n_steps * c ** (n_steps - 1) * (-h) * x0 - h * b * ds_dc * (-h)
    dxk_db = -h * s
    r = a * x_k + b  # ∂E_sg(θ)/∂x at x_K
    generator = ((r * dxk_da).mean(0), (r * dxk_db).expand_as(r).mean(0))
    critic = ((0.5 * x_pos**2).mean(0) - (0.5 * x_k**2).mean(0), x_pos.mean(0) - x_k.mean(0))
    return critic, generator, x_k


@pytest.fixture
def tiny():
    torch.manual_seed(4)
    a = torch.tensor([0.8, 1.3, 0.5], dtype=torch.float64)
    b = torch.tensor([0.2, -0.4, 0.1], dtype=torch.float64)
    x_pos = torch.randn(5, 3, dtype=torch.float64) + 1
    x0 = torch.randn(5, 3, dtype=torch.float64)
    return a, b, x_pos, x0


@pytest.mark.parametrize("generator", [False, True])
def test_self_adversarial_gradient_matches_hand_computation(tiny, generator):
    a, b, x_pos, x0 = tiny
    model = DiagonalQuadratic(a, b)
    x_k = euler_sample(model, x0, n_steps=4, step_size=0.15, create_graph=generator)
    critic, gen, x_k_hand = _hand_gradients(a, b, x_pos, x0, 4, 0.15)
    assert torch.allclose(x_k, x_k_hand)
    loss, logs = self_adversarial_loss(model, x_pos, x_k, generator=generator)
    loss.backward()
    expected_a = critic[0] + (gen[0] if generator else 0)
    expected_b = critic[1] + (gen[1] if generator else 0)
    assert torch.allclose(model.a.grad, expected_a, atol=1e-12)
    assert torch.allclose(model.b.grad, expected_b, atol=1e-12)
    assert ("generator" in logs) == generator


def test_generator_term_alone_reaches_theta_only_through_the_trajectory(tiny):
    a, b, x_pos, x0 = tiny
    model = DiagonalQuadratic(a, b)
    x_k = euler_sample(model, x0, n_steps=4, step_size=0.15, create_graph=True)
    frozen(model)(x_k).mean().backward()
    _, gen, _ = _hand_gradients(a, b, x_pos, x0, 4, 0.15)
    assert torch.allclose(model.a.grad, gen[0], atol=1e-12) and torch.allclose(model.b.grad, gen[1], atol=1e-12)


def test_no_gradient_leaks_into_stop_gradient_branches(tiny):
    a, b, x_pos, _ = tiny
    model = DiagonalQuadratic(a, b)
    # sg(θ): a fixed input through the frozen energy gives the parameters no gradient at all.
    frozen_energy = frozen(model)(x_pos)
    assert not frozen_energy.requires_grad
    # sg[x_K]: the critic term sends nothing back into the samples' graph.
    z = x_pos.clone().requires_grad_(True)
    loss, _ = self_adversarial_loss(model, x_pos, 2 * z, generator=False)
    loss.backward()
    assert z.grad is None and model.a.grad is not None


def test_generator_weight_scales_only_the_generator_gradient(tiny):
    a, b, x_pos, x0 = tiny
    model = DiagonalQuadratic(a, b)
    x_k = euler_sample(model, x0, n_steps=4, step_size=0.15, create_graph=True)
    loss, _ = self_adversarial_loss(model, x_pos, x_k, generator_weight=0.25)
    loss.backward()
    critic, gen, _ = _hand_gradients(a, b, x_pos, x0, 4, 0.15)
    assert torch.allclose(model.a.grad, critic[0] + 0.25 * gen[0], atol=1e-12)
    assert torch.allclose(model.b.grad, critic[1] + 0.25 * gen[1], atol=1e-12)


def test_clamped_euler_path_stays_in_range_and_clamped_coordinates_pass_no_gradient(tiny):
    a, b, _, x0 = tiny
    model = DiagonalQuadratic(a, -4 * b)
    free = euler_sample(model, 3 * x0, n_steps=4, step_size=0.15)
    assert torch.equal(euler_sample(model, 3 * x0, n_steps=4, step_size=0.15, clamp=(-100.0, 100.0)), free)
    x_k = euler_sample(model, 3 * x0, n_steps=4, step_size=0.15, create_graph=True, clamp=(-0.5, 0.5))
    assert free.abs().max() > 0.5 and x_k.abs().max() <= 0.5
    at_bound = x_k.detach().abs() == 0.5
    assert at_bound.any() and not at_bound.all()
    (x_k * at_bound).sum().backward(retain_graph=True)
    assert model.a.grad.abs().max() == 0 and model.b.grad.abs().max() == 0
    (x_k * ~at_bound).sum().backward()
    assert model.a.grad.abs().max() > 0
    langevin_path = noisy_sample(model, 3 * x0, n_steps=4, step_size=0.15, noise_scale=0.1, clamp=(-0.5, 0.5))
    assert langevin_path.abs().max() <= 0.5


def test_energy_magnitude_penalty_is_added(tiny):
    a, b, x_pos, x0 = tiny
    model = DiagonalQuadratic(a, b)
    x_k = euler_sample(model, x0, n_steps=2, step_size=0.15)
    plain, _ = self_adversarial_loss(model, x_pos, x_k, generator=False)
    penalised, _ = self_adversarial_loss(model, x_pos, x_k, generator=False, l2_reg=0.5)
    penalty = 0.5 * (model(x_pos).pow(2).mean() + model(x_k).pow(2).mean())
    assert torch.allclose(penalised - plain, penalty)


class ScaledQuadratic(nn.Module):
    """``E_θ(x) = θ|x|²/2``: every dynamics of the loss class is linear in ``x_0``, so its gradient is known."""

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta, dtype=torch.float64))

    def forward(self, x):
        return self.theta * x.pow(2).sum(-1) / 2


@pytest.mark.parametrize("dynamics", ["ode", "euler", "euler-generator", "noisy"])
def test_self_adversarial_loss_class_has_the_closed_form_gradient(dynamics):
    """Replaces a check that the gradients were merely finite. With ``x_0 ~ N(0, I_2)`` each dynamics maps
    ``x_0`` linearly, ``x_K = c x_0 + noise``: ODE ``c = e^{-θT}``; Euler ``c = (1 - hθ)^K``; noisy Euler adds
    ``σ²(1 - c²)/(1 - (1 - hθ)²)`` per coordinate to the variance ``v = c²``. The critic gradient is
    ``mean|x⁺|²/2 - E|x_K|²/2 = mean|x⁺|²/2 - d v/2`` (``x_K`` held fixed), and the generator term adds
    ``θ E[x_K · ∂x_K/∂θ] = -θhK(1 - hθ)^{2K-1} d``. Catches a step size read as η instead of h, a wrong ODE time
    scale, noise of the wrong size, a missing stop-gradient on ``x_K`` in the critic, and a missing or wrongly
    signed generator term. Tolerance: 5 standard errors of the mean of ``|x_0|²`` terms (variance ``2d`` per
    unit coefficient)."""
    torch.manual_seed(0)
    theta, h, k, t, sigma, d, n = 1.3, 0.1, 3, 0.3, 0.2, 2, 4000
    x_pos = torch.randn(n, d, dtype=torch.float64)
    a = 1 - h * theta
    kwargs = {"ode": dict(T=t, rtol=1e-7, atol=1e-7), "euler": dict(n_steps=k, step_size=h),
              "euler-generator": dict(n_steps=k, step_size=h), "noisy": dict(n_steps=k, step_size=h, noise_scale=sigma)}
    loss_fn = SelfAdversarialLoss(dynamics.split("-")[0], generator=dynamics.endswith("generator"), **kwargs[dynamics])
    energy = ScaledQuadratic(theta)
    (grad,) = torch.autograd.grad(loss_fn(energy, x_pos)[0], energy.theta)
    c2 = math.exp(-2 * theta * t) if dynamics == "ode" else a ** (2 * k)
    var = c2 + (sigma**2 * (1 - c2) / (1 - a**2) if dynamics == "noisy" else 0.0)
    coefficient = -var / 2 + (-theta * h * k * a ** (2 * k - 1) if dynamics == "euler-generator" else 0.0)
    expected = x_pos.pow(2).sum(1).mean() / 2 + coefficient * d
    # x_K ~ N(0, v I) and, without noise, x_K = c x_0: the random part is coefficient · mean|x_0|²-like, whose
    # terms have variance 2d (for noise, -mean|x_K|²/2 has standard error (v/2) sqrt(2d/n) likewise).
    assert abs(grad.item() - expected.item()) < 5 * abs(coefficient) * math.sqrt(2 * d / n), (grad, expected)


def test_image_energy_and_classifier_shapes():
    images = torch.randn(4, 1, 8, 8)
    assert ConvEnergy(8, nf=4, n_down=2)(images).shape == (4,)
    classifier = FeatureClassifier(8, feature_dim=16)
    assert classifier(images).shape == (4, 10) and classifier.features(images).shape == (4, 16)
    x_k = euler_sample(ConvEnergy(8, nf=4, n_down=2), images, n_steps=2, step_size=0.1)
    assert x_k.shape == images.shape



def test_conv_energy_has_the_papers_filters():
    """Table 2 of the noise-free paper: MNIST keeps 2 nf filters, CIFAR-10 doubles them at every stride 2."""
    def filters(net):
        return [layer.out_channels for layer in net.features if isinstance(layer, torch.nn.Conv2d)]

    assert filters(ConvEnergy(32, 1, nf=32, n_down=3)) == [32, 64, 64, 64]
    cifar = ConvEnergy(32, 3, nf=64, n_down=3, doubling=True)
    assert filters(cifar) == [64, 128, 256, 512] and cifar.head.in_features == 512 * 4 * 4
    assert cifar(torch.randn(2, 3, 32, 32)).shape == (2,)


# ---------------------------------------------------------------------------------------------------------
# Fréchet distance
# ---------------------------------------------------------------------------------------------------------
def test_gaussian_frechet_distance_closed_forms():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    var1, var2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([2.0, 1.0, 1.0])
    # Diagonal covariances: |μ1-μ2|² + Σ (√v1 - √v2)².
    expected = (mu1 - mu2).pow(2).sum() + (var1.sqrt() - var2.sqrt()).pow(2).sum()
    got = gaussian_frechet_distance(mu1, torch.diag(var1), mu2, torch.diag(var2))
    assert torch.allclose(got, expected.double(), atol=1e-10)
    # General covariances against scipy's matrix square root of Σ1 Σ2.
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(4, 4, generator=g, dtype=torch.float64), torch.randn(4, 4, generator=g, dtype=torch.float64)
    c1, c2 = m1 @ m1.T + 0.1 * torch.eye(4), m2 @ m2.T + 0.1 * torch.eye(4)
    cross = scipy.linalg.sqrtm((c1 @ c2).numpy()).real.trace()
    expected = float(c1.trace() + c2.trace() - 2 * cross)
    assert abs(gaussian_frechet_distance(torch.zeros(4), c1, torch.zeros(4), c2).item() - expected) < 1e-8


def test_frechet_distance_of_gaussian_samples():
    g = torch.Generator().manual_seed(1)
    cov2 = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    x = torch.randn(200_000, 2, generator=g, dtype=torch.float64)
    y = torch.randn(200_000, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov2).T + 1.0
    exact = gaussian_frechet_distance(torch.zeros(2), torch.eye(2), torch.ones(2), cov2)
    assert abs(frechet_distance(x, y) - exact) < 0.03
    assert frechet_distance(x[:100_000], x[100_000:]) < 1e-3


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda: ode_sample(quadratic, torch.randn(3, 2, dtype=torch.float64), T=0.0),
        lambda: ode_sample(quadratic, torch.randn(3, 2, dtype=torch.float64), rtol=-1.0),
        lambda: ode_sample(quadratic, torch.ones(3, 2, dtype=torch.long)),
        lambda: ode_sample(quadratic, torch.randn(3, 2, dtype=torch.float64), method="rk4", step_size=0.0),
        lambda: euler_sample(quadratic, torch.randn(3, 2, dtype=torch.float64), n_steps=0, step_size=0.1),
        lambda: euler_sample(quadratic, torch.randn(3, 2, dtype=torch.float64), n_steps=2, step_size=0.0),
        lambda: noisy_sample(quadratic, torch.randn(3, 2, dtype=torch.float64), n_steps=2, step_size=0.1,
                             noise_scale=-0.1),
        lambda: flow_log_prob(quadratic, torch.randn(3, 2, dtype=torch.float64), trace="bogus"),
        lambda: flow_log_prob(quadratic, torch.randn(3, 2, dtype=torch.float64), trace="hutchinson",
                              noise=torch.randn(3, 3, dtype=torch.float64)),
        lambda: flow_log_prob(quadratic, torch.full((3, 2), float("nan"), dtype=torch.float64)),
        lambda: flow_log_prob(quadratic, torch.randn(3, 2, dtype=torch.float64), method="rk4", step_size=0.1,
                              max_num_steps=10),
        lambda: flow_log_prob(quadratic, torch.randn(3, 2, dtype=torch.float64), max_num_steps=0),
        lambda: hessian_trace(quadratic, torch.randn(3, 2, 1, dtype=torch.float64)),
        lambda: SelfAdversarialLoss("ode", generator=True),
        lambda: SelfAdversarialLoss("langevin"),
        lambda: SelfAdversarialLoss("euler", l2_reg=-1.0),
        lambda: SelfAdversarialLoss("euler", generator_weight=0.0),
        lambda: euler_sample(quadratic, torch.randn(3, 2, dtype=torch.float64), n_steps=2, step_size=0.1,
                             clamp=(1.0, -1.0)),
        lambda: inception_fid(torch.rand(4, 8, 8), torch.rand(4, 1, 8, 8)),
        lambda: inception_fid(torch.rand(4, 2, 8, 8), torch.rand(4, 2, 8, 8)),
        lambda: self_adversarial_loss(MLPEnergy(2), torch.randn(3, 2), torch.randn(3, 2), generator=True),
        lambda: self_adversarial_loss(MLPEnergy(2), torch.randn(3, 2), torch.randn(3, 3), generator=False),
        lambda: frozen(quadratic),
        lambda: ConvEnergy(10, n_down=2),
        lambda: frechet_distance(torch.randn(1, 3), torch.randn(5, 3)),
        lambda: frechet_distance(torch.randn(5, 3), torch.randn(5, 2)),
        lambda: gaussian_frechet_distance(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]), torch.zeros(2),
                                          torch.eye(2)),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_nan_energy_raises():
    with pytest.raises(ValueError):
        euler_sample(lambda x: x.sum(-1) * float("nan"), torch.randn(3, 2), n_steps=2, step_size=0.1)


def test_inception_fid_without_its_packages_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics", None)
    monkeypatch.setitem(sys.modules, "torchmetrics.image", None)
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)
    with pytest.raises(ImportError, match=r"ebmlib\[full\]"):
        inception_fid(torch.rand(4, 1, 8, 8) * 2 - 1, torch.rand(4, 1, 8, 8) * 2 - 1)
