"""The perturbations ``q(y|x)`` of energy discrepancy, all symmetric (``q(y|x) = q(x|y)``), so that
``x → y → x'`` samples the contrast distribution without weights.

* :class:`BernoulliPerturbation` — flip each bit with probability ``ε`` (binary data);
* :class:`BitFlipPerturbation` — flip exactly one uniformly chosen bit ("grid" on the hypercube);
* :class:`GridPerturbation` — resample one uniformly chosen categorical column uniformly;
* :class:`UniformPerturbation`, :class:`CyclicalPerturbation`, :class:`OrdinalPerturbation` — every
  categorical column moves by the heat kernel ``exp(t L)`` of the complete, cycle or path graph on its
  ``K`` classes, solved through the graph Laplacian's eigen-decomposition;
* :class:`GaussianPerturbation` — ``y = x + σ ξ`` for numeric columns;
* :class:`MixedPerturbation` — numeric columns Gaussian, categorical columns any of the above (a product);
* :class:`NodeSetPerturbation` — Bernoulli or one-flip noise restricted to each graph's node set.

Binary states are floats in ``{0, 1}``; categorical states are floats holding integer codes
``0 … K_c - 1`` (so they concatenate with numeric columns, ``[numeric | categorical]``). On small spaces each
discrete perturbation returns its transition matrix over :meth:`Perturbation.states` (mixed radix, first
column most significant), for tests and for :func:`ebmlib.losses.exact_energy_discrepancy`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ebmlib.data.codes import check_classes, check_codes
from ebmlib.data.graphs import node_pair_mask, num_pairs
from ebmlib.utils import check_binary, check_int, check_positive, check_probability, check_tensor

MAX_STATES = 4096
"""Largest state space for which :meth:`Perturbation.transition_matrix` builds a dense matrix."""


HEAT_GRAPHS = ("uniform", "cyclical", "ordinal")


class Perturbation:
    """A symmetric noise process ``q(y|x)`` on rows of shape ``(D,)``.

    Subclasses implement :meth:`check`, :meth:`sample_y` and (on finite spaces) :meth:`transition_matrix`;
    :meth:`sample_from` defaults to ``n`` independent calls of :meth:`sample_y` on the repeated rows.
    """

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        """Validate a batch ``(B, D)``; raise ``ValueError`` naming ``name``."""
        raise NotImplementedError

    def sample_y(self, x: Tensor) -> Tensor:
        """One draw ``y ~ q(·|x)`` per row: ``(B, D) -> (B, D)``."""
        raise NotImplementedError

    def sample_from(self, y: Tensor, n: int) -> Tensor:
        """``n`` independent draws ``x' ~ q(·|y)`` per row: ``(B, D) -> (B, n, D)``."""
        batch, dim = y.shape
        repeated = y.unsqueeze(1).expand(batch, n, dim).reshape(batch * n, dim)
        return self.sample_y(repeated).view(batch, n, dim)

    def contrast(self, x: Tensor, n: int) -> Tensor:
        """ED negatives: ``y ~ q(·|x)`` once per row, then ``n`` draws ``x' ~ q(·|y)``; ``(B, n, D)``."""
        self.check(x)
        check_int(n, "n", minimum=1)
        return self.sample_from(self.sample_y(x), n)

    def states(self) -> Tensor:
        """All states of a finite space, ``(S, D)``, mixed radix with the first column most significant."""
        raise ValueError(f"{type(self).__name__} acts on a continuous space: it has no list of states")

    def transition_matrix(self) -> Tensor:
        """``Q[a, b] = q(states[b] | states[a])``, shape ``(S, S)``, float64."""
        raise ValueError(f"{type(self).__name__} acts on a continuous space: it has no transition matrix")

    def contrast_matrix(self) -> Tensor:
        """Law of one negative given ``x``: ``Q²`` for two independent steps (overridden by the grid)."""
        q = self.transition_matrix()
        return q @ q


def _enumerate(n_classes: Sequence[int]) -> Tensor:
    if math.prod(n_classes) > MAX_STATES:
        raise ValueError(f"the space has {math.prod(n_classes)} states, more than MAX_STATES={MAX_STATES}")
    grids = torch.meshgrid(*(torch.arange(k, dtype=torch.float64) for k in n_classes), indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def _kron(matrices: Sequence[Tensor]) -> Tensor:
    out = matrices[0]
    for m in matrices[1:]:
        out = torch.kron(out, m)
    return out


def _flip_matrix(n: int, site: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Hypercube move that flips bit ``site`` of ``n`` bits (a permutation matrix)."""
    eye, swap = torch.eye(2, dtype=dtype), torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    return _kron([swap if i == site else eye for i in range(n)])


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
        return _enumerate([2] * self._require_dim())


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

    def sample_y(self, x: Tensor) -> Tensor:
        flips = torch.rand_like(x) < self.epsilon
        return torch.where(flips, 1 - x, x)

    def transition_matrix(self) -> Tensor:
        e = self.epsilon
        one_bit = torch.tensor([[1 - e, e], [e, 1 - e]], dtype=torch.float64)
        return _kron([one_bit] * self._require_dim())


class BitFlipPerturbation(BinaryPerturbation):
    """Flip exactly one uniformly chosen bit: ``q(y|x) = 1/D`` for the ``D`` Hamming neighbours.

    The binary "grid" perturbation of the paper's image and toy notebooks. Each negative flips a fresh
    index of ``y``, so a negative equals ``x`` with probability ``1/D``.
    """

    def sample_y(self, x: Tensor) -> Tensor:
        index = torch.randint(x.shape[1], (x.shape[0], 1), device=x.device)
        return x.scatter(1, index, 1 - x.gather(1, index))

    def transition_matrix(self) -> Tensor:
        d = self._require_dim()
        return sum(_flip_matrix(d, i) for i in range(d)) / d


class CategoricalPerturbation(Perturbation):
    """Base of the perturbations of integer codes, ``n_classes[c] = K_c`` classes in column ``c``."""

    def __init__(self, n_classes: Sequence[int]) -> None:
        self.n_classes = check_classes(n_classes)

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        return check_codes(x, self.n_classes, name)

    def states(self) -> Tensor:
        return _enumerate(self.n_classes)

    def _sizes(self, like: Tensor) -> Tensor:
        return torch.tensor(self.n_classes, device=like.device, dtype=like.dtype)


def heat_kernel(n_classes: int, t: float, graph: str) -> Tensor:
    """``exp(t L)`` on ``K`` classes from the eigen-decomposition of the graph Laplacian; ``(K, K)`` float64.

    * ``"cyclical"``: cycle graph, ``L = A - 2I``; Fourier modes ``e^{2πipa/K}``, ``λ_p = 2(cos(2πp/K) - 1)``,
      so ``Q[a, b] = (1/K) Σ_p e^{tλ_p} cos(2πp(a - b)/K)``.
    * ``"ordinal"``: path graph with reflecting ends, ``L = A - D``; the DCT-II modes
      ``φ_p(a) ∝ cos(πp(a + ½)/K)`` with ``λ_p = 2(cos(πp/K) - 1)``, so ``Q = Φ diag(e^{tλ}) Φᵀ``.
    * ``"uniform"``: complete graph scaled to ``L = (1/K) 11ᵀ - I``, eigenvalues ``0`` (constant mode) and
      ``-1``, so ``Q = e^{-t} I + (1 - e^{-t}) (1/K) 11ᵀ``: keep with ``e^{-t}``, else resample uniformly.

    The result is symmetric and doubly stochastic; round-off negatives are clipped at 0 and rows renormalised.
    """
    k = check_int(n_classes, "n_classes", minimum=2)
    t = check_positive(t, "t")
    if graph not in HEAT_GRAPHS:
        raise ValueError(f"graph must be one of {HEAT_GRAPHS}, got {graph!r}")
    a = torch.arange(k, dtype=torch.float64)
    if graph == "uniform":
        keep = math.exp(-t)
        return keep * torch.eye(k, dtype=torch.float64) + (1 - keep) / k
    if graph == "cyclical":
        decay = torch.exp(t * 2 * (torch.cos(2 * math.pi * a / k) - 1))
        q = (decay * torch.cos(2 * math.pi * a * (a[:, None, None] - a[None, :, None]) / k)).sum(-1) / k
    else:
        phi = torch.cos(math.pi * a[None, :] * (a[:, None] + 0.5) / k) * math.sqrt(2 / k)  # (state, mode)
        phi[:, 0] = 1 / math.sqrt(k)
        decay = torch.exp(t * 2 * (torch.cos(math.pi * a / k) - 1))
        q = (phi * decay) @ phi.T
    q = q.clamp_min(0)
    return q / q.sum(dim=1, keepdim=True)


class HeatPerturbation(CategoricalPerturbation):
    """Every categorical column moves by the heat kernel ``exp(t_c L)`` of a graph on its classes.

    Columns move independently (a product kernel). Sampling gathers the row ``Q_c[x_c]`` of each column's
    precomputed matrix and draws by inverse CDF, all columns and rows at once (matrices padded to the
    largest ``K``).

    Parameters
    ----------
    n_classes
        ``K_c >= 2`` per column.
    t
        Diffusion time ``> 0``: one number for all columns, or one per column.
    graph
        ``"uniform"``, ``"cyclical"`` or ``"ordinal"`` (see :func:`heat_kernel`), for all columns or per column.
    scaling
        ``"none"`` uses ``t`` as given; ``"quadratic"`` uses ``t · K_c²`` (the paper's rule, under which the
        kernel tends to a reflected/periodic Gaussian as ``K`` grows); ``"linear"`` uses ``t · K_c``.
    """

    def __init__(self, n_classes: Sequence[int], t: float | Sequence[float], graph: str | Sequence[str] = "cyclical",
                 *, scaling: str = "none") -> None:
        super().__init__(n_classes)
        n = len(self.n_classes)
        times = [t] * n if isinstance(t, (int, float)) else list(t)
        graphs = [graph] * n if isinstance(graph, str) else list(graph)
        if len(times) != n or len(graphs) != n:
            raise ValueError(f"t and graph must give one value per column ({n}), got {len(times)} and {len(graphs)}")
        exponent = {"none": 0, "linear": 1, "quadratic": 2}.get(scaling)
        if exponent is None:
            raise ValueError(f"scaling must be 'none', 'linear' or 'quadratic', got {scaling!r}")
        self.times = tuple(check_positive(tc, f"t[{i}]") * k**exponent
                           for i, (tc, k) in enumerate(zip(times, self.n_classes)))
        self.graphs = tuple(graphs)
        self.matrices = [heat_kernel(k, tc, g) for k, tc, g in zip(self.n_classes, self.times, self.graphs)]
        k_max = max(self.n_classes)
        cdf = torch.ones(n, k_max, k_max, dtype=torch.float64)
        for c, q in enumerate(self.matrices):
            cdf[c, : q.shape[0], : q.shape[1]] = q.cumsum(dim=1)
        self._cdf = cdf  # (C, K_max, K_max): row a of column c is the CDF of q(·|a)

    def sample_y(self, x: Tensor) -> Tensor:
        cdf = self._cdf.to(x.device)
        columns = torch.arange(x.shape[1], device=x.device)
        rows = cdf[columns, x.long()]  # (B, C, K_max)
        u = torch.rand(*x.shape, 1, device=x.device, dtype=torch.float64)
        draws = (rows < u).sum(dim=-1)  # first class whose CDF reaches u
        return torch.minimum(draws.to(x.dtype), self._sizes(x) - 1)

    def transition_matrix(self) -> Tensor:
        if math.prod(self.n_classes) > MAX_STATES:
            raise ValueError(f"the space has {math.prod(self.n_classes)} states, more than MAX_STATES")
        return _kron(self.matrices)


class UniformPerturbation(HeatPerturbation):
    """Keep each categorical column with probability ``keep``, else resample it uniformly (may redraw it).

    ``Q = keep · I + (1 - keep) (1/K) 11ᵀ``, the heat kernel of the complete graph at ``t = -log keep``.
    The authors' tabular code keeps with probability 0.1.
    """

    def __init__(self, n_classes: Sequence[int], keep: float = 0.1) -> None:
        self.keep = check_probability(keep, "keep")
        super().__init__(n_classes, -math.log(self.keep), "uniform")


class CyclicalPerturbation(HeatPerturbation):
    """Heat kernel of the cycle graph (periodic classes, e.g. months, hues); ``t`` scaled by ``K²``.

    The authors' tabular runs use ``t = 0.005 K²``.
    """

    def __init__(self, n_classes: Sequence[int], t: float | Sequence[float] = 0.005, *, scaling: str = "quadratic"):
        super().__init__(n_classes, t, "cyclical", scaling=scaling)


class OrdinalPerturbation(HeatPerturbation):
    """Heat kernel of the path graph (ordered classes, e.g. age bands); ``t`` scaled by ``K²``.

    The authors' tabular runs use ``t = 0.01 K²``.
    """

    def __init__(self, n_classes: Sequence[int], t: float | Sequence[float] = 0.01, *, scaling: str = "quadratic"):
        super().__init__(n_classes, t, "ordinal", scaling=scaling)


class GridPerturbation(CategoricalPerturbation):
    """Resample one uniformly chosen column uniformly (the paper's categorical "grid" perturbation).

    ``q(y|x) = (1/C) Σ_c [y_{-c} = x_{-c}] / K_c``. All ``M`` negatives of a data point resample the *same*
    column ``c`` (as in the authors' code): since resampling a column forgets its value, this is the
    two-step draw ``x → y → x'`` with ``c`` shared, and the law of a negative is ``Q`` itself
    (:meth:`contrast_matrix`), a Monte-Carlo pseudo-likelihood.
    """

    def sample_y(self, x: Tensor) -> Tensor:
        return self._resample_one_column(x, torch.randint(x.shape[1], (x.shape[0],), device=x.device), 1)[:, 0]

    def _resample_one_column(self, x: Tensor, column: Tensor, n: int) -> Tensor:
        batch, n_cols = x.shape
        k = self._sizes(x)[column]  # (B,)
        values = torch.floor(torch.rand(batch, n, device=x.device, dtype=x.dtype) * k[:, None])
        out = x.unsqueeze(1).expand(batch, n, n_cols).clone()
        index = column.view(batch, 1, 1).expand(batch, n, 1)
        return out.scatter(2, index, values.unsqueeze(-1))

    def contrast(self, x: Tensor, n: int) -> Tensor:
        self.check(x)
        check_int(n, "n", minimum=1)
        column = torch.randint(x.shape[1], (x.shape[0],), device=x.device)
        return self._resample_one_column(x, column, n)

    def transition_matrix(self) -> Tensor:
        eyes = [torch.eye(k, dtype=torch.float64) for k in self.n_classes]
        terms = [_kron([torch.full((k, k), 1 / k, dtype=torch.float64) if i == c else eyes[i]
                        for i, k in enumerate(self.n_classes)]) for c in range(len(self.n_classes))]
        if terms[0].shape[0] > MAX_STATES:
            raise ValueError(f"the space has {terms[0].shape[0]} states, more than MAX_STATES")
        return sum(terms) / len(terms)

    def contrast_matrix(self) -> Tensor:
        return self.transition_matrix()


class GaussianPerturbation(Perturbation):
    """``y = x + σ ξ``, ``ξ ~ N(0, I)`` (``σ`` a standard deviation: 0.05 or 0.1 in the tabular runs).

    The heat kernel of ``R^D`` at time ``t = σ²/2``; a negative is ``x + σ(ξ + ξ_j)``, i.e. ``N(x, 2σ² I)``.
    """

    def __init__(self, sigma: float) -> None:
        self.sigma = check_positive(sigma, "sigma")

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        return check_tensor(x, name, ndim=2, floating=True)

    def sample_y(self, x: Tensor) -> Tensor:
        return x + self.sigma * torch.randn_like(x)


class MixedPerturbation(Perturbation):
    """Product kernel for mixed rows ``[numeric (n_numeric) | categorical codes]``.

    Numeric columns move by :class:`GaussianPerturbation`, categorical ones by ``categorical``; the two parts
    are drawn independently, each with its own ``y`` shared by the ``M`` negatives.
    """

    def __init__(self, n_numeric: int, sigma: float, categorical: CategoricalPerturbation) -> None:
        self.n_numeric = check_int(n_numeric, "n_numeric", minimum=0)
        self.numeric = GaussianPerturbation(sigma)
        if not isinstance(categorical, CategoricalPerturbation):
            raise ValueError(f"categorical must be a categorical perturbation, got {type(categorical).__name__}")
        self.categorical = categorical
        self.n_classes = categorical.n_classes

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        check_tensor(x, name, shape=(None, self.n_numeric + len(self.n_classes)), floating=True)
        check_codes(x[:, self.n_numeric :], self.n_classes, f"{name}[:, {self.n_numeric}:] (categorical columns)")
        return x

    def sample_y(self, x: Tensor) -> Tensor:
        num, cat = x[:, : self.n_numeric], x[:, self.n_numeric :]
        return torch.cat([self.numeric.sample_y(num), self.categorical.sample_y(cat)], dim=1)

    def contrast(self, x: Tensor, n: int) -> Tensor:
        self.check(x)
        check_int(n, "n", minimum=1)
        num, cat = x[:, : self.n_numeric], x[:, self.n_numeric :]
        return torch.cat([self.numeric.sample_from(self.numeric.sample_y(num), n),
                          self.categorical.contrast(cat, n)], dim=2)


class NodeSetPerturbation(Perturbation):
    """Energy-discrepancy noise that flips only pairs of each graph's node set (cf. :func:`gibbs_within_nodes`).

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
        return x

    def sample_y(self, x: Tensor) -> Tensor:
        bits, counts = x[:, :-1], x[:, -1:]
        mask = node_pair_mask(counts[:, 0].long(), self.max_nodes).to(bits)
        if self.epsilon is None:  # argmax of uniform noise over the allowed bits: one uniform allowed bit
            index = (torch.rand_like(bits) + mask).argmax(1, keepdim=True)
            bits = bits.scatter(1, index, 1 - bits.gather(1, index))
        else:
            bits = torch.where((torch.rand_like(bits) < self.epsilon) & (mask > 0), 1 - bits, bits)
        return torch.cat([bits, counts], dim=1)
