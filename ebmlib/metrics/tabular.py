"""Synthetic tables against real ones: train-synthetic-test-real (TSTR), a gradient-boosted classifier fit on
synthetic rows and scored on real ones, and SDMetrics' column shapes and column pair trends."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ebmlib.data.codes import check_classes, check_codes
from ebmlib.utils import check_int, check_tensor


def _features(rows: Tensor, target: int, n_numeric: int, n_classes: Sequence[int]) -> np.ndarray:
    """Numeric columns plus one-hot categorical columns, the target column left out."""
    parts = [rows[:, :n_numeric].double()]
    for c, k in enumerate(n_classes):
        if n_numeric + c != target:
            parts.append(torch.nn.functional.one_hot(rows[:, n_numeric + c].long(), k).double())
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

    n_classes = check_classes(n_classes)
    check_int(n_numeric, "n_numeric", minimum=0)
    if not n_numeric <= check_int(target, "target") < n_numeric + len(n_classes):
        raise ValueError(f"target must index a categorical column, got {target}")
    if model not in ("xgboost", "sklearn"):
        raise ValueError(f"model must be 'xgboost' or 'sklearn', got {model!r}")
    check_int(seed, "seed", minimum=0)
    for name, rows in (("train_rows", train_rows), ("test_rows", test_rows)):
        check_tensor(rows, name, shape=(None, n_numeric + len(n_classes)), floating=True)
        check_codes(rows[:, n_numeric:], n_classes, f"{name} (categorical columns)")
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
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier

        clf = HistGradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
    proba = np.zeros((len(x_test), k))
    proba[:, present] = clf.predict_proba(x_test)
    if k == 2:
        return float(roc_auc_score(y_test, proba[:, 1]))
    seen = np.unique(y_test)
    return float(roc_auc_score(y_test, proba[:, seen] / proba[:, seen].sum(1, keepdims=True).clip(1e-12),
                               multi_class="ovr", labels=seen))


def sdmetrics_quality(real_rows: Tensor, synthetic_rows: Tensor, *, n_numeric: int,
                      n_classes: Sequence[int]) -> dict[str, float]:
    """Column shapes and column pair trends of SDMetrics' single-table quality report: the "single-column density
    similarity" and "pair-wise correlation similarity" of the energy-discrepancy paper's Table 6.

    Both lie in ``[0, 1]``, 1 for tables with the same statistics. Column shapes averages, over columns,
    ``1 - KS`` (numeric; Kolmogorov–Smirnov statistic) and ``1 - TV`` (categorical; total variation distance of the
    category frequencies). Column pair trends averages, over pairs of columns, ``1 - |ρ_real - ρ_synthetic| / 2``
    (two numeric columns; Pearson correlations) and ``1 - TV`` of the pair's contingency table (otherwise, numeric
    columns binned). Every pair counts, as in the SDMetrics versions of the paper's time (recent versions leave
    out pairs whose real association or correlation is weak).

    Parameters
    ----------
    real_rows, synthetic_rows
        Tables ``(N, n_numeric + C)`` and ``(M, n_numeric + C)``: numeric columns, then integer category codes.
    n_numeric, n_classes
        Number of numeric columns and ``K_c`` per categorical column (may be empty).
    """
    import warnings

    import pandas as pd

    with warnings.catch_warnings():  # recent versions announce a unified report; this one scores the same
        warnings.simplefilter("ignore", FutureWarning)
        from sdmetrics.reports.single_table import QualityReport

    empty = isinstance(n_classes, Sequence) and not isinstance(n_classes, str) and len(n_classes) == 0
    n_classes = () if empty else check_classes(n_classes)
    check_int(n_numeric, "n_numeric", minimum=0)
    if n_numeric + len(n_classes) < 2:
        raise ValueError(f"the tables need at least two columns to have pairs, got {n_numeric + len(n_classes)}")
    names = [f"numeric {i}" for i in range(n_numeric)] + [f"categorical {c}" for c in range(len(n_classes))]
    frames = []
    for name, rows in (("real_rows", real_rows), ("synthetic_rows", synthetic_rows)):
        check_tensor(rows, name, shape=(None, len(names)), floating=True)
        if rows.shape[0] < 2:
            raise ValueError(f"{name} must have at least 2 rows, got {rows.shape[0]}")
        check_codes(rows[:, n_numeric:], n_classes, f"{name} (categorical columns)")
        values = rows.detach().double().cpu().numpy()
        frame = pd.DataFrame(values, columns=names)
        frames.append(frame.astype({n: "int64" for n in names[n_numeric:]}))
    metadata = {"columns": {n: {"sdtype": "numerical" if i < n_numeric else "categorical"}
                            for i, n in enumerate(names)}}
    report = QualityReport()
    report.real_association_threshold = report.real_correlation_threshold = 0
    report.generate(*frames, metadata, verbose=False)
    scores = report.get_properties().set_index("Property")["Score"]
    return {"column shapes": float(scores["Column Shapes"]), "column pair trends": float(scores["Column Pair Trends"])}
