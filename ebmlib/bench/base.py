"""What a benchmark task is: a data sampler, a fresh energy network, and an evaluation whose primary metric has
an exact (or gold-standard) value, so that methods are compared on the truth rather than on their own samples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ebmlib.utils import check_device, check_int, check_positive

TASK_KINDS = ("binary", "continuous")
"""Event spaces of :class:`~ebmlib.bench.Task`: bits ``{0, 1}^dim`` stored as floats, or ``R^dim``."""


class Task:
    """A density-estimation task on which every training method of its kind is compared.

    Subclasses set the attributes below in ``__init__`` and implement :meth:`make_energy`, :meth:`batches`
    and :meth:`evaluate`. Everything random in :meth:`make_energy` and :meth:`batches` uses the global torch
    generator, so :func:`ebmlib.utils.seed_everything` makes a run reproducible; held-out data are drawn once,
    at construction, with fixed generators, so every run is scored on the same points.

    Attributes
    ----------
    name, description
        Short name (the key of :data:`~ebmlib.bench.TASKS`) and one line for tables.
    kind
        One of :data:`~ebmlib.bench.TASK_KINDS`.
    dim
        Number of coordinates of an event.
    primary
        Key of the primary metric in :meth:`evaluate`'s result; lower is better for every primary metric.
    exact
        What the primary metric is measured against, for tables (e.g. "exact, 2^16 states enumerated").
    device
        Where data, energies and evaluation live.
    lr, batch_size, grad_clip
        Adam learning rate, data points per step and gradient-norm clip shared by all methods (a method may
        override the learning rate, see :class:`~ebmlib.bench.Training`).
    """

    name: str
    description: str
    kind: str
    dim: int
    primary: str
    exact: str
    device: torch.device
    lr: float = 1e-3
    batch_size: int = 128
    grad_clip: float | None = None

    def __init__(self, name: str, *, lr: float, batch_size: int, device: torch.device | str) -> None:
        """Check and set the settings every task has; each task class calls this first."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.name, self.device = name, check_device(device)
        self.lr, self.batch_size = check_positive(lr, "lr"), check_int(batch_size, "batch_size", minimum=1)

    def make_energy(self) -> nn.Module:
        """A freshly initialised energy ``(B, dim) -> (B,)`` on ``device``."""
        raise NotImplementedError

    def batches(self) -> Callable[[], Tensor]:
        """``next_batch()`` returning ``(batch_size, dim)`` training data on ``device``."""
        raise NotImplementedError

    def evaluate(self, energy: nn.Module) -> dict[str, float]:
        """The metrics of a trained energy, the primary one included; lower is better for the primary one."""
        raise NotImplementedError

    def init_states(self, n: int) -> Tensor:
        """``n`` starting states ``(n, dim)`` for persistent chains (uniform bits, or uniform on a box)."""
        raise NotImplementedError

    def penalty(self, energy: nn.Module) -> Tensor | None:
        """A regulariser added to every method's loss (e.g. an ℓ1 penalty on couplings), or ``None``."""
        return None


def check_energy(energy: Any, name: str = "energy", *, attributes: tuple[str, ...] = ()) -> nn.Module:
    """Return ``energy`` if it is a :class:`torch.nn.Module` with every attribute in ``attributes`` (what the
    tasks' evaluations take); raise ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(energy, nn.Module):
        raise ValueError(f"{name} must be an energy torch.nn.Module, got {type(energy).__name__}")
    missing = [a for a in attributes if not hasattr(energy, a)]
    if missing:
        raise ValueError(f"{name} must have {', '.join(attributes)}; {type(energy).__name__} lacks {missing[0]}")
    return energy


def check_task(task: Any, name: str = "task") -> Task:
    """Return ``task`` if it has what a :class:`Task` has (a subclass, or any object with its attributes, such as
    a wrapper); raise ``ValueError`` naming ``name`` otherwise."""
    needed = ("name", "kind", "dim", "device", "make_energy", "batches", "evaluate", "init_states", "penalty")
    missing = [a for a in needed if not hasattr(task, a)]
    if missing:
        raise ValueError(f"{name} must be a Task (see make_task); {type(task).__name__} lacks {missing[0]}")
    return task
