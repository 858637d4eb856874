"""The lattice Ising model of Gibbs-with-Gradients and RMwGGIS, with exact enumeration on small lattices and
a vectorised chromatic Gibbs sampler for ground-truth samples."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlib.data.codes import MAX_ENUMERATION_DIM, all_binary_states
from ebmlib.ledger import recorded_steps
from ebmlib.utils import check_binary, check_float_dtype, check_int, check_real, check_tensor


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """U(0, 1) draws: on the CPU with ``generator`` (reproducible everywhere), else directly on ``device``."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator).to(device)


def _lattice_colour_classes(side: int, periodic: bool) -> list[Tensor]:
    """Site indices of each class of a proper lattice colouring with the fewest colours.

    If ``a`` properly colours the row (= column) path or cycle with values in Z_k, then
    ``(a(r) + a(c)) mod k`` changes along every lattice edge, as an edge moves exactly one of ``r, c`` to a
    neighbour. Alternating ``a = 0, 1, 0, ...`` with ``k = 2`` (the checkerboard) works unless the side is odd
    and periodic: such lattices (e.g. 25 × 25) are not bipartite, so the last node of the odd cycle gets
    ``a = 2`` and ``k = 3``.
    """
    a = torch.arange(side) % 2
    odd_cycle = periodic and side % 2 == 1
    if odd_cycle:
        a[-1] = 2
    colour = ((a[:, None] + a[None, :]) % (3 if odd_cycle else 2)).flatten()
    return [torch.nonzero(colour == c).flatten() for c in colour.unique().tolist()]


def _local_field(spins: Tensor, neighbours: Tensor, weights: Tensor) -> Tensor:
    """``h_i = Σ_j J_ij s_j`` from a neighbour table ``(n_sites, 4)``: ``(B, D)`` spins → ``(B, n_sites)``."""
    # One neighbour slot at a time: index_select of whole columns is an order of magnitude faster on a CPU than
    # gathering a (B, n_sites, 4) block and reducing its short last dimension.
    field = torch.index_select(spins, 1, neighbours[:, 0]) * weights[:, 0]
    for k in range(1, neighbours.shape[1]):
        field = field.addcmul(torch.index_select(spins, 1, neighbours[:, k]), weights[:, k])
    return field


class IsingLattice:
    """Ising model on a ``side × side`` square lattice with 4-neighbour couplings (GWG / RMwGGIS convention).

    States are bits ``x ∈ {0, 1}^D``, ``D = side²``, with spins ``s = 2x - 1``; site ``(r, c)`` has index
    ``r * side + c``. The unnormalised log-density is

        ``log p̃(x) = sᵀ J s + b Σ_i s_i``,   ``J = sigma · A``,

    with ``A`` the symmetric, zero-diagonal adjacency matrix of the lattice (wrap-around when ``periodic``).
    As ``J`` is symmetric, each edge enters twice: ``sᵀ J s = 2 sigma Σ_{edges {i,j}} s_i s_j``. The energy
    is ``E = -log p̃``, so ``p(x) ∝ exp(-E(x))``; calling the model evaluates :meth:`energy`.

    Parameters
    ----------
    side
        Lattice side, ``>= 3`` (smaller periodic lattices would have repeated neighbours).
    sigma
        Coupling strength, any finite real (``> 0`` is ferromagnetic).
    periodic
        Wrap around the edges (a torus: every site has 4 neighbours) or not (open boundary).
    bias
        Uniform external field ``b``.

    Attributes
    ----------
    J
        Dense coupling matrix ``sigma · A``, shape ``(D, D)``, CPU float32.
    colour_classes
        Site indices of the colour classes used by :meth:`sample`: 2 classes, or 3 for odd periodic sides.
    """

    def __init__(self, side: int, sigma: float, *, periodic: bool = True, bias: float = 0.0) -> None:
        self.side = check_int(side, "side", minimum=3)
        self.sigma = check_real(sigma, "sigma")
        self.bias = check_real(bias, "bias")
        if not isinstance(periodic, bool):
            raise ValueError(f"periodic must be a bool, got {periodic!r}")  # noqa: TRY004 (ebmlib convention)
        self.periodic = periodic
        self.dim = side * side
        # Neighbour table (D, 4): up, down, left, right. A missing (open-boundary) neighbour points at the
        # site itself with weight 0, so that gathers stay in range.
        site = torch.arange(self.dim)[:, None]
        n_row, n_col = site // side + torch.tensor([-1, 1, 0, 0]), site % side + torch.tensor([0, 0, -1, 1])
        exists = torch.ones(self.dim, 4, dtype=torch.bool)
        if not periodic:
            exists = (n_row >= 0) & (n_row < side) & (n_col >= 0) & (n_col < side)
        self._neighbours = torch.where(exists, (n_row % side) * side + n_col % side, site)
        self._weights = self.sigma * exists.double()  # float64 so that exact_log_probs is exact
        self.J = torch.zeros(self.dim, self.dim)
        self.J[site.expand(-1, 4)[exists], self._neighbours[exists]] = self.sigma
        self.colour_classes = _lattice_colour_classes(side, periodic)

    def energy(self, x: Tensor) -> Tensor:
        """``E(x) = -(sᵀ J s + b Σ_i s_i)`` with ``s = 2x - 1``: ``(B, D)`` binary floats → ``(B,)``.

        Differentiable in ``x`` (Gibbs-with-Gradients takes ``∇_x E`` at binary points).
        """
        check_tensor(x, "x", shape=(None, self.dim), floating=True)
        check_binary(x, "x")
        spins = 2 * x - 1
        field = _local_field(spins, self._neighbours.to(x.device), self._weights.to(x.device, x.dtype))
        return -((spins * field).sum(dim=-1) + self.bias * spins.sum(dim=-1))

    __call__ = energy

    def exact_log_probs(self, *, dtype: torch.dtype = torch.float32) -> Tensor:
        """Normalised ``log p(x)`` of all ``2**D`` states, ordered as :func:`~ebmlib.data.all_binary_states`
        (``D <= 20``).

        Computed in float64, then cast to ``dtype``.
        """
        dtype = check_float_dtype(dtype)
        if self.dim > MAX_ENUMERATION_DIM:
            raise ValueError(f"side: enumeration needs side**2 <= {MAX_ENUMERATION_DIM}, got {self.dim}")
        log_p = -self.energy(all_binary_states(self.dim, dtype=torch.float64))
        return (log_p - torch.logsumexp(log_p, dim=0)).to(dtype)

    def sample(self, n: int, n_sweeps: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Ground-truth samples by chromatic Gibbs sampling of ``n`` independent chains: ``(n, D)`` bits.

        Chains start from uniform random spins. A sweep updates the colour classes one after another; sites
        of one class are not coupled, so all of them (in all chains) are resampled at once from the exact
        conditional ``p(s_i = +1 | s_rest) = sigmoid(2 (2 Σ_j J_ij s_j + b))``.

        ``n >= 1`` chains run for ``n_sweeps >= 0`` sweeps on ``device`` (default CPU); all draws use the
        optional CPU ``generator`` (then move to ``device``). The bits are returned as ``dtype``.
        """
        check_int(n, "n", minimum=1)
        check_int(n_sweeps, "n_sweeps", minimum=0)
        dtype = check_float_dtype(dtype)
        device = torch.device("cpu" if device is None else device)
        classes = [(c.to(device), self._neighbours[c].to(device), self._weights[c].to(device, torch.float32))
                   for c in self.colour_classes]
        spins = torch.where(_uniform((n, self.dim), generator, device) < 0.5, 1.0, -1.0)
        for _ in recorded_steps(n_sweeps, "Ising Gibbs sweeps"):
            for sites, neighbours, weights in classes:
                p_up = torch.sigmoid(2 * (2 * _local_field(spins, neighbours, weights) + self.bias))
                u = _uniform((n, len(sites)), generator, device)
                spins.index_copy_(1, sites, torch.where(u < p_up, 1.0, -1.0))
        return ((spins + 1) / 2).to(dtype)
