"""Train-synthetic-test-real (TSTR): a gradient-boosted classifier fit on synthetic rows, scored on real ones."""

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
