"""Binary benchmark tasks: a Gray-coded toy small enough to enumerate (exact KL), Gray-coded 2spirals in 32 and
256 bits, an Ising model with known couplings and binarised 8×8 digits."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ebmlib.bench.base import Task, check_energy
from ebmlib.data import (
    MAX_ENUMERATION_DIM,
    TOY_NAMES,
    GrayCode,
    IsingLattice,
    all_binary_states,
    load_digits_levels,
    sample_toy,
    toy_code_probs,
)
from ebmlib.metrics import ais_log_partition, enumerated_log_probs, log_rmse, mmd_hamming
from ebmlib.nets import BernoulliTiltedEnergy, IsingEnergy, MLPEnergy
from ebmlib.samplers import gibbs_binary
from ebmlib.train import tensor_batches
from ebmlib.utils import check_int, check_positive, grid_2d

_CELL_MASS_TOYS = ("8gaussians", "9gaussians", "checkerboard")  # the toys of toy_code_probs


def _uniform_bits(n: int, dim: int, device: torch.device) -> Tensor:
    return torch.randint(0, 2, (n, dim), device=device).float()


def _fixed_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference_code(toy: str, n_bits: int) -> GrayCode:
    """The papers' code of a toy: ``f_scale`` from a reference draw of 10,000 points."""
    return GrayCode.from_samples(sample_toy(toy, 10_000, generator=_fixed_generator(0)), n_bits=n_bits)


class BinaryTask(Task):
    """Shared parts of the binary tasks: uniform chain starts and the Bernoulli noise of ED-Bern."""

    kind = "binary"
    bernoulli_epsilon = 0.1

    def init_states(self, n: int) -> Tensor:
        return _uniform_bits(check_int(n, "n", minimum=1), self.dim, self.device)


class ExactCodeTask(BinaryTask):
    """An analytic 2D toy Gray-coded in ``2 · n_bits <= 20`` bits: every state is enumerable, KL is exact.

    The data distribution is :func:`~ebmlib.data.toy_code_probs` (the toy's exact mass in each code's cell)
    and batches are drawn from it directly. The model's normalised distribution over all ``2**dim`` states is
    one batched pass (:func:`~ebmlib.metrics.enumerated_log_probs`), so ``KL(p_data ‖ p_θ)`` (primary) and the
    total variation are exact.
    """

    primary = "kl"
    exact = "exact: all states enumerated"

    def __init__(self, name: str, *, toy: str = "8gaussians", n_bits: int = 8, hidden: int = 64, lr: float = 2e-3,
                 batch_size: int = 128, device: torch.device | str = "cpu") -> None:
        super().__init__(name, lr=lr, batch_size=batch_size, device=device)
        if toy not in _CELL_MASS_TOYS:
            raise ValueError(f"toy must be one of {_CELL_MASS_TOYS} (closed-form cell masses), got {toy!r}")
        if check_int(n_bits, "n_bits", minimum=1) > MAX_ENUMERATION_DIM // 2:
            raise ValueError(f"n_bits must be <= {MAX_ENUMERATION_DIM // 2} (2 · n_bits bits are enumerated), "
                             f"got {n_bits}")
        self.code = _reference_code(toy, n_bits)
        self.dim, self.hidden, self.grad_clip = self.code.dim, check_int(hidden, "hidden", minimum=1), 1.0
        self.description = f"{toy} Gray-coded in {self.dim} bits ({2**self.dim:,} states)"
        self.probs = toy_code_probs(toy, self.code).to(self.device)
        self.states = all_binary_states(self.dim, device=self.device)

    def make_energy(self) -> nn.Module:
        return MLPEnergy(self.dim, hidden=self.hidden, depth=3).to(self.device)

    def batches(self) -> Callable[[], Tensor]:
        return lambda: self.states[torch.multinomial(self.probs, self.batch_size, replacement=True)]

    def evaluate(self, energy: nn.Module) -> dict[str, float]:
        log_q = enumerated_log_probs(check_energy(energy), self.dim, device=self.device)
        p = self.probs
        kl = torch.where(p > 0, p * (p.log() - log_q), torch.zeros_like(p)).sum()
        return {"kl": kl.item(), "tv": 0.5 * (p - log_q.exp()).abs().sum().item()}


class CodedToyTask(BinaryTask):
    """A 2D toy Gray-coded in ``dim = 2 · n_bits`` bits (32: the papers' toys; 256: RMwGGIS's Figure 3).

    Metrics, all on held-out points (lower is better):

    * ``grid_nll``: the energy decoded to the plane — every cell of an ``n_grid²`` grid over ``[-4, 4]²`` coded
      and normalised over the grid — scored by the mean negative log-probability of the cells holding the test
      points, relative to the uniform grid (0: no better than uniform). Exact for that grid model.
    * ``ais_nll`` (when ``ais_steps > 0``): test NLL in nats with ``log Z`` from
      :func:`~ebmlib.metrics.ais_log_partition` (a gold standard as the steps grow; biased low).
    * ``mmd`` (when ``n_mmd > 0``): exp-Hamming MMD² of Gibbs samples from uniform bits against test codes.
    """

    exact = "grid model exact; AIS for log Z"

    def __init__(self, name: str, *, toy: str = "2spirals", n_bits: int = 16, hidden: int = 128, lr: float = 2e-3,
                 batch_size: int = 128, n_test: int = 2000, n_grid: int = 100, ais_steps: int = 0,
                 ais_chains: int = 100, n_mmd: int = 0, gibbs_sweeps: int = 20,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(name, lr=lr, batch_size=batch_size, device=device)
        if toy not in TOY_NAMES:
            raise ValueError(f"toy must be one of {TOY_NAMES}, got {toy!r}")
        for key, value, minimum in (("n_test", n_test, 1), ("n_grid", n_grid, 2), ("ais_steps", ais_steps, 0),
                                    ("ais_chains", ais_chains, 1), ("n_mmd", n_mmd, 0),
                                    ("gibbs_sweeps", gibbs_sweeps, 1)):
            check_int(value, key, minimum=minimum)
        if n_mmd > n_test:
            raise ValueError(f"n_mmd must be <= n_test={n_test} (samples are compared with test codes), got {n_mmd}")
        self.toy, self.code = toy, _reference_code(toy, n_bits)
        self.dim, self.hidden, self.grad_clip = self.code.dim, check_int(hidden, "hidden", minimum=1), 1.0
        self.primary = "ais_nll" if ais_steps else "grid_nll"
        self.description = f"{toy} Gray-coded in {self.dim} bits"
        test = sample_toy(toy, n_test, generator=_fixed_generator(1)).to(self.device)
        self.test_points, self.test = test, self.code.encode(test)
        reference = self.code.encode(sample_toy(toy, 10_000, generator=_fixed_generator(2)).to(self.device))
        self.base_probs = reference.mean(0) * 0.98 + 0.01  # AIS base: the clipped data mean (the ED authors')
        self.n_grid, self.ais_steps, self.ais_chains = n_grid, ais_steps, ais_chains
        self.n_mmd, self.gibbs_sweeps = n_mmd, gibbs_sweeps

    def make_energy(self) -> nn.Module:
        return MLPEnergy(self.dim, hidden=self.hidden, depth=3).to(self.device)

    def batches(self) -> Callable[[], Tensor]:
        return lambda: self.code.encode(sample_toy(self.toy, self.batch_size, device=self.device))

    def grid_nll(self, energy: nn.Module, lim: float = 4.0) -> float:
        """``grid_nll`` of the class docstring."""
        check_energy(energy)
        points, _ = grid_2d(lim, self.n_grid, device=self.device)
        inside = points.clamp(-self.code.f_scale, self.code.f_scale)
        with torch.no_grad():
            neg_energy = torch.cat([-energy(self.code.encode(chunk)) for chunk in inside.split(8192)]).double()
        log_p = (neg_energy - torch.logsumexp(neg_energy, 0)).view(self.n_grid, self.n_grid)
        cell = ((self.test_points + lim) / (2 * lim) * self.n_grid).long().clamp(0, self.n_grid - 1)
        return -(log_p[cell[:, 1], cell[:, 0]].mean() + 2 * math.log(self.n_grid)).item()

    def evaluate(self, energy: nn.Module) -> dict[str, float]:
        metrics = {"grid_nll": self.grid_nll(check_energy(energy))}
        if self.ais_steps:
            log_z = ais_log_partition(energy, self.base_probs, n_chains=self.ais_chains, n_steps=self.ais_steps)
            with torch.no_grad():
                metrics["ais_nll"] = (energy(self.test).double().mean() + log_z).item()
        if self.n_mmd:
            start = _uniform_bits(self.n_mmd, self.dim, self.device)
            samples = gibbs_binary(energy, start, n_sweeps=self.gibbs_sweeps)
            metrics["mmd"] = mmd_hamming(samples, self.test[: self.n_mmd], kernel="exp").item()
        return {self.primary: metrics.pop(self.primary), **metrics}


class IsingTask(BinaryTask):
    """Learning the couplings ``J = σ A`` of a periodic ``side × side`` lattice Ising model from Gibbs samples.

    The model is :class:`~ebmlib.nets.IsingEnergy` with an ℓ1 penalty ``l1 · ‖Ĵ‖₁`` added to every method's
    loss, as in chapters 1 and 3; the primary metric is the log-RMSE between ``Ĵ`` and ``J`` (exact truth).
    """

    primary = "log_rmse"
    exact = "exact: the true couplings"
    bernoulli_epsilon = 0.01

    def __init__(self, name: str, *, side: int = 10, sigma: float = 0.25, n_data: int = 2000, sweeps: int = 300,
                 l1: float = 1e-3, lr: float = 3e-3, batch_size: int = 100, device: torch.device | str = "cpu") -> None:
        super().__init__(name, lr=lr, batch_size=batch_size, device=device)
        self.lattice = IsingLattice(check_int(side, "side", minimum=3), sigma)
        check_int(sweeps, "sweeps", minimum=1)
        if batch_size > check_int(n_data, "n_data", minimum=1):
            raise ValueError(f"batch_size must be <= n_data={n_data}, got {batch_size}")
        self.dim, self.l1 = self.lattice.dim, 0.0 if l1 == 0 else check_positive(l1, "l1")
        self.description = f"Ising model, {side}×{side} periodic lattice, σ = {sigma} ({self.dim} spins)"
        self.data = self.lattice.sample(n_data, sweeps, generator=_fixed_generator(3), device=self.device)
        self.coupling = self.lattice.J.to(self.device)

    def make_energy(self) -> nn.Module:
        return IsingEnergy(self.dim).to(self.device)

    def batches(self) -> Callable[[], Tensor]:
        return tensor_batches(self.data, self.batch_size)

    def penalty(self, energy: nn.Module) -> Tensor:
        return self.l1 * check_energy(energy, attributes=("coupling",)).coupling.abs().sum()

    def evaluate(self, energy: nn.Module) -> dict[str, float]:
        coupling = check_energy(energy, attributes=("coupling",)).coupling
        return {"log_rmse": log_rmse(coupling.detach(), self.coupling).item()}


class DigitsTask(BinaryTask):
    """scikit-learn's 8×8 digits binarised at level 8 (64 bits), as in chapter 3; test NLL by AIS (primary).

    The energy is an MLP on top of the Bernoulli base (:class:`~ebmlib.nets.BernoulliTiltedEnergy`) of the
    clipped training mean, which is also AIS's starting distribution. Chains start from that base.
    """

    primary = "ais_nll"
    exact = "AIS for log Z"
    bernoulli_epsilon = 0.05

    def __init__(self, name: str, *, hidden: int = 128, lr: float = 1e-3, batch_size: int = 100,
                 ais_steps: int = 1000, ais_chains: int = 200, device: torch.device | str = "cpu") -> None:
        super().__init__(name, lr=lr, batch_size=batch_size, device=device)
        self.dim, self.hidden = 64, check_int(hidden, "hidden", minimum=1)
        self.ais_steps, self.ais_chains = check_int(ais_steps, "ais_steps", minimum=1), check_int(ais_chains,
                                                                                               "ais_chains", minimum=1)
        train, _, test, _ = load_digits_levels(test_fraction=0.2, seed=0)
        self.data = (train.flatten(1) >= 8).float().to(self.device)
        if batch_size > len(self.data):
            raise ValueError(f"batch_size must be <= {len(self.data)} (the training digits), got {batch_size}")
        self.test = (test.flatten(1) >= 8).float().to(self.device)
        self.base_probs = self.data.mean(0) * 0.98 + 0.01
        self.description = "8×8 digits binarised (64 bits)"

    def make_energy(self) -> nn.Module:
        return BernoulliTiltedEnergy(MLPEnergy(64, hidden=self.hidden, depth=2), self.base_probs).to(self.device)

    def init_states(self, n: int) -> Tensor:
        return (torch.rand(check_int(n, "n", minimum=1), self.dim, device=self.device) < self.base_probs).float()

    def batches(self) -> Callable[[], Tensor]:
        return tensor_batches(self.data, self.batch_size)

    def evaluate(self, energy: nn.Module) -> dict[str, float]:
        log_z = ais_log_partition(check_energy(energy), self.base_probs, n_chains=self.ais_chains,
                                  n_steps=self.ais_steps)
        with torch.no_grad():
            return {"ais_nll": (energy(self.test).double().mean() + log_z).item()}
