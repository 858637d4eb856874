"""The scale a chapter runs at, the full-shape smoke run, and where resumable runs keep their checkpoints.

Every chapter has a ``SCALE`` parameter, one of :data:`~ebmlib.report.SCALES`: ``ci`` (seconds, for the tests),
``book`` (the rendered book, minutes on a CPU) and ``full`` (the papers' settings, for a GPU). Three environment
variables change how a chapter runs without editing it:

``EBMLIB_SCALE``
    The default of ``SCALE`` (``book`` when unset).
``EBMLIB_SMOKE``
    ``1`` for the smoke run: a chapter at ``full`` keeps the shapes of every step of its ``full`` settings
    (dimensions, networks, batch sizes, buffer and chain counts, evaluation chunks) but caps repeated work —
    iteration counts, chain lengths, the toys or seeds an experiment loops over, chunked evaluation sample counts
    (:func:`~ebmlib.scale.smoke_cap`) — so that every ``full`` code path runs in minutes on a CPU.
``EBMLIB_RUNS``
    The folder holding the run directories of resumable training (:func:`~ebmlib.scale.run_dir`); default
    ``runs`` inside the data cache (:func:`~ebmlib.data.data_home`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ebmlib.data import (
    ADULT_COLUMNS,
    CIFAR10_ARCHIVE,
    CIFAR10_BATCHES,
    MNIST_FILES,
    REMOTE_FILES,
    RemoteFile,
    citation_like_graph,
    data_home,
)
from ebmlib.ledger import Capped, Repeats
from ebmlib.report import SCALES
from ebmlib.utils import check_int

_SMOKE_ENV = "EBMLIB_SMOKE"
_RUNS_ENV = "EBMLIB_RUNS"


def smoke_run() -> bool:
    """Whether this is the smoke run (``EBMLIB_SMOKE=1``); ``0`` or unset is a normal run."""
    value = os.environ.get(_SMOKE_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{_SMOKE_ENV} must be 0 or 1, got {value!r}")
    return value == "1"


def smoke_cap(
    settings: Mapping[str, Any], caps: Mapping[str, int], first: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """``settings`` with each entry named in ``caps`` lowered to at most its cap in the smoke run.

    Outside the smoke run the settings are returned unchanged (as a new dict). Only counts of work — training
    iterations, sampler steps, chain lengths, warm-up steps (a cap may be 0), evaluation chunks — belong in
    ``caps``; the shapes of one step stay as they are, so the smoke run allocates what ``full`` allocates. A
    setting that is a tuple of counts (a schedule such as the iterations at which to take snapshots) has each
    entry capped, repeated entries dropped. ``first`` names settings that list repetitions of one code path (the
    toys or seeds an experiment loops over): the smoke run keeps only their first entries, since the others run the
    same code.

    Examples
    --------
    >>> smoke_cap({"n_iters": 20_000, "batch_size": 256}, {"n_iters": 3})["batch_size"]
    256
    """
    if not isinstance(settings, Mapping):
        raise ValueError(f"settings must be a mapping, got {type(settings).__name__}")
    first = {} if first is None else first
    for label, counts in (("caps", caps), ("first", first)):
        if not isinstance(counts, Mapping):
            raise ValueError(f"{label} must be a mapping of setting names to counts, got {type(counts).__name__}")
        unknown = sorted(set(counts) - set(settings))
        if unknown:
            raise ValueError(f"{label} names settings that do not exist: {unknown}")
        for name, cap in counts.items():  # a cap may be 0 (no warm-up step); `first` keeps at least one entry
            check_int(cap, f"{label}[{name!r}]", minimum=0 if label == "caps" else 1)
    for name in caps:
        value = settings[name]
        counts = value if isinstance(value, (tuple, list)) else (value,)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            raise ValueError(f"caps[{name!r}]: settings[{name!r}] must be a count or a tuple of counts, got {value!r}")
    for name in first:
        if not isinstance(settings[name], (tuple, list)):
            raise ValueError(f"first[{name!r}]: settings[{name!r}] must be a tuple or list, got {settings[name]!r}")
    capped = dict(settings)
    if smoke_run():
        for name, cap in caps.items():
            value = capped[name]
            if isinstance(value, (tuple, list)):  # a schedule (e.g. snapshot iterations): capped, repeats dropped
                kept: dict[int, Capped] = {}
                for v in sorted(value):  # of equal capped values, the last keeps the largest full value
                    kept[min(v, cap)] = Capped(min(v, cap), v)
                capped[name] = type(value)(kept[min(v, cap)] for v in dict.fromkeys(min(v, cap) for v in value))
            else:
                capped[name] = Capped(min(value, cap), value)
        for name, n in first.items():
            value = capped[name]
            capped[name] = Repeats(tuple(value[:n]), len(value)) if isinstance(value, tuple) else value[:n]
    return capped


def study_budgets(n_iters: int, factors: Sequence[float]) -> list[int]:
    """The iterations of a budget study of an experiment of ``n_iters`` iterations: ``round(f · n_iters)`` for
    each of ``factors``, at least 1, sorted, repeats dropped.

    In the smoke run ``n_iters`` is a :class:`~ebmlib.ledger.Capped` count, and each budget is one too, of
    ``round(f · full)`` iterations at ``full`` — so the cost ledger counts a study's runs at their full length.

    Examples
    --------
    >>> study_budgets(300, (0.25, 0.5, 1, 2))
    [75, 150, 300, 600]
    """
    check_int(n_iters, "n_iters", minimum=1)
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Sequence) or not factors or not all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < math.inf for f in factors):
        raise ValueError(f"factors must be a non-empty sequence of positive numbers, got {factors!r}")
    full = getattr(n_iters, "full", None)
    budgets: dict[int, int] = {}
    for f in sorted(factors):
        value = max(1, round(f * n_iters))
        budgets[value] = value if full is None else Capped(value, max(1, round(f * full)))
    return sorted(budgets.values())


def runs_home() -> Path:
    """The folder of run directories: ``EBMLIB_RUNS``, else ``<data home>/runs``."""
    value = os.environ.get(_RUNS_ENV)
    return Path(value).expanduser() if value else data_home() / "runs"


@cache
def _smoke_runs() -> Path:
    # A fresh folder per process: a smoke run must train, never find a finished run and skip it.
    return Path(tempfile.mkdtemp(prefix="ebmlib-smoke-runs-"))


def run_dir(chapter: str, experiment: str, scale: str) -> Path | None:
    """The run directory of one experiment of a chapter, for :func:`~ebmlib.train.fit`'s ``run_dir``.

    At ``full`` scale: ``<runs home>/<chapter>/<experiment>``, so re-running a chapter after a disconnect
    skips its finished experiments and continues the unfinished ones from their last checkpoint. In the smoke
    run, a fresh temporary folder per process instead (the checkpoints are written and timed, never reused).
    At ``ci`` and ``book`` scale: ``None`` (runs of seconds to minutes are not checkpointed).
    """
    for value, name in ((chapter, "chapter"), (experiment, "experiment")):
        if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
            raise ValueError(f"{name} must be a non-empty folder name, got {value!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if scale != "full":
        return None
    root = _smoke_runs() if smoke_run() else runs_home()
    return root / chapter / experiment


def smoke_data(*datasets: str) -> Path | None:
    """In the smoke run, fixture files in place of the downloaded ``datasets``; outside it, nothing (``None``).

    The smoke run must not need the internet, yet it should pass the real data's shapes through the chapter's
    ``full`` code. For each of ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"adult"`` and ``"citeseer"``
    this writes files of the published format and size, filled with random values — 60,000 + 10,000 MNIST or
    Fashion-MNIST images of 28×28 levels (gzipped IDX), CIFAR-10's binary archive (50,000 + 10,000 records),
    Adult's 32,561 rows with its columns and numbers of categories (UCI format, some ``?``), a Planetoid
    adjacency-list pickle of 3,327 nodes (:func:`~ebmlib.data.citation_like_graph`) — into a fresh temporary
    data folder, points ``EBMLIB_DATA`` at it and replaces the data sets' entries of
    :data:`~ebmlib.data.REMOTE_FILES` by the fixtures' SHA-256 (in this process only), so that the loaders'
    own fetch-and-verify path reads them. It prints one line saying so: no result obtained on these files
    means anything.

    Returns
    -------
    The temporary data folder, or ``None`` outside the smoke run.
    """
    for dataset in datasets:
        if dataset not in _FIXTURES:
            raise ValueError(f"datasets must be among {sorted(_FIXTURES)}, got {dataset!r}")
    if not smoke_run():
        return None
    home = Path(tempfile.mkdtemp(prefix="ebmlib-smoke-data-"))
    os.environ["EBMLIB_DATA"] = str(home)
    rng = np.random.default_rng(0)
    for dataset in datasets:
        folder = home / dataset
        folder.mkdir()
        remotes = []
        for name, body in _FIXTURES[dataset](rng).items():
            (folder / name).write_bytes(body)
            remotes.append(RemoteFile(name, hashlib.sha256(body).hexdigest(), len(body), ()))
        REMOTE_FILES[dataset] = tuple(remotes)
    print(f"smoke run: random fixture files of the format and size of {', '.join(datasets)} in {home} "
          "(not the real data)")
    return home


def _idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), compresslevel=1)


def _mnist_fixture(rng: np.random.Generator) -> dict[str, bytes]:
    files = {}
    for split, n in (("train", 60_000), ("test", 10_000)):
        images, labels = MNIST_FILES[split]
        files[images] = _idx_gz(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        files[labels] = _idx_gz(rng.integers(0, 10, n, dtype=np.uint8))
    return files


def _cifar10_fixture(rng: np.random.Generator) -> dict[str, bytes]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for name in (*CIFAR10_BATCHES["train"], *CIFAR10_BATCHES["test"]):
            records = rng.integers(0, 256, (10_000, 1 + 3 * 32 * 32), dtype=np.uint8)
            records[:, 0] %= 10
            info = tarfile.TarInfo(name)
            info.size = records.nbytes
            archive.addfile(info, io.BytesIO(records.tobytes()))
    return {CIFAR10_ARCHIVE: buffer.getvalue()}


# Adult's categorical columns and their numbers of values in adult.data (income last, sex and income named).
_ADULT_LEVELS = {"workclass": 8, "education": 16, "marital-status": 7, "occupation": 14, "relationship": 6,
                 "race": 5, "sex": ("Male", "Female"), "native-country": 41, "income": ("<=50K", ">50K")}


def _adult_fixture(rng: np.random.Generator) -> dict[str, bytes]:
    n = 32_561
    columns = {}
    for name in ADULT_COLUMNS:
        levels = _ADULT_LEVELS.get(name)
        if levels is None:
            columns[name] = rng.integers(0, 100, n).astype(str)
        else:
            values = levels if isinstance(levels, tuple) else tuple(f"{name}-{k}" for k in range(levels))
            columns[name] = np.asarray(values)[rng.integers(0, len(values), n)]
    columns["workclass"][rng.random(n) < 0.07] = "?"  # adult.data: 2,399 rows with a missing value
    lines = (", ".join(row) for row in zip(*(columns[name] for name in ADULT_COLUMNS)))
    return {"adult.data": ("\n".join(lines) + "\n").encode()}


def _citeseer_fixture(rng: np.random.Generator) -> dict[str, bytes]:
    graph = citation_like_graph(3327, seed=int(rng.integers(2**31)))
    adjacency = defaultdict(list, {int(v): [int(u) for u in graph.adj[v]] for v in graph})
    return {"ind.citeseer.graph": pickle.dumps(adjacency, protocol=2)}


_FIXTURES = {"mnist": _mnist_fixture, "fashion_mnist": _mnist_fixture, "cifar10": _cifar10_fixture,
             "adult": _adult_fixture, "citeseer": _citeseer_fixture}
