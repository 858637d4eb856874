"""Samplers of categorical states: Gibbs-with-Gradients over concatenated one-hot blocks (Kelly & Grathwohl
eqs. 4–5) and exact-conditional Gibbs sweeps over integer-coded columns."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ebmlib.data.codes import check_classes, check_codes
from ebmlib.data.onehot import block_index, block_sums, check_block_sizes, check_one_hot, free_columns
from ebmlib.ledger import recorded_steps
from ebmlib.samplers.core import all_finite, metropolis_accept, raise_unless_finite, sample_categorical, select_rows
from ebmlib.utils import EnergyFn, check_energy_output, check_int, check_positive, check_tensor, energy_and_grad


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
        Block of each column, ``(K,)`` (:func:`~ebmlib.data.block_index`).
    free
        ``(B, K)`` mask of columns in blocks that may change.
    temperature
        ``τ``.

    Returns
    -------
    log_q, movable
        ``(B, K)`` log-probabilities (``-inf`` off the support) and ``(B,)``: chains with any allowed move.
        Rows without one get a dummy uniform proposal that the caller must reject.

    Only metadata is checked (safe inside sampling loops).
    """
    _check_step_arguments(y, index, free)
    check_tensor(grad, "grad", shape=tuple(y.shape), finite=False)
    temperature = check_positive(temperature, "temperature")
    # Σ_j ∂_{aj}E y_{aj} of each column's block; K ≥ A slots avoid reading the number of blocks off the device.
    current = block_sums(grad * y, index, y.shape[1])[:, index]
    allowed = free & (y == 0)
    movable = allowed.any(1, keepdim=True)
    logits = torch.where(allowed, -(grad - current) / temperature, -math.inf)
    logits = torch.where(movable, logits, torch.zeros_like(logits))
    return torch.log_softmax(logits, dim=1), movable.squeeze(1)


def _check_step_arguments(y: Tensor, index: Tensor, free: Tensor) -> None:
    """Metadata of a GwG step's one-hot states ``(B, K)``, block index ``(K,)`` and free-column mask ``(B, K)``."""
    check_tensor(y, "y", ndim=2, floating=True, finite=False)
    check_tensor(index, "index", ndim=1)
    if index.shape[0] != y.shape[1]:
        raise ValueError(f"y has {y.shape[1]} columns but index has {index.shape[0]} entries: one per column")
    if index.is_floating_point() or index.dtype == torch.bool:
        raise ValueError(f"index must hold integer block numbers, got dtype {index.dtype}")
    check_tensor(free, "free", shape=tuple(y.shape))
    if free.dtype != torch.bool:
        raise ValueError(f"free must be a boolean mask, got dtype {free.dtype}")


def gwg_categorical_step(
    energy_fn: EnergyFn, y: Tensor, index: Tensor, free: Tensor, temperature: float, x: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One Metropolis–Hastings GwG step for all chains; returns ``(y_new, accepted, finite, grad_x)``.

    Without ``x``, ``energy_fn`` maps ``y`` to energies and ``grad_x`` is ``None``. With ``x`` (``(B, D)``),
    ``energy_fn`` takes ``concat(x, y)`` and each evaluation also yields ``∇_x E``: ``grad_x`` is
    ``∇_x E(x, y_new)``, which the following Langevin step on ``x | y_new`` can use without evaluating again.
    Only metadata is checked (safe inside sampling loops); ``finite`` is a 0-dim flag on the device.
    """
    _check_step_arguments(y, index, free)
    temperature = check_positive(temperature, "temperature")
    if x is not None:
        check_tensor(x, "x", shape=(y.shape[0], None), floating=True, finite=False)

    def evaluate(labels: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        if x is None:
            return (*energy_and_grad(energy_fn, labels), None)
        e, g = energy_and_grad(energy_fn, torch.cat([x, labels], dim=1))
        return e, g[:, x.shape[1]:], g[:, : x.shape[1]]

    energy, grad, grad_x = evaluate(y)
    log_q, movable = categorical_log_proposal(y, grad, index, free, temperature)
    column = sample_categorical(log_q)
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
    accepted = metropolis_accept(log_alpha) & movable
    checked = [energy, grad, energy_prop, grad_prop] + ([] if x is None else [grad_x, grad_x_prop])
    finite = all_finite(*checked)
    grad_x = None if x is None else select_rows(accepted, grad_x_prop, grad_x)
    return select_rows(accepted, proposal, y), accepted, finite, grad_x


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

    Each step draws a move ``(a, k) ~ q(· | y)`` from :func:`~ebmlib.samplers.categorical_log_proposal`, sets
    attribute ``a`` to class ``k``, and accepts with probability ``min(1, exp(E(y) - E(y')) q(a, k_old | y') / q(a,
    k | y))``, which leaves ``p(y) ∝ exp(-E(y))`` invariant — restricted to the free blocks when ``clamp`` is given,
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
    free = free_columns(clamp, index, len(sizes), y.shape[0], y.device)
    y = y.detach()
    n_accepted = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
    finite = torch.ones((), dtype=torch.bool, device=y.device)
    with torch.no_grad():
        for _ in recorded_steps(n_steps, "gwg_categorical"):
            y, accepted, ok, _ = gwg_categorical_step(energy_fn, y, index, free, temperature)
            n_accepted += accepted
            finite &= ok
    raise_unless_finite(finite)
    return y, n_accepted / n_steps


def gibbs_categorical_sweep(energy_fn: EnergyFn, x: Tensor, n_classes: Sequence[int], *,
                            n_numeric: int = 0) -> tuple[Tensor, Tensor]:
    """One systematic Gibbs sweep over the categorical columns of rows ``[numeric | codes]``: the kernel of
    :func:`~ebmlib.samplers.gibbs_categorical`.

    Column ``c`` is redrawn from its exact conditional ``p(x_c = k | rest) = softmax_k(-E(x with x_c = k))``, by
    the Gumbel-max trick on one batched evaluation of ``E`` over the ``B · K_c`` candidate rows. Only metadata is
    checked (safe inside sampling loops).

    Returns
    -------
    rows, finite
        New rows ``(B, n_numeric + C)`` (``x`` is not modified) and a 0-dim boolean tensor on the device: whether
        every energy was finite.
    """
    check_tensor(x, "x", shape=(None, n_numeric + len(n_classes)), floating=True, finite=False)
    batch, dim = x.shape
    finite = torch.ones((), dtype=torch.bool, device=x.device)
    with torch.no_grad():
        x = x.detach().clone()
        for c, k in enumerate(n_classes):
            col = n_numeric + c
            candidates = x.unsqueeze(1).repeat(1, k, 1)
            candidates[:, :, col] = torch.arange(k, device=x.device, dtype=x.dtype)
            energy = check_energy_output(energy_fn(candidates.view(batch * k, dim)), batch * k, "energy_fn",
                                         finite=False)
            finite &= all_finite(energy)
            gumbel = -torch.empty(batch, k, device=x.device, dtype=energy.dtype).exponential_().log()
            x[:, col] = (-energy.view(batch, k) + gumbel).argmax(dim=1).to(x.dtype)
    return x, finite


def gibbs_categorical(energy_fn: EnergyFn, x: Tensor, n_classes: Sequence[int], n_sweeps: int = 1, *,
                      n_numeric: int = 0) -> Tensor:
    """Systematic-scan Gibbs sweeps (:func:`~ebmlib.samplers.gibbs_categorical_sweep`) over the categorical columns
    of rows ``[numeric | codes]``; numeric columns stay fixed. Energies are checked for finiteness once per call.

    Parameters
    ----------
    energy_fn
        Maps rows ``(N, n_numeric + C)`` to ``(N,)``.
    x
        Rows ``(B, n_numeric + C)``, floating, the codes integers ``0 <= x[:, n_numeric + c] < n_classes[c]``.
    n_classes
        ``K_c >= 2`` per categorical column.
    n_sweeps
        Number of sweeps.
    n_numeric
        Number of leading numeric columns.

    Returns
    -------
    Tensor
        New rows ``(B, n_numeric + C)``; ``x`` is not modified.
    """
    n_classes = check_classes(n_classes)
    check_int(n_numeric, "n_numeric", minimum=0)
    check_tensor(x, "x", shape=(None, n_numeric + len(n_classes)), floating=True)
    check_codes(x[:, n_numeric:], n_classes, "x (categorical columns)")
    check_int(n_sweeps, "n_sweeps", minimum=1)
    finite = torch.ones((), dtype=torch.bool, device=x.device)
    for _ in recorded_steps(n_sweeps, "gibbs_categorical"):
        x, ok = gibbs_categorical_sweep(energy_fn, x, n_classes, n_numeric=n_numeric)
        finite &= ok
    raise_unless_finite(finite)
    return x
