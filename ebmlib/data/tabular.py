"""Mixed tables stored as rows ``[numeric columns | categorical codes]``: the synthetic ring table of
Schröder et al., Palmer penguins (shipped by the ``palmerpenguins`` package) and UCI Adult."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ebmlib.utils import check_int, check_probability, check_tensor, read_verified


RING_CLASSES = (4, 16)
"""Class counts of the ring table's categorical columns (ring label, then colour)."""


def sample_rings(n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """Rows ``[x, y, ring, colour]`` of the paper's synthetic mixed table, shape ``(n, 4)``.

    As in the authors' ``tabular_synthetic`` code: radius ``r ~ N(1.5, 0.015²)`` (truncated at 0), angle
    ``θ = 2πU``, ``(x, y) = r (cos θ, sin θ)``; ring ``g`` uniform on ``{0..3}``; colour
    ``(floor(8U) + 4g) mod 16``, the octant of the angle shifted by the ring. The stored coordinates do not
    depend on ``g``: :func:`~ebmlib.data.ring_plot_coordinates` multiplies them by ``g + 1`` to draw four rings, so the
    numeric columns alone look like one circle and the structure lives in the categorical ones.
    """
    check_int(n, "n", minimum=1)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    radius = (1.5 + 0.015 * torch.randn(n, generator=generator, dtype=torch.float64)).clamp_min(0)
    ring = torch.randint(4, (n,), generator=generator)
    colour = (torch.floor(8 * u).long() + 4 * ring) % 16
    angle = 2 * math.pi * u
    rows = torch.stack([radius * angle.cos(), radius * angle.sin(), ring.double(), colour.double()], dim=1)
    return rows.to(device=device, dtype=dtype)


def ring_plot_coordinates(rows: Tensor) -> Tensor:
    """``(x, y) · (ring + 1)`` for plotting ring-table rows ``(B, 4)``; returns ``(B, 2)``."""
    check_tensor(rows, "rows", shape=(None, 4), floating=True)
    return rows[:, :2] * (rows[:, 2:3] + 1)


@dataclass
class MixedTable:
    """A mixed table as tensors: standardised numeric columns and categorical codes.

    Attributes
    ----------
    numeric
        ``(N, n_numeric)`` float32, each column standardised to mean 0 and standard deviation 1.
    codes
        ``(N, C)`` float32 integer codes.
    numeric_names, categorical_names
        Column names.
    categories
        For each categorical column, its class labels in code order.
    mean, std
        The numeric columns' original means and standard deviations (to undo the standardisation).
    """

    numeric: Tensor
    codes: Tensor
    numeric_names: list[str]
    categorical_names: list[str]
    categories: list[list[Any]]
    mean: Tensor
    std: Tensor

    @property
    def n_classes(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.categories)

    @property
    def n_numeric(self) -> int:
        return len(self.numeric_names)

    def rows(self) -> Tensor:
        """``(N, n_numeric + C)`` rows ``[numeric | codes]``."""
        return torch.cat([self.numeric, self.codes], dim=1)

    def column(self, name: str) -> int:
        """Position of a column in :meth:`rows`."""
        names = self.numeric_names + self.categorical_names
        if name not in names:
            raise ValueError(f"name must be one of {names}, got {name!r}")
        return names.index(name)


def table_from_frame(frame: Any, numeric: Sequence[str], categorical: Sequence[str]) -> MixedTable:
    """Build a :class:`~ebmlib.data.MixedTable` from a pandas DataFrame; rows with a missing value are dropped.

    Categorical columns are coded in sorted order of their values (so an ordinal column such as a year
    keeps its order); numeric columns are standardised.
    """
    missing = [c for c in (*numeric, *categorical) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the columns {missing}")
    if not categorical:
        raise ValueError("categorical must name at least one column")
    frame = frame[list(numeric) + list(categorical)].dropna()
    if len(frame) == 0:
        raise ValueError("frame has no complete row")
    values = torch.tensor(frame[list(numeric)].to_numpy(dtype=np.float64), dtype=torch.float64).reshape(len(frame), -1)
    mean, std = values.mean(0), values.std(0).clamp_min(1e-12)
    categories, codes = [], []
    for name in categorical:
        levels = sorted(frame[name].unique().tolist())
        if len(levels) < 2:
            raise ValueError(f"categorical column {name!r} has fewer than two values")
        lookup = {v: i for i, v in enumerate(levels)}
        categories.append(levels)
        codes.append([lookup[v] for v in frame[name].tolist()])
    return MixedTable(((values - mean) / std).float(), torch.tensor(codes, dtype=torch.float32).T.contiguous(),
                      list(numeric), list(categorical), categories, mean.float(), std.float())


PENGUIN_NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
"""Numeric columns of :func:`~ebmlib.data.load_penguins`."""


PENGUIN_CATEGORICAL = ("species", "island", "sex", "year")
"""Categorical columns of :func:`~ebmlib.data.load_penguins` (year is ordinal)."""


def load_penguins() -> MixedTable:
    """The Palmer penguins table (333 complete rows) shipped inside the ``palmerpenguins`` package.

    Four numeric columns (bill length and depth, flipper length, body mass) and four categorical ones:
    species (3), island (3), sex (2) and year (2007–2009, an ordinal column).
    """
    from palmerpenguins import load_penguins as _load

    return table_from_frame(_load(), PENGUIN_NUMERIC, PENGUIN_CATEGORICAL)


ADULT_COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
                 "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
                 "income")
"""Column names of UCI's ``adult.data`` (the file has no header)."""


ADULT_NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
"""Adult's numeric columns; the others (:data:`~ebmlib.data.ADULT_CATEGORICAL`) are categorical."""


ADULT_CATEGORICAL = ("workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
                     "native-country", "income")
"""Adult's categorical columns, the income label last."""


ADULT_SHA256: str | None = None
"""SHA-256 of UCI's ``adult.data``. Not pinned: this book was built without network access to compute it from
a trusted copy; pass ``expected_sha256`` to :func:`~ebmlib.data.load_adult`."""


def load_adult(root: str | Path, *, expected_sha256: str | None = None, file_name: str = "adult.data") -> MixedTable:
    """The UCI Adult table from ``root/adult.data`` (not downloaded here), verified by SHA-256 first.

    The file is the comma-separated UCI format without a header (columns :data:`~ebmlib.data.ADULT_COLUMNS`, ``?`` for a
    missing value, labels possibly ending in ``.`` as in ``adult.test``). Rows with a missing value are
    dropped. Raises ``ValueError`` naming the file when no checksum is given or it does not match, and
    ``FileNotFoundError`` without the file.
    """
    import pandas as pd

    path = Path(root) / file_name
    expected = expected_sha256 if expected_sha256 is not None else ADULT_SHA256
    if expected is None:
        raise ValueError("expected_sha256: no checksum is pinned in ADULT_SHA256; pass the file's SHA-256")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: download UCI's adult.data into root")
    raw = read_verified(path, expected)
    frame = pd.read_csv(io.BytesIO(raw), header=None, names=list(ADULT_COLUMNS), skipinitialspace=True,
                        na_values="?", comment="|")
    if frame.shape[1] != len(ADULT_COLUMNS) or frame["income"].isna().all():
        raise ValueError(f"{path}: not in the UCI Adult format")
    frame["income"] = frame["income"].astype(str).str.rstrip(".")
    return table_from_frame(frame, ADULT_NUMERIC, ADULT_CATEGORICAL)


def split_rows(rows: Tensor, test_fraction: float = 0.3, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random train/test split of ``(N, D)`` rows."""
    check_tensor(rows, "rows", ndim=2)
    check_probability(test_fraction, "test_fraction")
    perm = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(test_fraction * rows.shape[0]))
    return rows[perm[n_test:]], rows[perm[:n_test]]
