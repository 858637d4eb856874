"""Shared test settings: a non-interactive matplotlib backend, one thread and deterministic seeds."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
# The unit tests' tensors are tiny: a second thread costs more in synchronisation than it saves (chapters run
# in their own kernels with torch's default threads).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
