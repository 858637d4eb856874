"""Reading the tidy table of :func:`~ebmlib.bench.compare_methods`: CSV in and out, anytime curves (metric
against training seconds), the comparison at equal budget, and the "which method when" verdict per task."""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ebmlib.bench.runner import ROW_KEYS
from ebmlib.plotting import plain_log_ticks
from ebmlib.utils import check_int

_TYPES = {"seed": int, "checkpoint": int, "iteration": int, "seconds": float, "value": float}


def _check_rows(rows: Any, *, allow_empty: bool = False) -> Sequence[dict[str, Any]]:
    """Tidy rows: a sequence of dicts with the keys :data:`~ebmlib.bench.ROW_KEYS`."""
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not (rows or allow_empty):
        raise ValueError(f"rows must be a non-empty sequence of dicts (compare_methods' table), got {rows!r}"[:200])
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not set(ROW_KEYS) <= set(row):
            raise ValueError(f"rows[{i}] must be a dict with the keys {ROW_KEYS}, got {row!r}"[:200])
    return rows


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, Path)):
        raise ValueError(f"path must be a str or pathlib.Path, got {type(path).__name__}")
    return Path(path)


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write tidy rows (:data:`~ebmlib.bench.ROW_KEYS`) to ``path`` (folders created); returns the path."""
    _check_rows(rows, allow_empty=True)
    path = _check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ROW_KEYS, extrasaction="raise")
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows written by :func:`~ebmlib.bench.write_csv`, with numbers parsed back."""
    with _check_path(path).open(newline="") as handle:
        return [{k: _TYPES.get(k, str)(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _select(rows: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    _check_rows(rows)
    if not isinstance(metric, str):
        raise ValueError(f"metric must be a metric's name, got {metric!r}")
    chosen = [r for r in rows if r["metric"] == metric]
    if not chosen:
        raise ValueError(f"metric: no rows for {metric!r}; the table has {sorted({r['metric'] for r in rows})}")
    return chosen


def _groups(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[tuple, list[dict[str, Any]]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def _stats(group: list[dict[str, Any]]) -> dict[str, Any]:
    finite = [r["value"] for r in group if r["status"] == "ok"]
    spread = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return {
        "seconds": statistics.fmean(r["seconds"] for r in group),
        "iterations": statistics.fmean(r["iteration"] for r in group),
        "mean": statistics.fmean(finite) if finite else math.nan,
        "std": spread if finite else math.nan,
        "min": min(finite, default=math.nan),
        "max": max(finite, default=math.nan),
        "runs": len(group),
        "diverged": len(group) - len(finite),
    }


def anytime(rows: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per task, method and checkpoint: mean training seconds and iterations, and the mean, standard deviation,
    minimum and maximum of ``metric`` over the seeds whose run has not diverged (``diverged`` counts the others)."""
    selected = _select(rows, metric)
    return [{"task": task, "method": method, "checkpoint": checkpoint, **_stats(group)}
            for (task, method, checkpoint), group in _groups(selected, ("task", "method", "checkpoint")).items()]


def equal_budget(rows: Sequence[dict[str, Any]], metric: str, *, checkpoint: int = -1) -> list[dict[str, Any]]:
    """The methods compared at one checkpoint (default the last, i.e. the full budget), best mean first.

    Methods that diverged in every seed come last."""
    check_int(checkpoint, "checkpoint")
    curves = anytime(rows, metric)
    last = max(c["checkpoint"] for c in curves)
    wanted = last + 1 + checkpoint if checkpoint < 0 else checkpoint
    chosen = [c for c in curves if c["checkpoint"] == wanted]
    if not chosen:
        raise ValueError(f"checkpoint must be in [-{last + 1}, {last}], got {checkpoint}")
    return sorted(chosen, key=lambda c: (math.isnan(c["mean"]), c["mean"]))


def which_method(rows: Sequence[dict[str, Any]], metric: str, *, checkpoint: int = -1) -> dict[str, Any]:
    """The verdict at one budget: the best method, and those tied with it (lower is better).

    A method ties with the best when their means differ by less than the larger of the two standard deviations
    over seeds. Returns ``best``, ``value``, ``seconds``, ``tied`` (names) and ``diverged`` (names of methods
    with at least one diverged seed).
    """
    ranking = equal_budget(rows, metric, checkpoint=checkpoint)
    best = ranking[0]
    tied = [c["method"] for c in ranking[1:]
            if math.isfinite(c["mean"]) and c["mean"] - best["mean"] < max(best["std"], c["std"])]
    return {"best": best["method"], "value": best["mean"], "seconds": best["seconds"], "tied": tied,
            "diverged": [c["method"] for c in ranking if c["diverged"]]}


def plot_anytime(ax: Axes, rows: Sequence[dict[str, Any]], metric: str, *, methods: Sequence[str] | None = None,
                 title: str | None = None, logy: bool = False) -> Figure:
    """Anytime curves: ``metric`` against training seconds (log axis), the mean over seeds as a line with
    markers, the range over seeds shaded. A curve stops where a seed diverged (marked ×)."""
    if not isinstance(ax, Axes):
        raise ValueError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    curves = anytime(rows, metric)
    present = list(dict.fromkeys(c["method"] for c in curves))
    if methods is not None and (isinstance(methods, str) or not methods or not set(methods) <= set(present)):
        raise ValueError(f"methods must be a non-empty sequence of methods in the table {present}, got {methods!r}")
    if not isinstance(logy, bool):
        raise ValueError(f"logy must be a bool, got {logy!r}")
    names = present if methods is None else list(methods)
    for name in names:
        points = sorted((c for c in curves if c["method"] == name), key=lambda c: c["checkpoint"])
        ok = [c for c in points if not c["diverged"]]
        (line,) = ax.plot([c["seconds"] for c in ok], [c["mean"] for c in ok], marker="o", ms=3, label=name)
        ax.fill_between([c["seconds"] for c in ok], [c["min"] for c in ok], [c["max"] for c in ok],
                        color=line.get_color(), alpha=0.15, lw=0)
        failed = [c for c in points if c["diverged"]]
        if failed:
            ax.plot(failed[0]["seconds"], ok[-1]["mean"] if ok else math.nan, "x", color=line.get_color(), ms=8)
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    if logy:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.set_xlabel("training time [s]")
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    return ax.figure
