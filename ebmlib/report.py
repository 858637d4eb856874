"""What a chapter reports: the "paper vs this book" table and numbers glued into the prose."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    import pandas as pd

_SCALES = ("ci", "book", "full")  # the settings a chapter runs at


def paper_vs_ours(rows: Sequence[dict[str, Any]], *, scale: str, hardware: str) -> pd.DataFrame:
    """Build the "paper vs this book" table every chapter ends with.

    Parameters
    ----------
    rows
        One dict per result with keys ``experiment``, ``metric``, ``paper`` (a number, a string, or ``None``
        when the paper has no such number) and ``ours`` (measured in this run).
    scale
        The ``SCALE`` the numbers come from (``ci``, ``book`` or ``full``).
    hardware
        Where they were measured, e.g. from :func:`ebmlib.utils.describe_hardware`.
    """
    import pandas as pd

    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not rows:
        raise ValueError(f"rows must be a non-empty sequence of dicts, got {rows!r}")
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")
    if not isinstance(hardware, str) or not hardware:
        raise ValueError(f"hardware must be a non-empty string, got {hardware!r}")
    required = {"experiment", "metric", "paper", "ours"}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not required <= set(row):
            raise ValueError(f"rows[{i}] must have keys {sorted(required)}, got {sorted(row)}")
    return pd.DataFrame(
        {
            "experiment": [r["experiment"] for r in rows],
            "metric": [r["metric"] for r in rows],
            "paper": ["—" if r["paper"] is None else _fmt(r["paper"]) for r in rows],
            "this book": [_fmt(r["ours"]) for r in rows],
            "scale": scale,
            "hardware": hardware,
        }
    )


def _fmt(value: Any) -> str:
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def glue(name: str, value: Any, *, display: bool = True) -> None:
    """Record ``value`` under ``name`` for the book's ``{glue:text}`` roles, so prose numbers come from the run.

    Uses :func:`myst_nb.glue` when the book tools are installed; elsewhere (e.g. in Colab) it only displays
    the value when ``display`` is true.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)
