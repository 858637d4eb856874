"""flowMC-EBM (Grenioux, Moulines & Gabrié, 2023): EBM training with flow-assisted MCMC, and its baselines.

The EBM is *tilted* by the base ``ρ`` of a companion flow (paper eq. 6),

    p_θ^ρ(x) ∝ exp(-E_θ(x)) ρ(x),   i.e. the energy   U_θ(x) = E_θ(x) - log ρ(x),

so that ``E_{θ0} ≡ 0`` and ``T_{α0} = Id`` make the EBM and the flow equal at initialisation. Every sampler
below targets ``π ∝ exp(-U)`` for an energy ``U`` it is given (:class:`TiltedEnergy` builds ``U_θ``):

* :func:`mala` — Metropolis-adjusted Langevin, batched chains, per-chain accept/reject, step size adapted
  towards a target acceptance (paper Alg. 4);
* :func:`isir_step` — iterated sampling importance resampling with ``N`` flow proposals (Alg. 6);
* :func:`flowmc` — cycles of one i-SIR global move and ``n_local`` MALA local moves (Alg. 5 with i-SIR);
* :func:`latent_mala` — MALA in the flow's latent space, the sampler of NT-EBM (Nijkamp et al., 2022).

:class:`FlowEBMLoss` is one training step of Alg. 1 (flowMC-EBM) and of the ULA-EBM and NT-EBM baselines,
written as a loss for :func:`ebmlib.train.fit`. The paper's synthetic targets are in :mod:`ebmlib.mixtures`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ebmlib.flows import RealNVP, flow_ml_step
from ebmlib.losses import contrastive_divergence
from ebmlib.nets import MLP
from ebmlib.samplers import (
    _all_finite,
    _metropolis_hastings,
    _raise_unless_finite,
    _sample_categorical,
    _select,
    langevin,
)
from ebmlib.utils import (
    EnergyFn,
    check_energy_output,
    check_int,
    check_positive,
    check_probability,
    check_tensor,
    energy_and_grad,
)

METHODS = ("flowmc", "ula", "nt")
"""Negative samplers of :class:`FlowEBMLoss`: flowMC-EBM, ULA-EBM and NT-EBM."""


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------
def toy_energy_net(dim: int, hidden_dims: Sequence[int] = (32, 64, 64, 64)) -> MLP:
    """The MLP energy of the paper's toy experiments (Nijkamp et al., 2020: ``d→32→64→64→64→1``, LeakyReLU).

    The output layer is zero, so ``E_{θ0} ≡ 0`` as flowMC-EBM's initialisation requires. The MLP maps
    ``(B, d)`` to ``(B, 1)``; :class:`TiltedEnergy` squeezes it to ``(B,)``.
    """
    net = MLP(dim, 1, hidden_dims, activation="leaky_relu")
    nn.init.zeros_(net.net[-1].weight)
    nn.init.zeros_(net.net[-1].bias)
    return net


class TiltedEnergy(nn.Module):
    r"""Energy :math:`U_\theta(x) = E_\theta(x) - \log\rho(x)` of the tilted EBM :math:`p_\theta^\rho` (eq. 6).

    ``log ρ`` has no parameters, so the maximum-likelihood gradient keeps its usual form (paper App. B);
    the tilt only makes the model integrable from the start and ties it to the flow's base.

    Parameters
    ----------
    net
        ``E_θ``: maps ``(B, d)`` to ``(B,)`` or ``(B, 1)``.
    dim
        ``d``.
    base_std
        ``σ`` of ``ρ = N(0, σ² I_d)``, the same as the companion :class:`~ebmlib.flows.RealNVP`'s.
    """

    def __init__(self, net: nn.Module, dim: int, base_std: float) -> None:
        super().__init__()
        self.net = net
        self.dim = check_int(dim, "dim", minimum=1)
        self.register_buffer("base_std", torch.tensor(check_positive(base_std, "base_std")))

    def base_log_prob(self, x: Tensor) -> Tensor:
        """``log ρ(x)``, ``(B, d) -> (B,)``."""
        var = self.base_std**2
        return -0.5 * (x.pow(2).sum(-1) / var + self.dim * torch.log(2 * torch.pi * var))

    def forward(self, x: Tensor) -> Tensor:
        """``U_θ(x)``, ``(B, d) -> (B,)``."""
        check_tensor(x, "x", shape=(None, self.dim), floating=True, finite=False)
        return self.net(x).reshape(x.shape[0]) - self.base_log_prob(x)


# ---------------------------------------------------------------------------------------------------------
# MALA (paper Alg. 4)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class MALAResult:
    """What :func:`mala` returns: final states ``(B, d)``, the (adapted) step size, and the fraction of
    accepted proposals per chain ``(B,)``."""

    x: Tensor
    step_size: float
    acceptance: Tensor


def _check_adaptation(target_accept: float | None, adapt_factor: float) -> None:
    if target_accept is not None:
        check_probability(target_accept, "target_accept")
    if check_positive(adapt_factor, "adapt_factor") <= 1:
        raise ValueError(f"adapt_factor must be > 1, got {adapt_factor}")


def _mala_steps(energy_fn: EnergyFn, x: Tensor, step: Tensor, n_steps: int, target_accept: float | None,
                adapt_factor: float, tolerance: float, finite: Tensor) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Yield ``(x, accepted, step)`` after each MALA step; ``finite`` (0-dim bool) is updated in place."""
    energy, grad = energy_and_grad(energy_fn, x)
    finite &= _all_finite(energy, grad)
    for _ in range(n_steps):
        mean = x - step * grad
        proposal = mean + torch.sqrt(2 * step) * torch.randn_like(x)
        energy_prop, grad_prop = energy_and_grad(energy_fn, proposal)
        finite &= _all_finite(energy_prop, grad_prop)
        # log q(a | b) = -|a - b + η ∇U(b)|² / (4η); the normalisers cancel.
        log_q_forward = -(proposal - mean).pow(2).sum(-1) / (4 * step)
        log_q_reverse = -(x - proposal + step * grad_prop).pow(2).sum(-1) / (4 * step)
        log_alpha = energy - energy_prop + log_q_reverse - log_q_forward
        accepted = _metropolis_hastings(torch.nan_to_num(log_alpha, nan=-torch.inf))
        x = _select(accepted, proposal, x)
        energy = _select(accepted, energy_prop, energy)
        grad = _select(accepted, grad_prop, grad)
        if target_accept is not None:
            # Multiplicative rule of the flow_mcmc reference code, on a device tensor (no host sync).
            rate = accepted.float().mean()
            step = torch.where(rate > target_accept + tolerance, step * adapt_factor,
                               torch.where(rate < target_accept - tolerance, step / adapt_factor, step))
        yield x, accepted, step


def mala(energy_fn: EnergyFn, x: Tensor, *, n_steps: int, step_size: float, target_accept: float | None = None,
         adapt_factor: float = 1.05, tolerance: float = 0.03) -> MALAResult:
    r"""Metropolis-adjusted Langevin algorithm on ``B`` chains targeting ``π ∝ exp(-U)`` (paper Alg. 4).

    Each step proposes :math:`x' = x - \eta \nabla U(x) + \sqrt{2\eta}\,\xi` and accepts it, chain by chain,
    with probability :math:`\min\{1, \frac{\pi(x') q(x \mid x')}{\pi(x) q(x' \mid x)}\}`, where
    :math:`q(a \mid b) = N(a; b - \eta \nabla U(b), 2\eta I)`. With a fixed ``η`` this leaves ``π`` invariant.

    With ``target_accept`` the shared step size is adapted after every step from the acceptance rate ``â``
    averaged over the chains: ``η ← η·adapt_factor`` if ``â > target + tolerance``, ``η ← η/adapt_factor`` if
    ``â < target - tolerance`` (the rule of the authors' ``flow_mcmc`` code, target 0.75 in the paper).
    Adaptation makes the chain inhomogeneous; use it during training, not for exact invariance.

    Parameters
    ----------
    energy_fn
        ``U``: ``(B, d) -> (B,)``, differentiable in ``x``.
    x
        Initial states ``(B, d)``.
    n_steps
        Number of MALA steps.
    step_size
        ``η > 0`` (initial value when adapting).
    target_accept
        Target mean acceptance in ``(0, 1)``, or ``None`` for a fixed step size.
    adapt_factor, tolerance
        Multiplicative change (``> 1``) and dead band of the adaptation.
    """
    check_tensor(x, "x", ndim=2, floating=True)
    check_int(n_steps, "n_steps", minimum=1)
    _check_adaptation(target_accept, adapt_factor)
    step = torch.tensor(check_positive(step_size, "step_size"), dtype=x.dtype, device=x.device)
    finite = torch.ones((), dtype=torch.bool, device=x.device)
    n_accepted = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    with torch.no_grad():
        steps = _mala_steps(energy_fn, x.detach(), step, n_steps, target_accept, adapt_factor, tolerance, finite)
        for state in steps:
            n_accepted += state[1]
        x, _, step = state
    _raise_unless_finite(finite)
    return MALAResult(x=x, step_size=float(step), acceptance=n_accepted / n_steps)


# ---------------------------------------------------------------------------------------------------------
# i-SIR (paper Alg. 6) and flowMC (Alg. 5)
# ---------------------------------------------------------------------------------------------------------
def _check_flow(flow: RealNVP, x: Tensor) -> None:
    if not isinstance(flow, RealNVP):
        raise ValueError(f"flow must be an ebmlib.flows.RealNVP, got {type(flow).__name__}")
    if flow.dim != x.shape[1]:
        raise ValueError(f"flow has dimension {flow.dim} but x has shape {tuple(x.shape)}")


def isir_step(energy_fn: EnergyFn, x: Tensor, flow: RealNVP, n_particles: int) -> tuple[Tensor, Tensor]:
    r"""One i-SIR move per chain with ``N = n_particles`` candidates (paper Alg. 6).

    For each chain, ``y_1 = x`` and ``y_2, …, y_N ~ λ`` (the flow); with importance weights
    :math:`w_j = \pi(y_j)/\lambda(y_j) \propto e^{-U(y_j) - \log\lambda(y_j)}`, the next state is ``y_J`` with
    ``J ~ Categorical(w / Σ w)``. This leaves ``π`` invariant for any proposal ``λ``; with ``λ = π`` all weights
    are equal and a fresh particle is taken with probability ``(N - 1)/N``. Non-finite weights count as 0.

    Parameters
    ----------
    energy_fn
        ``U``: ``(B, d) -> (B,)``.
    x
        Current states ``(B, d)``.
    flow
        The proposal ``λ``.
    n_particles
        ``N ≥ 2``, the current state included.

    Returns
    -------
    x_new, accepted
        New states ``(B, d)`` and whether each chain moved to a flow particle (``J ≠ 1``), ``(B,)`` bool.
    """
    check_tensor(x, "x", ndim=2, floating=True, finite=False)
    _check_flow(flow, x)
    n = check_int(n_particles, "n_particles", minimum=2)
    batch, dim = x.shape
    with torch.no_grad():
        y, log_lambda_y = flow.sample_with_log_prob(batch * (n - 1))
        y, log_lambda_y = y.to(x), log_lambda_y.to(x)
        log_w_y = -check_energy_output(energy_fn(y), y.shape[0], "energy_fn", finite=False) - log_lambda_y
        log_w_x = -check_energy_output(energy_fn(x), batch, "energy_fn", finite=False) - flow.log_prob(x).to(x)
        log_w = torch.cat([log_w_x[:, None], log_w_y.view(batch, n - 1)], dim=1)
        log_w = torch.where(torch.isfinite(log_w), log_w, -torch.inf)
        # A row without a finite weight keeps its state (a uniform draw over the row would be arbitrary).
        dead = ~torch.isfinite(log_w).any(dim=1, keepdim=True)
        log_w = torch.where(dead, torch.where(torch.arange(n, device=x.device) == 0, 0.0, -torch.inf), log_w)
        index = _sample_categorical(log_w)
        candidates = torch.cat([x[:, None], y.view(batch, n - 1, dim)], dim=1)
        x_new = candidates[torch.arange(batch, device=x.device), index]
    return x_new, index != 0


@dataclass
class FlowMCResult:
    """What :func:`flowmc` returns.

    Attributes
    ----------
    x
        Final states ``(B, d)``.
    samples
        States after the steps listed in ``record_steps``, shape ``(len(record_steps), B, d)``.
    step_size
        MALA step size after adaptation.
    global_acceptance
        Fraction of i-SIR moves that took a flow particle (all chains and global steps), 0-dim tensor.
    local_acceptance
        Fraction of accepted MALA proposals, 0-dim tensor.
    """

    x: Tensor
    samples: Tensor
    step_size: float
    global_acceptance: Tensor
    local_acceptance: Tensor


def flowmc(energy_fn: EnergyFn, x: Tensor, flow: RealNVP, *, n_steps: int, n_local: int, n_particles: int,
           step_size: float, target_accept: float | None = None, record_steps: Sequence[int] | None = None,
           adapt_factor: float = 1.05, tolerance: float = 0.03) -> FlowMCResult:
    """flowMC with i-SIR global moves (paper Alg. 5 + 6): repeat [1 i-SIR step, ``n_local`` MALA steps].

    Each global and each local move counts as one of the ``n_steps`` steps; the last cycle is cut short to
    end after exactly ``n_steps`` (as the authors' ``GlobalLocal`` sampler does). Every move leaves ``π``
    invariant (when the MALA step size is fixed), so their alternation does too.

    Parameters
    ----------
    energy_fn
        ``U``: ``(B, d) -> (B,)``, differentiable in ``x``.
    x
        Initial states ``(B, d)``.
    flow
        Proposal of the global moves.
    n_steps
        Total number of moves.
    n_local
        MALA steps per cycle (``0``: i-SIR only).
    n_particles
        Candidates per i-SIR move.
    step_size, target_accept, adapt_factor, tolerance
        As in :func:`mala`; the step size carries over between cycles.
    record_steps
        1-based step numbers whose states are returned in ``samples`` (default: the last step only);
        e.g. "subsampling by 4" of 128 steps records steps 32, 64, 96, 128.
    """
    check_tensor(x, "x", ndim=2, floating=True)
    _check_flow(flow, x)
    check_int(n_steps, "n_steps", minimum=1)
    check_int(n_local, "n_local", minimum=0)
    check_int(n_particles, "n_particles", minimum=2)
    _check_adaptation(target_accept, adapt_factor)
    record = {n_steps} if record_steps is None else set(record_steps)
    if not record or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= n_steps for s in record):
        raise ValueError(f"record_steps must be integers in [1, n_steps={n_steps}], got {record_steps!r}")
    step = torch.tensor(check_positive(step_size, "step_size"), dtype=x.dtype, device=x.device)
    finite = torch.ones((), dtype=torch.bool, device=x.device)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    global_acc, local_acc, n_global, n_local_done = zero, zero, 0, 0
    samples, done = [], 0
    x = x.detach()
    with torch.no_grad():
        while done < n_steps:
            x, moved = isir_step(energy_fn, x, flow, n_particles)
            global_acc, n_global, done = global_acc + moved.to(x.dtype).mean(), n_global + 1, done + 1
            if done in record:
                samples.append(x)
            k = min(n_local, n_steps - done)
            if k == 0:
                continue
            for state in _mala_steps(energy_fn, x, step, k, target_accept, adapt_factor, tolerance, finite):
                local_acc, n_local_done, done = local_acc + state[1].to(x.dtype).mean(), n_local_done + 1, done + 1
                if done in record:
                    samples.append(state[0])
            x, _, step = state
    _raise_unless_finite(finite)
    return FlowMCResult(x=x, samples=torch.stack(samples), step_size=float(step),
                        global_acceptance=global_acc / n_global, local_acceptance=local_acc / max(n_local_done, 1))


def latent_energy(energy_fn: EnergyFn, flow: RealNVP) -> EnergyFn:
    r"""Energy of the pull-back of ``π ∝ e^{-U}`` to the flow's latent space:
    :math:`U_z(z) = U(T(z)) - \log|\det J_T(z)|` (neural transport, Nijkamp et al. 2022)."""

    def energy(z: Tensor) -> Tensor:
        x, log_det = flow(z)
        return energy_fn(x) - log_det

    return energy


def latent_mala(energy_fn: EnergyFn, flow: RealNVP, z: Tensor, *, n_steps: int, step_size: float,
                target_accept: float | None = 0.75) -> tuple[Tensor, MALAResult]:
    """NT-EBM's sampler: :func:`mala` on :func:`latent_energy` from latent states ``z`` ``(B, d)``.

    Returns the states mapped back, ``T(z_final)`` ``(B, d)``, and the latent :class:`MALAResult`.
    """
    check_tensor(z, "z", ndim=2, floating=True)
    _check_flow(flow, z)
    result = mala(latent_energy(energy_fn, flow), z, n_steps=n_steps, step_size=step_size,
                  target_accept=target_accept)
    with torch.no_grad():
        x = flow(result.x)[0]
    return x, result


# ---------------------------------------------------------------------------------------------------------
# Training (paper Alg. 1) and baselines
# ---------------------------------------------------------------------------------------------------------
class FlowEBMLoss:
    r"""One training step of flowMC-EBM (paper Alg. 1), ULA-EBM or NT-EBM, as a loss for :func:`~ebmlib.train.fit`.

    Each call (with the current tilted energy ``U_θ`` and a data batch ``x⁺``):

    1. draws ``n_chains`` chain states: for ``"flowmc"`` and ``"ula"`` uniformly from the persistent pool
       (without re-initialisation); for ``"nt"`` fresh latent states ``z ~ ρ``;
    2. moves them: :func:`flowmc` (global i-SIR + local MALA), :func:`~ebmlib.samplers.langevin` (ULA), or
       :func:`latent_mala`; writes the final states back to the pool;
    3. takes as negatives ``x⁻`` the states at ``record_steps`` (flowMC) or the final states;
    4. fits the flow by ``flow_steps`` maximum-likelihood steps on ``x⁻`` (``"flowmc"`` and ``"nt"``; the paper
       takes one);
    5. returns the contrastive-divergence loss :math:`\overline{U_\theta(x^+)} - \overline{U_\theta(x^-)}`
       (eq. 3), whose θ-gradient is the maximum-likelihood gradient of the tilted EBM (App. B).

    ``last_init`` and ``last_negatives`` keep the chain starts and negatives of the latest call, for the
    paper's Table 3 diagnostics; the MALA step size adapts across calls and is logged as ``step_size``.

    NT-EBM's chains restart from the flow in every call, so its negatives are only as good as the flow plus
    ``n_steps`` latent moves. If the EBM moves faster than that (a large learning rate, few steps), the
    negatives lag, the loss pushes energies apart without bound, the adapted step collapses and training
    diverges; watch ``energy_neg - energy_pos`` and ``step_size`` in the logs.

    Parameters
    ----------
    method
        One of :data:`METHODS`.
    pool
        Initial persistent states ``(P, d)`` (ignored by ``"nt"`` but kept for its shape).
    n_chains
        Chains moved per call (``≤ P``).
    n_steps
        MCMC steps per call.
    step_size
        ULA: the ``ε`` of :func:`~ebmlib.samplers.langevin` (drift ``ε²/2``); MALA: the initial ``η``.
    flow, flow_optimizer
        The companion flow and its optimiser (required except for ``"ula"``).
    n_local, n_particles, record_steps
        flowMC settings, see :func:`flowmc`.
    target_accept
        MALA acceptance target (``None``: fixed step size).
    flow_steps
        Maximum-likelihood steps of the flow per call, on the same negatives. More than one lets a flow with a
        modest learning rate keep up with the EBM in short runs: i-SIR only moves chains between modes when
        the flow is close to the EBM.
    """

    def __init__(self, method: str, pool: Tensor, *, n_chains: int, n_steps: int, step_size: float,
                 flow: RealNVP | None = None, flow_optimizer: torch.optim.Optimizer | None = None,
                 n_local: int = 0, n_particles: int = 2, record_steps: Sequence[int] | None = None,
                 target_accept: float | None = 0.75, flow_steps: int = 1) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        check_tensor(pool, "pool", ndim=2, floating=True)
        if not 1 <= check_int(n_chains, "n_chains", minimum=1) <= pool.shape[0]:
            raise ValueError(f"n_chains must be <= pool size {pool.shape[0]}, got {n_chains}")
        check_int(n_steps, "n_steps", minimum=1)
        check_positive(step_size, "step_size")
        if method != "ula":
            if flow is None or flow_optimizer is None:
                raise ValueError(f"method={method!r} needs flow and flow_optimizer")
            _check_flow(flow, pool)
        self.method, self.pool, self.flow, self.flow_optimizer = method, pool.detach().clone(), flow, flow_optimizer
        self.n_chains, self.n_steps, self.step_size = n_chains, n_steps, float(step_size)
        self.n_local, self.n_particles, self.record_steps = n_local, n_particles, record_steps
        self.target_accept = target_accept
        self.flow_steps = check_int(flow_steps, "flow_steps", minimum=1)
        self.last_init: Tensor | None = None
        self.last_negatives: Tensor | None = None

    def _step_log(self) -> Tensor:
        # Logged because a collapsing MALA step is the first sign that the negatives lost the EBM.
        return torch.tensor(self.step_size)

    def sample(self, energy_fn: EnergyFn, n_chains: int | None = None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Steps 1–3 alone: chain starts ``(n_chains, d)``, negatives ``(n_neg, d)`` and sampler diagnostics.

        ``n_chains`` (default: the training value, at most the pool size) lets an evaluation move the whole pool.
        """
        n_chains = self.n_chains if n_chains is None else check_int(n_chains, "n_chains", minimum=1)
        if n_chains > self.pool.shape[0]:
            raise ValueError(f"n_chains must be <= pool size {self.pool.shape[0]}, got {n_chains}")
        if self.method == "nt":
            z = self.flow.base_std * torch.randn_like(self.pool[:n_chains])
            with torch.no_grad():
                x_init = self.flow(z)[0]
            x_neg, result = latent_mala(energy_fn, self.flow, z, n_steps=self.n_steps, step_size=self.step_size,
                                        target_accept=self.target_accept)
            self.step_size = result.step_size
            return x_init, x_neg, {"local_acceptance": result.acceptance.mean(), "step_size": self._step_log()}
        index = torch.randperm(self.pool.shape[0], device=self.pool.device)[:n_chains]
        x_init = self.pool[index]
        if self.method == "ula":
            x_neg = langevin(energy_fn, x_init, n_steps=self.n_steps, step_size=self.step_size)
            self.pool[index] = x_neg
            return x_init, x_neg, {}
        result = flowmc(energy_fn, x_init, self.flow, n_steps=self.n_steps, n_local=self.n_local,
                        n_particles=self.n_particles, step_size=self.step_size, target_accept=self.target_accept,
                        record_steps=self.record_steps)
        self.pool[index] = result.x
        self.step_size = result.step_size
        logs = {"global_acceptance": result.global_acceptance, "local_acceptance": result.local_acceptance,
                "step_size": self._step_log()}
        return x_init, result.samples.reshape(-1, self.pool.shape[1]), logs

    def __call__(self, energy_fn: EnergyFn, x_pos: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        x_init, x_neg, logs = self.sample(energy_fn)
        self.last_init, self.last_negatives = x_init, x_neg
        if self.method != "ula":
            for _ in range(self.flow_steps):
                logs["flow_nll"] = flow_ml_step(self.flow, self.flow_optimizer, x_neg)
        loss, cd_logs = contrastive_divergence(energy_fn, x_pos, x_neg)
        return loss, {**cd_logs, **logs}
