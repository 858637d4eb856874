"""The two predictors of a joint EBM ``p(x, y)`` (Kelly & Grathwohl §5): exact ``argmax_y p(y | x)`` by
enumerating the label configurations, or the label part of a Metropolis-within-Gibbs sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ebmlib.data.onehot import all_configurations, check_block_sizes, labels_to_one_hot, one_hot_to_labels
from ebmlib.samplers.categorical import gwg_categorical
from ebmlib.samplers.mixed import JointNoise, label_energy
from ebmlib.utils import EnergyFn, check_energy_output, check_int, check_tensor


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
        ``(K_1, ..., K_A)``; at most :data:`~ebmlib.data.MAX_CONFIGURATIONS` configurations.
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
    if not isinstance(noise, JointNoise):
        raise ValueError(f"noise must be a JointNoise, got {type(noise).__name__}")
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
