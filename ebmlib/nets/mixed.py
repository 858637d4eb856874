"""Energies of mixed states: table rows ``[numeric | codes]`` and joint states ``concat(x, one-hot y)``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ebmlib.data.codes import check_classes
from ebmlib.data.onehot import check_block_sizes
from ebmlib.nets.mlp import MLP
from ebmlib.utils import EnergyFn, check_int, check_tensor, repeat_rows


class MixedEnergy(nn.Module):
    """``E(row)`` for rows ``[numeric | categorical codes]``: per-column embeddings, then an MLP.

    Column ``c``'s code goes through its own embedding ``K_c → emb_dim`` (the paper's ``Linear(K_c, 4)`` on the
    one-hot), the embeddings are concatenated with the numeric columns and passed through an MLP with
    ``depth`` hidden layers of width ``hidden`` and Swish activations (paper: 256 × 3).
    """

    def __init__(self, n_numeric: int, n_classes: Sequence[int], *, emb_dim: int = 4, hidden: int = 256,
                 depth: int = 3) -> None:
        super().__init__()
        self.n_numeric = check_int(n_numeric, "n_numeric", minimum=0)
        self.n_classes = check_classes(n_classes)
        check_int(emb_dim, "emb_dim", minimum=1)
        check_int(hidden, "hidden", minimum=1)
        check_int(depth, "depth", minimum=0)
        self.register_buffer("offsets", torch.tensor([0, *np.cumsum(self.n_classes)[:-1].tolist()]))
        self.embedding = nn.Embedding(sum(self.n_classes), emb_dim)
        self.mlp = MLP(self.n_numeric + emb_dim * len(self.n_classes), 1, [hidden] * depth, "swish")

    def forward(self, x: Tensor) -> Tensor:
        """``(B, n_numeric + C)`` rows → energies ``(B,)``."""
        check_tensor(x, "x", shape=(None, self.n_numeric + len(self.n_classes)), finite=False)
        codes = x[:, self.n_numeric :].long() + self.offsets
        features = torch.cat([x[:, : self.n_numeric], self.embedding(codes).flatten(1)], dim=1)
        return self.mlp(features).squeeze(-1)


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
        Of the head (:func:`~ebmlib.nets.make_activation`); the paper uses ELU for toy and MNIST, SiLU for dSprites.
    features
        ``h_φ``, mapping ``(B, *x_shape)`` to ``(B, feature_dim)``; ``None`` is the identity on flattened ``x``.
    feature_dim
        Output width of ``features`` (required with ``features``).
    """

    def __init__(self, x_shape: Sequence[int], block_sizes: Sequence[int], hidden_dims: Sequence[int], *,
                 activation: str = "elu", features: nn.Module | None = None, feature_dim: int | None = None) -> None:
        super().__init__()
        if isinstance(x_shape, (str, bytes)) or not isinstance(x_shape, Sequence) or not x_shape:
            raise ValueError(f"x_shape must be a non-empty sequence of sizes, got {x_shape!r}")
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
        """Whether :meth:`~ebmlib.samplers.label_energy` saves work: ``h_φ`` is a network, computed once per ``x``."""
        return self.features is not None

    def _features(self, x: Tensor) -> Tensor:
        if self.features is None:
            return x
        return self.features(x.reshape(x.shape[0], *self.x_shape)).flatten(1)

    def _head(self, h: Tensor, y: Tensor) -> Tensor:
        return -self.head(torch.cat([h, y], dim=1)).squeeze(-1)

    def forward(self, z: Tensor) -> Tensor:
        """Energies ``(B,)`` of joint states ``z`` of shape ``(B, D + K)``."""
        check_tensor(z, "z", floating=True, finite=False)
        if z.ndim != 2 or z.shape[1] != self.x_dim + sum(self.block_sizes):
            raise ValueError(f"z must have shape (B, {self.x_dim + sum(self.block_sizes)}), got {tuple(z.shape)}")
        return self._head(self._features(z[:, : self.x_dim]), z[:, self.x_dim :])

    def label_energy(self, x: Tensor) -> EnergyFn:
        """``y ↦ E(x, y)`` for fixed ``x`` (``(B, D)``), computing ``h_φ(x)`` once (no gradient to ``x``);
        ``y`` may hold several label vectors per ``x`` (see :func:`~ebmlib.samplers.label_energy`)."""
        check_tensor(x, "x", shape=(None, self.x_dim), floating=True, finite=False)
        with torch.no_grad():
            h = self._features(x)

        def energy(y: Tensor) -> Tensor:
            check_tensor(y, "y", shape=(None, sum(self.block_sizes)), finite=False)
            return self._head(repeat_rows(h, y.shape[0], "y"), y)

        return energy
