"""The pieces every sampler is built from: Metropolis–Hastings acceptance, categorical draws, bit flips and
their gradient-informed proposal, per-chain selection, deferred finiteness checks and argument checks.

Finiteness is accumulated as a 0-dim boolean tensor on the device (:func:`~ebmlib.samplers.all_finite`) and read
once at the end of a sampler (:func:`~ebmlib.samplers.raise_unless_finite`): checking every step would synchronise
host and device.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from ebmlib.utils import check_binary, check_positive, check_tensor


def flip_bits(x: Tensor, index: Tensor) -> Tensor:
    """Flip one bit per chain: ``x'_{b,j} = 1 - x_{b,j}`` if ``j = index_b``, else ``x_{b,j}``.

    Only metadata is checked (no device synchronisation), so the function is safe inside sampling loops;
    an index outside ``[0, d)`` makes torch raise.

    Parameters
    ----------
    x
        Binary states, shape ``(B, d)``.
    index
        The bit to flip in each chain, integer dtype ``torch.long``, shape ``(B,)``.

    Returns
    -------
    Tensor
        A new tensor of shape ``(B, d)``; ``x`` is left unchanged.
    """
    check_tensor(x, "x", ndim=2, finite=False)
    check_tensor(index, "index", shape=(x.shape[0],))
    if index.dtype != torch.long:
        raise ValueError(f"index must have dtype torch.long, got {index.dtype}")
    column = index.unsqueeze(1)
    return x.scatter(1, column, 1 - x.gather(1, column))


def flip_log_proposal(x: Tensor, grad: Tensor, temperature: float = 2.0) -> Tensor:
    """Gradient-informed log-proposal over single-bit flips (Grathwohl et al. 2021).

    The change of ``f = -E`` when bit ``i`` is flipped is estimated to first order by
    ``d̃(x)_i = (2 x_i - 1) ∂E/∂x_i  ≈ E(x) - E(x with bit i flipped)``, and
    ``log q(i | x) = log_softmax(d̃(x) / temperature)_i``.

    ``temperature = 2`` is the locally balanced proposal of Gibbs-with-Gradients; RMwGGIS's importance
    distribution ``ñ_i ∝ exp(2 d̃(x)_i)`` is ``temperature = 0.5``. Only metadata is checked, so the
    function is safe inside sampling loops.

    Parameters
    ----------
    x
        Binary states, shape ``(B, d)``.
    grad
        ``∇_x E(x)``, shape ``(B, d)``.
    temperature
        Divides the first-order estimate before the softmax.

    Returns
    -------
    Tensor
        ``log q(· | x)``, shape ``(B, d)``; each row's exponentials sum to one.
    """
    check_tensor(x, "x", ndim=2, finite=False)
    check_tensor(grad, "grad", shape=tuple(x.shape), finite=False)
    temperature = check_positive(temperature, "temperature")
    return torch.log_softmax((2 * x - 1) * grad / temperature, dim=-1)


def metropolis_accept(log_alpha: Tensor) -> Tensor:
    """Accept chain ``b`` with probability ``min(1, exp(log_alpha_b))``; return the ``(B,)`` boolean mask.

    ``log_alpha`` is a floating ``(B,)`` tensor; only metadata is checked (safe inside sampling loops).
    """
    check_tensor(log_alpha, "log_alpha", ndim=1, floating=True, finite=False)
    # log U < log α avoids overflowing exp(log α); U = 0 (log U = -inf) is accepted, as U < α demands.
    return torch.rand_like(log_alpha).log() < log_alpha


def sample_categorical(log_probs: Tensor) -> Tensor:
    """One index per row from ``softmax(log_probs)``, shape ``(B,)``, by the Gumbel-max trick.

    Unlike :func:`torch.multinomial` it does not validate values on the host, so NaN reaches the deferred
    finiteness check of the calling sampler. ``log_probs`` is a floating ``(B, K)`` tensor (metadata checked).
    """
    check_tensor(log_probs, "log_probs", ndim=2, floating=True, finite=False)
    gumbel = -torch.empty_like(log_probs).exponential_().log()
    return (log_probs + gumbel).argmax(dim=-1)


def select_rows(accepted: Tensor, proposal: Tensor, current: Tensor) -> Tensor:
    """Per chain, ``proposal`` where ``accepted`` (boolean, shape ``(B,)``) else ``current``; any trailing shape.

    Only metadata is checked (safe inside sampling loops).
    """
    check_tensor(current, "current", min_ndim=1, finite=False)
    check_tensor(proposal, "proposal", shape=tuple(current.shape), finite=False)
    check_tensor(accepted, "accepted", shape=(current.shape[0],))
    if accepted.dtype != torch.bool:
        raise ValueError(f"accepted must be a boolean tensor, got dtype {accepted.dtype}")
    mask = accepted.view(-1, *([1] * (current.ndim - 1)))
    return torch.where(mask, proposal, current)


def all_finite(*tensors: Tensor) -> Tensor:
    """A 0-dim boolean tensor on the device: accumulating it costs no host synchronisation per step."""
    return torch.stack([torch.isfinite(t).all() for t in tensors]).all()


def raise_unless_finite(finite: Tensor) -> None:
    """Raise ``ValueError`` if the 0-dim flag of :func:`~ebmlib.samplers.all_finite` is false (one host sync)."""
    if not finite:
        raise ValueError("energy_fn returned NaN or infinite values or gradients")


def check_binary_states(x: Tensor) -> Tensor:
    """Check that ``x`` is a floating ``(B, d)`` tensor of 0/1 values (one host synchronisation)."""
    check_tensor(x, "x", ndim=2, floating=True)
    return check_binary(x, "x")


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_noise_scale(value: object) -> float:
    """Return ``value`` as a float if it is a finite number ``>= 0``; raise ``ValueError`` naming ``noise_scale``."""
    if not _is_real(value) or not 0 <= value < float("inf"):
        raise ValueError(f"noise_scale must be a finite number >= 0, got {value!r}")
    return float(value)


def check_clamp(clamp: object, name: str = "clamp") -> tuple[float, float]:
    """Return ``clamp`` as ``(lo, hi)`` floats with ``lo < hi``; raise ``ValueError`` naming ``name``."""
    valid = isinstance(clamp, (tuple, list)) and len(clamp) == 2 and all(_is_real(v) for v in clamp)
    if not valid or not clamp[0] < clamp[1]:
        raise ValueError(f"{name} must be a pair (lo, hi) of numbers with lo < hi, got {clamp!r}")
    return float(clamp[0]), float(clamp[1])
