"""Calibration of a classifier's predicted probabilities: the expected calibration error."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlib.utils import check_int, check_tensor


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 10) -> Tensor:
    r"""Top-label expected calibration error (Naeini et al. 2015; Guo et al. 2017) with equal-width bins.

    Each prediction's confidence is its largest probability :math:`c_i = \max_k p_{ik}`, correct when
    :math:`\arg\max_k p_{ik} = y_i`. With the ``M`` bins :math:`B_m = \{i : m/M \le c_i < (m+1)/M\}`
    (:math:`c_i = 1` joins the last one),

    .. math:: \mathrm{ECE} = \sum_{m} \frac{|B_m|}{N}\,
              \Big|\,\overline{\mathbb 1[\hat y_i = y_i]}_{B_m} - \overline{c_i}_{B_m}\Big| ,

    the mean gap between accuracy and confidence, weighted by the share of predictions in each bin; 0 for a
    calibrated classifier (in the limit of many predictions). This is torchmetrics'
    ``multiclass_calibration_error(norm="l1")``, except that torchmetrics gives confidences of exactly 1
    a bin of their own.

    Parameters
    ----------
    probs
        Predicted class probabilities ``(N, K)``, ``K ≥ 2``, rows in ``[0, 1]`` summing to 1.
    labels
        True classes ``(N,)``, integers in ``[0, K)``.
    n_bins
        ``M ≥ 1``.

    Returns
    -------
    Tensor
        0-dim, in ``[0, 1]``, dtype and device of ``probs``.
    """
    check_tensor(probs, "probs", ndim=2, floating=True)
    if probs.shape[0] == 0 or probs.shape[1] < 2:
        raise ValueError(f"probs must have shape (N >= 1, K >= 2), got {tuple(probs.shape)}")
    if (probs < 0).any() or (probs > 1).any() or not torch.allclose(probs.sum(1), probs.new_ones(()), atol=1e-4):
        raise ValueError("probs must hold probabilities in [0, 1] whose rows sum to 1")
    check_tensor(labels, "labels", shape=(probs.shape[0],))
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if (labels < 0).any() or (labels >= probs.shape[1]).any():
        raise ValueError(f"labels must lie in [0, {probs.shape[1]}), got values outside")
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    confidence, prediction = probs.max(1)
    correct = (prediction == labels.to(prediction.device)).to(probs.dtype)
    bins = (confidence * n_bins).long().clamp(max=n_bins - 1)
    accuracy_sum = torch.zeros(n_bins, dtype=probs.dtype, device=probs.device).index_add_(0, bins, correct)
    confidence_sum = torch.zeros_like(accuracy_sum).index_add_(0, bins, confidence)
    # Per bin, |B_m|/N · |mean accuracy - mean confidence| = |Σ correct - Σ confidence| / N; empty bins add 0.
    return (accuracy_sum - confidence_sum).abs().sum() / probs.shape[0]
