"""Training objectives of noise-free EBMs (Xiao, Yan & Amit 2021): maximum likelihood with ODE, Euler or
noisy negatives, the self-adversarial generator term (eq. 12), and maximum likelihood of the ODE flow."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ebmlib.samplers.core import all_finite
from ebmlib.samplers.ode import euler_sample, flow_log_prob, noisy_sample, ode_sample
from ebmlib.utils import EnergyFn, check_energy_output, check_positive, check_tensor

DYNAMICS = ("ode", "euler", "noisy")
"""Samplers accepted by :class:`~ebmlib.losses.SelfAdversarialLoss`."""


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
        unrolled dynamics (:func:`~ebmlib.samplers.euler_sample` with ``create_graph=True``).
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
    if not isinstance(energy, nn.Module):
        raise ValueError(f"energy must be an nn.Module (its parameters are frozen), got {type(energy).__name__}")
    check_tensor(x_pos, "x_pos", min_ndim=1, floating=True)
    check_tensor(x_k, "x_k", min_ndim=1, floating=True)
    if x_pos.shape[1:] != x_k.shape[1:]:
        raise ValueError(f"x_pos and x_k must share the event shape, got {tuple(x_pos.shape)} and {tuple(x_k.shape)}")
    check_positive(generator_weight, "generator_weight")
    if generator and not x_k.requires_grad:
        raise ValueError("x_k carries no graph: sample it with create_graph=True for the generator term")
    e_pos = check_energy_output(energy(x_pos), x_pos.shape[0], "energy", finite=False)
    e_neg = check_energy_output(energy(x_k.detach()), x_k.shape[0], "energy", finite=False)
    if not all_finite(e_pos, e_neg):
        raise ValueError("energy returned NaN or infinite values")
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
    prior, paper §5), runs the dynamics and returns :func:`~ebmlib.losses.self_adversarial_loss`.

    Parameters
    ----------
    dynamics
        ``"ode"`` (:func:`~ebmlib.samplers.ode_sample`, keywords ``T, rtol, atol, method``), ``"euler"``
        (:func:`~ebmlib.samplers.euler_sample`, ``n_steps, step_size``) or ``"noisy"``
        (:func:`~ebmlib.samplers.noisy_sample`, ``n_steps, step_size, noise_scale``).
    generator
        Add the generator term (Euler dynamics only: it differentiates through the unrolled steps).
    generator_weight
        Its weight :math:`\\lambda` (the paper: 1).
    l2_reg
        Energy-magnitude regulariser of :func:`~ebmlib.losses.self_adversarial_loss` (0: the paper's loss).
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
        check_tensor(x_pos, "x_pos", min_ndim=1, floating=True)
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
        ``T, rtol, atol, method, trace`` for :func:`~ebmlib.samplers.flow_log_prob`.
    """

    def __init__(self, **ode_kwargs: float | str) -> None:
        self.ode_kwargs = ode_kwargs

    def __call__(self, energy: EnergyFn, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        log_prob, _ = flow_log_prob(energy, x, create_graph=True, **self.ode_kwargs)
        nll = -log_prob.mean()
        return nll, {"log_likelihood": -nll.detach()}
