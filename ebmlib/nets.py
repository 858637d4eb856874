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


class IsingEnergy(nn.Module):
    r"""Pairwise binary energy :math:`E(x) = -(s^\top \hat J s + b^\top s)`, :math:`s = 2x - 1`, with learnable
    :math:`\hat J` and :math:`b`.

    The model family of :class:`ebmlib.data.IsingLattice` with free couplings, as learned in the Ising
    experiments of Gibbs-with-Gradients and RMwGGIS. :attr:`coupling` is the symmetric, zero-diagonal matrix
    :math:`\hat J = (W + W^\top)/2` with the diagonal removed (a diagonal term is a constant, :math:`s_i^2 = 1`).

    Parameters
    ----------
    dim
        Number of binary variables ``D``; ``W`` and ``b`` start at zero (the uniform distribution).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        check_int(dim, "dim", minimum=2)
        self.weight = nn.Parameter(torch.zeros(dim, dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    @property
    def coupling(self) -> Tensor:
        """The symmetric, zero-diagonal coupling matrix ``(D, D)``."""
        symmetric = (self.weight + self.weight.T) / 2
        return symmetric - torch.diag_embed(symmetric.diagonal())

    def forward(self, x: Tensor) -> Tensor:
        """Energies ``(B,)`` of binary states ``x`` of shape ``(B, D)`` (floats, for gradients in ``x``)."""
        if x.ndim != 2 or x.shape[1] != self.bias.shape[0]:
            raise ValueError(f"x must have shape (B, {self.bias.shape[0]}), got {tuple(x.shape)}")
        spins = 2 * x.to(self.bias.dtype) - 1
        return -((spins @ self.coupling) * spins).sum(-1) - spins @ self.bias


class GraphEnergy(nn.Module):
    r"""Permutation-invariant energy of undirected graphs given as adjacency bits: an R-GCN (RMwGGIS §5.2).

    The input is the strict upper triangle of the adjacency matrix (:func:`ebmlib.graphs.graphs_to_bits`),
    turned into a dense symmetric ``A`` by :func:`ebmlib.graphs.bits_to_adjacency`, so ``E`` is
    differentiable in the bits (Gibbs-with-Gradients, RMwGGIS). Each of ``depth`` layers is a relational graph
    convolution with the two relations "edge" (``A``) and "non-edge" (``Ā = 1 - A - I``), in dense batched
    form,

    .. math:: h' = \mathrm{act}\big(h W_s + (A\, h W_e + \bar A\, h W_{\bar e}) / (n - 1)\big).

    All nodes start from one learned vector, so ``E`` sees only the structure and does not change when the
    nodes are relabelled. Messages are summed and divided by the constant ``n - 1`` rather than averaged per
    node as in R-GCN: with identical initial features, a per-node mean gives every node that has both
    neighbours and non-neighbours the same messages, erasing the degrees. The readout sums the node states
    and an MLP maps the sum to a scalar.

    Parameters
    ----------
    max_nodes
        ``n``: graphs are padded to this many nodes; the input has ``n (n - 1) / 2`` bits.
    hidden
        Width of the node states and of the readout MLP (the paper: 32).
    depth
        Number of message-passing layers (the paper: 5).
    activation
        See :func:`make_activation`; the paper uses Swish.
    """

    def __init__(self, max_nodes: int, hidden: int = 32, depth: int = 5, activation: str = "swish") -> None:
        super().__init__()
        check_int(max_nodes, "max_nodes", minimum=2)
        check_int(hidden, "hidden", minimum=1)
        check_int(depth, "depth", minimum=1)
        self.max_nodes = max_nodes
        self.init_state = nn.Parameter(torch.randn(hidden))
        self.self_maps = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.edge_maps = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(depth))
        self.non_edge_maps = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(depth))
        self.activations = nn.ModuleList(make_activation(activation) for _ in range(depth))
        self.readout = MLP(hidden, 1, [hidden], activation)

    def forward(self, x: Tensor) -> Tensor:
        """Energies ``(B,)`` of adjacency bits ``x`` of shape ``(B, n (n - 1) / 2)`` (floats, for ``∇_x E``)."""
        # Imported here so that ebmlib.nets does not need networkx, which ebmlib.graphs imports.
        from ebmlib.graphs import bits_to_adjacency

        n = self.max_nodes
        if x.ndim != 2 or x.shape[1] != n * (n - 1) // 2:
            raise ValueError(f"x must have shape (B, {n * (n - 1) // 2}), got {tuple(x.shape)}")
        adjacency = bits_to_adjacency(x.to(self.init_state.dtype), n)
        eye = torch.eye(n, dtype=adjacency.dtype, device=adjacency.device)
        non_adjacency = 1 - eye - adjacency
        h = self.init_state.expand(x.shape[0], n, -1)
        for self_map, edge_map, non_edge_map, act in zip(
            self.self_maps, self.edge_maps, self.non_edge_maps, self.activations
        ):
            messages = adjacency @ edge_map(h) + non_adjacency @ non_edge_map(h)
            h = act(self_map(h) + messages / (n - 1))
        return self.readout(h.sum(dim=1)).squeeze(-1)


# ---------------------------------------------------------------------------------------------------------
# Convolutional networks for images
# ---------------------------------------------------------------------------------------------------------
def conv_features(width: int = 16, out_channels: int = 16) -> nn.Sequential:
    """The paper's ``h_φ`` for ``1×32×32`` images (App. B.3.2): four SiLU convolutions (``width`` = 16 doubles
    to 128 over strides 2) and a 1×1 convolution to ``out_channels``; output ``(B, out_channels · 16)``."""
    check_int(width, "width", minimum=1)
    check_int(out_channels, "out_channels", minimum=1)
    w = width
    return nn.Sequential(
        nn.Conv2d(1, w, 3, 1, 1), make_activation("silu"),
        nn.Conv2d(w, 2 * w, 4, 2, 1), make_activation("silu"),
        nn.Conv2d(2 * w, 4 * w, 4, 2, 1), make_activation("silu"),
        nn.Conv2d(4 * w, 8 * w, 4, 2, 1), make_activation("silu"),
        nn.Conv2d(8 * w, out_channels, 1), nn.Flatten(),
    )


class ConvEnergy(nn.Module):
    """The paper's image energy (Table 2): a 3×3 convolution with ``nf`` filters (stride 1), ``n_down`` 4×4
    convolutions with ``2 nf`` filters (stride 2, padding 1), Swish (SiLU) after each, then a linear map of the
    flattened features to a scalar.

    The MNIST network is ``ConvEnergy(32, 1, nf=32, n_down=3)``; ``n_down=2`` suits 8×8 digits.

    Parameters
    ----------
    image_size
        Side of the square input, divisible by ``2**n_down``.
    channels
        Input channels.
    nf
        Base number of filters.
    n_down
        Number of stride-2 convolutions.
    """

    def __init__(self, image_size: int, channels: int = 1, *, nf: int = 32, n_down: int = 3) -> None:
        super().__init__()
        check_int(image_size, "image_size", minimum=1)
        check_int(channels, "channels", minimum=1)
        check_int(nf, "nf", minimum=1)
        check_int(n_down, "n_down", minimum=0)
        if image_size % 2**n_down:
            raise ValueError(f"image_size must be divisible by 2**n_down = {2**n_down}, got {image_size}")
        layers: list[nn.Module] = [nn.Conv2d(channels, nf, 3, 1, 1), nn.SiLU()]
        width = nf
        for _ in range(n_down):
            layers += [nn.Conv2d(width, 2 * nf, 4, 2, 1), nn.SiLU()]
            width = 2 * nf
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * (image_size // 2**n_down) ** 2, 1)
        self.event_shape = (channels, image_size, image_size)

    def forward(self, x: Tensor) -> Tensor:
        """Energies ``(B,)`` of images ``(B, C, H, W)``."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        return self.head(self.features(x).flatten(1)).squeeze(-1)
