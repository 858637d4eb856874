"""Samplers of mixed continuous/discrete states.

* :func:`~ebmlib.samplers.mwg_joint` / :class:`~ebmlib.samplers.MWGSampler` — Kelly & Grathwohl's Algorithm 1 for
  joint states ``z = concat(x, y)`` (``y`` one-hot blocks): per step one Gibbs-with-Gradients step on ``y | x`` and
  one Langevin step on ``x | y``; :class:`~ebmlib.samplers.JointNoise` and :func:`~ebmlib.samplers.impute_missing`
  are its initial distribution and the imputation of partially observed labels (eq. 8).
* :func:`~ebmlib.samplers.langevin_gibbs` — table rows ``[numeric | codes]``: Langevin steps on the numeric columns
  alternated with Gibbs sweeps over the categorical ones (Schröder et al., Algorithm 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ebmlib.data.codes import check_classes, check_codes
from ebmlib.data.onehot import (
    block_index,
    block_sums,
    check_block_sizes,
    check_one_hot,
    free_columns,
    labels_to_one_hot,
)
from ebmlib.ledger import recorded_steps
from ebmlib.samplers.categorical import gibbs_categorical_sweep, gwg_categorical, gwg_categorical_step
from ebmlib.samplers.continuous import langevin_update
from ebmlib.samplers.core import all_finite, check_clamp, raise_unless_finite
from ebmlib.utils import EnergyFn, check_int, check_positive, check_tensor, energy_and_grad, repeat_rows


def label_energy(energy_fn: EnergyFn, x: Tensor) -> EnergyFn:
    """``y ↦ E(x, y)`` at fixed ``x`` (``(B, D)``); uses ``energy_fn.label_energy`` (cached features) if any.

    The returned function takes ``y`` of shape ``(B·m, K)``: ``m`` label vectors per ``x``, grouped, so row
    ``i·m + j`` is paired with ``x_i``. Only metadata is checked (it is built inside sampling loops).
    """
    check_tensor(x, "x", ndim=2, floating=True, finite=False)
    if hasattr(energy_fn, "label_energy"):
        return energy_fn.label_energy(x)

    def energy(y: Tensor) -> Tensor:
        check_tensor(y, "y", ndim=2, finite=False)
        return energy_fn(torch.cat([repeat_rows(x, y.shape[0], "y"), y], dim=1))

    return energy


def _data_energy(energy_fn: EnergyFn, y: Tensor) -> EnergyFn:
    """``x ↦ E(x, y)`` at fixed ``y`` (``(B, K)``)."""
    return lambda x: energy_fn(torch.cat([x, y], dim=1))


def mwg_joint(
    energy_fn: EnergyFn,
    z: Tensor,
    x_dim: int,
    block_sizes: Sequence[int],
    *,
    n_steps: int,
    step_size: float,
    temperature: float,
    clamp: Tensor | None = None,
    update_x: bool = True,
    gwg_temperature: float = 2.0,
    x_bounds: tuple[float, float] | None = None,
) -> Tensor:
    """Block Metropolis-within-Gibbs for joint states (paper Algorithm 1).

    Each of ``n_steps`` steps applies ``T_d``, one :func:`~ebmlib.samplers.gwg_categorical` step on ``p(y | x)``,
    then ``T_c``, one Langevin step on ``p(x | y)`` (paper eq. 3 with ``ε = √(2h)``:
    ``x ← x - (h/λ) ∇_x E + √(2h) ξ``, :func:`~ebmlib.samplers.langevin`). With ``clamp`` only the free blocks
    of ``y`` move (conditional sampling of ``x`` and the rest of ``y`` given some attributes); with every block
    clamped it is Langevin on ``x | y``; with ``update_x=False`` it is GwG on ``y | x`` (prediction).

    Parameters
    ----------
    energy_fn
        Maps ``(B, D + K)`` to ``(B,)``.
    z
        Initial joint states ``concat(x, y)``, shape ``(B, D + K)``.
    x_dim
        ``D``.
    block_sizes
        ``(K_1, ..., K_A)``.
    n_steps
        Number of MWG steps.
    step_size, temperature
        Langevin time step ``h`` and temperature ``λ``.
    clamp
        Boolean ``(A,)`` or ``(B, A)``: attributes held fixed.
    update_x
        Whether to move ``x``.
    gwg_temperature
        ``τ`` of the GwG proposal.
    x_bounds
        ``(low, high)``: clamp ``x`` to this box after every Langevin step (the authors' code's
        ``--clamp_samples`` option, off in the paper); keeps a large drift ``h/λ`` from throwing the
        chains out of the data's range while the energy is still rough. ``None``: no clamping.

    Returns
    -------
    Tensor
        Final states, shape ``(B, D + K)``.
    """
    sizes = check_block_sizes(block_sizes)
    check_int(x_dim, "x_dim", minimum=1)
    check_tensor(z, "z", shape=(None, x_dim + sum(sizes)), floating=True)
    check_one_hot(z[:, x_dim:], sizes, "z[:, x_dim:]")
    check_int(n_steps, "n_steps", minimum=1)
    h = check_positive(step_size, "step_size")
    drift, sigma = h / check_positive(temperature, "temperature"), (2 * h) ** 0.5
    check_positive(gwg_temperature, "gwg_temperature")
    bounds = None if x_bounds is None else check_clamp(x_bounds, "x_bounds")
    index = block_index(sizes, z.device)
    free = free_columns(clamp, index, len(sizes), z.shape[0], z.device)
    update_y = bool(free.any())
    if not (update_x or update_y):
        raise ValueError("nothing to sample: update_x is False and clamp fixes every block")
    x, y = z[:, :x_dim].detach(), z[:, x_dim:].detach()
    # A model that caches h_φ(x) makes GwG's label-only evaluations cheap; otherwise GwG evaluates E on the
    # whole state, and the gradient at the accepted state serves the Langevin step too (2 evaluations, not 3).
    fused = update_x and update_y and not getattr(energy_fn, "caches_features", False)
    # Finiteness accumulates on the device and is read once at the end: no host synchronisation per step.
    finite = torch.ones((), dtype=torch.bool, device=z.device)
    with torch.no_grad():
        for _ in recorded_steps(n_steps, "mwg_joint"):
            if fused:
                y, _, ok, grad_x = gwg_categorical_step(energy_fn, y, index, free, gwg_temperature, x=x)
                x = langevin_update(x, grad_x, drift, sigma, bounds)
                finite &= ok
                continue
            if update_y:
                y, _, ok, _ = gwg_categorical_step(label_energy(energy_fn, x), y, index, free, gwg_temperature)
                finite &= ok
            if update_x:
                energy, grad = energy_and_grad(_data_energy(energy_fn, y), x)
                x = langevin_update(x, grad, drift, sigma, bounds)
                finite &= all_finite(energy, grad)
    raise_unless_finite(finite)
    return torch.cat([x, y], dim=1)


class MWGSampler:
    """:func:`~ebmlib.samplers.mwg_joint` with fixed settings, callable as ``sampler(energy_fn, z)`` (for PCD).

    Parameters
    ----------
    x_dim, block_sizes, n_steps, step_size, temperature, x_bounds
        As in :func:`~ebmlib.samplers.mwg_joint`.
    """

    def __init__(self, x_dim: int, block_sizes: Sequence[int], *, n_steps: int, step_size: float,
                 temperature: float, x_bounds: tuple[float, float] | None = None) -> None:
        self.x_dim = check_int(x_dim, "x_dim", minimum=1)
        self.block_sizes = check_block_sizes(block_sizes)
        self.n_steps = check_int(n_steps, "n_steps", minimum=1)
        self.step_size = check_positive(step_size, "step_size")
        self.temperature = check_positive(temperature, "temperature")
        self.x_bounds = None if x_bounds is None else check_clamp(x_bounds, "x_bounds")

    def __call__(self, energy_fn: EnergyFn, z: Tensor, *, clamp: Tensor | None = None,
                 update_x: bool = True, n_steps: int | None = None) -> Tensor:
        n_steps = self.n_steps if n_steps is None else n_steps
        return mwg_joint(energy_fn, z, self.x_dim, self.block_sizes, n_steps=n_steps,
                         step_size=self.step_size, temperature=self.temperature, clamp=clamp, update_x=update_x,
                         x_bounds=self.x_bounds)


class JointNoise:
    """The initial distribution of App. B: ``x`` uniform per dimension, each attribute categorical.

    Parameters
    ----------
    low, high
        ``(D,)`` bounds of the uniform distribution of ``x``.
    probs
        One ``(K_a,)`` probability vector per attribute.
    """

    def __init__(self, low: Tensor, high: Tensor, probs: Sequence[Tensor]) -> None:
        check_tensor(low, "low", ndim=1, floating=True)
        check_tensor(high, "high", shape=tuple(low.shape), floating=True)
        if (high < low).any():
            raise ValueError("high must be >= low in every dimension")
        if isinstance(probs, (str, bytes, Tensor)) or not isinstance(probs, Sequence) or not probs:
            raise ValueError(f"probs must be a non-empty sequence of probability vectors, got {probs!r}")
        for a, p in enumerate(probs):
            check_tensor(p, f"probs[{a}]", ndim=1, floating=True)
            if p.numel() < 2 or (p < 0).any() or not torch.isclose(p.sum(), p.new_tensor(1.0)):
                raise ValueError(f"probs[{a}] must be a probability vector of length >= 2")
        self.low, self.high, self.probs = low, high, [p.to(low) for p in probs]
        self.block_sizes = tuple(p.numel() for p in probs)

    @classmethod
    def from_batch(cls, x: Tensor, y: Tensor, block_sizes: Sequence[int], *, uniform_y: bool = False) -> JointNoise:
        """Bounds from the per-dimension min and max of a data batch ``x`` (``(B, D)``); label probabilities
        proportional to the counts in ``y`` (``(B, K)``), or uniform with ``uniform_y``."""
        sizes = check_block_sizes(block_sizes)
        check_tensor(x, "x", ndim=2, floating=True)
        check_one_hot(y, sizes, allow_missing=True)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x and y must have one row per point, got {x.shape[0]} and {y.shape[0]}")
        counts = [torch.ones_like(b[0]) if uniform_y else b.sum(0) for b in y.split(sizes, dim=1)]
        for a, c in enumerate(counts):
            if c.sum() == 0:
                raise ValueError(f"y: attribute {a} is unobserved in the whole batch")
        return cls(x.min(0).values, x.max(0).values, [c / c.sum() for c in counts])

    def sample_x(self, n: int) -> Tensor:
        """``(n, D)`` uniform draws."""
        check_int(n, "n", minimum=1)
        return self.low + (self.high - self.low) * torch.rand(n, self.low.numel(), device=self.low.device,
                                                              dtype=self.low.dtype)

    def sample_y(self, n: int) -> Tensor:
        """``(n, K)`` one-hot draws."""
        check_int(n, "n", minimum=1)
        labels = torch.stack([torch.multinomial(p, n, replacement=True) for p in self.probs], dim=1)
        return labels_to_one_hot(labels, self.block_sizes, dtype=self.low.dtype)

    def __call__(self, n: int) -> Tensor:
        """``(n, D + K)`` joint draws (the ``init_fn`` of a :class:`~ebmlib.samplers.ReplayBuffer`)."""
        check_int(n, "n", minimum=1)
        return torch.cat([self.sample_x(n), self.sample_y(n)], dim=1)


def impute_missing(energy_fn: EnergyFn, z: Tensor, noise: JointNoise, *, n_steps: int) -> Tensor:
    """Fill unobserved attributes (all-zero blocks of ``y``) by sampling ``p(y_miss | x, y_obs)`` (eq. 8).

    Missing blocks start from ``noise`` and ``n_steps`` GwG steps run with ``x`` and the observed blocks
    clamped; feeding the result to contrastive divergence estimates the marginal-likelihood gradient.

    Parameters
    ----------
    energy_fn
        Maps ``(B, D + K)`` to ``(B,)``.
    z
        ``concat(x, y)``, shape ``(B, D + K)``; unobserved blocks of ``y`` are zero.
    noise
        Supplies the initial classes and the block sizes.
    n_steps
        GwG steps.
    """
    if not isinstance(noise, JointNoise):
        raise ValueError(f"noise must be a JointNoise, got {type(noise).__name__}")
    check_int(n_steps, "n_steps", minimum=1)
    sizes = noise.block_sizes
    x_dim = noise.low.numel()
    check_tensor(z, "z", shape=(None, x_dim + sum(sizes)), floating=True)
    x, y = z[:, :x_dim].detach(), z[:, x_dim:].detach()
    check_one_hot(y, sizes, "z[:, x_dim:]", allow_missing=True)
    index = block_index(sizes, z.device)
    observed = block_sums(y, index, len(sizes)) > 0
    if observed.all():
        return z
    y = torch.where(observed[:, index], y, noise.sample_y(z.shape[0]).to(y))
    y, _ = gwg_categorical(label_energy(energy_fn, x), y, sizes, n_steps=n_steps, clamp=observed)
    return torch.cat([x, y], dim=1)


def langevin_gibbs(energy_fn: EnergyFn, x: Tensor, n_classes: Sequence[int], *, n_numeric: int, n_rounds: int,
                   step_size: float) -> Tensor:
    """Alternate one Langevin step on the numeric columns with one Gibbs sweep over the categorical ones.

    The Langevin step is :func:`~ebmlib.samplers.langevin`'s ``x ← x - h ∇E + √(2h) ξ`` with ``h = step_size``
    (the authors' ``MixSampler`` writes it with ``s = 2h``), taken with the categorical columns fixed; the sweep is
    :func:`~ebmlib.samplers.gibbs_categorical_sweep`. Energies and gradients are checked for finiteness once per
    call.

    Parameters
    ----------
    energy_fn
        Maps rows ``(N, n_numeric + C)`` to ``(N,)``, differentiable in the numeric columns.
    x
        Rows ``(B, n_numeric + C)``: numeric columns, then integer codes stored as floats.
    n_classes
        ``K_c >= 2`` per categorical column.
    n_numeric, n_rounds, step_size
        Number of numeric columns, of rounds, and the Langevin time step ``h > 0``.

    Returns
    -------
    Tensor
        New rows ``(B, n_numeric + C)``.
    """
    n_classes = check_classes(n_classes)
    check_int(n_numeric, "n_numeric", minimum=0)
    check_tensor(x, "x", shape=(None, n_numeric + len(n_classes)), floating=True)
    check_codes(x[:, n_numeric:], n_classes, "x (categorical columns)")
    check_int(n_rounds, "n_rounds", minimum=1)
    h = check_positive(step_size, "step_size")
    x = x.detach()
    finite = torch.ones((), dtype=torch.bool, device=x.device)
    for _ in recorded_steps(n_rounds, "langevin_gibbs"):
        if n_numeric > 0:
            codes = x[:, n_numeric:]
            energy, grad = energy_and_grad(lambda z, codes=codes: energy_fn(torch.cat([z, codes], dim=1)),
                                           x[:, :n_numeric])
            finite &= all_finite(energy, grad)
            x = torch.cat([langevin_update(x[:, :n_numeric], grad, h, (2 * h) ** 0.5), codes], dim=1)
        x, ok = gibbs_categorical_sweep(energy_fn, x, n_classes, n_numeric=n_numeric)
        finite &= ok
    raise_unless_finite(finite)
    return x
