"""Concatenated one-hot blocks: one block of ``K_a`` columns per categorical attribute ``a``.

A label vector ``y`` of shape ``(B, K)``, ``K = Σ_a K_a``, holds one one-hot vector per attribute; these
helpers convert between labels and one-hots, validate them, and enumerate every configuration (for exact
prediction on small label spaces).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ebmlib.utils import check_binary, check_int, check_tensor


def check_block_sizes(block_sizes: Sequence[int]) -> tuple[int, ...]:
    """Return ``block_sizes`` as a tuple of ints ``>= 2`` (one entry ``K_a`` per attribute)."""
    if isinstance(block_sizes, (str, bytes)) or not isinstance(block_sizes, Sequence) or not block_sizes:
        raise ValueError(f"block_sizes must be a non-empty sequence of integers, got {block_sizes!r}")
    return tuple(check_int(k, f"block_sizes[{i}]", minimum=2) for i, k in enumerate(block_sizes))


def block_index(block_sizes: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """Attribute of every column of ``y``: shape ``(K,)``, e.g. ``(2, 3) -> [0, 0, 1, 1, 1]``."""
    sizes = torch.tensor(check_block_sizes(block_sizes), device=device)
    return torch.repeat_interleave(torch.arange(len(sizes), device=device), sizes)


def block_sums(values: Tensor, index: Tensor, n_blocks: int) -> Tensor:
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
    sums = block_sums(y, block_index(sizes, y.device), len(sizes))
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


MAX_CONFIGURATIONS = 65_536
"""Largest number of label configurations :func:`~ebmlib.metrics.predict_energy` enumerates."""


def all_configurations(block_sizes: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """Every label configuration, shape ``(Π K_a, A)``, the last attribute varying fastest."""
    sizes = check_block_sizes(block_sizes)
    if math.prod(sizes) > MAX_CONFIGURATIONS:
        raise ValueError(f"block_sizes: {math.prod(sizes)} configurations exceed MAX_CONFIGURATIONS")
    grids = torch.meshgrid(*(torch.arange(k, device=device) for k in sizes), indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def free_columns(clamp: Tensor | None, index: Tensor, n_blocks: int, batch: int, device: torch.device) -> Tensor:
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
