"""The budgeted runner: train a method on a task for a wall-clock or iteration budget, evaluate at log-spaced
checkpoints with the evaluation time left out of the budget, over several seeds; the result is a tidy table.

Everything one (task, method, seed) run holds between steps lives in a :class:`~ebmlib.bench.Run` — the energy,
the method's loss object (with its chains, flow and adapted step sizes), the optimiser, the EMA, the iteration
and the training seconds. Training goes through :func:`ebmlib.train.fit`, called once per stretch between
checkpoints. A sweep given a run directory (:func:`~ebmlib.bench.compare_methods`) keeps each finished run's
rows there and reads them back when it is run again, so a sweep cut short resumes where it stopped; its runs
train in this process or, as Ray tasks, on a cluster (:mod:`~ebmlib.bench.cluster`).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ebmlib.bench.base import Task, check_task
from ebmlib.bench.cluster import run_calls
from ebmlib.bench.methods import METHODS, Method, check_method, check_methods
from ebmlib.fingerprint import describe_config
from ebmlib.ledger import flushed_denormals, unrecorded
from ebmlib.train import LossFn, fit
from ebmlib.utils import check_int, check_positive, check_probability, measure, seed_everything

ROW_KEYS = ("task", "method", "seed", "checkpoint", "iteration", "seconds", "status", "metric", "value")
"""Columns of the tidy table: one row per run, checkpoint and metric (``value`` is NaN for a diverged run)."""

_EVAL_SEED = 10_000  # evaluation randomness (AIS, Gibbs samples) is seeded apart from training


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
"""The clocks a :class:`~ebmlib.bench.Budget` of seconds can count: ``"wall"`` (elapsed time) or ``"cpu"`` (CPU
seconds of this process, :func:`time.process_time`)."""


@dataclass(frozen=True)
class Budget:
    """How long every run trains, in ``seconds`` of training or in ``iterations`` (exactly one), and how many
    log-spaced checkpoints (the last at the full budget) it is evaluated at.

    ``clock`` says which seconds: ``"wall"`` (default), elapsed time, right when the run has the machine to itself
    (a GPU, whose work the clock waits for); ``"cpu"``, the CPU seconds of the training process, which on a CPU
    (one thread per run) do not count the time another program takes from it — runs stay comparable while other
    work shares the machine. ``max_iterations`` caps the iterations of a budget of seconds: a run stops at whichever
    comes first (the smoke run, :func:`ebmlib.scale.smoke_cap`, uses it to run a chapter's ``full`` sweep for a few
    steps).
    """

    seconds: float | None = None
    iterations: int | None = None
    n_checkpoints: int = 5
    max_iterations: int | None = None
    clock: str = "wall"

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.iterations is None):
            raise ValueError("give exactly one of seconds and iterations")
        if self.seconds is not None:
            check_positive(self.seconds, "seconds")
        else:
            check_int(self.iterations, "iterations", minimum=1)
        check_int(self.n_checkpoints, "n_checkpoints", minimum=1)
        if self.max_iterations is not None:
            check_int(self.max_iterations, "max_iterations", minimum=1)
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {self.clock!r}")

    def checkpoints(self) -> list[float]:
        """Training seconds (or iterations) at which runs are evaluated: ``total / 2**k``, ``k = n - 1, …, 0``."""
        total = self.seconds if self.seconds is not None else self.iterations
        points = [total / 2**k for k in range(self.n_checkpoints - 1, -1, -1)]
        if self.iterations is None:
            return points
        return sorted({max(1, round(p)) for p in points})


@dataclass
class Run:
    """The whole state of one (task, method, seed) run: what :func:`~ebmlib.bench.advance` changes.

    ``rng_state`` holds the run's own torch random state between calls (CPU, and CUDA on a GPU), so runs can
    be interleaved without drawing from one another's stream. ``model`` is what is evaluated: the EMA of the
    parameters when there is one, else the energy itself.
    """

    task: Task
    method: Method
    seed: int
    energy: nn.Module
    loss_fn: LossFn
    optimizer: torch.optim.Optimizer
    next_batch: Callable[[], Tensor]
    ema: AveragedModel | None = None
    iteration: int = 0
    seconds: float = 0.0
    status: str = "ok"
    error: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    rng_state: dict[str, Tensor] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        return self.energy if self.ema is None else self.ema.module


def _check_methods(methods: Any) -> list[str]:
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise ValueError(f"methods must be a non-empty sequence of method names, got {methods!r}")
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; choose from {sorted(METHODS)}")
    return list(methods)


def _check_run(run: Any) -> Run:
    if not isinstance(run, Run):
        raise ValueError(f"run must be a Run (see start_run), got {type(run).__name__}")
    return run


def _check_budget(budget: Any) -> Budget:
    if not isinstance(budget, Budget):
        raise ValueError(f"budget must be a Budget, got {type(budget).__name__}")
    return budget


def start_run(task: Task, method: Method | str, seed: int, *, ema_decay: float | None = 0.99) -> Run:
    """Seed everything with ``seed``, then build the energy, the method's loss, Adam and the EMA.

    ``method`` is a :class:`~ebmlib.bench.Method` or its name in :data:`~ebmlib.bench.METHODS`.

    The learning rate is the method's own if it has one (:class:`~ebmlib.bench.Training`), else the task's.
    """
    method = check_method(method)  # a name in METHODS becomes its Method
    if method.kind != check_task(task).kind:
        raise ValueError(f"method {method.name!r} is for {method.kind} tasks, task {task.name!r} is {task.kind}")
    seed_everything(check_int(seed, "seed", minimum=0))
    energy = task.make_energy()
    training = method.build(task, energy)
    optimizer = torch.optim.Adam(energy.parameters(), lr=training.lr or task.lr)
    ema = None
    if ema_decay is not None:
        ema = AveragedModel(energy, multi_avg_fn=get_ema_multi_avg_fn(check_probability(ema_decay, "ema_decay")))
    run = Run(task, method, seed, energy, training.loss_fn, optimizer, task.batches(), ema)
    _save_rng(run)
    return run


def _save_rng(run: Run) -> None:
    run.rng_state = {"cpu": torch.get_rng_state()}
    if run.task.device.type == "cuda":
        run.rng_state["cuda"] = torch.cuda.get_rng_state(run.task.device)


def _restore_rng(run: Run) -> None:
    torch.set_rng_state(run.rng_state["cpu"])
    if "cuda" in run.rng_state:
        torch.cuda.set_rng_state(run.rng_state["cuda"], run.task.device)


def _penalised(loss_fn: LossFn, task: Task, model: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    out = loss_fn(model, batch)
    loss, logs = out if isinstance(out, tuple) else (out, {})
    penalty = task.penalty(model)
    return (loss if penalty is None else loss + penalty), logs


def _diverged(run: Run, error: Exception) -> None:
    """Mark ``run`` diverged if ``error`` reports a non-finite value (the loss, an energy, a gradient, a
    probability); anything else is a bug and propagates."""
    if not re.search(r"nan|inf", str(error), flags=re.IGNORECASE):
        raise error
    run.status, run.error = "diverged", str(error)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def advance(run: Run, n_iters: int, *, clock: str = "wall") -> None:
    """Train ``run`` for ``n_iters`` more iterations with :func:`ebmlib.train.fit`, adding the time it took on
    ``clock`` (:data:`~ebmlib.bench.CLOCKS`) to ``run.seconds``.

    A non-finite loss, energy or gradient (``fit`` and the samplers raise) marks the run ``"diverged"``; any
    other error propagates.
    """
    _check_run(run)
    check_int(n_iters, "n_iters", minimum=1)
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}")
    now = CLOCKS[clock]
    callback = None if run.ema is None else (lambda _iteration, model: run.ema.update_parameters(model))
    _restore_rng(run)
    _synchronize(run.task.device)
    start = now()
    try:
        # Nothing inside the run's budget slowed by the cost ledger's counter or by denormal floats
        with unrecorded(), flushed_denormals():
            fit(run.energy, partial(_penalised, run.loss_fn, run.task), run.next_batch, n_iters=n_iters,
                optimizer=run.optimizer, grad_clip=run.task.grad_clip, log_every=n_iters, callback=callback,
                progress=False)
    except (RuntimeError, ValueError) as error:
        _diverged(run, error)
    _synchronize(run.task.device)
    run.seconds += now() - start
    run.iteration += n_iters
    _save_rng(run)


def evaluate(run: Run, checkpoint: int) -> list[dict[str, Any]]:
    """Rows of the tidy table for ``run`` now; the task's metrics are computed under their own seed, so
    evaluating never changes what the run draws next. A diverged run gets NaN values. A run that has not
    trained since its last evaluation (it stopped at ``max_iterations``) gets that evaluation's values again."""
    _check_run(run)
    check_int(checkpoint, "checkpoint", minimum=0)
    if run.rows and run.rows[-1]["iteration"] == run.iteration and run.rows[-1]["status"] == run.status:
        last = run.rows[-1]["checkpoint"]
        rows = [{**r, "checkpoint": checkpoint} for r in run.rows if r["checkpoint"] == last]
        run.rows += rows
        return rows
    base = {"task": run.task.name, "method": run.method.name, "seed": run.seed, "checkpoint": checkpoint,
            "iteration": run.iteration, "seconds": run.seconds}
    metrics: dict[str, float] = {}
    if run.status == "ok":
        device = run.task.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(_EVAL_SEED + run.seed)
            try:
                metrics = run.task.evaluate(run.model)
            except (RuntimeError, ValueError) as error:
                _diverged(run, error)
        if not all(math.isfinite(v) for v in metrics.values()):
            run.status, run.error = "diverged", "a metric is not finite"
    if run.status != "ok":  # NaN for every metric the run had (its task's primary one if none yet)
        metrics = dict.fromkeys([r["metric"] for r in run.rows if r["checkpoint"] == 0] or [run.task.primary],
                                math.nan)
    rows = [{**base, "status": run.status, "metric": name, "value": float(value)} for name, value in metrics.items()]
    run.rows += rows
    return rows


def _next_chunk(run: Run, budget: Budget, target: float) -> int:
    if budget.iterations is not None:
        return int(target) - run.iteration
    if run.iteration == 0:
        return 1
    rate = run.iteration / run.seconds
    chunk = max(1, min(round((target - run.seconds) * rate), 2 * run.iteration))
    return chunk if budget.max_iterations is None else min(chunk, budget.max_iterations - run.iteration)


def _training(run: Run, budget: Budget, target: float) -> bool:
    """Whether ``run`` trains on before the checkpoint at ``target`` (seconds or iterations)."""
    if run.status != "ok":
        return False
    if budget.iterations is not None:
        return run.iteration < target
    return run.seconds < target and (budget.max_iterations is None or run.iteration < budget.max_iterations)


def run_method(task: Task, method: Method | str, seed: int, budget: Budget, *,
               ema_decay: float | None = 0.99) -> list[dict[str, Any]]:
    """Train one method on one task from ``seed`` for ``budget``, evaluating at every checkpoint.

    Returns the rows (:data:`~ebmlib.bench.ROW_KEYS`) of all checkpoints; a run that diverges gets NaN values
    with ``status="diverged"`` at every remaining checkpoint. Only the time spent in :func:`ebmlib.train.fit`
    counts towards a budget of seconds; evaluation is not timed. A ``"cpu"`` clock needs a task on the CPU.
    """
    _check_budget(budget)
    if budget.clock == "cpu" and task.device.type != "cpu":
        raise ValueError(f"budget.clock 'cpu' counts CPU seconds, which miss the work of a {task.device.type} "
                         "device: use clock='wall' there")
    run = start_run(task, check_method(method), seed, ema_decay=ema_decay)
    for checkpoint, target in enumerate(budget.checkpoints()):
        while _training(run, budget, target):
            advance(run, _next_chunk(run, budget, target), clock=budget.clock)
        evaluate(run, checkpoint)
    return run.rows


def compare_methods(task: Task, methods: Sequence[str], seeds: Sequence[int], budget: Budget, *,
                    ema_decay: float | None = 0.99, progress: bool = True, run_dir: str | Path | None = None,
                    backend: str = "inprocess", address: str | None = None) -> list[dict[str, Any]]:
    """:func:`~ebmlib.bench.run_method` for every method and seed: the tidy table of one task.

    Every (method, seed) run starts from :func:`ebmlib.utils.seed_everything` of its seed, so its rows do not
    depend on which other pairs run, where, or in which order.

    Parameters
    ----------
    task, methods, seeds, budget, ema_decay
        What runs, for how long (see :func:`~ebmlib.bench.run_method`).
    progress
        Show a progress bar over the runs to train.
    run_dir
        A folder to resume from (e.g. :func:`ebmlib.scale.run_dir`), or ``None``. Each finished run's rows are
        written there (``<task>/<method>-seed<seed>.json``, atomically) together with the configuration that
        made them — the task's and the method's settings (:func:`ebmlib.fingerprint.describe_config`), the
        budget and ``ema_decay``; a later call reads finished runs back instead of training them again. A run
        that was cut short left nothing and restarts from its seed, which for an ``iterations`` budget gives
        bit-for-bit the rows an uninterrupted sweep gives. A stored run made with another configuration is a
        ``ValueError`` (delete it, or choose another folder).
    backend, address
        ``"inprocess"``: one run after the other in this process. ``"ray"``: every run is a task on the Ray cluster
        at ``address`` (:func:`~ebmlib.bench.run_calls`), holding a GPU or a whole node to itself; the
        rows are the same. A ``run_dir`` must then be a folder every node writes to; a run whose worker died
        raises once the other runs have ended, and calling again trains only the runs missing.
    """
    check_task(task)
    methods, budget = _check_methods(methods), _check_budget(budget)
    if isinstance(seeds, str) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"seeds must be a non-empty sequence of integers, got {seeds!r}")
    for i, seed in enumerate(seeds):
        check_int(seed, f"seeds[{i}]", minimum=0)
    pairs = [(name, seed) for name in methods for seed in seeds]
    records = dict.fromkeys(pairs) if run_dir is None else {  # (path, configuration) of each stored run
        (name, seed): (Path(run_dir) / task.name / f"{name}-seed{seed}.json",
                       {"task": describe_config({"task": task, "method": METHODS[name]}), "seed": seed,
                        "budget": asdict(budget), "ema_decay": ema_decay})
        for name, seed in pairs}
    found = {pair: _read_run(*record) for pair, record in records.items() if record is not None}
    todo = [pair for pair in pairs if found.get(pair) is None]
    calls = [(*pair, budget, ema_decay, records[pair]) for pair in todo]
    found.update(zip(todo, run_calls(_train_and_store, task, calls, backend=backend, address=address,
                                     device=task.device, desc=task.name, progress=progress)))
    return [row for pair in pairs for row in found[pair]]


def _train_and_store(task: Task, name: str, seed: int, budget: Budget, ema_decay: float | None,
                     record: tuple[Path, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """:func:`run_method`, its rows then stored at ``record`` (a path and a configuration) if there is one."""
    rows = run_method(task, name, seed, budget, ema_decay=ema_decay)
    if record is not None:
        _write_run(*record, rows)
    return rows


def _read_run(path: Path, config: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rows of a finished run stored at ``path``, or ``None`` if there is none."""
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    if stored["config"] != config:
        changed = sorted(key for key in config if stored["config"].get(key) != config[key])
        raise ValueError(f"run_dir: {path} holds a run made with other settings ({', '.join(changed)} differ); "
                         "delete it or choose another run_dir")
    return stored["rows"]


def _write_run(path: Path, config: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Store a finished run: written to a temporary file and renamed, so ``path`` is whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with partial_path.open("w") as handle:
        json.dump({"config": config, "rows": rows}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial_path, path)


def profile_methods(task: Task, methods: Sequence[Method | str], *, repeats: int = 3) -> list[dict[str, Any]]:
    """Median time and peak tensor memory of one training step of each method (:func:`ebmlib.utils.measure`).

    Rows with ``task``, ``method``, ``ms_per_step`` and ``peak_mib``; the step is one iteration of
    :func:`ebmlib.train.fit` (sampling, loss, backward and Adam), after one warm-up step. ``methods`` are names
    of :data:`~ebmlib.bench.METHODS` or :class:`~ebmlib.bench.Method` objects (a variant with other settings).
    """
    check_task(task)
    rows = []
    for method in check_methods(methods):
        run = start_run(task, method, 0, ema_decay=None)
        result = measure(partial(advance, run, 1), task.device, repeats=repeats)
        rows.append({"task": task.name, "method": method.name, "ms_per_step": 1e3 * result.seconds,
                     "peak_mib": result.peak_bytes / 2**20})
    return rows
