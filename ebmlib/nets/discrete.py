"""Energies of binary states: the Ising model with free couplings, an energy tilted by a Bernoulli base, and a
permutation-invariant graph energy."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ebmlib.data.graphs import bits_to_adjacency
from ebmlib.nets.mlp import MLP, make_activation
from ebmlib.utils import check_int, check_tensor


class IsingEnergy(nn.Module):
    r"""Pairwise binary energy :math:`E(x) = -(s^\top \hat J s + b^\top s)`, :math:`s = 2x - 1`, with learnable
    :math:`\hat J` and :math:`b`.

    The model family of :class:`~ebmlib.data.IsingLattice` with free couplings, as learned in the Ising
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
        check_tensor(x, "x", finite=False)
        if x.ndim != 2 or x.shape[1] != self.bias.shape[0]:
            raise ValueError(f"x must have shape (B, {self.bias.shape[0]}), got {tuple(x.shape)}")
        spins = 2 * x.to(self.bias.dtype) - 1
        return -((spins @ self.coupling) * spins).sum(-1) - spins @ self.bias


class BernoulliTiltedEnergy(nn.Module):
    r"""Energy of binary states tilted by a factorised Bernoulli base: :math:`E(x) = E_\theta(x) - \log \pi_0(x)`.

    With :math:`\log \pi_0(x) = \sum_j x_j \log \mu_j + (1 - x_j) \log(1 - \mu_j)`, the model
    :math:`p(x) \propto \pi_0(x)\, e^{-E_\theta(x)}` is the base distribution when :math:`E_\theta` is constant, so
    the network only learns a correction to the data's bit frequencies. This is how the energy-discrepancy
    authors build their binary-image energies (``μ`` the training mean clipped to ``[0.01, 0.99]``), and the
    base of :func:`~ebmlib.metrics.ais_log_partition`.

    Parameters
    ----------
    net
        :math:`E_\theta`: ``(B, d) -> (B,)`` or ``(B, 1)``, e.g. :class:`~ebmlib.nets.MLPEnergy`.
    probs
        :math:`\mu`, shape ``(d,)``, entries in ``(0, 1)``; kept as a buffer, so it moves with the module.
    """

    def __init__(self, net: nn.Module, probs: Tensor) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ValueError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        check_tensor(probs, "probs", ndim=1, floating=True)
        if not ((probs > 0) & (probs < 1)).all():
            raise ValueError("probs must lie in (0, 1)")
        self.net = net
        self.register_buffer("probs", probs.detach().clone())

    def base_log_prob(self, x: Tensor) -> Tensor:
        r""":math:`\log \pi_0(x)`, ``(B, d) -> (B,)``."""
        check_tensor(x, "x", shape=(None, self.probs.shape[0]), floating=True, finite=False)
        return x @ self.probs.log() + (1 - x) @ torch.log1p(-self.probs)

    def forward(self, x: Tensor) -> Tensor:
        """Energies ``(B,)`` of binary states ``x`` of shape ``(B, d)`` (floats, for gradients in ``x``)."""
        check_tensor(x, "x", shape=(None, self.probs.shape[0]), floating=True, finite=False)
        return self.net(x).reshape(x.shape[0]) - self.base_log_prob(x)


class GraphEnergy(nn.Module):
    r"""Permutation-invariant energy of undirected graphs given as adjacency bits: an R-GCN (RMwGGIS §5.2).

    The input is the strict upper triangle of the adjacency matrix (:func:`~ebmlib.data.graphs_to_bits`),
    turned into a dense symmetric ``A`` by :func:`~ebmlib.data.bits_to_adjacency`, so ``E`` is
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
        See :func:`~ebmlib.nets.make_activation`; the paper uses Swish.
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
        n = self.max_nodes
        check_tensor(x, "x", finite=False)
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
