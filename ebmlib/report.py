"""What a chapter reports: the claims table and its asserts, narrow captioned tables, numbers glued into the prose.

:class:`~ebmlib.report.Claims` keeps one record per claim of a paper — the claim, the paper's value, this
book's value, whether it holds in this run and at which scales the chapter asserts it — and turns the same
records into the captioned table a chapter ends with and into the failures its checks cell asserts away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    import pandas as pd

SCALES = ("ci", "book", "full")
"""The scales every chapter runs at (its ``SCALE`` parameter)."""


@dataclass(frozen=True)
class Claim:
    """One claim and how this book's run measured it (see :class:`~ebmlib.report.Claims`).

    Attributes
    ----------
    claim
        The claim in words, with units where it has numbers.
    paper
        The paper's value (a number or a short string), or ``None`` when the paper gives none.
    ours
        This run's value.
    holds
        Whether the claim holds in this run.
    asserted_at
        The scales at which the checks cell fails when the claim does not hold.
    trend
        What a budget study found (:func:`~ebmlib.report.budget_trend`): one of :data:`~ebmlib.report.TRENDS`,
        or ``None`` when the claim has none.
    """

    claim: str
    paper: Any
    ours: Any
    holds: bool
    asserted_at: tuple[str, ...] = ()
    trend: str | None = None


def _check_scale(scale: Any, name: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"{name} must be one of {SCALES}, got {scale!r}")
    return scale


class Claims:
    """The claims table of a chapter and the asserts of its checks cell, from one list of records.

    Parameters
    ----------
    scale
        The scale of this run, one of :data:`~ebmlib.report.SCALES`.
    hardware
        Where it ran, e.g. from :func:`ebmlib.utils.describe_hardware`; stated once, in the caption.

    Examples
    --------
    >>> claims = Claims("ci", "CPU (2 cores)")
    >>> claims.add("ED needs no MCMC: faster per step than PCD", paper="yes", ours=0.2, holds=True,
    ...            asserted_at=("ci", "book"))
    True
    >>> claims.failing()
    []
    """

    def __init__(self, scale: str, hardware: str) -> None:
        self.scale = _check_scale(scale, "scale")
        if not isinstance(hardware, str) or not hardware:
            raise ValueError(f"hardware must be a non-empty string, got {hardware!r}")
        self.hardware = hardware
        self.records: list[Claim] = []

    def add(self, claim: str, *, paper: Any, ours: Any, holds: Any, asserted_at: Sequence[str] = (),
            trend: str | None = None) -> bool:
        """Record a claim; returns ``holds`` as a ``bool``.

        ``holds`` may be a Python, NumPy or 0-dim tensor boolean; ``asserted_at`` lists scales of
        :data:`~ebmlib.report.SCALES` (an empty list: reported, never asserted); ``trend`` is the verdict of a
        budget study of the claim (:func:`~ebmlib.report.budget_trend`), shown in the column "with more budget".
        """
        if trend is not None and trend not in TRENDS:
            raise ValueError(f"trend must be one of {TRENDS} or None, got {trend!r}")
        if not isinstance(claim, str) or not claim:
            raise ValueError(f"claim must be a non-empty string, got {claim!r}")
        if isinstance(holds, Tensor):
            holds = holds.item()
        if type(holds).__name__ not in ("bool", "bool_"):
            raise ValueError(f"holds must be a boolean, got {holds!r}")
        if isinstance(asserted_at, str):
            raise ValueError(f"asserted_at must be a sequence of scales, got the string {asserted_at!r}")
        scales = tuple(_check_scale(s, f"asserted_at[{i}]") for i, s in enumerate(asserted_at))
        self.records.append(Claim(claim, paper, ours, bool(holds), scales, trend))
        return bool(holds)

    def failing(self) -> list[str]:
        """The claims asserted at this run's scale that do not hold (what the checks cell asserts is empty)."""
        return [c.claim for c in self.records if self.scale in c.asserted_at and not c.holds]

    def frame(self) -> pd.DataFrame:
        """The records as a table: claim, paper, this book, holds (✓/✗), asserted at."""
        import pandas as pd

        return pd.DataFrame(
            {
                "claim": [c.claim for c in self.records],
                "paper": ["—" if c.paper is None else _fmt(c.paper, 3) for c in self.records],
                "this book": [_fmt(c.ours, 3) for c in self.records],
                "holds": ["✓" if c.holds else "✗" for c in self.records],
                "with more budget": [c.trend or "—" for c in self.records],
                "asserted at": [", ".join(c.asserted_at) or "—" for c in self.records],
            }
        )

    def table(self, caption: str = "Claims of the papers and this run") -> pd.io.formats.style.Styler:
        """The captioned HTML table; the caption states the scale and the hardware once."""
        if not isinstance(caption, str) or not caption:
            raise ValueError(f"caption must be a non-empty string, got {caption!r}")
        full = (f"{caption} ({self.scale} scale, {self.hardware}). ✓: holds in this run; with more budget: what "
                "the chapter's budget study found (holds, closing, flat or widening gap; —: no study); asserted "
                "at: the scales at which the checks cell fails if it does not hold.")
        return styled_table(self.frame(), full).set_table_attributes('class="claims-table"')

    def _repr_html_(self) -> str:
        return self.table().to_html()


TRENDS = ("holds", "closing", "flat", "widening")
"""Verdicts of a budget study (:func:`~ebmlib.report.budget_trend`)."""


def budget_trend(budgets: Sequence[float], gaps: Any, *, since: float | None = None) -> str:
    """The verdict of a budget study: does a claim's shortfall shrink as the budget grows?

    ``gaps`` holds, per seed (rows) and budget (columns), how far the run falls short of the claim — positive
    when the claim fails (e.g. RMwGGIS's MMD² minus exact RM's for "RMwGGIS beats RM"), at most 0 when it holds.
    The verdict is ``"holds"`` when the mean gap at the largest budget is at most 0. Otherwise the mean gap is
    fitted by a line in ``log(budget)``; its change over the studied range is compared with the spread over seeds
    (the standard deviation, averaged over budgets): a change within the spread is ``"flat"``, a larger decrease
    ``"closing"``, a larger increase ``"widening"``.

    Parameters
    ----------
    budgets
        At least 2 increasing budgets (iterations or seconds), all positive.
    gaps
        Array-like ``(n_seeds, n_budgets)``, ``n_seeds >= 2``, finite.
    since
        Fit the line only over the budgets from this one on (at least 2 of them), e.g. the chapter's own budget
        when the study also runs shorter budgets and the metric is not monotone there (an error that first
        rises, then falls): the verdict is about *more* budget. ``None``: every budget.
    """
    import numpy as np

    b = np.asarray(budgets, dtype=float)
    g = np.asarray(gaps, dtype=float)
    if b.ndim != 1 or len(b) < 2 or not np.all(np.isfinite(b)) or np.any(b <= 0) or np.any(np.diff(b) <= 0):
        raise ValueError(f"budgets must be at least 2 increasing positive numbers, got {budgets!r}")
    if g.ndim != 2 or g.shape[1] != len(b) or g.shape[0] < 2 or not np.all(np.isfinite(g)):
        raise ValueError(f"gaps must be a finite (n_seeds >= 2, {len(b)}) array, got shape {g.shape}")
    mean = g.mean(axis=0)
    if mean[-1] <= 0:
        return "holds"
    if since is not None:
        if isinstance(since, bool) or not isinstance(since, (int, float)) or not np.sum(b >= since) >= 2:
            raise ValueError(f"since must be a budget with at least 2 budgets from it on, got {since!r}")
        b, g, mean = b[b >= since], g[:, b >= since], mean[b >= since]
    x = np.log(b)
    change = np.polyfit(x, mean, 1)[0] * (x[-1] - x[0])
    spread = g.std(axis=0, ddof=1).mean()
    if abs(change) <= spread:
        return "flat"
    return "closing" if change < 0 else "widening"


def styled_table(frame: pd.DataFrame, caption: str, *, digits: int = 3) -> pd.io.formats.style.Styler:
    """A narrow book table: no index column, numbers to ``digits`` significant figures, a caption.

    ``frame`` should have at most 8 columns (long rather than wide); missing values show as "—".
    """
    if not all(hasattr(frame, a) for a in ("shape", "style")):
        raise ValueError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    if not isinstance(caption, str) or not caption:
        raise ValueError(f"caption must be a non-empty string, got {caption!r}")
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be an integer >= 1, got {digits!r}")
    if frame.shape[1] > 8:
        raise ValueError(f"frame has {frame.shape[1]} columns; a book table has at most 8 (make it long, not wide)")

    def number(value: Any) -> str:
        if isinstance(value, float) and not math.isfinite(value):
            return "—" if math.isnan(value) else str(value)
        return _fmt(value, digits)

    return frame.style.hide(axis="index").format(number).set_caption(caption)


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
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
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


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, float) or type(value).__name__ in ("float32", "float64"):
        value = float(value)
        if math.isfinite(value) and abs(value) >= 10**digits:  # 12345.6 -> "12300", not "1.23e+04"
            return f"{round(value, digits - 1 - math.floor(math.log10(abs(value)))):.0f}"
        return f"{value:.{digits}g}"
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
