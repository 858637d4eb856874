"""Mixed tabular data for energy-based models: data sets, an energy network, samplers and TSTR evaluation.

A table row is stored as one float vector ``[numeric columns | categorical codes]`` (the layout of the
energy-discrepancy code): ``n_numeric`` real columns followed by one integer code ``0 … K_c - 1`` per
categorical column. Pieces:

* :func:`sample_rings` — the synthetic "ring" table of Schröder et al. (2 numeric + 4-class + 16-class);
* :class:`MixedTable`, :func:`table_from_frame`, :func:`load_penguins` (a real mixed table shipped by the
  ``palmerpenguins`` package), :func:`load_adult` (checksum-verified local files, for ``full`` scale);
* :class:`MixedEnergy` — per-column embeddings of the categorical codes + an MLP;
* :func:`gibbs_categorical` and :func:`langevin_gibbs` — exact-conditional Gibbs sweeps over categorical
  columns, alternated with Langevin steps on the numeric ones (the paper's Algorithm 2);
* :func:`tstr_auc` — train-synthetic-test-real: a gradient-boosted classifier trained on synthetic rows and
  scored by ROC-AUC on real ones;
* :func:`tabular_losses` and :func:`compare_tstr` — the paper's Table 1 protocol: train each TabED variant and
  TabCD on a table, draw synthetic rows, score them by TSTR.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ebmlib.discrepancy import (
    CyclicalPerturbation,
    EnergyDiscrepancy,
    GridPerturbation,
    HeatPerturbation,
    MixedPerturbation,
    OrdinalPerturbation,
    UniformPerturbation,
    check_codes,
)
from ebmlib.losses import PersistentContrastiveDivergence
from ebmlib.nets import MLP
from ebmlib.samplers import ReplayBuffer, langevin
from ebmlib.train import fit, tensor_batches
from ebmlib.utils import (
    EnergyFn,
    check_energy_output,
    check_int,
    check_positive,
    check_probability,
    check_tensor,
    read_verified,
)

RING_CLASSES = (4, 16)
"""Class counts of the ring table's categorical columns (ring label, then colour)."""


# ---------------------------------------------------------------------------------------------------------
# The synthetic ring table
# ---------------------------------------------------------------------------------------------------------
def sample_rings(n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """Rows ``[x, y, ring, colour]`` of the paper's synthetic mixed table, shape ``(n, 4)``.

    As in the authors' ``tabular_synthetic`` code: radius ``r ~ N(1.5, 0.015²)`` (truncated at 0), angle
    ``θ = 2πU``, ``(x, y) = r (cos θ, sin θ)``; ring ``g`` uniform on ``{0..3}``; colour
    ``(floor(8U) + 4g) mod 16``, the octant of the angle shifted by the ring. The stored coordinates do not
    depend on ``g``: :func:`ring_plot_coordinates` multiplies them by ``g + 1`` to draw four rings, so the
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


# ---------------------------------------------------------------------------------------------------------
# Energy network and samplers
# ---------------------------------------------------------------------------------------------------------
class MixedEnergy(nn.Module):
    """``E(row)`` for rows ``[numeric | categorical codes]``: per-column embeddings, then an MLP.

    Column ``c``'s code goes through its own embedding ``K_c → emb_dim`` (the paper's ``Linear(K_c, 4)`` on the
    one-hot), the embeddings are concatenated with the numeric columns and passed through an MLP with
    ``depth`` hidden layers of width ``hidden`` and Swish activations (paper: 256 × 3).
    """

    def __init__(self, n_numeric: int, n_classes: Sequence[int], *, emb_dim: int = 4, hidden: int = 256,
                 depth: int = 3) -> None:
        super().__init__()
        self.n_numeric = check_int(n_numeric, "n_numeric", minimum=0)
        self.n_classes = tuple(check_int(k, f"n_classes[{i}]", minimum=2) for i, k in enumerate(n_classes))
        check_int(emb_dim, "emb_dim", minimum=1)
        self.register_buffer("offsets", torch.tensor([0, *np.cumsum(self.n_classes)[:-1].tolist()]))
        self.embedding = nn.Embedding(sum(self.n_classes), emb_dim)
        self.mlp = MLP(self.n_numeric + emb_dim * len(self.n_classes), 1, [hidden] * depth, "swish")

    def forward(self, x: Tensor) -> Tensor:
        """``(B, n_numeric + C)`` rows → energies ``(B,)``."""
        check_tensor(x, "x", shape=(None, self.n_numeric + len(self.n_classes)), finite=False)
        codes = x[:, self.n_numeric :].long() + self.offsets
        features = torch.cat([x[:, : self.n_numeric], self.embedding(codes).flatten(1)], dim=1)
        return self.mlp(features).squeeze(-1)


def gibbs_categorical(energy_fn: EnergyFn, x: Tensor, n_classes: Sequence[int], n_sweeps: int = 1, *,
                      n_numeric: int = 0) -> Tensor:
    """Systematic-scan Gibbs sweeps over the categorical columns of rows ``[numeric | codes]``.

    Column ``c`` is redrawn from its exact conditional ``p(x_c = k | rest) = softmax_k(-E(x with x_c = k))``:
    one batched evaluation of ``E`` on the ``B · K_c`` candidate rows per column. Numeric columns stay fixed.

    Returns new rows ``(B, n_numeric + C)``; ``x`` is not modified.
    """
    n_classes = tuple(n_classes)
    check_tensor(x, "x", shape=(None, n_numeric + len(n_classes)), floating=True)
    check_codes(x[:, n_numeric:], n_classes, "x (categorical columns)")
    check_int(n_sweeps, "n_sweeps", minimum=1)
    batch, dim = x.shape
    with torch.no_grad():
        x = x.detach().clone()
        for _ in range(n_sweeps):
            for c, k in enumerate(n_classes):
                col = n_numeric + c
                candidates = x.unsqueeze(1).repeat(1, k, 1)
                candidates[:, :, col] = torch.arange(k, device=x.device, dtype=x.dtype)
                energy = check_energy_output(energy_fn(candidates.view(batch * k, dim)), batch * k, "energy_fn")
                gumbel = -torch.empty(batch, k, device=x.device).exponential_().log()
                x[:, col] = (-energy.view(batch, k) + gumbel).argmax(dim=1).to(x.dtype)
    return x


def langevin_gibbs(energy_fn: EnergyFn, x: Tensor, n_classes: Sequence[int], *, n_numeric: int, n_rounds: int,
                   step_size: float) -> Tensor:
    """Alternate one Langevin step on the numeric columns with one Gibbs sweep over the categorical ones.

    The Langevin step is ``x ← x - (s/2) ∇E + √s ξ`` with ``s = step_size`` (the authors' ``MixSampler``;
    :func:`~ebmlib.samplers.langevin` with ``ε = √s``), taken with the categorical columns fixed.
    """
    check_int(n_rounds, "n_rounds", minimum=1)
    s = check_positive(step_size, "step_size")
    x = x.detach()
    for _ in range(n_rounds):
        if n_numeric > 0:
            codes = x[:, n_numeric:]
            numeric = langevin(lambda z, codes=codes: energy_fn(torch.cat([z, codes], dim=1)), x[:, :n_numeric],
                               n_steps=1, step_size=math.sqrt(s))
            x = torch.cat([numeric, codes], dim=1)
        x = gibbs_categorical(energy_fn, x, n_classes, 1, n_numeric=n_numeric)
    return x


# ---------------------------------------------------------------------------------------------------------
# Real tables
# ---------------------------------------------------------------------------------------------------------
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
    """Build a :class:`MixedTable` from a pandas DataFrame; rows with a missing value are dropped.

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
"""Numeric columns of :func:`load_penguins`."""
PENGUIN_CATEGORICAL = ("species", "island", "sex", "year")
"""Categorical columns of :func:`load_penguins` (year is ordinal)."""


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
"""Adult's numeric columns; the others (:data:`ADULT_CATEGORICAL`) are categorical."""
ADULT_CATEGORICAL = ("workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
                     "native-country", "income")
"""Adult's categorical columns, the income label last."""
ADULT_SHA256: str | None = None
"""SHA-256 of UCI's ``adult.data``. Not pinned: this book was built without network access to compute it from
a trusted copy; pass ``expected_sha256`` to :func:`load_adult`."""


def load_adult(root: str | Path, *, expected_sha256: str | None = None, file_name: str = "adult.data") -> MixedTable:
    """The UCI Adult table from ``root/adult.data`` (not downloaded here), verified by SHA-256 first.

    The file is the comma-separated UCI format without a header (columns :data:`ADULT_COLUMNS`, ``?`` for a
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


# ---------------------------------------------------------------------------------------------------------
# Train on synthetic, test on real
# ---------------------------------------------------------------------------------------------------------
def split_rows(rows: Tensor, test_fraction: float = 0.3, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random train/test split of ``(N, D)`` rows."""
    check_tensor(rows, "rows", ndim=2)
    check_probability(test_fraction, "test_fraction")
    perm = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(test_fraction * rows.shape[0]))
    return rows[perm[n_test:]], rows[perm[:n_test]]


def _features(rows: Tensor, target: int, n_numeric: int, n_classes: Sequence[int]) -> np.ndarray:
    """Numeric columns plus one-hot categorical columns, the target column left out."""
    parts = [rows[:, :n_numeric].double()]
    for c, k in enumerate(n_classes):
        if n_numeric + c != target:
            parts.append(nn.functional.one_hot(rows[:, n_numeric + c].long(), k).double())
    return torch.cat(parts, dim=1).cpu().numpy()


def tstr_auc(train_rows: Tensor, test_rows: Tensor, *, target: int, n_numeric: int, n_classes: Sequence[int],
             model: str = "xgboost", seed: int = 0) -> float:
    """ROC-AUC on real ``test_rows`` of a gradient-boosted classifier trained on ``train_rows``.

    ``target`` is the position of a categorical column in the rows; the other columns are features (one-hot
    for categorical ones). Binary targets use the AUC of class 1; more classes the macro one-vs-rest AUC. A
    training set with a single class gives a constant predictor, i.e. AUC 0.5.

    Parameters
    ----------
    model
        ``"xgboost"`` (the paper; ``xgboost.XGBClassifier`` with default settings) or ``"sklearn"``
        (``HistGradientBoostingClassifier``, for platforms without XGBoost).
    """
    from sklearn.metrics import roc_auc_score

    n_classes = tuple(n_classes)
    for name, rows in (("train_rows", train_rows), ("test_rows", test_rows)):
        check_tensor(rows, name, shape=(None, n_numeric + len(n_classes)), floating=True)
        check_codes(rows[:, n_numeric:], n_classes, f"{name} (categorical columns)")
    if not n_numeric <= target < n_numeric + len(n_classes):
        raise ValueError(f"target must index a categorical column, got {target}")
    k = n_classes[target - n_numeric]
    y_train = train_rows[:, target].long().cpu().numpy()
    y_test = test_rows[:, target].long().cpu().numpy()
    x_train = _features(train_rows, target, n_numeric, n_classes)
    x_test = _features(test_rows, target, n_numeric, n_classes)
    present = np.unique(y_train)
    if len(present) < 2:
        return 0.5
    if model == "xgboost":
        from xgboost import XGBClassifier

        # Train on the classes present, then spread their probabilities over all k classes.
        remap = {c: i for i, c in enumerate(present)}
        clf = XGBClassifier(n_estimators=100, random_state=seed, n_jobs=1, verbosity=0)
        clf.fit(x_train, np.vectorize(remap.get)(y_train))
    elif model == "sklearn":
        from sklearn.ensemble import HistGradientBoostingClassifier

        clf = HistGradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
    else:
        raise ValueError(f"model must be 'xgboost' or 'sklearn', got {model!r}")
    proba = np.zeros((len(x_test), k))
    proba[:, present] = clf.predict_proba(x_test)
    if k == 2:
        return float(roc_auc_score(y_test, proba[:, 1]))
    seen = np.unique(y_test)
    return float(roc_auc_score(y_test, proba[:, seen] / proba[:, seen].sum(1, keepdims=True).clip(1e-12),
                               multi_class="ovr", labels=seen))


# ---------------------------------------------------------------------------------------------------------
# Table 1 protocol: TabED variants and TabCD, scored by TSTR
# ---------------------------------------------------------------------------------------------------------
def mixed_noise(n: int, n_numeric: int, n_classes: Sequence[int], *,
                device: torch.device | str | None = None) -> Tensor:
    """Sampler starting rows ``(n, n_numeric + C)``: standard normal numeric columns, uniform codes."""
    numeric = torch.randn(n, n_numeric, device=device)
    codes = torch.stack([torch.randint(0, k, (n,), device=device) for k in n_classes], dim=1).float()
    return torch.cat([numeric, codes], dim=1)


def tabular_losses(n_numeric: int, n_classes: Sequence[int], ordinal: Sequence[bool], *, cd_rounds: int,
                   device: torch.device | str | None = None) -> dict[str, Any]:
    """The losses of the paper's Table 1, in its order: TabED-Uni, -Grid, -Cyc, -Ord, -Str and TabCD.

    The ED variants differ only in the perturbation of the categorical columns; the numeric ones get a
    Gaussian with ``σ = 0.05`` (Uni, Grid) or ``0.1`` (Cyc, Ord, Str), as in the authors' code. Uni keeps a
    column with probability 0.1, Cyc and Ord use the heat kernel at ``t = 0.005 K²`` and ``0.01 K²``, and
    **Str** (structure-chosen) uses the ordinal kernel (``t = 0.01 K²``) for columns flagged in ``ordinal``
    and the uniform one (keep 0.1) for the others. TabCD is :func:`tabcd_loss`.
    """
    n_classes = tuple(n_classes)
    flags = [bool(o) for o in ordinal]
    if len(flags) != len(n_classes):
        raise ValueError(f"ordinal must give one flag per categorical column ({len(n_classes)}), got {len(flags)}")
    check_int(cd_rounds, "cd_rounds", minimum=1)
    keep_t = -math.log(0.1)  # the uniform kernel's time for keep probability 0.1
    structured = HeatPerturbation(n_classes, [0.01 * k**2 if o else keep_t for k, o in zip(n_classes, flags)],
                                  ["ordinal" if o else "uniform" for o in flags])
    return {
        "TabED-Uni": EnergyDiscrepancy(MixedPerturbation(n_numeric, 0.05, UniformPerturbation(n_classes, 0.1))),
        "TabED-Grid": EnergyDiscrepancy(MixedPerturbation(n_numeric, 0.05, GridPerturbation(n_classes))),
        "TabED-Cyc": EnergyDiscrepancy(MixedPerturbation(n_numeric, 0.1, CyclicalPerturbation(n_classes, 0.005))),
        "TabED-Ord": EnergyDiscrepancy(MixedPerturbation(n_numeric, 0.1, OrdinalPerturbation(n_classes, 0.01))),
        "TabED-Str": EnergyDiscrepancy(MixedPerturbation(n_numeric, 0.1, structured)),
        "TabCD": tabcd_loss(n_numeric, n_classes, cd_rounds=cd_rounds, device=device),
    }


def tabcd_loss(n_numeric: int, n_classes: Sequence[int], *, cd_rounds: int,
               device: torch.device | str | None = None) -> PersistentContrastiveDivergence:
    """TabCD: persistent CD for mixed rows, the paper's MCMC baseline.

    A replay buffer of 10 000 rows started from :func:`mixed_noise` (never reinitialised), ``cd_rounds``
    rounds of :func:`langevin_gibbs` (step ``5·10⁻⁴``) per update and an L2 penalty 0.3 on the energies.
    Building it draws the buffer's starting rows from the global torch generator.
    """
    n_classes = tuple(n_classes)
    check_int(cd_rounds, "cd_rounds", minimum=1)
    buffer = ReplayBuffer(lambda n: mixed_noise(n, n_numeric, n_classes, device=device), capacity=10_000,
                          reinit_prob=0.0)

    def sampler(energy_fn: EnergyFn, x: Tensor) -> Tensor:
        return langevin_gibbs(energy_fn, x, n_classes, n_numeric=n_numeric, n_rounds=cd_rounds, step_size=5e-4)

    return PersistentContrastiveDivergence(buffer, sampler, l2_reg=0.3)


def train_mixed(loss: Any, next_batch: Any, n_numeric: int, n_classes: Sequence[int], *, hidden: int,
                n_iters: int, lr: float, device: torch.device | str | None = None,
                desc: str | None = None) -> tuple[MixedEnergy, float]:
    """Fit a fresh ``MixedEnergy(hidden=hidden, depth=3)`` with ``loss(model, batch)`` on ``next_batch()``.

    Adam for ``n_iters`` steps with gradient clipping 5 and EMA 0.99 (:func:`ebmlib.train.fit`); returns the
    EMA energy in eval mode and the training time in seconds.
    """
    energy = MixedEnergy(n_numeric, n_classes, hidden=hidden, depth=3).to(device)
    result = fit(energy, loss, next_batch, n_iters=n_iters, lr=lr, grad_clip=5.0, ema_decay=0.99,
                 progress=False, desc=desc)
    return result.ema.module.eval(), result.seconds


def compare_tstr(losses: dict[str, Any], train_rows: Tensor, test_rows: Tensor, *, target: int, n_numeric: int,
                 n_classes: Sequence[int], hidden: int, n_iters: int, lr: float, sample_rounds: int, n_draws: int,
                 batch_size: int = 128, step_size: float = 1e-3, model: str = "xgboost",
                 progress: bool = True) -> dict[str, dict[str, Any]]:
    """Train a :class:`MixedEnergy` per loss on ``train_rows`` and score its samples by TSTR on ``test_rows``.

    Per loss (in the dict's order): an energy is trained by :func:`train_mixed` on minibatches of
    ``batch_size`` training rows; then ``n_draws`` times, ``len(train_rows)`` synthetic rows are drawn by
    ``sample_rounds`` rounds of :func:`langevin_gibbs` from :func:`mixed_noise` and scored by :func:`tstr_auc`.

    Returns
    -------
    dict
        Per loss name: ``model`` (EMA energy, eval mode), ``auc`` and ``auc_std`` (mean and standard deviation
        over draws), ``aucs``, ``seconds`` (training time) and ``synthetic`` (the last draw, on the CPU).
    """
    from tqdm.auto import tqdm

    n_classes = tuple(n_classes)
    for name, rows in (("train_rows", train_rows), ("test_rows", test_rows)):
        check_tensor(rows, name, shape=(None, n_numeric + len(n_classes)), floating=True)
    check_int(n_draws, "n_draws", minimum=1)
    runs = {}
    for name, loss in tqdm(losses.items(), desc="TSTR", disable=not progress):
        energy, seconds = train_mixed(loss, tensor_batches(train_rows, batch_size), n_numeric, n_classes,
                                      hidden=hidden, n_iters=n_iters, lr=lr, device=train_rows.device, desc=name)
        aucs = []
        for _ in range(n_draws):
            start = mixed_noise(len(train_rows), n_numeric, n_classes, device=train_rows.device)
            synthetic = langevin_gibbs(energy, start, n_classes, n_numeric=n_numeric, n_rounds=sample_rounds,
                                       step_size=step_size)
            aucs.append(tstr_auc(synthetic, test_rows, target=target, n_numeric=n_numeric, n_classes=n_classes,
                                 model=model))
        runs[name] = {"model": energy, "auc": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "aucs": aucs,
                      "seconds": seconds, "synthetic": synthetic.cpu()}
    return runs
