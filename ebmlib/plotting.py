"""Plots shared by every chapter: 2D densities, samples, training curves, image grids and graph drawings.

Each function draws on an ``ax`` it is given and returns the figure, so chapters compose panels freely;
:func:`~ebmlib.plotting.set_style` is called once per notebook so that every chapter looks the same.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import networkx as nx
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ebmlib.data.graphs import check_graph
from ebmlib.data.images import inverse_logit_transform
from ebmlib.utils import EnergyFn, check_int, check_positive, check_tensor, grid_log_density


def set_style() -> None:
    """Apply the book's matplotlib style (white grid, readable fonts, tight layout).

    In Jupyter (and so in the built book) figures are also shown as retina PNGs: twice the pixels in each
    direction, displayed at the same size, so that they stay sharp on high-resolution screens and when zoomed.
    """
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
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    if shell is not None:
        from matplotlib_inline.backend_inline import set_matplotlib_formats  # ships with every Jupyter kernel

        set_matplotlib_formats("retina")


def _check_axes(ax: Any) -> Axes:
    if not isinstance(ax, Axes):
        raise ValueError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return ax


def _square_panel(ax: Axes, lim: float, title: str | None) -> None:
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.grid(False)
    if title:
        ax.set_title(title)


class _LogMinorLocator(mpl.ticker.Locator):
    """Minor ticks of a log axis at 2, 3, …, 9 times powers of 10; on an axis spanning less than one such step,
    the ticks of a linear axis instead (so that at least two ticks exist)."""

    def __call__(self) -> list[float]:
        low, high = sorted(self.axis.get_view_interval())
        if low <= 0:
            return []
        ticks = mpl.ticker.LogLocator(subs=np.arange(2, 10)).tick_values(low, high)
        shown = sum(low <= t <= high for t in ticks) + sum(low <= t <= high for t in self.axis.get_majorticklocs())
        if shown < 2:
            return [t for t in mpl.ticker.MaxNLocator(4).tick_values(low, high) if t > 0]
        return list(ticks)


def _plain_log_label(axis: mpl.axis.Axis, value: float, minor: bool) -> str:
    low, high = sorted(axis.get_view_interval())
    if value <= 0 or low <= 0:
        return ""
    mantissa = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if not minor or high / low < 10 or mantissa in (2, 5) else ""


def plain_log_ticks(axis: mpl.axis.Axis) -> None:
    """Label a logarithmic axis with plain numbers (0.5, not 5×10⁻¹) that exist whatever its range.

    Powers of 10 are always labelled; the other multiples (2, 3, …, 9 times a power of 10) at 2 and 5 only when
    the axis spans a decade or more, and all of them when it spans less, so that a short axis still shows
    numbers. An axis too short to hold two such ticks gets the ticks of a linear axis.
    """
    if not isinstance(axis, mpl.axis.Axis):
        raise ValueError(f"axis must be a matplotlib Axis (ax.xaxis or ax.yaxis), got {type(axis).__name__}")
    axis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: _plain_log_label(axis, v, minor=False)))
    axis.set_minor_locator(_LogMinorLocator())
    axis.set_minor_formatter(mpl.ticker.FuncFormatter(lambda v, _: _plain_log_label(axis, v, minor=True)))


def plot_log_density(
    ax: Axes, log_density: Tensor, lim: float, *, title: str | None = None, colorbar: bool = False
) -> Figure:
    """Show ``exp(log_density)`` (shape ``(n, n)``, rows = y, as from :func:`ebmlib.utils.grid_log_density`)."""
    _check_axes(ax)
    check_tensor(log_density, "log_density", ndim=2, floating=True, finite=False)
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
    _check_axes(ax)
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
    _check_axes(ax)
    check_tensor(x, "x", shape=(None, 2))
    check_positive(lim, "lim")
    check_int(bins, "bins", minimum=1)
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
    _check_axes(ax)
    if not isinstance(history, Mapping):
        raise ValueError(f"history must map names to sequences of values, got {type(history).__name__}")
    if isinstance(keys, str) or not keys:
        raise ValueError(f"keys must be a non-empty sequence of names in history, got {keys!r}")
    for key in keys:
        if key not in history:
            raise ValueError(f"keys: {key!r} is not in history (has {sorted(history)})")
        ax.plot(history["iteration"], history[key], label=key)
    ax.set_xlabel("iteration")
    if logy:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax.figure


def plot_budget_study(ax: Axes, budgets: Sequence[float], values: Any, *, label: str,
                      paper: float | None = None, xlabel: str = "iterations", logy: bool = False,
                      color: str | None = None) -> Figure:
    """One curve of a budget study: the mean over seeds of a claim's metric against the budget, the band from
    the lowest to the highest seed, and the paper's value as a dashed line.

    ``values`` is array-like ``(n_seeds, n_budgets)``; the budget axis is logarithmic, its ticks the budgets.
    ``color`` fixes the curve's colour (default: the axes' next one), e.g. one per method across panels.
    """
    _check_axes(ax)
    b = np.asarray(budgets, dtype=float)
    v = np.asarray(values, dtype=float)
    if b.ndim != 1 or len(b) < 1 or np.any(b <= 0):
        raise ValueError(f"budgets must be a non-empty sequence of positive numbers, got {budgets!r}")
    if v.ndim != 2 or v.shape[1] != len(b):
        raise ValueError(f"values must have shape (n_seeds, {len(b)}), got {v.shape}")
    if not isinstance(label, str) or not label:
        raise ValueError(f"label must be a non-empty string, got {label!r}")
    (line,) = ax.plot(b, v.mean(axis=0), "o-", label=label, color=color)
    ax.fill_between(b, v.min(axis=0), v.max(axis=0), color=line.get_color(), alpha=0.2, lw=0)
    if paper is not None:
        ax.axhline(paper, color=line.get_color(), ls="--", lw=1)
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.set_xticks(b, [f"{x:g}" for x in b])
    ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
    ax.set_xlabel(xlabel)
    return ax.figure


def image_grid(x_bar: Tensor, shape: tuple[int, int], *, nrow: int) -> np.ndarray:
    """Tile logit-space samples ``(N, H·W)`` into one ``[0, 1]`` array for ``imshow`` (``nrow`` images per row,
    one pixel of padding)."""
    check_tensor(x_bar, "x_bar", ndim=2, floating=True)
    check_int(nrow, "nrow", minimum=1)
    if isinstance(shape, str) or not isinstance(shape, Sequence) or len(shape) != 2:
        raise ValueError(f"shape must be a pair (height, width), got {shape!r}")
    h, w = (check_int(s, "shape", minimum=1) for s in shape)
    if x_bar.shape[1] != h * w:
        raise ValueError(f"x_bar must have {h * w} columns for shape {shape}, got {x_bar.shape[1]}")
    images = inverse_logit_transform(x_bar).view(-1, h, w).cpu().numpy()
    n_rows = math.ceil(len(images) / nrow)
    grid = np.ones((n_rows * (h + 1) + 1, nrow * (w + 1) + 1))
    for i, image in enumerate(images):
        r, c = divmod(i, nrow)
        grid[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + c * (w + 1): 1 + c * (w + 1) + w] = image
    return grid


def draw_graphs(graphs: Sequence[nx.Graph], axes: Sequence[Axes] | np.ndarray, *, seed: int = 0) -> Figure:
    """Draw ``graphs[i]`` on ``axes[i]`` (spring layout with a fixed ``seed``); spare axes are hidden.

    ``axes`` may be the array returned by ``plt.subplots``; returns the figure of the axes.
    """
    flat = list(np.asarray(axes, dtype=object).ravel())
    if len(flat) < len(graphs):
        raise ValueError(f"axes has {len(flat)} panels, fewer than the {len(graphs)} graphs")
    check_int(seed, "seed", minimum=0)
    for i, (graph, ax) in enumerate(zip(graphs, flat)):
        check_graph(graph, f"graphs[{i}]")
        nx.draw_networkx(graph, nx.spring_layout(graph, seed=seed), ax=ax, with_labels=False, node_size=25, width=0.8)
        ax.set_axis_off()
    for ax in flat[len(graphs) :]:
        ax.set_visible(False)
    return flat[0].figure
