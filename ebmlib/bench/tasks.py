"""The benchmark tasks by name, each with its settings at the three scales of the book.

``ci`` keeps every task small enough for a test run on two CPU cores, ``book`` is what the chapter shows,
``full`` uses the papers' sizes and longer evaluations (meant for a GPU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ebmlib.bench.base import Task
from ebmlib.bench.continuous import GridDensityTask, MixtureTask
from ebmlib.bench.discrete import CodedToyTask, DigitsTask, ExactCodeTask, IsingTask
from ebmlib.report import SCALES
from ebmlib.utils import check_device, get_device

# name -> (task class, fixed keywords, keywords at ci / book / full)
_CATALOGUE: dict[str, tuple[Callable[..., Task], dict[str, Any], tuple[dict[str, Any], ...]]] = {
    "gray16": (ExactCodeTask, {"toy": "8gaussians", "n_bits": 8},
               ({"hidden": 64}, {"hidden": 64}, {"hidden": 256})),
    "spirals32": (CodedToyTask, {"toy": "2spirals", "n_bits": 16},
                  ({"hidden": 64, "ais_steps": 100, "ais_chains": 50, "n_mmd": 200, "gibbs_sweeps": 5},
                   {"hidden": 128, "ais_steps": 1000, "ais_chains": 100, "n_mmd": 1000, "gibbs_sweeps": 20},
                   {"hidden": 256, "ais_steps": 10_000, "ais_chains": 500, "n_mmd": 4000, "gibbs_sweeps": 20})),
    "spirals128": (CodedToyTask, {"toy": "2spirals", "n_bits": 64},
                   ({"hidden": 64}, {"hidden": 128}, {"hidden": 256, "batch_size": 1024})),
    "spirals256": (CodedToyTask, {"toy": "2spirals", "n_bits": 128},
                   ({"hidden": 64}, {"hidden": 128}, {"hidden": 256, "batch_size": 1024})),
    "ising": (IsingTask, {"sigma": 0.25},
              ({"side": 6, "n_data": 500, "sweeps": 100}, {"side": 10, "n_data": 2000, "sweeps": 300},
               {"side": 25, "n_data": 2000, "sweeps": 10_000, "l1": 0.01, "lr": 1e-3})),
    "digits": (DigitsTask, {},
               ({"ais_steps": 100, "ais_chains": 50}, {"ais_steps": 1000, "ais_chains": 200},
                {"hidden": 256, "ais_steps": 30_000, "ais_chains": 500})),
    "8gaussians": (GridDensityTask, {"density": "8gaussians"},
                   ({"n_grid": 100}, {"n_grid": 200}, {"hidden": 128, "n_grid": 400})),
    "checkerboard": (GridDensityTask, {"density": "checkerboard"},
                     ({"n_grid": 100}, {"n_grid": 200}, {"hidden": 128, "n_grid": 400})),
    "rings": (GridDensityTask, {"density": "rings"},
              ({"n_grid": 100}, {"n_grid": 200}, {"hidden": 128, "n_grid": 400})),
    "fourmodes": (GridDensityTask, {"density": "four_modes"},
                  ({"n_grid": 100}, {"n_grid": 200}, {"hidden": 128, "n_grid": 400})),
    "mixture16": (MixtureTask, {"dim": 16},
                  ({"n_eval": 4000}, {"n_eval": 20_000}, {"n_eval": 200_000})),
}

TASKS: tuple[str, ...] = tuple(_CATALOGUE)
"""Names accepted by :func:`~ebmlib.bench.make_task`."""


def make_task(name: str, scale: str = "book", *, device: torch.device | str | None = None, **overrides: Any) -> Task:
    """Build the task ``name`` with its settings at ``scale`` (``ci``, ``book`` or ``full``) on ``device``.

    ``overrides`` replace single settings (e.g. ``side=8`` for ``ising``, ``n_bits=7`` for ``gray16``); see the
    task classes :class:`~ebmlib.bench.ExactCodeTask`, :class:`~ebmlib.bench.CodedToyTask`,
    :class:`~ebmlib.bench.IsingTask`, :class:`~ebmlib.bench.DigitsTask`, :class:`~ebmlib.bench.GridDensityTask`
    and :class:`~ebmlib.bench.MixtureTask` for what each setting means.
    """
    if name not in _CATALOGUE:
        raise ValueError(f"name must be one of {TASKS}, got {name!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    cls, fixed, by_scale = _CATALOGUE[name]
    settings = {**fixed, **by_scale[SCALES.index(scale)], **overrides}
    return cls(name, device=get_device() if device is None else check_device(device), **settings)
