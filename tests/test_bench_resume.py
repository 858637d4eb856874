"""Resuming an equal-compute sweep (ebmlib.bench.compare_methods with a run directory): finished runs are read
back instead of trained again, a run cut short restarts from its seed, and the resumed table is the table of an
uninterrupted sweep; the smoke run's iteration cap on a wall-clock budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import ebmlib.bench.runner as runner
from ebmlib.bench import Budget, compare_methods, make_task, read_csv

BUDGET = Budget(iterations=6, n_checkpoints=2)
METHODS = ["RM", "ED-Bern"]
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def task():
    return make_task("ising", "ci", device="cpu", side=4, n_data=200, sweeps=10)


def _without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_an_interrupted_sweep_resumes_to_the_uninterrupted_table(task, tmp_path, monkeypatch):
    uninterrupted = compare_methods(task, METHODS, SEEDS, BUDGET, progress=False)
    trained = []
    real_run_method = runner.run_method

    def interrupted_on_the_third_run(task, name, seed, budget, **kwargs):
        if len(trained) == 2:
            raise KeyboardInterrupt
        trained.append((name, seed))
        return real_run_method(task, name, seed, budget, **kwargs)

    monkeypatch.setattr(runner, "run_method", interrupted_on_the_third_run)
    with pytest.raises(KeyboardInterrupt):
        compare_methods(task, METHODS, SEEDS, BUDGET, progress=False, run_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / task.name).iterdir()) == ["RM-seed0.json", "RM-seed1.json"]

    def counted(task, name, seed, budget, **kwargs):
        trained.append((name, seed))
        return real_run_method(task, name, seed, budget, **kwargs)

    monkeypatch.setattr(runner, "run_method", counted)
    resumed = compare_methods(task, METHODS, SEEDS, BUDGET, progress=False, run_dir=tmp_path)
    assert trained == [("RM", 0), ("RM", 1), ("ED-Bern", 0), ("ED-Bern", 1)], "finished runs were trained again"
    # Bit for bit: the iteration budget makes every run a function of its seed alone.
    assert _without_seconds(resumed) == _without_seconds(uninterrupted)
    again = compare_methods(task, METHODS, SEEDS, BUDGET, progress=False, run_dir=tmp_path)
    assert again == resumed and len(trained) == 4, "a finished sweep is read back whole, seconds included"


def test_a_run_directory_of_other_settings_is_refused(task, tmp_path):
    compare_methods(task, ["RM"], [0], BUDGET, progress=False, run_dir=tmp_path)
    with pytest.raises(ValueError, match="run_dir.*budget"):
        compare_methods(task, ["RM"], [0], Budget(iterations=7, n_checkpoints=2), progress=False, run_dir=tmp_path)
    with pytest.raises(ValueError, match="run_dir.*ema_decay"):
        compare_methods(task, ["RM"], [0], BUDGET, progress=False, run_dir=tmp_path, ema_decay=0.9)
    other = make_task("ising", "ci", device="cpu", side=4, n_data=200, sweeps=10, l1=0.1)
    with pytest.raises(ValueError, match="run_dir.*task"):
        compare_methods(other, ["RM"], [0], BUDGET, progress=False, run_dir=tmp_path)


def _command(out, *extra):
    return [sys.executable, "-m", "ebmlib.bench", "methods", "--task", "ising", "--scale", "ci", "--iterations",
            "40", "--checkpoints", "2", "--seeds", "0", "1", "2", "--methods", "RM", "ED-Bern", "--device", "cpu",
            "--out", str(out), *extra]


def test_a_killed_command_line_sweep_resumes_to_the_uninterrupted_table(tmp_path):
    """SIGKILL (a Colab disconnect) once the first run is stored; the rerun finishes the table."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = tmp_path / "runs"
    process = subprocess.Popen(_command(tmp_path / "killed", "--run-dir", str(runs)), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(runs.glob("ising/*.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the sweep ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored = {p.name: p.read_bytes() for p in runs.glob("ising/*.json")}
    assert 1 <= len(stored) < 6, sorted(stored)
    resumed = subprocess.run(_command(tmp_path / "resumed", "--run-dir", str(runs)), env=env, capture_output=True,
                             text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert all((runs / "ising" / name).read_bytes() == data for name, data in stored.items()), "a run was redone"
    assert len(list(runs.glob("ising/*.json"))) == 6
    # The command line computes what compare_methods computes (test_bench_methods checks it): the table of an
    # uninterrupted sweep.
    whole = compare_methods(make_task("ising", "ci", device="cpu"), ["RM", "ED-Bern"], [0, 1, 2],
                            Budget(iterations=40, n_checkpoints=2), progress=False)
    assert _without_seconds(read_csv(tmp_path / "resumed" / "ising.csv")) == _without_seconds(whole)


class CountedEvaluations:
    def __init__(self, task):
        self.task, self.calls = task, 0

    def __getattr__(self, name):
        return getattr(self.task, name)

    def evaluate(self, energy):
        self.calls += 1
        return self.task.evaluate(energy)


def test_an_iteration_cap_stops_a_wall_clock_budget(task):
    counted = CountedEvaluations(task)
    start = time.perf_counter()
    rows = compare_methods(counted, ["RM"], [0], Budget(seconds=30.0, n_checkpoints=3, max_iterations=3),
                           progress=False)
    assert time.perf_counter() - start < 15
    assert [r["iteration"] for r in rows] == [3, 3, 3], "every checkpoint of 30 s comes after the cap of 3"
    assert counted.calls == 1, "a model that has not changed is not evaluated again"
    assert len({r["value"] for r in rows}) == 1 and [r["checkpoint"] for r in rows] == [0, 1, 2]
    assert all(r["seconds"] < 30.0 for r in rows)
    with pytest.raises(ValueError, match="max_iterations"):
        Budget(seconds=1.0, max_iterations=0)
