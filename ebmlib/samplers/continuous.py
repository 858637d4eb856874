"""Samplers of continuous states: the unadjusted Langevin algorithm and MALA (with step-size adaptation).

Both discretise the Langevin diffusion :math:`dx = -\\nabla_x E(x)\\,dt + \\sqrt 2\\,dW` with time step
``step_size`` :math:`= h` (see :mod:`ebmlib.samplers`): one step is
:math:`x' = x - h \\nabla_x E(x) + \\sqrt{2h}\\,\\xi`. The kernels :func:`~ebmlib.samplers.langevin_update` and
:func:`~ebmlib.samplers.mala_step` are the method in a few lines; :func:`~ebmlib.samplers.langevin` and
:func:`~ebmlib.samplers.mala` run them on ``B`` chains, :func:`~ebmlib.samplers.langevin_trajectory` also returns the
states along the way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ebmlib.ledger import recorded_steps
from ebmlib.samplers.core import (
    all_finite,
    check_clamp,
    check_noise_scale,
    metropolis_accept,
    raise_unless_finite,
    select_rows,
)
from ebmlib.utils import EnergyFn, check_int, check_positive, check_probability, check_tensor, energy_and_grad


# ---------------------------------------------------------------------------------------------------------
# Unadjusted Langevin
# ---------------------------------------------------------------------------------------------------------
def langevin_update(x: Tensor, grad: Tensor, step_size: float, noise_scale: float,
                    clamp: tuple[float, float] | None = None) -> Tensor:
    r"""One Langevin move from a computed gradient: :math:`x' = x - h\,\nabla_x E(x) + \sigma\,\xi`.

    Only metadata and the Python numbers are checked (safe inside sampling loops).

    Parameters
    ----------
    x, grad
        States and :math:`\nabla_x E(x)` (divided by the temperature, if any), same shape ``(B, *event)``.
    step_size
        :math:`h > 0`.
    noise_scale
        :math:`\sigma \ge 0`; :math:`\sqrt{2h}` targets :math:`p \propto e^{-E}`, 0 is gradient descent.
    clamp
        ``(lo, hi)``: clamp every coordinate after the move.
    """
    check_tensor(x, "x", min_ndim=1, floating=True, finite=False)
    check_tensor(grad, "grad", shape=tuple(x.shape), finite=False)
    step_size = check_positive(step_size, "step_size")
    noise_scale = check_noise_scale(noise_scale)
    clamp = None if clamp is None else check_clamp(clamp)
    x = x - step_size * grad
    if noise_scale > 0:
        x = x + noise_scale * torch.randn_like(x)
    return x if clamp is None else x.clamp(*clamp)


def langevin(
    energy_fn: EnergyFn,
    x: Tensor,
    *,
    n_steps: int,
    step_size: float,
    temperature: float = 1.0,
    noise_scale: float | None = None,
    clamp: tuple[float, float] | None = None,
) -> Tensor:
    r"""Unadjusted Langevin algorithm (ULA) with temperature, no Metropolis correction.

    Each step computes

    .. math:: x \leftarrow x - \frac{h}{\lambda} \nabla_x E(x) + \sigma\,\xi, \qquad \xi \sim N(0, I),

    with :math:`h` = ``step_size``, :math:`\lambda` = ``temperature`` and :math:`\sigma` = ``noise_scale``
    (default :math:`\sqrt{2h}`). With the default noise it targets :math:`p_\lambda \propto e^{-E/\lambda}` up
    to a discretisation bias of order :math:`h`. For a Gaussian :math:`E = |x - \mu|^2/(2s^2)` the chain's
    stationary law is :math:`N(\mu, \lambda s^2 / (1 - h/(2\lambda s^2))\, I)`, stable for
    :math:`h < 4\lambda s^2`. Kelly & Grathwohl's eq. 3 writes the step with :math:`\epsilon = \sqrt{2h}`.

    A ``noise_scale`` other than :math:`\sqrt{2h}` decouples drift and noise (the common "short-run"
    heuristic); the chain then no longer targets :math:`p_\lambda`. ``noise_scale = 0`` is gradient descent.

    Parameters
    ----------
    energy_fn
        Maps ``(B, *event_shape)`` to ``(B,)``; must be differentiable in ``x``.
    x
        Initial states, floating dtype, shape ``(B, *event_shape)``.
    n_steps
        Number of updates.
    step_size
        :math:`h > 0`.
    temperature
        :math:`\lambda > 0`; the drift is divided by it.
    noise_scale
        :math:`\sigma \ge 0` of the injected noise; ``None`` means :math:`\sqrt{2h}`.
    clamp
        ``(lo, hi)``: clamp every coordinate after each step (e.g. to the data range).

    Returns
    -------
    Tensor
        Final states, shape, dtype and device of ``x``.
    """
    check_tensor(x, "x", min_ndim=1, floating=True)
    check_int(n_steps, "n_steps", minimum=1)
    h = check_positive(step_size, "step_size")
    drift = h / check_positive(temperature, "temperature")
    sigma = (2 * h) ** 0.5 if noise_scale is None else check_noise_scale(noise_scale)
    bounds = None if clamp is None else check_clamp(clamp)
    with torch.no_grad():
        x = x.detach()
        finite = torch.ones((), dtype=torch.bool, device=x.device)
        for _ in recorded_steps(n_steps, "langevin"):
            energy, grad = energy_and_grad(energy_fn, x)
            finite &= all_finite(energy, grad)
            x = langevin_update(x, grad, drift, sigma, bounds)
    raise_unless_finite(finite)
    return x


def langevin_trajectory(
    energy_fn: EnergyFn,
    x: Tensor,
    *,
    n_steps: int,
    step_size: float,
    temperature: float = 1.0,
    noise_scale: float | None = None,
    clamp: tuple[float, float] | None = None,
    record_steps: Sequence[int] | None = None,
) -> Tensor:
    r"""The unadjusted Langevin chains of :func:`~ebmlib.samplers.langevin`, with the states after chosen steps.

    The same moves, :math:`x_t = x_{t-1} - \frac{h}{\lambda} \nabla_x E(x_{t-1}) + \sigma\,\xi_t`, in one call
    (so that recording a trajectory for MCMC diagnostics such as :func:`~ebmlib.metrics.split_rhat` needs no
    Python call per step); with the same random state the states equal those of ``n_steps`` calls of
    :func:`~ebmlib.samplers.langevin` with ``n_steps=1``.

    Parameters
    ----------
    energy_fn, x, n_steps, step_size, temperature, noise_scale, clamp
        As in :func:`~ebmlib.samplers.langevin`; ``x`` has shape ``(B, *event_shape)``.
    record_steps
        1-based step numbers whose states are returned, in increasing order; default every step
        ``1, …, n_steps`` (as ``record_steps`` of :func:`~ebmlib.samplers.flowmc`). The chains stop at the
        last recorded step.

    Returns
    -------
    Tensor
        ``(len(record_steps), B, *event_shape)``: row ``k`` holds :math:`x_t` for the ``k``-th recorded ``t``;
        dtype and device of ``x``. ``.transpose(0, 1)`` gives the ``(chains, steps, ...)`` layout of
        :func:`~ebmlib.metrics.split_rhat`.
    """
    check_tensor(x, "x", min_ndim=1, floating=True)
    check_int(n_steps, "n_steps", minimum=1)
    h = check_positive(step_size, "step_size")
    drift = h / check_positive(temperature, "temperature")
    sigma = (2 * h) ** 0.5 if noise_scale is None else check_noise_scale(noise_scale)
    bounds = None if clamp is None else check_clamp(clamp)
    record = range(1, n_steps + 1) if record_steps is None else list(record_steps)
    if (len(record) == 0 or any(isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= n_steps
                                for t in record) or any(a >= b for a, b in zip(record, record[1:]))):
        raise ValueError(f"record_steps must be increasing integers in [1, n_steps={n_steps}], got {record_steps!r}")
    wanted = set(record)
    states = []
    with torch.no_grad():
        x = x.detach()
        finite = torch.ones((), dtype=torch.bool, device=x.device)
        for t in range(1, record[-1] + 1):
            energy, grad = energy_and_grad(energy_fn, x)
            finite &= all_finite(energy, grad)
            x = langevin_update(x, grad, drift, sigma, bounds)
            if t in wanted:
                states.append(x)
    raise_unless_finite(finite)
    return torch.stack(states)


# ---------------------------------------------------------------------------------------------------------
# MALA (Grenioux et al., Alg. 4)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class MALAResult:
    """What :func:`~ebmlib.samplers.mala` returns: final states ``(B, d)``, the (adapted) step size, the fraction of
    accepted proposals per chain ``(B,)``, and the states after the steps in ``record_steps``
    ``(len(record_steps), B, d)`` (``None`` when none were asked for)."""

    x: Tensor
    step_size: float
    acceptance: Tensor
    samples: Tensor | None = None


def check_adaptation(target_accept: float | None, adapt_factor: float, tolerance: float) -> None:
    """Validate the step-size adaptation settings of :func:`~ebmlib.samplers.adapt_step_size`; raise ``ValueError``."""
    if target_accept is not None:
        check_probability(target_accept, "target_accept")
    if check_positive(adapt_factor, "adapt_factor") <= 1:
        raise ValueError(f"adapt_factor must be > 1, got {adapt_factor}")
    check_probability(tolerance, "tolerance")


def mala_step(energy_fn: EnergyFn, x: Tensor, energy: Tensor, grad: Tensor,
              step_size: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""One MALA step on ``B`` chains: propose :math:`x' = x - h\nabla E(x) + \sqrt{2h}\,\xi`, accept with
    probability :math:`\min\{1, \frac{e^{-E(x')} q(x \mid x')}{e^{-E(x)} q(x' \mid x)}\}`,
    :math:`q(a \mid b) = N(a; b - h \nabla E(b), 2h I)`.

    Parameters
    ----------
    energy_fn
        ``(B, d) -> (B,)``.
    x, energy, grad
        Current states ``(B, d)``, their energies ``(B,)`` and gradients ``(B, d)`` (carried between steps,
        so a step costs one energy-and-gradient evaluation).
    step_size
        :math:`h`, a 0-dim tensor (so that adaptation needs no host synchronisation).

    Returns
    -------
    x, energy, grad, accepted
        The new states, energies and gradients, and the ``(B,)`` boolean acceptances. Only metadata is checked
        here: a NaN proposal is rejected, and callers check the carried values for finiteness once per run.
    """
    check_tensor(x, "x", ndim=2, floating=True, finite=False)
    check_tensor(energy, "energy", shape=(x.shape[0],), finite=False)
    check_tensor(grad, "grad", shape=tuple(x.shape), finite=False)
    _check_step_tensor(step_size)
    mean = x - step_size * grad
    proposal = mean + torch.sqrt(2 * step_size) * torch.randn_like(x)
    energy_prop, grad_prop = energy_and_grad(energy_fn, proposal)
    # log q(a | b) = -|a - b + h ∇E(b)|² / (4h); the normalisers cancel.
    log_q_forward = -(proposal - mean).pow(2).sum(-1) / (4 * step_size)
    log_q_reverse = -(x - proposal + step_size * grad_prop).pow(2).sum(-1) / (4 * step_size)
    log_alpha = energy - energy_prop + log_q_reverse - log_q_forward
    accepted = metropolis_accept(torch.nan_to_num(log_alpha, nan=-torch.inf))
    return (select_rows(accepted, proposal, x), select_rows(accepted, energy_prop, energy),
            select_rows(accepted, grad_prop, grad), accepted)


def _check_step_tensor(step_size: Tensor) -> None:
    check_tensor(step_size, "step_size", ndim=0, floating=True, finite=False)


def adapt_step_size(step_size: Tensor, accepted: Tensor, target_accept: float, adapt_factor: float = 1.05,
                    tolerance: float = 0.03) -> Tensor:
    """Multiplicative step-size rule of the ``flow_mcmc`` reference code, on the device (no host sync).

    With ``â`` the mean of ``accepted`` (``(B,)`` bool): ``h·adapt_factor`` if ``â > target + tolerance``,
    ``h/adapt_factor`` if ``â < target - tolerance``, else ``h``. Returns a 0-dim tensor. Only metadata and the
    Python numbers are checked (safe inside sampling loops).
    """
    _check_step_tensor(step_size)
    check_tensor(accepted, "accepted", ndim=1)
    if accepted.dtype != torch.bool:
        raise ValueError(f"accepted must be a boolean tensor, got dtype {accepted.dtype}")
    check_probability(target_accept, "target_accept")
    check_adaptation(target_accept, adapt_factor, tolerance)
    rate = accepted.to(step_size.dtype).mean()
    return torch.where(rate > target_accept + tolerance, step_size * adapt_factor,
                       torch.where(rate < target_accept - tolerance, step_size / adapt_factor, step_size))


def mala(energy_fn: EnergyFn, x: Tensor, *, n_steps: int, step_size: float, target_accept: float | None = None,
         adapt_factor: float = 1.05, tolerance: float = 0.03,
         record_steps: Sequence[int] | None = None) -> MALAResult:
    r"""Metropolis-adjusted Langevin algorithm on ``B`` chains targeting :math:`\pi \propto e^{-E}`
    (Grenioux et al., Alg. 4): ``n_steps`` of :func:`~ebmlib.samplers.mala_step`. With a fixed step size it leaves
    :math:`\pi` invariant.

    With ``target_accept`` the shared step size is adapted after every step by
    :func:`~ebmlib.samplers.adapt_step_size` (target
    0.75 in the paper). Adaptation makes the chain inhomogeneous; use it during training, not for exact
    invariance.

    Parameters
    ----------
    energy_fn
        :math:`E`: ``(B, d) -> (B,)``, differentiable in ``x``.
    x
        Initial states ``(B, d)``.
    n_steps
        Number of MALA steps.
    step_size
        :math:`h > 0` (initial value when adapting).
    target_accept
        Target mean acceptance in ``(0, 1)``, or ``None`` for a fixed step size.
    adapt_factor, tolerance
        Multiplicative change (``> 1``) and dead band of the adaptation.
    record_steps
        1-based step numbers whose states are kept in ``samples`` (a trajectory for plots or
        :func:`~ebmlib.metrics.split_rhat`); recording does not change the chains.
    """
    check_tensor(x, "x", ndim=2, floating=True)
    check_int(n_steps, "n_steps", minimum=1)
    check_adaptation(target_accept, adapt_factor, tolerance)
    record = set() if record_steps is None else set(record_steps)
    if record_steps is not None and (not record or any(
            isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= n_steps for t in record)):
        raise ValueError(f"record_steps must be integers in [1, n_steps={n_steps}], got {record_steps!r}")
    samples = []
    step = torch.tensor(check_positive(step_size, "step_size"), dtype=x.dtype, device=x.device)
    n_accepted = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    with torch.no_grad():
        x = x.detach()
        energy, grad = energy_and_grad(energy_fn, x)
        finite = all_finite(energy, grad)
        for t in recorded_steps(n_steps, "mala"):
            x, energy, grad, accepted = mala_step(energy_fn, x, energy, grad, step)
            finite &= all_finite(energy, grad)
            n_accepted += accepted
            if target_accept is not None:
                step = adapt_step_size(step, accepted, target_accept, adapt_factor, tolerance)
            if t + 1 in record:
                samples.append(x)
    raise_unless_finite(finite)
    return MALAResult(x=x, step_size=float(step), acceptance=n_accepted / n_steps,
                      samples=torch.stack(samples) if samples else None)
