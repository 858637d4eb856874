"""Perturbations of categorical columns for energy discrepancy (Schröder et al. 2024): the heat kernels
``exp(t L)`` of a graph on each column's classes (uniform, cyclical, ordinal), the grid perturbation, and the
product with a Gaussian for mixed rows ``[numeric | codes]``. Codes are floats holding ``0 … K_c - 1``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ebmlib.data.codes import check_classes, check_codes
from ebmlib.losses.perturbations import (
    MAX_STATES,
    GaussianPerturbation,
    Perturbation,
    enumerate_states,
    product_matrix,
)
from ebmlib.utils import check_int, check_positive, check_probability, check_tensor

HEAT_GRAPHS = ("uniform", "cyclical", "ordinal")


class CategoricalPerturbation(Perturbation):
    """Base of the perturbations of integer codes, ``n_classes[c] = K_c`` classes in column ``c``."""

    def __init__(self, n_classes: Sequence[int]) -> None:
        self.n_classes = check_classes(n_classes)

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        return check_codes(x, self.n_classes, name)

    def states(self) -> Tensor:
        return enumerate_states(self.n_classes)

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
    Built on the CPU.
    """
    k = check_int(n_classes, "n_classes", minimum=2)
    t = check_positive(t, "t")
    if graph not in HEAT_GRAPHS:
        raise ValueError(f"graph must be one of {HEAT_GRAPHS}, got {graph!r}")
    a = torch.arange(k, dtype=torch.float64, device="cpu")
    if graph == "uniform":
        keep = math.exp(-t)
        return keep * torch.eye(k, dtype=torch.float64, device="cpu") + (1 - keep) / k
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
        ``"uniform"``, ``"cyclical"`` or ``"ordinal"`` (see :func:`~ebmlib.losses.heat_kernel`), for all columns or
        per column.
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
        cdf = torch.ones(n, k_max, k_max, dtype=torch.float64, device="cpu")
        for c, q in enumerate(self.matrices):
            cdf[c, : q.shape[0], : q.shape[1]] = q.cumsum(dim=1)
        self._cdf = cdf  # (C, K_max, K_max): row a of column c is the CDF of q(·|a)

    def _draw(self, x: Tensor) -> Tensor:
        if self._cdf.device != x.device:  # moved once, not copied to the device at every draw
            self._cdf = self._cdf.to(x.device)
        cdf = self._cdf
        columns = torch.arange(x.shape[1], device=x.device)
        rows = cdf[columns, x.long()]  # (B, C, K_max)
        u = torch.rand(*x.shape, 1, device=x.device, dtype=torch.float64)
        draws = (rows < u).sum(dim=-1)  # first class whose CDF reaches u
        return torch.minimum(draws.to(x.dtype), self._sizes(x) - 1)

    def transition_matrix(self) -> Tensor:
        if math.prod(self.n_classes) > MAX_STATES:
            raise ValueError(f"the space has {math.prod(self.n_classes)} states, more than MAX_STATES")
        return product_matrix(self.matrices)


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

    def _draw(self, x: Tensor) -> Tensor:
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
        eyes = [torch.eye(k, dtype=torch.float64, device="cpu") for k in self.n_classes]
        terms = [product_matrix([torch.full((k, k), 1 / k, dtype=torch.float64, device="cpu") if i == c else eyes[i]
                        for i, k in enumerate(self.n_classes)]) for c in range(len(self.n_classes))]
        if terms[0].shape[0] > MAX_STATES:
            raise ValueError(f"the space has {terms[0].shape[0]} states, more than MAX_STATES")
        return sum(terms) / len(terms)

    def contrast_matrix(self) -> Tensor:
        return self.transition_matrix()


class MixedPerturbation(Perturbation):
    """Product kernel for mixed rows ``[numeric (n_numeric) | categorical codes]``.

    Numeric columns move by :class:`~ebmlib.losses.GaussianPerturbation`, categorical ones by ``categorical``; the
    two parts are drawn independently, each with its own ``y`` shared by the ``M`` negatives.
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

    def _draw(self, x: Tensor) -> Tensor:
        num, cat = x[:, : self.n_numeric], x[:, self.n_numeric :]
        return torch.cat([self.numeric._draw(num), self.categorical._draw(cat)], dim=1)

    def contrast(self, x: Tensor, n: int) -> Tensor:
        self.check(x)
        check_int(n, "n", minimum=1)
        num, cat = x[:, : self.n_numeric], x[:, self.n_numeric :]
        return torch.cat([self.numeric._draw_from(self.numeric._draw(num), n),
                          self.categorical.contrast(cat, n)], dim=2)
