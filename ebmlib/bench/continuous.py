"""Continuous benchmark tasks: 2D densities scored by the exact KL between grid-normalised densities, and the
16-dimensional four-mode mixture of chapter 4 scored by the mode weights of the model itself."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ebmlib.bench.base import Task, check_energy
from ebmlib.data import GaussianMixture, Rings, paper_mixture, sample_toy, toy_log_prob, toy_mode_centres
from ebmlib.metrics import mode_weights
from ebmlib.nets import MLPEnergy, TiltedEnergy
from ebmlib.utils import check_device, check_int, check_positive, grid_2d, grid_log_density


def tilted_mlp(dim: int, hidden: int, base_std: float, device: torch.device) -> TiltedEnergy:
    """The energy every continuous method trains: ``U(x) = MLP(x) - log N(x; 0, σ² I)``, the MLP's output layer
    zero, so that ``U`` starts as the Gaussian base (integrable from the first step, as flowMC-EBM needs)."""
    device = check_device(device)
    net = MLPEnergy(check_int(dim, "dim", minimum=1), hidden=hidden, depth=3)
    nn.init.zeros_(net.mlp.net[-1].weight)
    nn.init.zeros_(net.mlp.net[-1].bias)
    return TiltedEnergy(net, dim, base_std).to(device)


class ContinuousTask(Task):
    """Shared parts of the continuous tasks: the tilted MLP energy, chain starts, and the settings the
    continuous methods read (the base ``σ`` of tilt and flow, the flow's width, ED's Gaussian noise)."""

    kind = "continuous"
    hidden = 64
    base_std = 1.0
    box = 4.0
    flow_hidden: tuple[int, ...] = (16, 16, 16)
    gaussian_sigma = 0.1

    def make_energy(self) -> nn.Module:
        return tilted_mlp(self.dim, self.hidden, self.base_std, self.device)

    def init_states(self, n: int) -> Tensor:
        """Uniform on ``[-box, box]^dim`` in 2D; the Gaussian base in higher dimensions (chapter 4's choice)."""
        check_int(n, "n", minimum=1)
        if self.dim == 2:
            return self.box * (2 * torch.rand(n, 2, device=self.device) - 1)
        return self.base_std * torch.randn(n, self.dim, device=self.device)


_GRID_DENSITIES = ("8gaussians", "checkerboard", "rings", "four_modes")


class GridDensityTask(ContinuousTask):
    """A 2D density with an exact log-density: ``8gaussians`` or ``checkerboard`` (FFJORD's toys), or chapter 4's
    ``rings`` (four rings) and ``four_modes`` (four Gaussians of weights 0.1, 0.2, 0.3, 0.4).

    Both the true and the model density are normalised over the same ``n_grid × n_grid`` cells of
    ``[-lim, lim]²`` (:func:`~ebmlib.utils.grid_log_density`); the primary metric is the exact KL between
    these two cell distributions, ``KL(p ‖ p_θ)`` in nats, the second the total variation. For the mixtures
    (``8gaussians``, ``four_modes``) ``mode_tv`` is the total variation between the model's and the truth's
    masses in the cells nearest to each mode centre (:func:`~ebmlib.metrics.mode_weights`), exact on the grid.
    """

    primary = "kl"
    exact = "exact on the grid"

    def __init__(self, name: str, *, density: str = "8gaussians", hidden: int = 64, lr: float = 1e-3,
                 batch_size: int = 256, n_grid: int = 200, gaussian_sigma: float = 0.1,
                 device: torch.device | str = "cpu") -> None:
        if density not in _GRID_DENSITIES:
            raise ValueError(f"density must be one of {_GRID_DENSITIES}, got {density!r}")
        super().__init__(name, lr=lr, batch_size=batch_size, device=device)
        self.density, self.dim, self.hidden = density, 2, check_int(hidden, "hidden", minimum=1)
        self.n_grid, self.gaussian_sigma = check_int(n_grid, "n_grid", minimum=2), check_positive(gaussian_sigma,
                                                                                                 "gaussian_sigma")
        self.target = Rings() if density == "rings" else paper_mixture(density) if density == "four_modes" else None
        self.lim = 5.0 if density == "rings" else 4.5
        self.box = self.lim
        reference = self._sample(100_000, torch.Generator().manual_seed(0))
        self.base_std = float(reference.std(0).max())
        self.description = f"{density} (2D), KL on a {n_grid}×{n_grid} grid over [-{self.lim:g}, {self.lim:g}]²"
        self.points, area = grid_2d(self.lim, n_grid, device=self.device)
        with torch.no_grad():
            probs = self.log_prob(self.points).double().exp() * area
        self.cell_probs = probs / probs.sum()
        centres = {"8gaussians": toy_mode_centres("8gaussians"), "four_modes": getattr(self.target, "means", None)}
        self.centres = None if centres.get(density) is None else centres[density].to(self.device)
        if self.centres is not None:
            self.true_weights = mode_weights(self.points, self.centres, weights=self.cell_probs.float())

    def _sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        if self.target is not None:
            return self.target.sample(n, generator=generator)[0]
        return sample_toy(self.density, n, generator=generator)

    def log_prob(self, x: Tensor) -> Tensor:
        """The true log-density, ``(B, 2) -> (B,)`` (``-inf`` off the checkerboard)."""
        return self.target.log_prob(x) if self.target is not None else toy_log_prob(self.density, x)

    def batches(self) -> Callable[[], Tensor]:
        return lambda: self._sample(self.batch_size).to(self.device)

    def evaluate(self, energy: nn.Module) -> dict[str, float]:
        log_q = grid_log_density(check_energy(energy), self.lim, self.n_grid).reshape(-1).double()
        log_q = log_q - torch.logsumexp(log_q, 0)
        p = self.cell_probs
        kl = torch.where(p > 0, p * (p.log() - log_q), torch.zeros_like(p)).sum()
        metrics = {"kl": kl.item(), "tv": 0.5 * (p - log_q.exp()).abs().sum().item()}
        if self.centres is not None:
            weights = mode_weights(self.points, self.centres, weights=log_q.exp().float())
            metrics["mode_tv"] = 0.5 * (weights - self.true_weights).abs().sum().item()
        return metrics


class MixtureTask(ContinuousTask):
    """The four-mode Gaussian mixture of chapter 4 in ``dim`` dimensions (means ``±a√d``, unit variances).

    The model's mode weights are measured on the model itself, without running any sampler, by self-normalised
    importance sampling: with ``x_i`` from the proposal ``q = ½ p* + ½ ρ`` (the target and the tilt's Gaussian
    base, whose tails keep the weights' variance finite), ``r_i ∝ e^{-U(x_i)} / q(x_i)`` and each mode's mass
    under ``p_θ`` is the share of ``r`` carried by the points nearest to that mode's mean. The primary metric is
    the total variation between these weights and the true ones (1/4 each); the second is the estimate of
    ``KL(p* ‖ p_θ) = E_{p*}[log p* + U] + log Z_θ``. Every draw enters with its images under the sign changes
    that permute the modes (``n_eval / 8`` draws from each half of ``q``), so the mode weights of any model with
    the target's symmetries (``p*`` itself, the initial Gaussian) come out exactly equal whatever ``n_eval``;
    the KL estimate carries a Monte Carlo error (below ``10⁻³`` nats at ``p*`` for ``n_eval = 4000``).
    """

    primary = "mode_tv"
    exact = "importance sampling"
    flow_hidden = (32, 32, 32)

    def __init__(self, name: str, *, dim: int = 16, hidden: int = 128, lr: float = 3e-3, batch_size: int = 128,
                 n_eval: int = 20_000, gaussian_sigma: float = 0.3, device: torch.device | str = "cpu") -> None:
        super().__init__(name, lr=lr, batch_size=batch_size, device=device)
        self.target: GaussianMixture = paper_mixture("high_dim", dim=dim)
        self.dim, self.hidden = dim, check_int(hidden, "hidden", minimum=1)
        self.gaussian_sigma = check_positive(gaussian_sigma, "gaussian_sigma")
        self.base_std = self.target.max_marginal_std()
        self.description = f"4 Gaussians in {dim} dimensions, equal weights"
        generator = torch.Generator().manual_seed(4)
        per_mode = max(check_int(n_eval, "n_eval", minimum=1) // 8, 1)
        # The sign changes x -> -x and (first half) -> -(first half) permute the four means; every draw enters
        # with its three images, so a model with the target's symmetries gets exactly equal mode weights.
        half = torch.cat([-torch.ones(dim // 2), torch.ones(dim - dim // 2)])

        def orbit(x: Tensor) -> Tensor:
            return torch.cat([x, -x, x * half, -x * half])

        from_target = orbit(self.target.means[0] + torch.randn(per_mode, dim, generator=generator))
        from_base = orbit(self.base_std * torch.randn(per_mode, dim, generator=generator))
        points = torch.cat([from_target, from_base])
        log_target = self.target.log_prob(points.double())
        var = self.base_std**2
        log_base = -0.5 * (points.double().pow(2).sum(1) / var + dim * math.log(2 * math.pi * var))
        self.n_target = len(from_target)
        self.eval_points = points.to(self.device)
        self.eval_log_prob = log_target.to(self.device)
        self.eval_log_q = (torch.logaddexp(log_target, log_base) - math.log(2)).to(self.device)
        self.nearest = torch.cdist(points, self.target.means).argmin(1).to(self.device)

    def batches(self) -> Callable[[], Tensor]:
        return lambda: self.target.sample(self.batch_size)[0].to(self.device)

    def evaluate(self, energy: nn.Module) -> dict[str, float]:
        check_energy(energy)
        with torch.no_grad():
            energies = torch.cat([energy(chunk) for chunk in self.eval_points.split(8192)]).double()
        log_r = -energies - self.eval_log_q
        weights = torch.zeros(4, dtype=torch.float64, device=self.device).index_add_(
            0, self.nearest, torch.softmax(log_r, 0))
        log_z = torch.logsumexp(log_r, 0) - math.log(len(log_r))
        kl = (self.eval_log_prob + energies)[: self.n_target].mean() + log_z
        return {"mode_tv": 0.5 * (weights - 0.25).abs().sum().item(), "kl": kl.item()}
