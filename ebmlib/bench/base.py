"""What a benchmark task is: a data sampler, a fresh energy network, and an evaluation whose primary metric has
an exact (or gold-standard) value, so that methods are compared on the truth rather than on their own samples."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

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
