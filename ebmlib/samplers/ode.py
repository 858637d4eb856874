"""The noise-free generator of an energy (Xiao, Yan & Amit 2021): the gradient flow ``ẋ = -∇_x E(x)`` solved
by an ODE solver or unrolled by forward Euler, its noisy (Langevin) counterpart, and the exact log-density of
the ODE's samples (instantaneous change of variables, with an exact or a Hutchinson trace)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlib.ledger import recorded_steps
from ebmlib.samplers.continuous import langevin
from ebmlib.samplers.core import all_finite, check_clamp, raise_unless_finite
from ebmlib.utils import EnergyFn, check_energy_output, check_int, check_positive, check_tensor

TRACE_ESTIMATORS = ("exact", "hutchinson")
"""Divergence estimators accepted by :func:`~ebmlib.samplers.flow_log_prob`."""


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
    energy = check_energy_output(energy_fn(x), x.shape[0], "energy_fn", finite=False)
    (grad,) = torch.autograd.grad(energy.sum(), x, create_graph=create_graph)
    return grad, x


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
    """Forward-Euler (gradient-descent) generator :math:`x_{k+1} = x_k - h\\,\\nabla_x E_\\theta(x_k)`
    for ``k = 0..K-1`` (paper eqs. 7-8, which write the step as :math:`\\eta/2`, so :math:`h = \\eta/2`): the
    Euler discretisation of :func:`~ebmlib.samplers.ode_sample`'s flow with time step :math:`h`, integration time
    :math:`Kh`.

    Parameters
    ----------
    energy_fn
        ``(B, *event) -> (B,)``.
    x0
        Initial points, shape ``(B, *event)``.
    n_steps
        ``K``.
    step_size
        ``h > 0``; each step moves by ``h`` times the negative gradient.
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
    h = check_positive(step_size, "step_size")
    bounds = None if clamp is None else check_clamp(clamp)
    x = x0.detach()
    with torch.enable_grad():
        for _ in recorded_steps(n_steps, "euler_sample"):
            grad, x = _grad(energy_fn, x, create_graph=create_graph)
            x = x - h * grad
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
    """Noisy short-run Langevin dynamics :math:`x_{k+1} = x_k - h\\,\\nabla_x E(x_k) + \\sigma\\,\\omega_k`
    (paper eq. 3, with :math:`h = \\eta/2` and the noise reduced from :math:`\\sqrt{2h}` to :math:`\\sigma`, as
    EBM practice does).

    The same drift as :func:`~ebmlib.samplers.euler_sample`, plus Gaussian noise; ``noise_scale = sqrt(2 *
    step_size)`` is the unadjusted Langevin algorithm that targets ``p ∝ exp(-E)``
    (:func:`~ebmlib.samplers.langevin`).

    Parameters
    ----------
    energy_fn, x0, n_steps, step_size, clamp
        As in :func:`~ebmlib.samplers.euler_sample`.
    noise_scale
        ``σ >= 0``, the absolute standard deviation of the noise added per step (the paper: 0.1).
    """
    check_tensor(x0, "x0", min_ndim=1, floating=True)  # checked here so that a bad x0 is reported as x0
    return langevin(energy_fn, x0, n_steps=n_steps, step_size=step_size, noise_scale=noise_scale, clamp=clamp)


def hessian_trace(energy_fn: EnergyFn, x: Tensor, *, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Gradient and exact Hessian trace :math:`\\mathrm{tr}\\,\\nabla_x^2 E(x)` of a flat energy.

    One backward pass per coordinate (``d + 1`` in all), so meant for small ``d`` such as the 2D toys; an
    :class:`~ebmlib.nets.MLPEnergy` gets both from one forward pass instead
    (:meth:`~ebmlib.nets.MLPEnergy.grad_and_laplacian`).

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
    check_tensor(x, "x", ndim=2, floating=True)
    grad, trace = _hessian_trace(energy_fn, x, create_graph=create_graph)
    raise_unless_finite(all_finite(grad, trace))
    return grad, trace


def _hessian_trace(energy_fn: EnergyFn, x: Tensor, *, create_graph: bool) -> tuple[Tensor, Tensor]:
    """:func:`hessian_trace` without checks, for the ODE's right-hand side (no host synchronisation).

    Energies with a ``grad_and_laplacian`` method (:meth:`~ebmlib.nets.MLPEnergy.grad_and_laplacian`) give
    both in one forward pass; any other gets ``d`` Hessian-vector products by autograd.
    """
    forward_laplacian = getattr(energy_fn, "grad_and_laplacian", None)
    if forward_laplacian is not None:
        with torch.set_grad_enabled(create_graph):
            _, grad, trace = forward_laplacian(x)
        return grad, trace
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
    check_tensor(x, "x", min_ndim=1, floating=True)
    check_tensor(noise, "noise", shape=tuple(x.shape))
    grad, estimate = _hutchinson_trace(energy_fn, x, noise, create_graph=create_graph)
    raise_unless_finite(all_finite(grad, estimate))
    return grad, estimate


def _hutchinson_trace(energy_fn: EnergyFn, x: Tensor, noise: Tensor, *, create_graph: bool) -> tuple[Tensor, Tensor]:
    """:func:`hutchinson_trace` without checks, for the ODE's right-hand side (no host synchronisation)."""
    with torch.enable_grad():
        grad, x_req = _grad(energy_fn, x, create_graph=True)
        (hvp,) = torch.autograd.grad((grad * noise).sum(), x_req, create_graph=create_graph)
    estimate = (hvp * noise).flatten(1).sum(1)
    if not create_graph:
        grad, estimate = grad.detach(), estimate.detach()
    return grad, estimate


def standard_normal_log_prob(x: Tensor) -> Tensor:
    """``log N(x; 0, I)`` summed over the event dimensions; ``(B, *event) -> (B,)`` (``(B,)``: scalar events)."""
    check_tensor(x, "x", min_ndim=1, floating=True)
    return _normal_log_prob(x)


def _normal_log_prob(x: Tensor) -> Tensor:
    flat = x.reshape(x.shape[0], -1)
    return -0.5 * flat.pow(2).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


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
    """Exact log-density of the ODE generator :func:`~ebmlib.samplers.ode_sample` (paper eq. 6), base ``N(0, I)``.

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
        As in :func:`~ebmlib.samplers.ode_sample`.
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
                grad, div = _hessian_trace(energy_fn, z, create_graph=create_graph)
            else:
                grad, div = _hutchinson_trace(energy_fn, z, noise, create_graph=create_graph)
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
    log_prob = _normal_log_prob(x0) - ell0
    if not torch.isfinite(log_prob).all():
        raise ValueError("energy_fn produced NaN or infinite values along the backward ODE")
    return log_prob, x0
