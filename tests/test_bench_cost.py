"""The step counts of ebmlib.bench.cost: FLOPs against the closed forms of matrix products, operators dispatched
forward and backward, and the prediction from both."""

import pytest
import torch
from torch import nn

from ebmlib.bench import make_task
from ebmlib.bench.cost import DeviceModel, OperationCount, count_methods, count_operations, predict_seconds


def test_matrix_product_flops_are_2mnk():
    a, b = torch.randn(5, 7), torch.randn(7, 3)
    count = count_operations(lambda: a @ b)
    assert count.flops == 2 * 5 * 7 * 3
    assert count.operators == 1


def test_a_linear_layer_counts_forward_and_backward():
    layer = nn.Linear(6, 4)
    x = torch.randn(10, 6, requires_grad=True)
    forward = count_operations(lambda: layer(x))
    both = count_operations(lambda: layer(x).sum().backward())
    assert forward.flops == 2 * 10 * 6 * 4  # the product; the bias add is elementwise, not counted
    assert both.flops == 3 * forward.flops  # backward: one product for the input's gradient, one for the weight's
    assert both.operators > forward.operators


def test_gradients_with_respect_to_the_input_inside_a_step_are_counted():
    # Gibbs-with-Gradients calls torch.autograd.grad inside the training step: the counter must allow it
    layer = nn.Linear(4, 1)
    x = torch.randn(8, 4, requires_grad=True)
    count = count_operations(lambda: torch.autograd.grad(layer(x).sum(), x))
    assert count.flops == 2 * (2 * 8 * 4)


def test_prediction_is_the_larger_of_arithmetic_and_launch_time():
    device = DeviceModel("toy", flops_per_second=1e9, launch_seconds=1e-5)
    assert predict_seconds(OperationCount(flops=2_000_000_000, operators=10), device) == pytest.approx(2.0)
    assert predict_seconds(OperationCount(flops=10, operators=1000), device) == pytest.approx(1e-2)


def test_energy_discrepancy_does_more_arithmetic_in_fewer_operators_than_gibbs_with_gradients():
    # 32 negatives per point in one batched pass against five sequential moves, each with a gradient
    rows = {r["method"]: r for r in count_methods(make_task("gray16", "ci"), ["ED-Bern", "PCD-GwG-5"])}
    assert rows["ED-Bern"]["flops"] > 2 * rows["PCD-GwG-5"]["flops"]
    assert rows["ED-Bern"]["operators"] < rows["PCD-GwG-5"]["operators"] / 2
