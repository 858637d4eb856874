"""The training step of flowMC-EBM (Grenioux, Moulines & Gabrié 2023, Algorithm 1) and its two baselines,
ULA-EBM and NT-EBM, as one loss for :func:`ebmlib.train.fit`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ebmlib.flows import RealNVP, flow_ml_step
from ebmlib.losses.contrastive import contrastive_divergence
from ebmlib.samplers.continuous import check_adaptation, langevin
from ebmlib.samplers.core import check_noise_scale
from ebmlib.samplers.flow import FlowProposal, TransportMap, check_flow, flowmc, latent_mala
from ebmlib.utils import EnergyFn, check_int, check_positive, check_real, check_tensor

FLOW_EBM_METHODS = ("flowmc", "ula", "nt", "coop")
"""Negative samplers of :class:`~ebmlib.losses.FlowEBMLoss`: flowMC-EBM, ULA-EBM, NT-EBM and CoopFlow."""


class FlowEBMLoss:
    r"""One training step of flowMC-EBM (paper Alg. 1), ULA-EBM, NT-EBM or CoopFlow, as a loss for
    :func:`~ebmlib.train.fit`.

    Each call (with the current tilted energy ``U_θ`` and a data batch ``x⁺``):

    1. draws ``n_chains`` chain states: for ``"flowmc"`` and ``"ula"`` uniformly from the persistent pool
       (without re-initialisation); for ``"nt"`` fresh latent states ``z ~ ρ``; for ``"coop"`` fresh samples of
       the flow;
    2. moves them: :func:`~ebmlib.samplers.flowmc` (global i-SIR + local MALA),
       :func:`~ebmlib.samplers.langevin` (ULA; also CoopFlow's short-run "Langevin flow", Xie et al. 2022), or
       :func:`~ebmlib.samplers.latent_mala`; persistent methods write the final states back to the pool;
    3. takes as negatives ``x⁻`` the states at ``record_steps`` (flowMC) or the final states;
    4. fits the flow by ``flow_steps`` maximum-likelihood steps on ``x⁻`` (all but ``"ula"``; the paper takes
       one): in CoopFlow the flow learns from the samples the Langevin chains revised, so that it starts the
       next chains closer to the EBM;
    5. returns the contrastive-divergence loss :math:`\overline{U_\theta(x^+)} - \overline{U_\theta(x^-)}`
       (eq. 3), whose θ-gradient is the maximum-likelihood gradient of the tilted EBM (App. B), plus, with
       ``energy_l2 = λ > 0``, the paper's CIFAR-10 penalty (App. C.6)
       :math:`\lambda \sum_i E_\theta(x_i^-)^2 + E_\theta(x_i^+)^2` on the untilted energy
       :math:`E_\theta = U_\theta + \log\rho`, ``ρ`` being the flow's base (the tilt it shares).

    ``last_init`` and ``last_negatives`` keep the chain starts and negatives of the latest call, for the
    paper's Table 3 diagnostics; the MALA step size adapts across calls and is logged as ``step_size``.
    :meth:`state_dict` holds all of this state (pool, step size, flow, flow optimiser, latest chains), for
    checkpoints.

    NT-EBM's chains restart from the flow in every call, so its negatives are only as good as the flow plus
    ``n_steps`` latent moves. If the EBM moves faster than that (a large learning rate, few steps), the
    negatives lag, the loss pushes energies apart without bound, the adapted step collapses and training
    diverges; watch ``energy_neg - energy_pos`` and ``step_size`` in the logs.

    Parameters
    ----------
    method
        One of :data:`~ebmlib.losses.FLOW_EBM_METHODS`.
    pool
        Initial persistent states ``(P, d)`` (ignored by ``"nt"`` but kept for its shape).
    n_chains
        Chains moved per call (``≤ P``).
    n_steps
        MCMC steps per call.
    step_size
        The time step ``h`` of :func:`~ebmlib.samplers.langevin` (ULA, CoopFlow) or the initial one of
        :func:`~ebmlib.samplers.mala` (flowMC's local moves, NT-EBM).
    flow, flow_optimizer
        The companion flow and its optimiser (required except for ``"ula"``).
    n_local, n_particles, record_steps
        flowMC settings, see :func:`~ebmlib.samplers.flowmc`.
    target_accept
        MALA acceptance target (``None``: fixed step size).
    flow_steps
        Maximum-likelihood steps of the flow per call, on the same negatives. More than one lets a flow with a
        modest learning rate keep up with the EBM in short runs: i-SIR only moves chains between modes when
        the flow is close to the EBM.
    noise_scale
        The Langevin noise of ``"ula"`` and ``"coop"`` (``None``: :math:`\sqrt{2h}`; CoopFlow's authors advise
        0, a gradient descent on the energy).
    energy_l2
        ``λ ≥ 0`` of the energy penalty (needs ``flow``, whose base is the tilt; default 0: none).
    """

    def __init__(self, method: str, pool: Tensor, *, n_chains: int, n_steps: int, step_size: float,
                 flow: FlowProposal | None = None, flow_optimizer: torch.optim.Optimizer | None = None,
                 n_local: int = 0, n_particles: int = 2, record_steps: Sequence[int] | None = None,
                 target_accept: float | None = 0.75, flow_steps: int = 1, noise_scale: float | None = None,
                 energy_l2: float = 0.0) -> None:
        if method not in FLOW_EBM_METHODS:
            raise ValueError(f"method must be one of {FLOW_EBM_METHODS}, got {method!r}")
        check_tensor(pool, "pool", ndim=2, floating=True)
        if not 1 <= check_int(n_chains, "n_chains", minimum=1) <= pool.shape[0]:
            raise ValueError(f"n_chains must be <= pool size {pool.shape[0]}, got {n_chains}")
        check_int(n_steps, "n_steps", minimum=1)
        check_positive(step_size, "step_size")
        check_int(n_local, "n_local", minimum=0)
        check_int(n_particles, "n_particles", minimum=2)
        check_adaptation(target_accept, 1.05, 0.03)
        if record_steps is not None and (isinstance(record_steps, (str, bytes)) or not record_steps or any(
                isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= n_steps for s in record_steps)):
            raise ValueError(f"record_steps must be integers in [1, n_steps={n_steps}], got {record_steps!r}")
        if method != "ula":
            if flow is None or flow_optimizer is None:
                raise ValueError(f"method={method!r} needs flow and flow_optimizer")
            check_flow(flow, pool, FlowProposal, "pool")
            if method == "nt":
                check_flow(flow, pool, TransportMap, "pool")
            if not isinstance(flow_optimizer, torch.optim.Optimizer):
                raise ValueError(f"flow_optimizer must be a torch.optim.Optimizer, got {type(flow_optimizer).__name__}")
        self.method, self.pool, self.flow, self.flow_optimizer = method, pool.detach().clone(), flow, flow_optimizer
        self.n_chains, self.n_steps, self.step_size = n_chains, n_steps, float(step_size)
        self.n_local, self.n_particles, self.record_steps = n_local, n_particles, record_steps
        self.target_accept = target_accept
        self.flow_steps = check_int(flow_steps, "flow_steps", minimum=1)
        self.noise_scale = None if noise_scale is None else check_noise_scale(noise_scale)
        self.energy_l2 = check_real(energy_l2, "energy_l2")
        if self.energy_l2 < 0:
            raise ValueError(f"energy_l2 must be >= 0, got {energy_l2!r}")
        if self.energy_l2 and flow is None:
            raise ValueError("energy_l2 > 0 needs flow: the untilted energy adds the log-density of its base")
        self.last_init: Tensor | None = None
        self.last_negatives: Tensor | None = None

    @classmethod
    def from_flow(cls, method: str, flow: RealNVP, *, pool_size: int, lr: float, uniform_lim: float | None = None,
                  **kwargs: Any) -> FlowEBMLoss:
        """The loss as the paper starts a run (App. C): a fresh persistent pool and an Adam optimiser for the flow.

        The ``pool_size`` initial states ``(P, d)`` are, for ``"ula"``, uniform on ``[-uniform_lim, uniform_lim]^d``
        when ``uniform_lim`` is given (the 2-D experiments) and otherwise drawn from the flow's base
        ``N(0, σ² I)``; for the others, samples of the flow. The flow is trained by Adam with
        learning rate ``lr`` (unused by ``"ula"``).

        Parameters
        ----------
        method
            One of :data:`~ebmlib.losses.FLOW_EBM_METHODS`.
        flow
            The companion flow: a :class:`~ebmlib.flows.RealNVP`, or a module with ``dim``, ``base_std`` and
            ``sample(n)``; the pool is created on the device of ``base_std``.
        pool_size, lr, uniform_lim
            ``P ≥ 1``, the flow's learning rate ``> 0``, and the half-width ``> 0`` of ULA's uniform start.
        **kwargs
            The other arguments of :class:`~ebmlib.losses.FlowEBMLoss` (``n_chains``, ``n_steps``, ``step_size``,
            ``n_local``, ``n_particles``, ``record_steps``, ``target_accept``, ``flow_steps``, ``noise_scale``,
            ``energy_l2``).
        """
        if method not in FLOW_EBM_METHODS:
            raise ValueError(f"method must be one of {FLOW_EBM_METHODS}, got {method!r}")
        for attribute in ("dim", "base_std", "sample", "parameters"):
            if not hasattr(flow, attribute):
                raise ValueError(f"flow must have dim, base_std, sample() and parameters(), like RealNVP; "
                                 f"{type(flow).__name__} lacks {attribute}")
        if uniform_lim is not None and method != "ula":
            raise ValueError(f"uniform_lim sets the start of ULA chains only; method {method!r} starts from the flow")
        check_int(pool_size, "pool_size", minimum=1)
        optimizer = torch.optim.Adam(flow.parameters(), lr=check_positive(lr, "lr"))
        device = flow.base_std.device
        if method == "ula" and uniform_lim is not None:
            pool = check_positive(uniform_lim, "uniform_lim") * (2 * torch.rand(pool_size, flow.dim, device=device) - 1)
        elif method == "ula":
            pool = flow.base_std * torch.randn(pool_size, flow.dim, device=device)
        else:
            with torch.no_grad():
                pool = flow.sample(pool_size)
        return cls(method, pool, flow=flow, flow_optimizer=optimizer, **kwargs)

    def _step_log(self) -> Tensor:
        # Logged because a collapsing MALA step is the first sign that the negatives lost the EBM.
        return torch.tensor(self.step_size, dtype=self.pool.dtype, device=self.pool.device)

    def sample(self, energy_fn: EnergyFn, n_chains: int | None = None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Steps 1–3 alone: chain starts ``(n_chains, d)``, negatives ``(n_neg, d)`` and sampler diagnostics.

        ``n_chains`` (default: the training value, at most the pool size) lets an evaluation move the whole pool.
        """
        n_chains = self.n_chains if n_chains is None else check_int(n_chains, "n_chains", minimum=1)
        if n_chains > self.pool.shape[0]:
            raise ValueError(f"n_chains must be <= pool size {self.pool.shape[0]}, got {n_chains}")
        if self.method == "coop":  # chains start afresh from the flow; the pool only fixes the shape
            with torch.no_grad():
                x_init = self.flow.sample_with_log_prob(n_chains)[0]
            x_neg = langevin(energy_fn, x_init, n_steps=self.n_steps, step_size=self.step_size,
                             noise_scale=self.noise_scale)
            return x_init, x_neg, {}
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
            x_neg = langevin(energy_fn, x_init, n_steps=self.n_steps, step_size=self.step_size,
                             noise_scale=self.noise_scale)
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
        if self.energy_l2:
            untilted = [energy_fn(x) + self.flow.base_log_prob(x) for x in (x_pos, x_neg)]
            penalty = sum(e.pow(2).sum() for e in untilted)
            loss, logs["energy_l2"] = loss + self.energy_l2 * penalty, penalty.detach()
        return loss, {**cd_logs, **logs}

    def state_dict(self) -> dict[str, Any]:
        """The state that changes during training: the pool, the adapted step size, the latest chain starts and
        negatives, and the flow's and its optimiser's ``state_dict()`` (live tensors, as in ``nn.Module``)."""
        state = {"method": self.method, "pool": self.pool, "step_size": self.step_size, "last_init": self.last_init,
                 "last_negatives": self.last_negatives}
        if self.flow_optimizer is not None:
            state["flow"] = self.flow.state_dict()
            state["flow_optimizer"] = self.flow_optimizer.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a loss with the same method, pool shape and flow."""
        if not isinstance(state, Mapping) or set(state) != set(self.state_dict()) or state["method"] != self.method:
            raise ValueError(f"state must be that of a {self.method!r} FlowEBMLoss, with keys "
                             f"{sorted(self.state_dict())}")
        if state["pool"].shape != self.pool.shape or state["pool"].dtype != self.pool.dtype:
            raise ValueError(f"state['pool'] must have shape {tuple(self.pool.shape)} and dtype {self.pool.dtype}")
        self.pool.copy_(state["pool"])
        self.step_size = float(state["step_size"])
        self.last_init, self.last_negatives = (None if x is None else x.to(self.pool)
                                               for x in (state["last_init"], state["last_negatives"]))
        if "flow" in state:
            self.flow.load_state_dict(state["flow"])
            self.flow_optimizer.load_state_dict(state["flow_optimizer"])
