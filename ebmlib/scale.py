"""The scale a chapter runs at, the full-shape smoke run, and where resumable runs keep their checkpoints.

Every chapter has a ``SCALE`` parameter, one of :data:`~ebmlib.report.SCALES`: ``ci`` (seconds, for the tests),
``book`` (the rendered book, minutes on a CPU) and ``full`` (the papers' settings, for a GPU). Three environment
variables change how a chapter runs without editing it:

``EBMLIB_SCALE``
    The default of ``SCALE`` (``book`` when unset).
``EBMLIB_SMOKE``
    ``1`` for the smoke run: a chapter at ``full`` keeps every shape of its ``full`` settings (dimensions,
    networks, batch sizes, buffer, chain and sample counts) but caps its iteration counts and chain lengths
    (:func:`~ebmlib.scale.smoke_cap`), so that every ``full`` code path runs in minutes on a CPU.
``EBMLIB_RUNS``
    The folder holding the run directories of resumable training (:func:`~ebmlib.scale.run_dir`); default
    ``runs`` inside the data cache (:func:`~ebmlib.data.data_home`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from ebmlib.data import data_home
from ebmlib.report import SCALES
from ebmlib.utils import check_int

_SMOKE_ENV = "EBMLIB_SMOKE"
_RUNS_ENV = "EBMLIB_RUNS"


def smoke_run() -> bool:
    """Whether this is the smoke run (``EBMLIB_SMOKE=1``); ``0`` or unset is a normal run."""
    value = os.environ.get(_SMOKE_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{_SMOKE_ENV} must be 0 or 1, got {value!r}")
    return value == "1"


def smoke_cap(settings: Mapping[str, Any], caps: Mapping[str, int]) -> dict[str, Any]:
    """``settings`` with each entry named in ``caps`` lowered to at most its cap in the smoke run.

    Outside the smoke run the settings are returned unchanged (as a new dict). Only counts of work — training
    iterations, sampler steps, chain lengths — belong in ``caps``; shapes stay as they are, so the smoke run
    allocates what ``full`` allocates.

    Examples
    --------
    >>> smoke_cap({"n_iters": 20_000, "batch_size": 256}, {"n_iters": 3})["batch_size"]
    256
    """
    if not isinstance(settings, Mapping):
        raise ValueError(f"settings must be a mapping, got {type(settings).__name__}")
    if not isinstance(caps, Mapping):
        raise ValueError(f"caps must be a mapping of setting names to counts, got {type(caps).__name__}")
    unknown = sorted(set(caps) - set(settings))
    if unknown:
        raise ValueError(f"caps names settings that do not exist: {unknown}")
    for name, cap in caps.items():
        check_int(cap, f"caps[{name!r}]", minimum=1)
    capped = dict(settings)
    if smoke_run():
        for name, cap in caps.items():
            capped[name] = min(capped[name], cap)
    return capped


def runs_home() -> Path:
    """The folder of run directories: ``EBMLIB_RUNS``, else ``<data home>/runs``."""
    value = os.environ.get(_RUNS_ENV)
    return Path(value).expanduser() if value else data_home() / "runs"


@cache
def _smoke_runs() -> Path:
    # A fresh folder per process: a smoke run must train, never find a finished run and skip it.
    return Path(tempfile.mkdtemp(prefix="ebmlib-smoke-runs-"))


def run_dir(chapter: str, experiment: str, scale: str) -> Path | None:
    """The run directory of one experiment of a chapter, for :func:`~ebmlib.train.fit`'s ``run_dir``.

    At ``full`` scale: ``<runs home>/<chapter>/<experiment>``, so re-running a chapter after a disconnect
    skips its finished experiments and continues the unfinished ones from their last checkpoint. In the smoke
    run, a fresh temporary folder per process instead (the checkpoints are written and timed, never reused).
    At ``ci`` and ``book`` scale: ``None`` (runs of seconds to minutes are not checkpointed).
    """
    for value, name in ((chapter, "chapter"), (experiment, "experiment")):
        if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
            raise ValueError(f"{name} must be a non-empty folder name, got {value!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if scale != "full":
        return None
    root = _smoke_runs() if smoke_run() else runs_home()
    return root / chapter / experiment
