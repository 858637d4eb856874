"""Benchmarks: every training method of the book on the same tasks at equal compute, the time and memory of
ratio matching against RMwGGIS, and batched ensembles against separate runs; on the command line,
``python -m ebmlib.bench methods --task ... --budget ...``, ``python -m ebmlib.bench rmwggis`` and
``python -m ebmlib.bench ensemble``.

* :mod:`~ebmlib.bench.base` — what a task is (:class:`~ebmlib.bench.Task`);
* :mod:`~ebmlib.bench.discrete` — binary tasks: an enumerable Gray-coded toy (exact KL), 2spirals in 32 and 256
  bits, an Ising model with known couplings, binarised digits;
* :mod:`~ebmlib.bench.continuous` — 2D densities with an exact grid KL, the 16-d mixture of chapter 4;
* :mod:`~ebmlib.bench.tasks` — the tasks by name, at the book's three scales (:func:`~ebmlib.bench.make_task`);
* :mod:`~ebmlib.bench.methods` — every training method of the book, built from ``ebmlib``'s losses and samplers;
* :mod:`~ebmlib.bench.runner` — budgets, runs, the tidy table (:func:`~ebmlib.bench.compare_methods`);
* :mod:`~ebmlib.bench.cluster` — the runs of a sweep in this process or as Ray tasks, each with a GPU or a node
  to itself;
* :mod:`~ebmlib.bench.summary` — anytime curves, equal-budget tables, the verdict per task, CSV;
* :mod:`~ebmlib.bench.rmwggis` — one training step of RM vs RMwGGIS by dimension (RMwGGIS paper, Table 2);
* :mod:`~ebmlib.bench.ising` — the Ising benchmark: couplings learned by any objective;
* :mod:`~ebmlib.bench.cost` — what training costs, counted (FLOPs, operators, bytes), and the time it predicts on
  a GPU or this CPU, per chapter at ``full`` from the smoke run's ledgers;
* :mod:`~ebmlib.bench.ensemble` — ``K`` networks trained as one batched run against ``K`` separate runs;
* :mod:`~ebmlib.bench.cli` — the command line.
"""

from ebmlib.bench.base import (
    TASK_KINDS,
    Task,
    check_energy,
    check_task,
)
from ebmlib.bench.cli import (
    main,
)
from ebmlib.bench.cluster import (
    BACKENDS,
    check_backend,
    run_calls,
)
from ebmlib.bench.continuous import (
    ContinuousTask,
    GridDensityTask,
    MixtureTask,
    tilted_mlp,
)
from ebmlib.bench.cost import (
    GPUS,
    DeviceModel,
    calibrate_cpu,
    chapter_costs,
    check_against_measured,
    check_on_this_cpu,
    count_methods,
    format_cost_table,
    predict_seconds,
    read_ledgers,
)
from ebmlib.bench.cost import (
    OperationCount as OperationCount,  # defined in ebmlib.ledger, kept importable from here
)
from ebmlib.bench.cost import (
    count_operations as count_operations,
)
from ebmlib.bench.discrete import (
    BinaryTask,
    CodedToyTask,
    DigitsTask,
    ExactCodeTask,
    IsingTask,
)
from ebmlib.bench.ensemble import (
    DEFAULT_KS,
    ENSEMBLE_CASES,
    EnsembleCase,
    bench_ensemble,
    format_ensemble_table,
)
from ebmlib.bench.ising import (
    IsingFit,
    fit_ising,
)
from ebmlib.bench.methods import (
    METHODS,
    Method,
    Training,
    check_method,
    check_methods,
    methods_for,
)
from ebmlib.bench.rmwggis import (
    COLUMNS,
    DEFAULT_DIMS,
    PAPER_TABLE2,
    RANK_ONE_COLUMNS,
    bench_rmwggis,
    format_table,
    paper_table2_rows,
)
from ebmlib.bench.runner import (
    CLOCKS,
    ROW_KEYS,
    Budget,
    Run,
    advance,
    compare_methods,
    evaluate,
    profile_methods,
    run_method,
    start_run,
)
from ebmlib.bench.summary import (
    anytime,
    equal_budget,
    plot_anytime,
    read_csv,
    which_method,
    write_csv,
)
from ebmlib.bench.tasks import (
    TASKS,
    make_task,
)

__all__ = [
    "TASK_KINDS",
    "Task",
    "check_energy",
    "check_task",
    "BinaryTask",
    "ExactCodeTask",
    "CodedToyTask",
    "IsingTask",
    "DigitsTask",
    "ContinuousTask",
    "GridDensityTask",
    "MixtureTask",
    "tilted_mlp",
    "TASKS",
    "make_task",
    "Training",
    "Method",
    "METHODS",
    "methods_for",
    "check_method",
    "check_methods",
    "CLOCKS",
    "ROW_KEYS",
    "Budget",
    "Run",
    "start_run",
    "advance",
    "evaluate",
    "run_method",
    "compare_methods",
    "profile_methods",
    "DeviceModel",
    "GPUS",
    "calibrate_cpu",
    "chapter_costs",
    "check_against_measured",
    "check_on_this_cpu",
    "format_cost_table",
    "read_ledgers",
    "count_methods",
    "predict_seconds",
    "BACKENDS",
    "check_backend",
    "run_calls",
    "write_csv",
    "read_csv",
    "anytime",
    "equal_budget",
    "which_method",
    "plot_anytime",
    "DEFAULT_DIMS",
    "PAPER_TABLE2",
    "RANK_ONE_COLUMNS",
    "COLUMNS",
    "paper_table2_rows",
    "bench_rmwggis",
    "format_table",
    "IsingFit",
    "fit_ising",
    "DEFAULT_KS",
    "ENSEMBLE_CASES",
    "EnsembleCase",
    "bench_ensemble",
    "format_ensemble_table",
    "main",
]
