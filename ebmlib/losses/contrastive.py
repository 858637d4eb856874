"""Contrastive divergence (maximum likelihood with sampled negatives) and its persistent variant."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from ebmlib.samplers.buffer import ReplayBuffer
from ebmlib.samplers.core import all_finite, raise_unless_finite
from ebmlib.utils import EnergyFn, check_energy_output, check_int, check_positive, check_tensor

Sampler = Callable[[EnergyFn, Tensor], Tensor]
"""A sampler moves a batch of chain states ``(B, *event)`` towards ``p ∝ exp(-E)`` and returns the new
states; bind its hyperparameters with :func:`functools.partial`, e.g.
``partial(langevin, n_steps=20, step_size=0.1)``."""


def _check_l2_reg(l2_reg: float) -> float:
    return 0.0 if l2_reg == 0.0 and not isinstance(l2_reg, bool) else check_positive(l2_reg, "l2_reg")


def contrastive_divergence(
    energy_fn: EnergyFn, x_pos: Tensor, x_neg: Tensor, *, l2_reg: float = 0.0
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Contrastive-divergence surrogate of the negative log-likelihood.

    For :math:`p_\theta(x) = e^{-E_\theta(x)}/Z_\theta` the negative log-likelihood has the gradient

    .. math::

        -\nabla_\theta \log p_\theta(x) = \nabla_\theta E_\theta(x) - \mathbb{E}_{p_\theta}[\nabla_\theta E_\theta],

    so with negatives :math:`x^- \sim p_\theta` (treated as constants) the loss

    .. math:: L = \overline{E_\theta(x^+)} - \overline{E_\theta(x^-)}
              + \alpha\,\big(\overline{E_\theta(x^+)^2} + \overline{E_\theta(x^-)^2}\big)

    has the maximum-likelihood gradient when :math:`\alpha = 0`. The optional :math:`\alpha` term
    (Du & Mordatch, 2019) keeps energies near zero and stabilises training.

    Parameters
    ----------
    energy_fn
        ``(B, *event) -> (B,)``.
    x_pos, x_neg
        Data and negative samples, shapes ``(B, *event)`` and ``(B', *event)``.
    l2_reg
        :math:`\alpha \ge 0`.

    Returns
    -------
    loss, logs
        Scalar loss; ``logs`` holds the mean positive and negative energies (detached).

    Raises
    ------
    ValueError
        On non-finite inputs or energies (checked once per call).
    """
    check_tensor(x_pos, "x_pos", min_ndim=1, floating=True)
    check_tensor(x_neg, "x_neg", min_ndim=1, floating=True)
    if x_pos.shape[1:] != x_neg.shape[1:]:
        raise ValueError(
            f"x_pos and x_neg must share the event shape, got {tuple(x_pos.shape)} and {tuple(x_neg.shape)}"
        )
    _check_l2_reg(l2_reg)
    e_pos = check_energy_output(energy_fn(x_pos), x_pos.shape[0], "energy_fn", finite=False)
    e_neg = check_energy_output(energy_fn(x_neg.detach()), x_neg.shape[0], "energy_fn", finite=False)
    raise_unless_finite(all_finite(e_pos, e_neg))
    loss = e_pos.mean() - e_neg.mean()
    if l2_reg:
        loss = loss + l2_reg * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    return loss, {"energy_pos": e_pos.mean().detach(), "energy_neg": e_neg.mean().detach()}


class PersistentContrastiveDivergence:
    """Persistent contrastive divergence (Tieleman, 2008) with a replay buffer of chain states.

    Each call draws chain states from ``buffer`` (a fraction re-initialised, Du & Mordatch 2019), moves them
    with ``sampler`` under the current energy, writes them back, and returns
    :func:`~ebmlib.losses.contrastive_divergence` of the batch against these negatives.

    Parameters
    ----------
    buffer
        The persistent chain states.
    sampler
        ``sampler(energy_fn, x) -> x_new``, e.g. ``partial(langevin, n_steps=20, step_size=0.1)``.
    l2_reg
        Energy-magnitude regulariser passed to :func:`~ebmlib.losses.contrastive_divergence`.
    n_negatives
        Negatives per step; defaults to the data batch size.

    Examples
    --------
    >>> pcd = PersistentContrastiveDivergence(buffer, partial(langevin, n_steps=20, step_size=0.1))
    >>> loss, logs = pcd(energy, x_batch)  # doctest: +SKIP
    """

    def __init__(self, buffer: ReplayBuffer, sampler: Sampler, *, l2_reg: float = 0.0, n_negatives: int | None = None):
        if not all(callable(getattr(buffer, m, None)) for m in ("sample", "update")):
            raise ValueError(f"buffer must have sample(n) and update(index, states), got {type(buffer).__name__}")
        if not callable(sampler):
            raise ValueError(f"sampler must be callable as sampler(energy_fn, x), got {type(sampler).__name__}")
        self.buffer = buffer
        self.sampler = sampler
        self.l2_reg = _check_l2_reg(l2_reg)
        self.n_negatives = None if n_negatives is None else check_int(n_negatives, "n_negatives", minimum=1)

    def __call__(self, energy_fn: EnergyFn, x_pos: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        check_tensor(x_pos, "x_pos", min_ndim=1, floating=True)
        x_init, index = self.buffer.sample(self.n_negatives or x_pos.shape[0])
        x_neg = self.sampler(energy_fn, x_init).detach()
        self.buffer.update(index, x_neg)
        return contrastive_divergence(energy_fn, x_pos, x_neg, l2_reg=self.l2_reg)

    def state_dict(self) -> dict[str, Any]:
        """The replay buffer's states, and the sampler's ``state_dict()`` if it has one."""
        state = {"buffer": self.buffer.state_dict()}
        if hasattr(self.sampler, "state_dict"):
            state["sampler"] = self.sampler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        if set(state) != set(self.state_dict()):
            raise ValueError(f"state must hold {sorted(self.state_dict())}, got {sorted(state)}")
        self.buffer.load_state_dict(state["buffer"])
        if "sampler" in state:
            self.sampler.load_state_dict(state["sampler"])
