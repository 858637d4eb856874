"""Expected calibration error: a hand-computed case and agreement with torchmetrics' implementation."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from ebmlib.metrics import expected_calibration_error


def test_ece_by_hand():
    # Bins of width 0.5 over [0, 1]: the three predictions with confidence 0.6, 0.7 and 0.9 land in [0.5, 1];
    # two of them are right, so |2/3 - (0.6 + 0.7 + 0.9)/3| = 0.2/3 (the fourth, confidence 0.4, is right, in
    # [0, 0.5): |1 - 0.4| = 0.6). ECE = 3/4 · 0.2/3 + 1/4 · 0.6.
    probs = torch.tensor([[0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.05, 0.05, 0.9], [0.4, 0.3, 0.3]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 2, 0])
    expected = 3 / 4 * 0.2 / 3 + 1 / 4 * 0.6
    assert expected_calibration_error(probs, labels, n_bins=2).item() == pytest.approx(expected, abs=1e-12)
    # One bin: |accuracy - mean confidence| over all predictions.
    assert expected_calibration_error(probs, labels, n_bins=1).item() == pytest.approx(abs(3 / 4 - 2.6 / 4))
    # A confidence of exactly 1 joins the last bin.
    sure = torch.tensor([[1.0, 0.0], [0.95, 0.05]], dtype=torch.float64)
    assert expected_calibration_error(sure, torch.tensor([0, 1]), n_bins=10).item() == pytest.approx(0.975 - 0.5)


@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_ece_matches_torchmetrics(n_bins, n_classes):
    # Catches a mis-weighted bin (e.g. the plain mean over bins), the wrong confidence (e.g. the probability of
    # the true class) or bins shifted by one; random confidences avoid the bin edges, where the two
    # implementations may round differently.
    g = torch.Generator().manual_seed(n_bins * 100 + n_classes)
    logits = 3 * torch.randn(500, n_classes, generator=g, dtype=torch.float64)
    probs = torch.softmax(logits, 1)
    labels = torch.multinomial(torch.softmax(0.5 * logits, 1), 1, generator=g).squeeze(1)  # over-confident
    ours = expected_calibration_error(probs, labels, n_bins=n_bins)
    reference = multiclass_calibration_error(probs, labels, num_classes=n_classes, n_bins=n_bins, norm="l1")
    assert ours.dtype == torch.float64 and ours.shape == ()
    assert ours.item() == pytest.approx(reference.item(), abs=1e-6)  # torchmetrics computes in float32
    assert ours.item() > 0.05  # the tempered labels make the model over-confident: a clearly non-zero ECE


def test_ece_of_a_calibrated_classifier_is_small():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(2 * torch.randn(100_000, 4, generator=g), 1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)  # drawn from the predicted probabilities
    assert expected_calibration_error(probs, labels).item() < 0.01


@pytest.mark.parametrize(
    ("probs", "labels", "n_bins", "argument"),
    [
        (torch.tensor([0.5, 0.5]), torch.tensor([0]), 10, "probs"),
        (torch.tensor([[1.0]]), torch.tensor([0]), 10, "probs"),
        (torch.tensor([[0.7, 0.7]]), torch.tensor([0]), 10, "probs"),
        (torch.tensor([[1.2, -0.2]]), torch.tensor([0]), 10, "probs"),
        (torch.tensor([[float("nan"), 0.5]]), torch.tensor([0]), 10, "probs"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([2]), 10, "labels"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([0.0]), 10, "labels"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([0, 1]), 10, "labels"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([0]), 0, "n_bins"),
    ],
)
def test_ece_rejects_bad_input(probs, labels, n_bins, argument):
    with pytest.raises(ValueError, match=argument):
        expected_calibration_error(probs, labels, n_bins=n_bins)
