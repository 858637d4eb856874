"""Joint EBMs of continuous data and discrete supervision (Kelly & Grathwohl, 2021).

A joint state is one flat tensor ``z = concat(x, y)`` of shape ``(B, D + K)``: ``x`` is the continuous part
(flattened, ``D`` numbers) and ``y`` concatenates one one-hot block per attribute, attribute ``a`` having
``K_a`` classes (``K = Σ_a K_a``). Keeping the state in one tensor lets the foundation's
:class:`~ebmlib.samplers.ReplayBuffer`, :class:`~ebmlib.losses.PersistentContrastiveDivergence` and
:func:`~ebmlib.train.fit` train joint models unchanged.

The paper writes the model with a log-density ``f_θ(x, y)``; here, as everywhere in ``ebmlib``,
``p(x, y) ∝ exp(-E(x, y))`` with ``E = -f``.

* :func:`gwg_categorical` — Gibbs-with-Gradients over one-hot blocks, optionally with clamped blocks.
* :func:`mwg_joint` / :class:`MWGSampler` — the paper's Algorithm 1: per step one GwG step on ``y | x`` and
  one Langevin step (eq. 3, :func:`ebmlib.samplers.langevin`) on ``x | y``.
* :class:`JointEnergy` — ``E(x, y) = -MLP(concat(h_φ(x), y))`` (paper §6).
* :func:`predict_energy`, :func:`predict_sample`, :func:`attribute_accuracy` — the two predictors of §5.
* :class:`JointNoise`, :func:`impute_missing` — initial distributions and partially observed labels (eq. 8);
  the learning-rate warm-up of App. B is :func:`ebmlib.train.linear_warmup`, the image features ``h_φ``
  :func:`ebmlib.nets.conv_features`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ebmlib.nets import MLP
from ebmlib.samplers import (
    _check_clamp,
    _langevin_move,
    _langevin_step,
    _metropolis_hastings,
    _raise_unless_finite,
    _sample_categorical,
    _select,
)
from ebmlib.utils import (
    EnergyFn,
    check_binary,
    check_energy_output,
    check_int,
    check_positive,
    check_tensor,
    energy_and_grad,
)

MAX_CONFIGURATIONS = 65_536
"""Largest number of label configurations :func:`predict_energy` enumerates."""


# ---------------------------------------------------------------------------------------------------------
# One-hot blocks
# ---------------------------------------------------------------------------------------------------------
def check_block_sizes(block_sizes: Sequence[int]) -> tuple[int, ...]:
    """Return ``block_sizes`` as a tuple of ints ``>= 2`` (one entry ``K_a`` per attribute)."""
    if isinstance(block_sizes, (str, bytes)) or not isinstance(block_sizes, Sequence) or not block_sizes:
        raise ValueError(f"block_sizes must be a non-empty sequence of integers, got {block_sizes!r}")
    return tuple(check_int(k, f"block_sizes[{i}]", minimum=2) for i, k in enumerate(block_sizes))


def block_index(block_sizes: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """Attribute of every column of ``y``: shape ``(K,)``, e.g. ``(2, 3) -> [0, 0, 1, 1, 1]``."""
    sizes = torch.tensor(check_block_sizes(block_sizes), device=device)
    return torch.repeat_interleave(torch.arange(len(sizes), device=device), sizes)


def _block_sums(values: Tensor, index: Tensor, n_blocks: int) -> Tensor:
    """Sum ``values`` (``(B, K)``) within each block: ``(B, A)``."""
    return values.new_zeros(values.shape[0], n_blocks).index_add_(1, index, values)


def check_one_hot(y: Tensor, block_sizes: Sequence[int], name: str = "y", *, allow_missing: bool = False) -> Tensor:
    """Check that ``y`` (``(B, K)``, ``K = Σ K_a``) is one one-hot vector per block; return it unchanged.

    With ``allow_missing`` a block of zeros (an unobserved attribute) is accepted too.
    """
    sizes = check_block_sizes(block_sizes)
    check_tensor(y, name, ndim=2, floating=True)
    if y.shape[1] != sum(sizes):
        raise ValueError(f"{name} must have {sum(sizes)} columns for block_sizes={sizes}, got {y.shape[1]}")
    check_binary(y, name)
    sums = _block_sums(y, block_index(sizes, y.device), len(sizes))
    valid = (sums == 1) | (sums == 0) if allow_missing else sums == 1
    if not valid.all():
        raise ValueError(f"{name} must hold exactly one 1 per block of sizes {sizes}")
    return y


def labels_to_one_hot(labels: Tensor, block_sizes: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
    """Class labels ``(B, A)`` (integers, ``0 <= labels[:, a] < K_a``) to concatenated one-hots ``(B, K)``."""
    sizes = check_block_sizes(block_sizes)
    check_tensor(labels, "labels", shape=(None, len(sizes)))
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    upper = torch.tensor(sizes, device=labels.device)
    if ((labels < 0) | (labels >= upper)).any():
        raise ValueError(f"labels must lie in [0, K_a) for block_sizes={sizes}")
    offsets = torch.tensor((0, *sizes[:-1]), device=labels.device).cumsum(0)
    y = torch.zeros(labels.shape[0], sum(sizes), dtype=dtype, device=labels.device)
    return y.scatter(1, labels.long() + offsets, 1.0)


def one_hot_to_labels(y: Tensor, block_sizes: Sequence[int]) -> Tensor:
    """Per-block argmax of ``y`` (``(B, K)``; one-hots or scores): class labels ``(B, A)``."""
    sizes = check_block_sizes(block_sizes)
    check_tensor(y, "y", shape=(None, sum(sizes)))
    return torch.stack([block.argmax(1) for block in y.split(sizes, dim=1)], dim=1)


def all_configurations(block_sizes: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """Every label configuration, shape ``(Π K_a, A)``, the last attribute varying fastest."""
    sizes = check_block_sizes(block_sizes)
    if math.prod(sizes) > MAX_CONFIGURATIONS:
        raise ValueError(f"block_sizes: {math.prod(sizes)} configurations exceed MAX_CONFIGURATIONS")
    grids = torch.meshgrid(*(torch.arange(k, device=device) for k in sizes), indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def _free_columns(clamp: Tensor | None, index: Tensor, n_blocks: int, batch: int, device: torch.device) -> Tensor:
    """``(B, K)`` mask of the columns GwG may change: those of the ``n_blocks`` blocks not clamped."""
    if clamp is None:
        return torch.ones(batch, index.numel(), dtype=torch.bool, device=device)
    check_tensor(clamp, "clamp")
    if clamp.dtype != torch.bool or clamp.shape not in ((n_blocks,), (batch, n_blocks)):
        raise ValueError(
            f"clamp must be a boolean tensor of shape ({n_blocks},) or ({batch}, {n_blocks}), "
            f"got {clamp.dtype} {tuple(clamp.shape)}"
        )
    return (~clamp.to(device)).expand(batch, n_blocks)[:, index]


# ---------------------------------------------------------------------------------------------------------
# Gibbs-with-Gradients over one-hot blocks
# ---------------------------------------------------------------------------------------------------------
def categorical_log_proposal(
    y: Tensor, grad: Tensor, index: Tensor, free: Tensor, temperature: float = 2.0
) -> tuple[Tensor, Tensor]:
    r"""Gradient-informed log-proposal over "set attribute ``a`` to class ``k``" moves (paper eqs. 4–5).

    To first order, :math:`f(y^{a\to k}) - f(y) \approx d_{ak} = -\big(\partial_{ak}E - \sum_j \partial_{aj}E\,
    y_{aj}\big)`; the proposal is :math:`q(a, k \mid y) = \mathrm{softmax}(d / \tau)` over the free blocks'
    columns other than the current classes (``τ = 2`` is the locally balanced choice).

    Parameters
    ----------
    y, grad
        One-hot states and ``∇_y E``, shapes ``(B, K)``.
    index
        Block of each column, ``(K,)`` (:func:`block_index`).
    free
        ``(B, K)`` mask of columns in blocks that may change.
    temperature
        ``τ``.

    Returns
    -------
    log_q, movable
        ``(B, K)`` log-probabilities (``-inf`` off the support) and ``(B,)``: chains with any allowed move.
        Rows without one get a dummy uniform proposal that the caller must reject.
    """
    # Σ_j ∂_{aj}E y_{aj} of each column's block; K ≥ A slots avoid reading the number of blocks off the device.
    current = _block_sums(grad * y, index, y.shape[1])[:, index]
    allowed = free & (y == 0)
    movable = allowed.any(1, keepdim=True)
    logits = torch.where(allowed, -(grad - current) / temperature, -math.inf)
    logits = torch.where(movable, logits, torch.zeros_like(logits))
    return torch.log_softmax(logits, dim=1), movable.squeeze(1)


def _gwg_step(
    energy_fn: EnergyFn, y: Tensor, index: Tensor, free: Tensor, temperature: float, x: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One Metropolis–Hastings GwG step for all chains; returns ``(y_new, accepted, finite, grad_x)``.

    Without ``x``, ``energy_fn`` maps ``y`` to energies and ``grad_x`` is ``None``. With ``x`` (``(B, D)``),
    ``energy_fn`` takes ``concat(x, y)`` and each evaluation also yields ``∇_x E``: ``grad_x`` is
    ``∇_x E(x, y_new)``, which the following Langevin step on ``x | y_new`` can use without evaluating again.
    """

    def evaluate(labels: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        if x is None:
            return (*energy_and_grad(energy_fn, labels), None)
        e, g = energy_and_grad(energy_fn, torch.cat([x, labels], dim=1))
        return e, g[:, x.shape[1]:], g[:, : x.shape[1]]

    energy, grad, grad_x = evaluate(y)
    log_q, movable = categorical_log_proposal(y, grad, index, free, temperature)
    column = _sample_categorical(log_q)
    in_block = index.unsqueeze(0) == index[column].unsqueeze(1)
    old_column = (y * in_block).argmax(1)
    proposal = torch.where(in_block, torch.zeros_like(y), y).scatter(1, column.unsqueeze(1), 1.0)
    energy_prop, grad_prop, grad_x_prop = evaluate(proposal)
    log_q_prop, _ = categorical_log_proposal(proposal, grad_prop, index, free, temperature)
    # The reverse move restores the old class of the changed attribute.
    log_alpha = (
        energy
        - energy_prop
        + log_q_prop.gather(1, old_column.unsqueeze(1)).squeeze(1)
        - log_q.gather(1, column.unsqueeze(1)).squeeze(1)
    )
    accepted = _metropolis_hastings(log_alpha) & movable
    checked = [energy, grad, energy_prop, grad_prop] + ([] if x is None else [grad_x, grad_x_prop])
    finite = torch.stack([torch.isfinite(t).all() for t in checked]).all()
    grad_x = None if x is None else _select(accepted, grad_x_prop, grad_x)
    return _select(accepted, proposal, y), accepted, finite, grad_x


def gwg_categorical(
    energy_fn: EnergyFn,
    y: Tensor,
    block_sizes: Sequence[int],
    *,
    n_steps: int = 1,
    clamp: Tensor | None = None,
    temperature: float = 2.0,
) -> tuple[Tensor, Tensor]:
    """Gibbs-with-Gradients for concatenated one-hot blocks, one attribute changed per step.

    Each step draws a move ``(a, k) ~ q(· | y)`` from :func:`categorical_log_proposal`, sets attribute ``a``
    to class ``k``, and accepts with probability ``min(1, exp(E(y) - E(y')) q(a, k_old | y') / q(a, k | y))``,
    which leaves ``p(y) ∝ exp(-E(y))`` invariant — restricted to the free blocks when ``clamp`` is given,
    whose clamped blocks never change.

    Parameters
    ----------
    energy_fn
        Maps ``(B, K)`` to ``(B,)``, differentiable in ``y``.
    y
        Initial one-hot states, shape ``(B, K)``, floating dtype.
    block_sizes
        ``(K_1, ..., K_A)``.
    n_steps
        Proposals per chain.
    clamp
        Boolean ``(A,)`` or ``(B, A)``: blocks held fixed (for all chains, or per chain).
    temperature
        ``τ`` of the proposal (2: locally balanced).

    Returns
    -------
    states, acceptance_rate
        Shapes ``(B, K)`` and ``(B,)``.
    """
    sizes = check_block_sizes(block_sizes)
    check_one_hot(y, sizes)
    check_int(n_steps, "n_steps", minimum=1)
    temperature = check_positive(temperature, "temperature")
    index = block_index(sizes, y.device)
    free = _free_columns(clamp, index, len(sizes), y.shape[0], y.device)
    y = y.detach()
    n_accepted = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
    finite = torch.ones((), dtype=torch.bool, device=y.device)
    with torch.no_grad():
        for _ in range(n_steps):
            y, accepted, ok, _ = _gwg_step(energy_fn, y, index, free, temperature)
            n_accepted += accepted
            finite &= ok
    _raise_unless_finite(finite)
    return y, n_accepted / n_steps


# ---------------------------------------------------------------------------------------------------------
# Block Metropolis-within-Gibbs for (x, y)
# ---------------------------------------------------------------------------------------------------------
def label_energy(energy_fn: EnergyFn, x: Tensor) -> EnergyFn:
    """``y ↦ E(x, y)`` at fixed ``x`` (``(B, D)``); uses ``energy_fn.label_energy`` (cached features) if any.

    The returned function takes ``y`` of shape ``(B·m, K)``: ``m`` label vectors per ``x``, grouped, so row
    ``i·m + j`` is paired with ``x_i``.
    """
    if hasattr(energy_fn, "label_energy"):
        return energy_fn.label_energy(x)
    return lambda y: energy_fn(torch.cat([_repeat_rows(x, y.shape[0]), y], dim=1))


def _repeat_rows(h: Tensor, n: int) -> Tensor:
    """Repeat each row of ``h`` (``(B, F)``) ``n / B`` times, grouped: ``(n, F)``."""
    if n % h.shape[0]:
        raise ValueError(f"y must have a multiple of {h.shape[0]} rows, got {n}")
    return h.repeat_interleave(n // h.shape[0], dim=0) if n != h.shape[0] else h


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

    Each of ``n_steps`` steps applies ``T_d``, one :func:`gwg_categorical` step on ``p(y | x)``, then ``T_c``,
    one Langevin step on ``p(x | y)`` (paper eq. 3, ``x ← x - ε²/(2λ) ∇_x E + ε ξ``,
    :func:`ebmlib.samplers.langevin`). With ``clamp`` only the free blocks of ``y`` move (conditional
    sampling of ``x`` and the rest of ``y`` given some attributes); with every block clamped it is Langevin on
    ``x | y``; with ``update_x=False`` it is GwG on ``y | x`` (prediction).

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
        Langevin ``ε`` and ``λ``.
    clamp
        Boolean ``(A,)`` or ``(B, A)``: attributes held fixed.
    update_x
        Whether to move ``x``.
    gwg_temperature
        ``τ`` of the GwG proposal.
    x_bounds
        ``(low, high)``: clamp ``x`` to this box after every Langevin step (the authors' code's
        ``--clamp_samples`` option, off in the paper); keeps a large drift ``ε²/(2λ)`` from throwing the
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
    drift = check_positive(step_size, "step_size") ** 2 / (2 * check_positive(temperature, "temperature"))
    check_positive(gwg_temperature, "gwg_temperature")
    bounds = None if x_bounds is None else _check_clamp(x_bounds, "x_bounds")
    index = block_index(sizes, z.device)
    free = _free_columns(clamp, index, len(sizes), z.shape[0], z.device)
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
        for _ in range(n_steps):
            if fused:
                y, _, ok, grad_x = _gwg_step(energy_fn, y, index, free, gwg_temperature, x=x)
                x = _langevin_move(x, grad_x, drift, step_size, bounds)
                finite &= ok
                continue
            if update_y:
                y, _, ok, _ = _gwg_step(label_energy(energy_fn, x), y, index, free, gwg_temperature)
                finite &= ok
            if update_x:
                x, ok = _langevin_step(_data_energy(energy_fn, y), x, drift, step_size, bounds)
                finite &= ok
    _raise_unless_finite(finite)
    return torch.cat([x, y], dim=1)


class MWGSampler:
    """:func:`mwg_joint` with fixed settings, callable as ``sampler(energy_fn, z)`` (for PCD).

    Parameters
    ----------
    x_dim, block_sizes, n_steps, step_size, temperature, x_bounds
        As in :func:`mwg_joint`.
    """

    def __init__(self, x_dim: int, block_sizes: Sequence[int], *, n_steps: int, step_size: float,
                 temperature: float, x_bounds: tuple[float, float] | None = None) -> None:
        self.x_dim = check_int(x_dim, "x_dim", minimum=1)
        self.block_sizes = check_block_sizes(block_sizes)
        self.n_steps = check_int(n_steps, "n_steps", minimum=1)
        self.step_size = check_positive(step_size, "step_size")
        self.temperature = check_positive(temperature, "temperature")
        self.x_bounds = None if x_bounds is None else _check_clamp(x_bounds, "x_bounds")

    def __call__(self, energy_fn: EnergyFn, z: Tensor, *, clamp: Tensor | None = None,
                 update_x: bool = True, n_steps: int | None = None) -> Tensor:
        return mwg_joint(energy_fn, z, self.x_dim, self.block_sizes, n_steps=n_steps or self.n_steps,
                         step_size=self.step_size, temperature=self.temperature, clamp=clamp, update_x=update_x,
                         x_bounds=self.x_bounds)


# ---------------------------------------------------------------------------------------------------------
# Initial distributions, partial labels, warm-up
# ---------------------------------------------------------------------------------------------------------
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
        counts = [torch.ones_like(b[0]) if uniform_y else b.sum(0) for b in y.split(sizes, dim=1)]
        for a, c in enumerate(counts):
            if c.sum() == 0:
                raise ValueError(f"y: attribute {a} is unobserved in the whole batch")
        return cls(x.min(0).values, x.max(0).values, [c / c.sum() for c in counts])

    def sample_x(self, n: int) -> Tensor:
        """``(n, D)`` uniform draws."""
        return self.low + (self.high - self.low) * torch.rand(n, self.low.numel(), device=self.low.device,
                                                              dtype=self.low.dtype)

    def sample_y(self, n: int) -> Tensor:
        """``(n, K)`` one-hot draws."""
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
    sizes = noise.block_sizes
    x_dim = noise.low.numel()
    check_tensor(z, "z", shape=(None, x_dim + sum(sizes)), floating=True)
    x, y = z[:, :x_dim].detach(), z[:, x_dim:].detach()
    check_one_hot(y, sizes, "z[:, x_dim:]", allow_missing=True)
    index = block_index(sizes, z.device)
    observed = _block_sums(y, index, len(sizes)) > 0
    if observed.all():
        return z
    y = torch.where(observed[:, index], y, noise.sample_y(z.shape[0]).to(y))
    y, _ = gwg_categorical(label_energy(energy_fn, x), y, sizes, n_steps=n_steps, clamp=observed)
    return torch.cat([x, y], dim=1)


# ---------------------------------------------------------------------------------------------------------
# The joint energy network
# ---------------------------------------------------------------------------------------------------------
class JointEnergy(nn.Module):
    """``E(x, y) = -MLP(concat(h_φ(x), y))`` on flat joint states ``z = concat(x, y)`` (paper §6).

    Parameters
    ----------
    x_shape
        Shape of one ``x`` (e.g. ``(2,)`` or ``(1, 32, 32)``); ``z`` holds it flattened.
    block_sizes
        ``(K_1, ..., K_A)``.
    hidden_dims
        Hidden widths of the MLP head.
    activation
        Of the head (:func:`ebmlib.nets.make_activation`); the paper uses ELU for toy and MNIST, SiLU for dSprites.
    features
        ``h_φ``, mapping ``(B, *x_shape)`` to ``(B, feature_dim)``; ``None`` is the identity on flattened ``x``.
    feature_dim
        Output width of ``features`` (required with ``features``).
    """

    def __init__(self, x_shape: Sequence[int], block_sizes: Sequence[int], hidden_dims: Sequence[int], *,
                 activation: str = "elu", features: nn.Module | None = None, feature_dim: int | None = None) -> None:
        super().__init__()
        self.x_shape = tuple(check_int(s, "x_shape", minimum=1) for s in x_shape)
        self.block_sizes = check_block_sizes(block_sizes)
        self.x_dim = math.prod(self.x_shape)
        if features is not None and feature_dim is None:
            raise ValueError("feature_dim is required when features is given")
        self.features = features
        width = self.x_dim if features is None else check_int(feature_dim, "feature_dim", minimum=1)
        self.head = MLP(width + sum(self.block_sizes), 1, hidden_dims, activation)

    @property
    def caches_features(self) -> bool:
        """Whether :meth:`label_energy` saves work: ``h_φ`` is a network, computed once per ``x``."""
        return self.features is not None

    def _features(self, x: Tensor) -> Tensor:
        if self.features is None:
            return x
        return self.features(x.reshape(x.shape[0], *self.x_shape)).flatten(1)

    def _head(self, h: Tensor, y: Tensor) -> Tensor:
        return -self.head(torch.cat([h, y], dim=1)).squeeze(-1)

    def forward(self, z: Tensor) -> Tensor:
        """Energies ``(B,)`` of joint states ``z`` of shape ``(B, D + K)``."""
        if z.ndim != 2 or z.shape[1] != self.x_dim + sum(self.block_sizes):
            raise ValueError(f"z must have shape (B, {self.x_dim + sum(self.block_sizes)}), got {tuple(z.shape)}")
        return self._head(self._features(z[:, : self.x_dim]), z[:, self.x_dim :])

    def label_energy(self, x: Tensor) -> EnergyFn:
        """``y ↦ E(x, y)`` for fixed ``x`` (``(B, D)``), computing ``h_φ(x)`` once (no gradient to ``x``);
        ``y`` may hold several label vectors per ``x`` (see :func:`label_energy`)."""
        with torch.no_grad():
            h = self._features(x)
        return lambda y: self._head(_repeat_rows(h, y.shape[0]), y)


# ---------------------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def predict_energy(energy_fn: EnergyFn, x: Tensor, block_sizes: Sequence[int], *, max_rows: int = 65_536) -> Tensor:
    """Energy-based prediction: ``argmin_y E(x, y)`` over all configurations (paper §5).

    Parameters
    ----------
    energy_fn
        Maps ``(B, D + K)`` to ``(B,)``.
    x
        ``(B, D)``.
    block_sizes
        ``(K_1, ..., K_A)``; at most :data:`MAX_CONFIGURATIONS` configurations.
    max_rows
        Energy evaluations per forward pass.

    Returns
    -------
    Tensor
        Predicted labels ``(B, A)``.
    """
    sizes = check_block_sizes(block_sizes)
    check_tensor(x, "x", ndim=2, floating=True)
    check_int(max_rows, "max_rows", minimum=1)
    configs = all_configurations(sizes, x.device)
    y_all = labels_to_one_hot(configs, sizes, dtype=x.dtype)
    n_configs = configs.shape[0]
    chunk = max(1, max_rows // n_configs)
    best = []
    for x_part in x.split(chunk):
        fn = label_energy(energy_fn, x_part)
        energy = check_energy_output(fn(y_all.repeat(x_part.shape[0], 1)), x_part.shape[0] * n_configs, "energy_fn")
        best.append(energy.view(x_part.shape[0], n_configs).argmin(1))
    return configs[torch.cat(best)]


def predict_sample(
    energy_fn: EnergyFn,
    x: Tensor,
    noise: JointNoise,
    *,
    n_samples: int = 10,
    n_steps: int = 200,
) -> Tensor:
    """Sample-based prediction (paper §5): run GwG on ``p(y | x)`` and vote.

    Each ``x`` is replicated ``n_samples`` times; chains start from ``noise`` and run ``n_steps`` GwG steps
    with ``x`` fixed; the one-hot samples are averaged and each attribute's most frequent class returned.

    Returns
    -------
    Tensor
        Predicted labels ``(B, A)``.
    """
    check_tensor(x, "x", shape=(None, noise.low.numel()), floating=True)
    check_int(n_samples, "n_samples", minimum=1)
    y0 = noise.sample_y(x.shape[0] * n_samples).to(x)
    y, _ = gwg_categorical(label_energy(energy_fn, x), y0, noise.block_sizes, n_steps=n_steps)
    votes = y.view(x.shape[0], n_samples, -1).mean(1)
    return one_hot_to_labels(votes, noise.block_sizes)


def attribute_accuracy(predicted: Tensor, target: Tensor) -> Tensor:
    """Fraction of correct predictions per attribute: ``(A,)`` from labels ``(B, A)`` each."""
    check_tensor(predicted, "predicted", ndim=2)
    check_tensor(target, "target", shape=tuple(predicted.shape))
    return (predicted == target).double().mean(0)
