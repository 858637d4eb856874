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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``quiet`` run last, after the chapters' background executions have ended: they run torch on
    several threads (a Ray node's CPUs), and beside two busy kernels each such thread waits for a core (on CI the
    Ray sweeps took 40 s per 4-iteration run instead of 1 s)."""
    items.sort(key=lambda item: item.get_closest_marker("quiet") is not None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start executing the selected chapters in the background at once (tests/test_notebooks.py): they run while
    the unit tests do, instead of after them."""
    selected = {item.callspec.id for item in session.items if item.originalname == "test_notebook_runs_at_ci_scale"}
    if selected:
        from test_notebooks import start_executions

        session.config.notebook_executions = start_executions(selected)
