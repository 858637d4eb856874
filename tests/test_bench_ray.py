"""Sweeps on Ray (ebmlib.bench.compare_methods with backend="ray", the command line's --backend ray) on a local Ray
instance of two CPUs: the rows and the stored runs of the in-process runner, one run at a time on the node's CPUs,
a sweep whose worker was killed in the middle of a run resumes without training its finished runs again, and the
default, in-process sweep that neither needs nor imports Ray."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
import ray
import torch
from ray import cloudpickle

import ebmlib.bench.cluster as cluster_module
from ebmlib.bench import Budget, compare_methods, main, make_task, read_csv

pytestmark = pytest.mark.quiet  # a Ray node's two threads per run: after the chapters' kernels

BUDGET = Budget(iterations=4, n_checkpoints=2)
METHODS = ["RM", "ED-Bern"]
SEEDS = [0, 1]
NODE_CPUS = 2


@pytest.fixture(scope="module")
def cluster():
    # The workers unpickle this module's task wrapper without importing tests/ (not on their path).
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=NODE_CPUS, include_dashboard=False)
    yield
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def task():
    return make_task("gray16", "ci", device="cpu", n_bits=5, hidden=16)  # 2**10 states: a run takes milliseconds


@contextmanager
def node_threads():
    """Torch on the threads of a worker holding the node: float sums in the worker's order, so rows agree to the
    bit (the tests' other modules run on one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(NODE_CPUS)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def in_process(task, tmp_path_factory):
    """The in-process sweep's rows and the folder of its stored runs."""
    runs = tmp_path_factory.mktemp("in-process")
    with node_threads():
        rows = compare_methods(task, METHODS, SEEDS, BUDGET, progress=False, run_dir=runs)
    return rows, runs / task.name


def _without_seconds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def _records(folder: Path) -> dict[str, dict[str, Any]]:
    """The stored runs of a sweep, by file name, with the training seconds left out."""
    return {path.name: {**stored, "rows": _without_seconds(stored["rows"])}
            for path in sorted(folder.glob("*.json")) for stored in [json.loads(path.read_text())]}


def test_a_ray_sweep_stores_and_returns_what_the_in_process_runner_does(cluster, task, in_process, tmp_path):
    rows, stored = in_process
    remote = compare_methods(task, METHODS, SEEDS, BUDGET, progress=False, run_dir=tmp_path, backend="ray")
    # Bit for bit, order included: an iteration budget makes every run a function of its seed alone.
    assert _without_seconds(remote) == _without_seconds(rows)
    assert _records(tmp_path / task.name) == _records(stored)
    assert len(_records(stored)) == len(METHODS) * len(SEEDS)
    again = compare_methods(task, METHODS, SEEDS, BUDGET, progress=False, run_dir=tmp_path, backend="ray")
    assert again == remote, "a finished sweep is read back whole, seconds included"


class Watched:
    """A task that logs, for every run, its start (with the torch threads of its process) and its evaluations;
    the run that starts once ``hold_at`` runs are stored in ``runs`` writes its process id to ``held`` at its
    first evaluation and waits there to be killed (one run only: the first to create ``held``)."""

    def __init__(self, task, log: Path, runs: Path, held: Path, hold_at: int):
        self.task, self.log, self.runs, self.held, self.hold_at = task, log, runs, held, hold_at

    def __getattr__(self, name):
        if name.startswith("__") or name == "task":  # unpickling looks these up before task is set
            raise AttributeError(name)
        return getattr(self.task, name)

    def _note(self, event: dict[str, Any]) -> None:
        with self.log.open("a") as handle:  # one short append per event: whole lines from every process
            handle.write(json.dumps(event) + "\n")

    def make_energy(self):
        self._note({"event": "start", "threads": torch.get_num_threads()})
        return self.task.make_energy()

    def evaluate(self, model):
        self._note({"event": "evaluate"})
        if len(list(self.runs.glob("*.json"))) == self.hold_at and self._claim():
            time.sleep(300)
        return self.task.evaluate(model)

    def _claim(self) -> bool:
        try:
            fd = os.open(self.held, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _wait_for_pid(path: Path, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, "no run was held"
        time.sleep(0.05)
    return int(path.read_text())


def test_a_sweep_whose_worker_was_killed_resumes_without_training_finished_runs_again(cluster, task, in_process,
                                                                                        tmp_path):
    runs = tmp_path / "runs"
    watched = Watched(task, tmp_path / "events.jsonl", runs / task.name, tmp_path / "held", hold_at=3)
    with ThreadPoolExecutor(1) as pool:
        sweep = pool.submit(compare_methods, watched, METHODS, SEEDS, BUDGET, progress=False, run_dir=runs,
                            backend="ray")
        pid = _wait_for_pid(tmp_path / "held")
        stored = {path: (path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes())
                  for path in (runs / task.name).glob("*.json")}
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ray.exceptions.WorkerCrashedError):
            sweep.result(timeout=120)
    assert len(stored) == 3 and len(list((runs / task.name).glob("*.json"))) == 3, "the killed run left a record"
    first = _events(tmp_path / "events.jsonl")

    resumed = compare_methods(watched, METHODS, SEEDS, BUDGET, progress=False, run_dir=runs, backend="ray")
    rerun = _events(tmp_path / "events.jsonl")[len(first):]
    assert [e["event"] for e in rerun] == ["start", "evaluate", "evaluate"], "finished runs were trained again"
    assert all((path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes()) == before
               for path, before in stored.items()), "a finished run's record was rewritten"
    assert _without_seconds(resumed) == _without_seconds(in_process[0])
    # One run at a time on the node, on all its CPUs: no run started before the previous one's last evaluation.
    whole_run = ["start", "evaluate", "evaluate"]
    assert [e["event"] for e in first + rerun] == whole_run * 3 + ["start", "evaluate"] + whole_run
    assert {e["threads"] for e in first + rerun if e["event"] == "start"} == {NODE_CPUS}


def test_the_command_line_runs_its_sweep_on_ray(cluster, tmp_path):
    command = ["methods", "--task", "gray16", "--scale", "ci", "--iterations", "2", "--checkpoints", "1", "--seeds",
               "0", "--methods", "RM", "--device", "cpu", "--out", str(tmp_path)]
    assert main([*command, "--backend", "ray"]) == 0
    plt.close("all")
    with node_threads():
        rows = compare_methods(make_task("gray16", "ci", device="cpu"), ["RM"], [0],
                               Budget(iterations=2, n_checkpoints=1), progress=False)
    assert _without_seconds(read_csv(tmp_path / "gray16.csv")) == _without_seconds(rows)
    with pytest.raises(ValueError, match="address.*backend='ray'"):
        main([*command, "--address", "127.0.0.1:6379"])


def test_the_default_backend_needs_no_ray(task, in_process, monkeypatch):
    assert not hasattr(cluster_module, "ray"), "importing ebmlib imports Ray"
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with node_threads():
        rows = compare_methods(task, METHODS[:1], SEEDS[:1], BUDGET, progress=False)
    assert _without_seconds(rows) == _without_seconds(in_process[0][:len(rows)])
    with pytest.raises(ImportError, match=re.escape("pip install 'ebmlib[cluster]'")):
        compare_methods(task, METHODS[:1], SEEDS[:1], BUDGET, progress=False, backend="ray")
