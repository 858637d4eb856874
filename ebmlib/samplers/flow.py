"""Flow-assisted samplers (Grenioux, Moulines & Gabrié 2023): i-SIR global moves with a normalising-flow
proposal, flowMC (i-SIR + MALA), and MALA in the flow's latent space (neural transport).

The flow only needs ``sample_with_log_prob(n)`` and ``log_prob(x)`` (:class:`~ebmlib.samplers.FlowProposal`), and
for the latent-space sampler a forward map ``flow(z) -> (x, log|det J|)`` (:class:`~ebmlib.samplers.TransportMap`):
:class:`ebmlib.flows.RealNVP` is one, any flow with these methods works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from ebmlib.samplers.continuous import MALAResult, adapt_step_size, check_adaptation, mala, mala_step
from ebmlib.samplers.core import all_finite, raise_unless_finite, sample_categorical
from ebmlib.utils import EnergyFn, check_energy_output, check_int, check_positive, check_tensor, energy_and_grad


@runtime_checkable
class FlowProposal(Protocol):
    """A normalised proposal density ``λ`` on ``R^d``, e.g. :class:`ebmlib.flows.RealNVP`."""

    def sample_with_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` draws ``(n, d)`` and their log-densities ``(n,)``."""

    def log_prob(self, x: Tensor) -> Tensor:
        """``log λ(x)``, ``(B, d) -> (B,)``."""


@runtime_checkable
class TransportMap(Protocol):
    """An invertible map ``x = T(z)`` returning ``(x, log|det J_T(z)|)``, shapes ``(B, d)`` and ``(B,)``."""

    def __call__(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``T(z)`` and its log-Jacobian determinant."""


def check_flow(flow: object, x: Tensor, protocol: type = FlowProposal, name: str = "x") -> None:
    """Check that ``flow`` has the methods of ``protocol`` and, if it declares ``dim``, that it matches ``x``
    (the argument called ``name``)."""
    if not isinstance(flow, protocol):
        raise ValueError(f"flow must implement {protocol.__name__}, got {type(flow).__name__}")
    dim = getattr(flow, "dim", None)
    if dim is not None and dim != x.shape[1]:
        raise ValueError(f"{name} must have {dim} columns, the flow's dimension, got shape {tuple(x.shape)}")


# i-SIR draws its flow particles and their energies in chunks of at most this many values (particles × d):
# B (N - 1) images at once would hold every network activation of all of them (CIFAR-10 with 128 chains of 128
# particles: over 10 GB); smaller problems take one chunk, and their draws do not change.
_ISIR_CHUNK_VALUES = 2**22


def _weighted_particles(energy_fn: EnergyFn, flow: FlowProposal, n: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """``n`` flow draws ``(n, d)`` in the dtype and on the device of ``x``, and their log-weights ``-U - log λ``."""
    rows = max(1, _ISIR_CHUNK_VALUES // x.shape[1])
    draws, log_w = [], []
    for start in range(0, n, rows):
        count = min(rows, n - start)
        y, log_lambda_y = flow.sample_with_log_prob(count)
        if y.shape != (count, x.shape[1]):
            raise ValueError(f"flow.sample_with_log_prob returned shape {tuple(y.shape)}, not {(count, x.shape[1])}")
        y, log_lambda_y = y.to(x), log_lambda_y.to(x)
        draws.append(y)
        log_w.append(-check_energy_output(energy_fn(y), count, "energy_fn", finite=False) - log_lambda_y)
    return torch.cat(draws), torch.cat(log_w)


def isir_step(energy_fn: EnergyFn, x: Tensor, flow: FlowProposal, n_particles: int, *,
              finite: Tensor | None = None) -> tuple[Tensor, Tensor]:
    r"""One i-SIR move per chain with ``N = n_particles`` candidates (paper Alg. 6).

    For each chain, ``y_1 = x`` and ``y_2, …, y_N ~ λ`` (the flow); with importance weights
    :math:`w_j = \pi(y_j)/\lambda(y_j) \propto e^{-U(y_j) - \log\lambda(y_j)}`, the next state is ``y_J`` with
    ``J ~ Categorical(w / Σ w)``. This leaves ``π`` invariant for any proposal ``λ``; with ``λ = π`` all weights
    are equal and a fresh particle is taken with probability ``(N - 1)/N``. Flow particles with a non-finite
    weight count as 0; a current state with a non-finite energy is an error, never replaced silently.

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
    finite
        ``None``: raise ``ValueError`` if a current state's energy is not finite (one host synchronisation).
        A 0-dim boolean tensor: AND the check into it in place instead, for loops that check once per run.

    Returns
    -------
    x_new, accepted
        New states ``(B, d)`` and whether each chain moved to a flow particle (``J ≠ 1``), ``(B,)`` bool.
    """
    check_tensor(x, "x", ndim=2, floating=True, finite=finite is None)
    check_flow(flow, x)
    n = check_int(n_particles, "n_particles", minimum=2)
    batch, dim = x.shape
    with torch.no_grad():
        y, log_w_y = _weighted_particles(energy_fn, flow, batch * (n - 1), x)
        energy_x = check_energy_output(energy_fn(x), batch, "energy_fn", finite=False)
        log_w = torch.cat([(-energy_x - flow.log_prob(x).to(x))[:, None], log_w_y.view(batch, n - 1)], dim=1)
        log_w = torch.where(torch.isfinite(log_w), log_w, -torch.inf)
        # A row without any finite weight keeps its state (a uniform draw over the row would be arbitrary).
        dead = ~torch.isfinite(log_w).any(dim=1, keepdim=True)
        log_w = torch.where(dead, torch.where(torch.arange(n, device=x.device) == 0, 0.0, -torch.inf), log_w)
        index = sample_categorical(log_w)
        candidates = torch.cat([x[:, None], y.view(batch, n - 1, dim)], dim=1)
        x_new = candidates[torch.arange(batch, device=x.device), index]
    ok = all_finite(x, energy_x)
    if finite is None:
        raise_unless_finite(ok)
    else:
        finite &= ok
    return x_new, index != 0


@dataclass
class FlowMCResult:
    """What :func:`~ebmlib.samplers.flowmc` returns.

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


def flowmc(energy_fn: EnergyFn, x: Tensor, flow: FlowProposal, *, n_steps: int, n_local: int, n_particles: int,
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
        As in :func:`~ebmlib.samplers.mala`; the step size carries over between cycles.
    record_steps
        1-based step numbers whose states are returned in ``samples`` (default: the last step only);
        e.g. "subsampling by 4" of 128 steps records steps 32, 64, 96, 128.
    """
    check_tensor(x, "x", ndim=2, floating=True)
    check_flow(flow, x)
    check_int(n_steps, "n_steps", minimum=1)
    check_int(n_local, "n_local", minimum=0)
    check_int(n_particles, "n_particles", minimum=2)
    check_adaptation(target_accept, adapt_factor, tolerance)
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
            x, moved = isir_step(energy_fn, x, flow, n_particles, finite=finite)
            global_acc, n_global, done = global_acc + moved.to(x.dtype).mean(), n_global + 1, done + 1
            if done in record:
                samples.append(x)
            k = min(n_local, n_steps - done)
            if k == 0:
                continue
            energy, grad = energy_and_grad(energy_fn, x)
            finite &= all_finite(energy, grad)
            for _ in range(k):
                x, energy, grad, accepted = mala_step(energy_fn, x, energy, grad, step)
                finite &= all_finite(energy, grad)
                if target_accept is not None:
                    step = adapt_step_size(step, accepted, target_accept, adapt_factor, tolerance)
                local_acc, n_local_done, done = local_acc + accepted.to(x.dtype).mean(), n_local_done + 1, done + 1
                if done in record:
                    samples.append(x)
    raise_unless_finite(finite)
    return FlowMCResult(x=x, samples=torch.stack(samples), step_size=float(step),
                        global_acceptance=global_acc / n_global, local_acceptance=local_acc / max(n_local_done, 1))


def latent_energy(energy_fn: EnergyFn, flow: TransportMap) -> EnergyFn:
    r"""Energy of the pull-back of ``π ∝ e^{-U}`` to the flow's latent space:
    :math:`U_z(z) = U(T(z)) - \log|\det J_T(z)|` (neural transport, Nijkamp et al. 2022). Only metadata is checked
    when it is evaluated (it runs inside sampling loops)."""
    if not isinstance(flow, TransportMap):
        raise ValueError(f"flow must implement TransportMap, got {type(flow).__name__}")

    def energy(z: Tensor) -> Tensor:
        check_tensor(z, "z", ndim=2, floating=True, finite=False)
        x, log_det = flow(z)
        return check_energy_output(energy_fn(x), z.shape[0], "energy_fn", finite=False) - log_det

    return energy


def latent_mala(energy_fn: EnergyFn, flow: TransportMap, z: Tensor, *, n_steps: int, step_size: float,
                target_accept: float | None = 0.75,
                record_steps: Sequence[int] | None = None) -> tuple[Tensor, MALAResult]:
    """NT-EBM's sampler: :func:`~ebmlib.samplers.mala` on :func:`~ebmlib.samplers.latent_energy` from latent states
    ``z`` ``(B, d)``.

    Returns the states mapped back, ``T(z_final)`` ``(B, d)``, and the latent :class:`~ebmlib.samplers.MALAResult`
    (with ``record_steps``, its ``samples`` are the latent states after those steps).
    """
    check_tensor(z, "z", ndim=2, floating=True)
    check_flow(flow, z, TransportMap, "z")
    result = mala(latent_energy(energy_fn, flow), z, n_steps=n_steps, step_size=step_size,
                  target_accept=target_accept, record_steps=record_steps)
    with torch.no_grad():
        x = flow(result.x)[0]
    return x, result
