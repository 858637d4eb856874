"""Training runs killed for real: a child process trains a tiny model with a replay buffer (or flowMC-EBM's pool,
flow and adapted step size), EMA, warm-up and shuffled batches, is killed with SIGKILL, and is started again
with the same run directory until it finishes; its final state must equal an uninterrupted run's bit for bit.

The children are forked from a server that has imported torch once (multiprocessing's forkserver), so each
run costs a fraction of a second instead of a fresh interpreter's start.
"""

import multiprocessing
import multiprocessing.forkserver
import os
import random
import signal
import time
from pathlib import Path

import pytest
import resume_worker
import torch
from resume_worker import CHECKPOINT_EVERY, N_ITERS

from ebmlib.checkpoint import CHECKPOINT_NAME, load_checkpoint, run_progress

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["resume_forkserver"])
KILLED = -signal.SIGKILL


def _start(out, run_dir=None, **kwargs):
    process = CONTEXT.Process(target=resume_worker.train, args=(str(out), run_dir and str(run_dir)), kwargs=kwargs)
    process.start()
    return process


def _run(out, run_dir=None, **kwargs) -> int:
    process = _start(out, run_dir, **kwargs)
    process.join(120)
    return process.exitcode


def _assert_identical(actual, expected, path="result"):
    if isinstance(expected, torch.Tensor):
        assert actual.dtype == expected.dtype and torch.equal(actual, expected), f"{path} differs"
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys(), path
        for key in expected:
            _assert_identical(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_identical(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def _load(path):
    result = torch.load(path, weights_only=True)
    result.pop("resumed_from")
    return result


@pytest.fixture(scope="module", autouse=True)
def _forkserver():
    """Start the server with this folder importable: before Python 3.12 it ignores the parent's ``sys.path``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
        multiprocessing.forkserver.ensure_running()


@pytest.fixture(scope="module", params=["pcd", "flowmc"])
def reference(request, tmp_path_factory):
    """An uninterrupted run without checkpoints, its result and its duration."""
    out = tmp_path_factory.mktemp(f"reference-{request.param}") / "out.pt"
    start = time.perf_counter()
    assert _run(out, loss=request.param) == 0
    return request.param, _load(out), time.perf_counter() - start


def test_checkpoints_leave_the_run_unchanged(reference, tmp_path):
    loss, expected, _ = reference
    assert _run(tmp_path / "out.pt", tmp_path / "run", loss=loss) == 0
    _assert_identical(_load(tmp_path / "out.pt"), expected)
    assert run_progress(tmp_path / "run").finished
    # a finished run is not trained again: it loads and returns the same state
    assert _run(tmp_path / "again.pt", tmp_path / "run", loss=loss) == 0
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    assert again["resumed_from"] == N_ITERS
    _assert_identical({k: v for k, v in again.items() if k != "resumed_from"}, expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_killed_at_random_iterations_resumes_bit_for_bit(reference, tmp_path, seed):
    loss, expected, _ = reference
    draw = random.Random(f"{loss}-{seed}")
    first = draw.randint(1, N_ITERS // 2)
    second = draw.randint(first + 1, N_ITERS - 1)
    run, out = tmp_path / "run", tmp_path / "out.pt"
    for kill_at in (first, second):
        assert _run(out, run, loss=loss, kill_at=kill_at) == KILLED, f"not killed at {kill_at}"
        last_saved = (kill_at - 1) // CHECKPOINT_EVERY * CHECKPOINT_EVERY  # the kill precedes that iteration's save
        progress = run_progress(run)
        assert (progress.iteration if progress else 0) == last_saved, f"killed at {kill_at}"
    assert _run(out, run, loss=loss) == 0
    result = torch.load(out, weights_only=True)
    assert result.pop("resumed_from") == (second - 1) // CHECKPOINT_EVERY * CHECKPOINT_EVERY
    _assert_identical(result, expected)


def test_killed_inside_a_checkpoint_write_keeps_the_previous_checkpoint(reference, tmp_path):
    loss, expected, _ = reference
    run, out = tmp_path / "run", tmp_path / "out.pt"
    assert _run(out, run, loss=loss, kill_in_save=3) == KILLED
    # the third save (iteration 15) died between writing its temporary file and the rename
    temporaries = list(run.glob(f".{CHECKPOINT_NAME}.*.tmp"))
    assert len(temporaries) == 1 and temporaries[0].stat().st_size > 0
    assert run_progress(run).iteration == 2 * CHECKPOINT_EVERY
    assert load_checkpoint(run / CHECKPOINT_NAME)["iteration"] == 2 * CHECKPOINT_EVERY
    assert _run(out, run, loss=loss) == 0
    assert not list(run.glob("*.tmp")), "the leftover temporary file was not removed"
    result = torch.load(out, weights_only=True)
    assert result.pop("resumed_from") == 2 * CHECKPOINT_EVERY
    _assert_identical(result, expected)


def test_killed_at_a_random_moment_resumes_bit_for_bit(reference, tmp_path):
    """The parent kills the child at a random moment of a random iteration: while it samples, steps or saves."""
    loss, expected, _ = reference
    run, out = tmp_path / "run", tmp_path / "out.pt"
    draw = random.Random(loss)
    target = draw.randint(3, N_ITERS - 3)
    progress = CONTEXT.Value("i", 0)
    process = _start(out, run, loss=loss, progress=progress)
    while process.is_alive() and progress.value < 1:
        time.sleep(1e-4)
    start = time.perf_counter()
    while process.is_alive() and progress.value < target:
        time.sleep(1e-4)
    time.sleep(draw.uniform(0, (time.perf_counter() - start) / (target - 1)))  # within about one iteration
    process.kill()
    process.join(60)
    assert process.exitcode == KILLED, "the run finished before the kill"
    assert _run(out, run, loss=loss) == 0
    result = torch.load(out, weights_only=True)
    assert result.pop("resumed_from") <= target + 1
    _assert_identical(result, expected)
