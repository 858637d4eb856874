"""Every training method of the book, built from the library's own losses and samplers for any task of its kind.

A :class:`~ebmlib.bench.Method` turns a task and a fresh energy into a :class:`~ebmlib.bench.Training` (the
``loss_fn(model, batch)`` that :func:`ebmlib.train.fit` minimises, and optionally its own learning rate). The
settings are those of the chapter each method comes from, at its ``book`` scale; where a chapter used
different settings in 2D and in high dimension (chapter 4), the task's dimension picks them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ebmlib.bench.base import TASK_KINDS, Task, check_task
from ebmlib.flows import RealNVP
from ebmlib.losses import (
    BernoulliPerturbation,
    BitFlipPerturbation,
    EnergyDiscrepancy,
    FlowEBMLoss,
    GaussianPerturbation,
    PersistentContrastiveDivergence,
    SelfAdversarialLoss,
    ratio_matching,
    rmwggis,
)
from ebmlib.samplers import ReplayBuffer, gibbs_random_site, gwg_binary, langevin
from ebmlib.train import LossFn
from ebmlib.utils import EnergyFn, check_int, check_positive


@dataclass(frozen=True)
class Training:
    """What a method contributes to a run: the loss for :func:`ebmlib.train.fit` and, if it needs one, its own
    learning rate (``None``: the task's)."""

    loss_fn: LossFn
    lr: float | None = None

    def __post_init__(self) -> None:
        if not callable(self.loss_fn):
            raise ValueError(f"loss_fn must be callable as loss_fn(model, batch), got {type(self.loss_fn).__name__}")
        if self.lr is not None:
            check_positive(self.lr, "lr")


@dataclass(frozen=True)
class Method:
    """A training method: how to build its loss for a task, and what it is, for tables.

    Attributes
    ----------
    name
        Key of :data:`~ebmlib.bench.METHODS`.
    kind
        The task kind it applies to (:data:`~ebmlib.bench.TASK_KINDS`).
    family
        "maximum likelihood", "ratio matching", "energy discrepancy" or "noise-free".
    chapter
        The chapter that introduces it.
    needs_mcmc
        Whether a training step runs a Markov chain on the model.
    step
        What one training step does, in a few words.
    build
        ``build(task, energy) -> Training``.
    """

    name: str
    kind: str
    family: str
    chapter: int
    needs_mcmc: bool
    step: str
    build: Callable[[Task, nn.Module], Training]

    def __post_init__(self) -> None:
        for key in ("name", "family", "step"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ValueError(f"{key} must be a non-empty string, got {getattr(self, key)!r}")
        if self.kind not in TASK_KINDS:
            raise ValueError(f"kind must be one of {TASK_KINDS}, got {self.kind!r}")
        check_int(self.chapter, "chapter", minimum=0)
        if not isinstance(self.needs_mcmc, bool):
            raise ValueError(f"needs_mcmc must be a bool, got {self.needs_mcmc!r}")
        if not callable(self.build):
            raise ValueError(f"build must be callable as build(task, energy), got {type(self.build).__name__}")


def _gwg_states(energy_fn: EnergyFn, x: Tensor, n_steps: int) -> Tensor:
    return gwg_binary(energy_fn, x, n_steps)[0]


def _pcd_binary(sampler: Callable[[EnergyFn, Tensor], Tensor], task: Task, energy: nn.Module) -> Training:
    # Pure persistent chains (no re-initialisation), 1,000 of them, as in chapter 3's digits.
    return Training(PersistentContrastiveDivergence(ReplayBuffer(task.init_states, 1000, reinit_prob=0.0), sampler))


def _ed(perturbation: Callable[[Task], object], task: Task, energy: nn.Module, n_negatives: int = 32) -> Training:
    # The papers' M = 32 negatives per data point; a variant with another M is
    # ``replace(method, build=partial(method.build, n_negatives=M))``.
    return Training(EnergyDiscrepancy(perturbation(task), n_negatives=n_negatives, w=1.0))


def _pcd_langevin(task: Task, energy: nn.Module) -> Training:
    # Chapter 0: a replay buffer of 10,000 chains, 5 % restarted, 20 Langevin steps of h = 0.005, α = 0.1.
    buffer = ReplayBuffer(task.init_states, 10_000, reinit_prob=0.05)
    return Training(PersistentContrastiveDivergence(buffer, partial(langevin, n_steps=20, step_size=0.005),
                                                    l2_reg=0.1))


def _flow(task: Task) -> RealNVP:
    return RealNVP(task.dim, 4, task.flow_hidden, base_std=task.base_std).to(task.device)


def _flow_ebm(method: str, task: Task, energy: nn.Module) -> Training:
    """Chapter 4's samplers at its `book` settings: Tables 4-5 in 2D, Table 7 (shortened) in higher dimension."""
    batch, flow = task.batch_size, _flow(task)
    if method == "ula":
        n_steps, step_size = (128, 0.125**2 / 2) if task.dim == 2 else (64, 1e-3)
        pool = task.init_states(8192)
        return Training(FlowEBMLoss("ula", pool, n_chains=batch, n_steps=n_steps, step_size=step_size), lr=1e-2)
    with torch.no_grad():
        pool = flow.sample(8192 if task.dim == 2 else 1024)
    if method == "nt":
        loss = FlowEBMLoss("nt", pool, n_chains=batch, n_steps=32, step_size=0.01, flow=flow,
                           flow_optimizer=torch.optim.Adam(flow.parameters(), lr=1e-3))
        return Training(loss, lr=1e-3)
    if task.dim == 2:  # 32 moves: 4 cycles of 1 i-SIR (64 particles) + 7 MALA, every cycle's end a negative
        cycles, n_local, n_particles, flow_steps, lr = 4, 7, 64, 1, 1e-2
    else:  # 4 cycles of 1 i-SIR (128 particles) + 8 MALA, 4 flow steps per iteration, both at 3e-3
        cycles, n_local, n_particles, flow_steps, lr = 4, 8, 128, 4, 3e-3
    cycle = n_local + 1
    loss = FlowEBMLoss("flowmc", pool, n_chains=max(batch // cycles, 1), n_steps=cycles * cycle, step_size=0.01,
                       flow=flow, flow_optimizer=torch.optim.Adam(flow.parameters(), lr=lr), n_local=n_local,
                       n_particles=n_particles, record_steps=[cycle * (k + 1) for k in range(cycles)],
                       flow_steps=flow_steps)
    return Training(loss, lr=lr)


# Chapter 5's toy settings: integration time T = 0.2 from x₀ ~ N(0, I), 8 steps.
_NOISE_FREE_T, _NOISE_FREE_STEPS = 0.2, 8


def _noise_free(generator: bool, task: Task, energy: nn.Module) -> Training:
    h = _NOISE_FREE_T / _NOISE_FREE_STEPS
    if generator:  # the generator term differentiates through the unrolled (Euler) path
        return Training(SelfAdversarialLoss("euler", generator=True, n_steps=_NOISE_FREE_STEPS, step_size=h))
    return Training(SelfAdversarialLoss("ode", T=_NOISE_FREE_T, method="rk4", step_size=h))


def _binary_methods() -> list[Method]:
    methods = []
    for k in (5, 25):
        methods.append(Method(f"PCD-Gibbs-{k}", "binary", "maximum likelihood", 1, True,
                              f"{k} random-site Gibbs updates of persistent chains",
                              partial(_pcd_binary, partial(gibbs_random_site, n_steps=k))))
        methods.append(Method(f"PCD-GwG-{k}", "binary", "maximum likelihood", 1, True,
                              f"{k} Gibbs-with-Gradients moves of persistent chains",
                              partial(_pcd_binary, partial(_gwg_states, n_steps=k))))
    rm = [("RM", "all d neighbours of each point", ratio_matching),
          ("RMwGGIS-biased", "10 distinct neighbours from the gradient proposal",
           partial(rmwggis, n_samples=10, estimator="biased", replacement=False)),
          ("RMwGGIS-unbiased", "10 neighbours from the gradient proposal, importance-weighted",
           partial(rmwggis, n_samples=10, estimator="unbiased")),
          ("RMwRAND", "10 uniformly drawn neighbours, importance-weighted",
           partial(rmwggis, n_samples=10, estimator="unbiased", proposal="uniform"))]
    methods += [Method(name, "binary", "ratio matching", 1, False, step, lambda task, energy, f=f: Training(f))
                for name, step, f in rm]
    methods.append(Method("ED-Bern", "binary", "energy discrepancy", 3, False,
                          "32 negatives by Bernoulli bit flips of noised data",
                          partial(_ed, lambda task: BernoulliPerturbation(task.bernoulli_epsilon))))
    methods.append(Method("ED-Grid", "binary", "energy discrepancy", 3, False,
                          "32 negatives one bit flip from noised data",
                          partial(_ed, lambda task: BitFlipPerturbation())))
    return methods


def _continuous_methods() -> list[Method]:
    return [
        Method("PCD-Langevin", "continuous", "maximum likelihood", 0, True,
               "20 Langevin steps of replay-buffer chains", _pcd_langevin),
        Method("ULA-EBM", "continuous", "maximum likelihood", 4, True,
               "128 (2D) or 64 Langevin steps of persistent chains", partial(_flow_ebm, "ula")),
        Method("NT-EBM", "continuous", "maximum likelihood", 4, True,
               "32 MALA steps in a flow's latent space, a flow step", partial(_flow_ebm, "nt")),
        Method("flowMC-EBM", "continuous", "maximum likelihood", 4, True,
               "4 cycles of i-SIR through a flow + MALA, flow steps", partial(_flow_ebm, "flowmc")),
        Method("NF-ODE", "continuous", "noise-free", 5, False,
               "8 RK4 steps of the gradient flow from noise", partial(_noise_free, False)),
        Method("NF-ODE+generator", "continuous", "noise-free", 5, False,
               "8 Euler steps, backpropagated for the generator term", partial(_noise_free, True)),
        Method("ED-Gauss", "continuous", "energy discrepancy", 3, False,
               "32 negatives by Gaussian noise of noised data",
               partial(_ed, lambda task: GaussianPerturbation(task.gaussian_sigma))),
    ]


METHODS: dict[str, Method] = {m.name: m for m in (*_binary_methods(), *_continuous_methods())}
"""Every method, by name; :func:`~ebmlib.bench.methods_for` lists those that apply to a task."""


def check_method(method: Any, name: str = "method") -> Method:
    """``method`` as a :class:`Method`: one, or the name of one in :data:`METHODS`; else a ``ValueError`` naming
    ``name``."""
    if isinstance(method, str) and method in METHODS:
        return METHODS[method]
    if not isinstance(method, Method):
        raise ValueError(f"{name} must be a Method or one of {sorted(METHODS)}, got {method!r}")
    return method


def check_methods(methods: Any) -> list[Method]:
    """A non-empty sequence of :class:`Method` objects or names in :data:`METHODS`, as methods."""
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise ValueError(f"methods must be a non-empty sequence of methods or method names, got {methods!r}")
    return [check_method(method, f"methods[{i}]") for i, method in enumerate(methods)]


def methods_for(task: Task) -> list[str]:
    """Names of the methods of :data:`~ebmlib.bench.METHODS` that apply to ``task`` (its kind), in order."""
    return [name for name, method in METHODS.items() if method.kind == check_task(task).kind]
