"""Neural networks used as energies.

Every energy network maps a batch of shape ``(B, *event_shape)`` to energies of shape ``(B,)`` and the model
density is ``p(x) ∝ exp(-E(x))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ebmlib.utils import check_int


class Swish(nn.Module):
    r"""Swish activation :math:`x \, \sigma(\beta x)` (Ramachandran et al., 2017).

    Parameters
    ----------
    learnable_beta
        Learn :math:`\beta` (initialised to 1), as in the MLP energies of the RMwGGIS and
        Gibbs-with-Gradients papers; with ``False`` it is the fixed SiLU (:math:`\beta = 1`).
    """

    def __init__(self, learnable_beta: bool = True) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.ones(())) if learnable_beta else None

    def forward(self, x: Tensor) -> Tensor:
        beta = 1.0 if self.beta is None else self.beta
        return x * torch.sigmoid(beta * x)


_ACTIVATIONS = {
    "swish": lambda: Swish(learnable_beta=True),
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (one of ``swish, silu, elu, relu, leaky_relu, tanh``)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


class MLP(nn.Module):
    """Fully connected network ``in_dim -> hidden_dims... -> out_dim`` with one activation between layers.

    Parameters
    ----------
    in_dim, out_dim
        Input and output widths.
    hidden_dims
        Widths of the hidden layers (may be empty: a linear map).
    activation
        Name accepted by :func:`make_activation`; each hidden layer gets its own instance (so a learnable
        Swish has one β per layer).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dims: Sequence[int], activation: str = "swish") -> None:
        super().__init__()
        check_int(in_dim, "in_dim", minimum=1)
        check_int(out_dim, "out_dim", minimum=1)
        for i, width in enumerate(hidden_dims):
            check_int(width, f"hidden_dims[{i}]", minimum=1)
        widths = [in_dim, *hidden_dims, out_dim]
        layers: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(w_in, w_out))
            if i < len(widths) - 2:
                layers.append(make_activation(activation))
        self.net = nn.Sequential(*layers)
        self.in_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, in_dim)`` to ``(B, out_dim)``."""
        return self.net(x)


class MLPEnergy(nn.Module):
    """Energy ``E(x)`` given by an MLP with a scalar output; inputs are flattened.

    Parameters
    ----------
    in_dim
        Number of input features after flattening ``(B, *event_shape)`` to ``(B, in_dim)``.
    hidden
        Width of every hidden layer.
    depth
        Number of hidden layers.
    activation
        See :func:`make_activation`. The default Swish with learnable β follows the RMwGGIS and
        Gibbs-with-Gradients papers' toy experiments.
    """

    def __init__(self, in_dim: int, hidden: int = 256, depth: int = 3, activation: str = "swish") -> None:
        super().__init__()
        check_int(depth, "depth", minimum=0)
        check_int(hidden, "hidden", minimum=1)
        self.mlp = MLP(in_dim, 1, [hidden] * depth, activation)

    def forward(self, x: Tensor) -> Tensor:
        """Return energies of shape ``(B,)`` for ``x`` of shape ``(B, *event_shape)``."""
        if x.ndim < 1:
            raise ValueError(f"x must have a batch dimension, got shape {tuple(x.shape)}")
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.mlp.in_dim:
            raise ValueError(f"x must have {self.mlp.in_dim} features per sample, got {flat.shape[1]}")
        return self.mlp(flat.to(next(self.parameters()).dtype)).squeeze(-1)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars in ``module``."""
    return sum(math.prod(p.shape) for p in module.parameters() if p.requires_grad)
