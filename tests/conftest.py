"""Shared test settings: a non-interactive matplotlib backend and deterministic seeds."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
