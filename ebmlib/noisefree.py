"""Noise-free EBMs (Xiao, Yan & Amit): gradient-flow samplers, their exact densities and the self-adversarial loss.

An energy :math:`E_\\theta` defines a *generator* through its gradient flow started from Gaussian noise,

* the ODE (paper eqs. 4-5) :math:`x'(t) = -\\nabla_x E_\\theta(x(t))`, :math:`x(0) = x_0 \\sim N(0, I)`,
  :math:`t \\in [0, T]`, solved by ``torchdiffeq`` (:func:`ode_sample`);
* its forward-Euler discretisation (eq. 7) :math:`x_{k+1} = x_k - \\tfrac{\\eta}{2} \\nabla_x E_\\theta(x_k)`,
  ``K`` steps (:func:`euler_sample`), optionally differentiable in :math:`\\theta` through every step;
* for contrast, the noisy short-run Langevin dynamics of eq. 3 with a reduced noise scale (:func:`noisy_sample`).

Because the ODE map is invertible, its density follows from the instantaneous change of variables (eq. 6),
:math:`\\log p_T(x_T) = \\log N(x_0; 0, I) + \\int_0^T \\mathrm{tr}\\,\\nabla^2_x E_\\theta(x(t))\\,dt`
(:func:`flow_log_prob`, exact trace or Hutchinson's estimator). The losses are the maximum-likelihood EBM
update with noise-free negatives, the same plus the generator term of eq. 12 (:class:`SelfAdversarialLoss`),
and direct maximum likelihood of the ODE flow (:class:`FlowMaximumLikelihood`).

Convention: :math:`p(x) \\propto \\exp(-E(x))`; energies map ``(B, *event)`` to ``(B,)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ebmlib.samplers import _check_clamp, langevin
from ebmlib.utils import EnergyFn, check_energy_output, check_int, check_positive, check_tensor

DYNAMICS = ("ode", "euler", "noisy")
"""Samplers accepted by :class:`SelfAdversarialLoss`."""
TRACE_ESTIMATORS = ("exact", "hutchinson")
"""Divergence estimators accepted by :func:`flow_log_prob`."""
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
"""``torchdiffeq``'s adaptive solvers (they ignore ``step_size``)."""


def _check_ode_args(T: float, rtol: float, atol: float, method: str, step_size: float | None) -> dict | None:
    """Validate the solver arguments; returns ``odeint``'s ``options`` (the fixed step, if any)."""
    check_positive(T, "T")
    check_positive(rtol, "rtol")
    check_positive(atol, "atol")
    if not isinstance(method, str):
        raise ValueError(f"method must be a torchdiffeq solver name, got {method!r}")
    if step_size is None or method in ADAPTIVE_METHODS:
        return None
    return {"step_size": check_positive(step_size, "step_size")}


def _grad(energy_fn: EnergyFn, x: Tensor, *, create_graph: bool) -> tuple[Tensor, Tensor]:
    """``(∇_x E(x), x)`` keeping ``x``'s graph: unlike :func:`ebmlib.utils.energy_and_grad`, ``x`` is not
    detached, so an unrolled trajectory stays differentiable in θ. Returns the tensor that was differentiated."""
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    energy = check_energy_output(energy_fn(x), x.shape[0], finite=False)
    (grad,) = torch.autograd.grad(energy.sum(), x, create_graph=create_graph)
    return grad, x


# ---------------------------------------------------------------------------------------------------------
# Samplers: the generator G_θ defined by the energy
# ---------------------------------------------------------------------------------------------------------
def ode_sample(
    energy_fn: EnergyFn,
    x0: Tensor,
    *,
    T: float = 0.2,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    step_size: float | None = None,
) -> Tensor:
    """Noise-free ODE sampler :math:`x_T = \\mathrm{ODESolve}(-\\nabla_x E, x_0, [0, T])` (paper eqs. 4-5).

    Parameters
    ----------
    energy_fn
        ``(B, *event) -> (B,)``, differentiable in ``x``.
    x0
        Initial points (the latent variables), shape ``(B, *event)``, usually ``N(0, I)`` draws.
    T
        Integration time; part of the generator, so use the same ``T`` for training and sampling.
    rtol, atol
        Tolerances of the adaptive solver (the paper: dopri5 with tolerance 1e-5).
    method
        Any ``torchdiffeq`` solver name.
    step_size
        Step of a fixed-grid solver (``"rk4"``, ``"euler"``, ...), e.g. ``T / 8``; ignored by adaptive ones.
        Without it a fixed-grid solver takes a single step over ``[0, T]``.

    Returns
    -------
    Tensor
        ``x_T``, detached, same shape as ``x0``.
    """
    from torchdiffeq import odeint

    check_tensor(x0, "x0", min_ndim=1, floating=True)
    options = _check_ode_args(T, rtol, atol, method, step_size)

    def velocity(t: Tensor, x: Tensor) -> Tensor:
        with torch.enable_grad():
            grad, _ = _grad(energy_fn, x, create_graph=False)
        return -grad

    times = torch.tensor([0.0, T], dtype=x0.dtype, device=x0.device)
    with torch.no_grad():
        x_t = odeint(velocity, x0.detach(), times, rtol=rtol, atol=atol, method=method, options=options)[-1]
    if not torch.isfinite(x_t).all():
        raise ValueError("energy_fn produced NaN or infinite gradients along the ODE")
    return x_t


def euler_sample(
    energy_fn: EnergyFn,
    x0: Tensor,
    *,
    n_steps: int,
    step_size: float,
    create_graph: bool = False,
    clamp: tuple[float, float] | None = None,
) -> Tensor:
    """Forward-Euler (gradient-descent) generator :math:`x_{k+1} = x_k - (\\eta/2)\\nabla_x E_\\theta(x_k)`
    for ``k = 0..K-1`` (paper eqs. 7-8).

    Parameters
    ----------
    energy_fn
        ``(B, *event) -> (B,)``.
    x0
        Initial points, shape ``(B, *event)``.
    n_steps
        ``K``.
    step_size
        ``η``; each step moves by ``η/2`` times the negative gradient.
    create_graph
        Keep the graph of every gradient so that ``x_K`` is a differentiable function of the energy's
        parameters through the whole trajectory (the generator term of eq. 12; memory grows with ``K``).
        Otherwise the result is detached.
    clamp
        ``(lo, hi)``: clamp every coordinate to the data range after each step, as image EBMs usually do
        (not mentioned by the paper). Clamped coordinates pass no gradient.

    Returns
    -------
    Tensor
        ``x_K``, same shape as ``x0``.
    """
    check_tensor(x0, "x0", min_ndim=1, floating=True)
    check_int(n_steps, "n_steps", minimum=1)
    half_eta = check_positive(step_size, "step_size") / 2
    bounds = None if clamp is None else _check_clamp(clamp)
    x = x0.detach()
    with torch.enable_grad():
        for _ in range(n_steps):
            grad, x = _grad(energy_fn, x, create_graph=create_graph)
            x = x - half_eta * grad
            if bounds is not None:
                x = x.clamp(*bounds)
            if not create_graph:
                x = x.detach()
    if not torch.isfinite(x).all():
        raise ValueError("energy_fn produced NaN or infinite gradients along the Euler path")
    return x


def noisy_sample(
    energy_fn: EnergyFn,
    x0: Tensor,
    *,
    n_steps: int,
    step_size: float,
    noise_scale: float,
    clamp: tuple[float, float] | None = None,
) -> Tensor:
    """Noisy short-run Langevin dynamics :math:`x_{k+1} = x_k - (\\eta/2)\\nabla_x E(x_k) + \\sigma\\,\\omega_k`
    (paper eq. 3 with the noise reduced from :math:`\\sqrt{\\eta}` to :math:`\\sigma`, as EBM practice does).

    The same drift as :func:`euler_sample`, plus Gaussian noise; ``noise_scale = sqrt(step_size)`` is the
    unadjusted Langevin algorithm that targets ``p ∝ exp(-E)``. Implemented by
    :func:`ebmlib.samplers.langevin` with ``ε = √η``.

    Parameters
    ----------
    energy_fn, x0, n_steps, step_size, clamp
        As in :func:`euler_sample`.
    noise_scale
        ``σ >= 0``, the absolute standard deviation of the noise added per step (the paper: 0.1).
    """
    eps = math.sqrt(check_positive(step_size, "step_size"))
    return langevin(energy_fn, x0, n_steps=n_steps, step_size=eps, noise_scale=noise_scale, clamp=clamp)


# ---------------------------------------------------------------------------------------------------------
# Divergence of the flow: the trace of the Hessian of E
# ---------------------------------------------------------------------------------------------------------
def hessian_trace(energy_fn: EnergyFn, x: Tensor, *, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Gradient and exact Hessian trace :math:`\\mathrm{tr}\\,\\nabla_x^2 E(x)` of a flat energy.

    One backward pass per coordinate (``d + 1`` in all), so meant for small ``d`` such as the 2D toys.

    Parameters
    ----------
    energy_fn
        ``(B, d) -> (B,)``.
    x
        Shape ``(B, d)``. If it carries a graph (e.g. to parameters), the graph is kept.
    create_graph
        Keep the graph of both outputs (needed to differentiate the log-density in θ).

    Returns
    -------
    grad, trace
        Shapes ``(B, d)`` and ``(B,)``.
    """
    check_tensor(x, "x", ndim=2, floating=True, finite=False)
    with torch.enable_grad():
        grad, x_req = _grad(energy_fn, x, create_graph=True)
        trace = sum(
            torch.autograd.grad(grad[:, i].sum(), x_req, create_graph=create_graph, retain_graph=True)[0][:, i]
            for i in range(x.shape[1])
        )
    if not create_graph:
        grad, trace = grad.detach(), trace.detach()
    return grad, trace


def hutchinson_trace(
    energy_fn: EnergyFn, x: Tensor, noise: Tensor, *, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    """Gradient and Hutchinson's estimate :math:`v^\\top \\nabla_x^2 E(x)\\, v` of the Hessian trace.

    Unbiased whenever :math:`\\mathbb{E}[v v^\\top] = I` (Rademacher or standard Gaussian ``v``); costs two
    backward passes whatever the dimension (one Hessian-vector product).

    Parameters
    ----------
    energy_fn
        ``(B, *event) -> (B,)``.
    x
        Shape ``(B, *event)``.
    noise
        The probe vectors ``v``, same shape as ``x``.
    create_graph
        Keep the graph of both outputs.

    Returns
    -------
    grad, estimate
        Shapes ``(B, *event)`` and ``(B,)``.
    """
    check_tensor(x, "x", min_ndim=1, floating=True, finite=False)
    check_tensor(noise, "noise", shape=tuple(x.shape), finite=False)
    with torch.enable_grad():
        grad, x_req = _grad(energy_fn, x, create_graph=True)
        (hvp,) = torch.autograd.grad((grad * noise).sum(), x_req, create_graph=create_graph)
    estimate = (hvp * noise).flatten(1).sum(1)
    if not create_graph:
        grad, estimate = grad.detach(), estimate.detach()
    return grad, estimate


def standard_normal_log_prob(x: Tensor) -> Tensor:
    """``log N(x; 0, I)`` summed over the event dimensions; ``(B, *event) -> (B,)``."""
    d = x[0].numel()
    return -0.5 * x.flatten(1).pow(2).sum(1) - 0.5 * d * math.log(2 * math.pi)


def flow_log_prob(
    energy_fn: EnergyFn,
    x: Tensor,
    *,
    T: float = 0.2,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    step_size: float | None = None,
    trace: str = "exact",
    noise: Tensor | None = None,
    create_graph: bool = False,
    max_num_steps: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Exact log-density of the ODE generator :func:`ode_sample` (paper eq. 6), base ``N(0, I)``.

    Solves the augmented ODE backwards from ``t = T`` (at the data) to ``t = 0``,

    .. math:: \\dot x = -\\nabla_x E(x), \\qquad \\dot\\ell = \\mathrm{tr}\\,\\nabla_x^2 E(x),
              \\qquad x(T) = x,\\ \\ell(T) = 0,

    so that :math:`\\ell(0) = -\\int_0^T \\mathrm{tr}\\,\\nabla^2 E\\,dt` and
    :math:`\\log p_T(x) = \\log N(x(0); 0, I) - \\ell(0)`.

    Parameters
    ----------
    energy_fn
        ``(B, *event) -> (B,)``.
    x
        Points, shape ``(B, *event)`` (``(B, d)`` for ``trace="exact"``).
    T, rtol, atol, method, step_size
        As in :func:`ode_sample`.
    trace
        ``"exact"`` (``d`` Hessian-vector products per evaluation) or ``"hutchinson"`` (one, with the same
        probe ``v`` along the whole trajectory, so the result is an unbiased estimate of the log-density).
    noise
        Hutchinson probes, shape of ``x``; Rademacher draws when ``None``.
    create_graph
        Differentiate through the solver (direct backpropagation) to train the flow by maximum likelihood.
    max_num_steps
        Cap on an adaptive solver's steps (its cost is unbounded on steep energies); ``None``: no cap.

    Returns
    -------
    log_prob, x0
        Shapes ``(B,)`` and ``(B, *event)``: the log-density and the latent point the flow maps to ``x``.

    Raises
    ------
    RuntimeError
        If the adaptive solver needs more than ``max_num_steps`` steps.
    """
    from torchdiffeq import odeint

    check_tensor(x, "x", min_ndim=1, floating=True)
    options = _check_ode_args(T, rtol, atol, method, step_size)
    if trace not in TRACE_ESTIMATORS:
        raise ValueError(f"trace must be one of {TRACE_ESTIMATORS}, got {trace!r}")
    if trace == "exact" and x.ndim != 2:
        raise ValueError(f"x must have shape (B, d) for trace='exact', got {tuple(x.shape)}")
    if trace == "hutchinson":
        noise = torch.randint(0, 2, x.shape, device=x.device).to(x.dtype) * 2 - 1 if noise is None else noise
        check_tensor(noise, "noise", shape=tuple(x.shape))
    if max_num_steps is not None:
        if method not in ADAPTIVE_METHODS:
            raise ValueError(f"max_num_steps applies to adaptive methods {ADAPTIVE_METHODS}, got method={method!r}")
        options = {"max_num_steps": check_int(max_num_steps, "max_num_steps", minimum=1)}

    def dynamics(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        z = state[0]
        with torch.enable_grad():
            if trace == "exact":
                grad, div = hessian_trace(energy_fn, z, create_graph=create_graph)
            else:
                grad, div = hutchinson_trace(energy_fn, z, noise, create_graph=create_graph)
        return -grad, div

    times = torch.tensor([T, 0.0], dtype=x.dtype, device=x.device)
    state = (x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))
    with torch.set_grad_enabled(create_graph):
        try:
            solution = odeint(dynamics, state, times, rtol=rtol, atol=atol, method=method, options=options)
        except AssertionError as error:  # torchdiffeq signals the step cap by an assertion
            if "max_num_steps" not in str(error):
                raise
            raise RuntimeError(f"{method} needed more than max_num_steps={max_num_steps} steps") from error
    x0, ell0 = (s[-1] for s in solution)
    log_prob = standard_normal_log_prob(x0) - ell0
    if not torch.isfinite(log_prob).all():
        raise ValueError("energy_fn produced NaN or infinite values along the backward ODE")
    return log_prob, x0


# ---------------------------------------------------------------------------------------------------------
# Training objectives
# ---------------------------------------------------------------------------------------------------------
def frozen(energy: nn.Module) -> Callable[[Tensor], Tensor]:
    """``E_{sg(θ)}``: the energy evaluated with detached parameters and buffers (a stop-gradient on θ).

    Gradients still flow into the *input*, so ``frozen(E)(G_θ(x_0))`` reaches θ only through ``G_θ``.
    """
    if not isinstance(energy, nn.Module):
        raise ValueError(f"energy must be an nn.Module to freeze its parameters, got {type(energy).__name__}")
    state = {name: t.detach() for name, t in [*energy.named_parameters(), *energy.named_buffers()]}
    return lambda x: functional_call(energy, state, (x,))


def self_adversarial_loss(
    energy: nn.Module,
    x_pos: Tensor,
    x_k: Tensor,
    *,
    generator: bool = True,
    generator_weight: float = 1.0,
    l2_reg: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Paper eq. 12: :math:`\\overline{E_\\theta(x^+)} - \\overline{E_\\theta(\\mathrm{sg}[x_K])}
    + \\lambda\\,\\overline{E_{\\mathrm{sg}(\\theta)}(x_K)}` with :math:`\\lambda = 1` in the paper.

    The first two terms are the maximum-likelihood (critic) update of eq. 1 with the generated samples held
    fixed; the third is the generator update of eq. 11, which reaches θ only through ``x_K = G_θ(x_0)``.

    Parameters
    ----------
    energy
        The energy network, ``(B, *event) -> (B,)``.
    x_pos
        Data, shape ``(B, *event)``.
    x_k
        Generated samples, shape ``(B', *event)``; for the generator term they must carry the graph of the
        unrolled dynamics (:func:`euler_sample` with ``create_graph=True``).
    generator
        Add the generator term; without it this is the plain EBM loss.
    generator_weight
        :math:`\\lambda > 0`, the weight of the generator term (the paper: 1).
    l2_reg
        :math:`\\alpha \\ge 0`: adds :math:`\\alpha(\\overline{E_\\theta(x^+)^2} + \\overline{E_\\theta(x^-)^2})`
        (Du & Mordatch, 2019), which bounds the scale of the energy. Not in the paper; 0 by default.

    Returns
    -------
    loss, logs
        Scalar loss; ``logs`` holds the mean positive and negative energies and the critic term (detached).
    """
    check_tensor(x_pos, "x_pos", min_ndim=1, finite=False)
    check_tensor(x_k, "x_k", min_ndim=1, finite=False)
    if x_pos.shape[1:] != x_k.shape[1:]:
        raise ValueError(f"x_pos and x_k must share the event shape, got {tuple(x_pos.shape)} and {tuple(x_k.shape)}")
    check_positive(generator_weight, "generator_weight")
    if generator and not x_k.requires_grad:
        raise ValueError("x_k carries no graph: sample it with create_graph=True for the generator term")
    e_pos = check_energy_output(energy(x_pos), x_pos.shape[0], finite=False)
    e_neg = check_energy_output(energy(x_k.detach()), x_k.shape[0], finite=False)
    critic = e_pos.mean() - e_neg.mean()
    if l2_reg != 0.0:
        critic_loss = critic + check_positive(l2_reg, "l2_reg") * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    else:
        critic_loss = critic
    logs = {"energy_pos": e_pos.mean().detach(), "energy_neg": e_neg.mean().detach(), "critic": critic.detach()}
    if not generator:
        return critic_loss, logs
    gen = frozen(energy)(x_k).mean()
    logs["generator"] = gen.detach()
    return critic_loss + generator_weight * gen, logs


class SelfAdversarialLoss:
    """Maximum-likelihood EBM training with non-persistent noise-free (or noisy) negatives, optionally with
    the generator term of eq. 12; a ``loss_fn(model, batch)`` for :func:`ebmlib.train.fit`.

    Each call draws fresh ``x_0 ~ N(0, I)`` (no replay buffer: the sampler is a generator with a fixed
    prior, paper §5), runs the dynamics and returns :func:`self_adversarial_loss`.

    Parameters
    ----------
    dynamics
        ``"ode"`` (:func:`ode_sample`, keywords ``T, rtol, atol, method``), ``"euler"``
        (:func:`euler_sample`, ``n_steps, step_size``) or ``"noisy"`` (:func:`noisy_sample`,
        ``n_steps, step_size, noise_scale``).
    generator
        Add the generator term (Euler dynamics only: it differentiates through the unrolled steps).
    generator_weight
        Its weight :math:`\\lambda` (the paper: 1).
    l2_reg
        Energy-magnitude regulariser of :func:`self_adversarial_loss` (0: the paper's loss).
    **sampler_kwargs
        Passed to the sampler.
    """

    def __init__(
        self,
        dynamics: str = "ode",
        *,
        generator: bool = False,
        generator_weight: float = 1.0,
        l2_reg: float = 0.0,
        **sampler_kwargs: float | str | tuple[float, float] | None,
    ) -> None:
        if dynamics not in DYNAMICS:
            raise ValueError(f"dynamics must be one of {DYNAMICS}, got {dynamics!r}")
        if generator and dynamics != "euler":
            raise ValueError("generator=True needs dynamics='euler' (the unrolled, differentiable sampler)")
        if l2_reg != 0.0:
            check_positive(l2_reg, "l2_reg")
        self.generator_weight = check_positive(generator_weight, "generator_weight")
        self.dynamics, self.generator, self.l2_reg, self.sampler_kwargs = dynamics, generator, l2_reg, sampler_kwargs

    def sample(self, energy: EnergyFn, x0: Tensor, *, create_graph: bool = False) -> Tensor:
        """Run the configured dynamics from ``x0``."""
        if self.dynamics == "ode":
            return ode_sample(energy, x0, **self.sampler_kwargs)
        if self.dynamics == "euler":
            return euler_sample(energy, x0, create_graph=create_graph, **self.sampler_kwargs)
        return noisy_sample(energy, x0, **self.sampler_kwargs)

    def __call__(self, energy: nn.Module, x_pos: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        x_k = self.sample(energy, torch.randn_like(x_pos), create_graph=self.generator)
        return self_adversarial_loss(energy, x_pos, x_k, generator=self.generator,
                                     generator_weight=self.generator_weight, l2_reg=self.l2_reg)


class FlowMaximumLikelihood:
    """Negative log-likelihood of the ODE flow (eq. 6) on a data batch, backpropagated through the solver;
    a ``loss_fn(model, batch)`` for :func:`ebmlib.train.fit` (the paper's "ODE flow trained by maximum
    likelihood", §5.1).

    Parameters
    ----------
    **ode_kwargs
        ``T, rtol, atol, method, trace`` for :func:`flow_log_prob`.
    """

    def __init__(self, **ode_kwargs: float | str) -> None:
        self.ode_kwargs = ode_kwargs

    def __call__(self, energy: EnergyFn, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        log_prob, _ = flow_log_prob(energy, x, create_graph=True, **self.ode_kwargs)
        nll = -log_prob.mean()
        return nll, {"log_likelihood": -nll.detach()}
