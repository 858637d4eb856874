"""Plots shared by every chapter: 2D densities, samples, training curves and the "paper vs this book" table.

Each function draws on an ``ax`` it is given and returns the figure, so chapters compose panels freely;
:func:`set_style` is called once per notebook so that every chapter looks the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ebmlib.utils import EnergyFn, check_positive, check_tensor, grid_log_density

if TYPE_CHECKING:
    import pandas as pd


def set_style() -> None:
    """Apply the book's matplotlib style (white grid, readable fonts, tight layout)."""
    mpl.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "figure.constrained_layout.use": True,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
            "axes.titlesize": 11,
            "image.cmap": "viridis",
        }
    )


def _square_panel(ax: Axes, lim: float, title: str | None) -> None:
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.grid(False)
    if title:
        ax.set_title(title)


def plot_log_density(
    ax: Axes, log_density: Tensor, lim: float, *, title: str | None = None, colorbar: bool = False
) -> Figure:
    """Show ``exp(log_density)`` (shape ``(n, n)``, rows = y, as from :func:`ebmlib.utils.grid_log_density`)."""
    check_tensor(log_density, "log_density", ndim=2, finite=False)
    check_positive(lim, "lim")
    image = ax.imshow(
        log_density.detach().exp().cpu().numpy(), origin="lower", extent=(-lim, lim, -lim, lim), interpolation="nearest"
    )
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="density")
    _square_panel(ax, lim, title)
    return ax.figure


def plot_energy_density(
    ax: Axes, energy_fn: EnergyFn, lim: float = 4.0, n: int = 200, *, title: str | None = None, colorbar: bool = False
) -> Figure:
    """Heat map of the grid-normalised density ``exp(-E)`` of a 2D energy on ``[-lim, lim]²``."""
    return plot_log_density(ax, grid_log_density(energy_fn, lim, n), lim, title=title, colorbar=colorbar)


def plot_samples(
    ax: Axes,
    x: Tensor,
    lim: float = 4.0,
    *,
    title: str | None = None,
    kind: str = "hist",
    bins: int = 150,
    **kwargs: Any,
) -> Figure:
    """Draw 2D samples ``x`` of shape ``(N, 2)`` as a 2D histogram (``kind="hist"``) or a scatter plot."""
    check_tensor(x, "x", shape=(None, 2))
    points = x.detach().float().cpu().numpy()
    if kind == "hist":
        ax.hist2d(points[:, 0], points[:, 1], bins=bins, range=[[-lim, lim], [-lim, lim]], **kwargs)
    elif kind == "scatter":
        ax.scatter(points[:, 0], points[:, 1], s=kwargs.pop("s", 2), alpha=kwargs.pop("alpha", 0.5), **kwargs)
    else:
        raise ValueError(f"kind must be 'hist' or 'scatter', got {kind!r}")
    _square_panel(ax, lim, title)
    return ax.figure


def plot_history(
    ax: Axes, history: dict[str, Sequence[float]], keys: Sequence[str], *, title: str | None = None, logy: bool = False
) -> Figure:
    """Plot the curves ``history[key]`` against ``history["iteration"]`` (a :class:`~ebmlib.train.TrainResult`)."""
    for key in keys:
        if key not in history:
            raise ValueError(f"keys: {key!r} is not in history (has {sorted(history)})")
        ax.plot(history["iteration"], history[key], label=key)
    ax.set_xlabel("iteration")
    if logy:
        ax.set_yscale("log")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax.figure


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

    required = {"experiment", "metric", "paper", "ours"}
    for i, row in enumerate(rows):
        if not required <= set(row):
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
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)
