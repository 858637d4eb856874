"""The perturbations ``q(y|x)`` of energy discrepancy, all symmetric (``q(y|x) = q(x|y)``), so that
``x → y → x'`` samples the contrast distribution without weights.

* :class:`~ebmlib.losses.BernoulliPerturbation` — flip each bit with probability ``ε`` (binary data);
* :class:`~ebmlib.losses.BitFlipPerturbation` — flip exactly one uniformly chosen bit ("grid" on the
  hypercube);
* :class:`~ebmlib.losses.NodeSetPerturbation` — Bernoulli or one-flip noise restricted to each graph's node set;
* :class:`~ebmlib.losses.GaussianPerturbation` — ``y = x + σ ξ`` for numeric columns;
* categorical columns and mixed rows: :mod:`ebmlib.losses.heat`.

Binary states are floats in ``{0, 1}``. On small spaces each discrete perturbation returns its transition
matrix over :meth:`~ebmlib.losses.Perturbation.states` (mixed radix, first column most significant), for tests
and for :func:`~ebmlib.losses.exact_energy_discrepancy`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ebmlib.data.codes import check_classes
from ebmlib.data.graphs import node_pair_mask, num_pairs
from ebmlib.utils import check_binary, check_int, check_positive, check_probability, check_tensor

MAX_STATES = 4096
"""Largest state space for which :meth:`~ebmlib.losses.Perturbation.transition_matrix` builds a dense matrix."""


class Perturbation:
    """A symmetric noise process ``q(y|x)`` on rows of shape ``(D,)``.

    Subclasses implement :meth:`check`, the draw ``_draw(x)`` (one ``y ~ q(·|x)`` per row of a batch already
    checked) and, on finite spaces, :meth:`transition_matrix`. The public methods check their input once and
    then draw: ``_draw_from`` defaults to ``n`` independent draws on the repeated rows.
    """

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        """Validate a batch ``(B, D)``; raise ``ValueError`` naming ``name``."""
        raise NotImplementedError

    def _draw(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _draw_from(self, y: Tensor, n: int) -> Tensor:
        batch, dim = y.shape
        repeated = y.unsqueeze(1).expand(batch, n, dim).reshape(batch * n, dim)
        return self._draw(repeated).view(batch, n, dim)

    def sample_y(self, x: Tensor) -> Tensor:
        """One draw ``y ~ q(·|x)`` per row: ``(B, D) -> (B, D)``."""
        return self._draw(self.check(x))

    def sample_from(self, y: Tensor, n: int) -> Tensor:
        """``n`` independent draws ``x' ~ q(·|y)`` per row: ``(B, D) -> (B, n, D)``."""
        self.check(y, "y")
        return self._draw_from(y, check_int(n, "n", minimum=1))

    def contrast(self, x: Tensor, n: int) -> Tensor:
        """ED negatives: ``y ~ q(·|x)`` once per row, then ``n`` draws ``x' ~ q(·|y)``; ``(B, n, D)``."""
        self.check(x)
        return self._draw_from(self._draw(x), check_int(n, "n", minimum=1))

    def states(self) -> Tensor:
        """All states of a finite space, ``(S, D)``, mixed radix with the first column most significant."""
        raise ValueError(f"{type(self).__name__} acts on a continuous space: it has no list of states")

    def transition_matrix(self) -> Tensor:
        """``Q[a, b] = q(states[b] | states[a])``, shape ``(S, S)``, float64 on the CPU."""
        raise ValueError(f"{type(self).__name__} acts on a continuous space: it has no transition matrix")

    def contrast_matrix(self) -> Tensor:
        """Law of one negative given ``x``: ``Q²`` for two independent steps (overridden by the grid)."""
        q = self.transition_matrix()
        return q @ q


def enumerate_states(n_classes: Sequence[int]) -> Tensor:
    """All states of a finite mixed-radix space, ``(S, D)`` float64 on the CPU, first column most significant."""
    n_classes = check_classes(n_classes)
    if math.prod(n_classes) > MAX_STATES:
        raise ValueError(f"the space has {math.prod(n_classes)} states, more than MAX_STATES={MAX_STATES}")
    grids = torch.meshgrid(*(torch.arange(k, dtype=torch.float64, device="cpu") for k in n_classes), indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def product_matrix(matrices: Sequence[Tensor]) -> Tensor:
    """Kronecker product of the per-column transition matrices: the kernel of independent columns."""
    if isinstance(matrices, (str, bytes, Tensor)) or not isinstance(matrices, Sequence) or not matrices:
        raise ValueError(f"matrices must be a non-empty sequence of square matrices, got {type(matrices).__name__}")
    for i, m in enumerate(matrices):
        check_tensor(m, f"matrices[{i}]", ndim=2)
        if m.shape[0] != m.shape[1]:
            raise ValueError(f"matrices[{i}] must be square, got shape {tuple(m.shape)}")
    out = matrices[0]
    for m in matrices[1:]:
        out = torch.kron(out, m)
    return out


def _flip_matrix(n: int, site: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Hypercube move that flips bit ``site`` of ``n`` bits (a permutation matrix)."""
    eye = torch.eye(2, dtype=dtype, device="cpu")
    swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=dtype, device="cpu")
    return product_matrix([swap if i == site else eye for i in range(n)])


class BinaryPerturbation(Perturbation):
    """Base of the perturbations of bits ``{0, 1}^D`` (floats); ``dim`` is needed only to enumerate states."""

    def __init__(self, dim: int | None = None) -> None:
        self.dim = None if dim is None else check_int(dim, "dim", minimum=1)

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        check_tensor(x, name, ndim=2, floating=True)
        check_binary(x, name)
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"{name} must have {self.dim} columns, got {x.shape[1]}")
        return x

    def _require_dim(self) -> int:
        if self.dim is None:
            raise ValueError("dim: give the number of bits to enumerate the states")
        return self.dim

    def states(self) -> Tensor:
        return enumerate_states([2] * self._require_dim())


class BernoulliPerturbation(BinaryPerturbation):
    """Flip every bit independently with probability ``ε``: ``y = (x + b) mod 2``, ``b_d ~ Bern(ε)``.

    The binary heat kernel: on ``{0, 1}`` the uniform, cyclical and ordinal graphs coincide up to the time
    scale, and ``exp(t L)`` of the path graph (one edge) flips a bit with probability
    ``ε = (1 - e^{-2t}) / 2`` (:meth:`from_time`). The paper uses ``ε = 0.1`` for the 2-D toys and
    ``ε = 0.005`` for images.
    """

    def __init__(self, epsilon: float, dim: int | None = None) -> None:
        super().__init__(dim)
        self.epsilon = check_probability(epsilon, "epsilon")

    @classmethod
    def from_time(cls, t: float, dim: int | None = None) -> BernoulliPerturbation:
        """The heat kernel at time ``t > 0``: ``ε = (1 - e^{-2t}) / 2``."""
        return cls((1 - math.exp(-2 * check_positive(t, "t"))) / 2, dim)

    def _draw(self, x: Tensor) -> Tensor:
        flips = torch.rand_like(x) < self.epsilon
        return torch.where(flips, 1 - x, x)

    def transition_matrix(self) -> Tensor:
        e = self.epsilon
        one_bit = torch.tensor([[1 - e, e], [e, 1 - e]], dtype=torch.float64, device="cpu")
        return product_matrix([one_bit] * self._require_dim())


class BitFlipPerturbation(BinaryPerturbation):
    """Flip exactly one uniformly chosen bit: ``q(y|x) = 1/D`` for the ``D`` Hamming neighbours.

    The binary "grid" perturbation of the paper's image and toy notebooks. Each negative flips a fresh
    index of ``y``, so a negative equals ``x`` with probability ``1/D``.
    """

    def _draw(self, x: Tensor) -> Tensor:
        index = torch.randint(x.shape[1], (x.shape[0], 1), device=x.device)
        return x.scatter(1, index, 1 - x.gather(1, index))

    def transition_matrix(self) -> Tensor:
        d = self._require_dim()
        return sum(_flip_matrix(d, i) for i in range(d)) / d


class GaussianPerturbation(Perturbation):
    """``y = x + σ ξ``, ``ξ ~ N(0, I)`` (``σ`` a standard deviation: 0.05 or 0.1 in the tabular runs).

    The heat kernel of ``R^D`` at time ``t = σ²/2``; a negative is ``x + σ(ξ + ξ_j)``, i.e. ``N(x, 2σ² I)``.
    """

    def __init__(self, sigma: float) -> None:
        self.sigma = check_positive(sigma, "sigma")

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        return check_tensor(x, name, ndim=2, floating=True)

    def _draw(self, x: Tensor) -> Tensor:
        return x + self.sigma * torch.randn_like(x)


class NodeSetPerturbation(Perturbation):
    """Energy-discrepancy noise that flips only pairs of each graph's node set (cf.
    :func:`~ebmlib.samplers.gibbs_within_nodes`).

    Rows are ``(D + 1,)``: the adjacency bits followed by the node count ``n`` (as a float), which is never
    changed. ``epsilon`` flips each of the ``n (n - 1)/2`` allowed bits with that probability (the Bernoulli
    perturbation on the node set); ``epsilon=None`` flips one allowed bit chosen uniformly (the grid
    perturbation). Both are symmetric, as energy discrepancy needs. Train an energy ``E`` on bits with
    ``lambda z: E(z[:, :-1])``.
    """

    def __init__(self, max_nodes: int, epsilon: float | None = None) -> None:
        self.max_nodes = check_int(max_nodes, "max_nodes", minimum=2)
        self.epsilon = None if epsilon is None else check_probability(epsilon, "epsilon")

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        check_tensor(x, name, shape=(None, num_pairs(self.max_nodes) + 1), floating=True)
        check_binary(x[:, :-1], name)
        counts = x[:, -1]
        if not ((counts == counts.round()) & (counts >= 2) & (counts <= self.max_nodes)).all():
            raise ValueError(f"{name}[:, -1] must hold node counts, integers in [2, max_nodes={self.max_nodes}]")
        return x

    def _draw(self, x: Tensor) -> Tensor:
        bits, counts = x[:, :-1], x[:, -1:]
        mask = node_pair_mask(counts[:, 0].long(), self.max_nodes).to(bits)
        if self.epsilon is None:  # argmax of uniform noise over the allowed bits: one uniform allowed bit
            index = (torch.rand_like(bits) + mask).argmax(1, keepdim=True)
            bits = bits.scatter(1, index, 1 - bits.gather(1, index))
        else:
            bits = torch.where((torch.rand_like(bits) < self.epsilon) & (mask > 0), 1 - bits, bits)
        return torch.cat([bits, counts], dim=1)
