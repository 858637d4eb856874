"""Execute the book's chapters side by side into Jupyter Book's execution cache, timing every cell.

``make book`` runs this before ``jupyter-book build``: every chapter whose code cells have no entry in the
execution cache (``_build/.jupyter_cache``, the one Jupyter Book reads) is executed here, ``--jobs`` at a time, and
stored in the cache exactly as Jupyter Book would store it (same reader, same cache key, same working directory and
timeout); the build then finds every chapter cached and only renders. An unchanged chapter is not executed again.

With ``--jobs N`` above 1, each kernel gets ``cores // N`` threads (``OMP_NUM_THREADS``; N at most the number of
chapters to execute): the chapters' tensors are small, so two single-threaded kernels on two cores finish sooner than
one chapter after the other on both cores.
``--jobs 1`` runs one chapter at a time with torch's default threads. Chapter 6 compares methods at equal training
time: on a CPU its runner counts CPU seconds of its one thread (``ebmlib.bench.Budget``), so a chapter beside it does
not shorten its runs; on a GPU it counts wall-clock seconds, so there it runs alone, after the others
(``ALONE_ON_ACCELERATOR``).

Every execution records each cell's time (nbclient's ``record_timing``) in ``_build/profile/<scale>/<chapter>.json``
and its training runs and sampling loops in the cost ledger ``_build/profile/<scale>/cost/<chapter>.jsonl``
(:mod:`ebmlib.ledger`; ``python -m ebmlib.bench cost --check`` compares their measured step times with the cost
model's prediction).
``--profile`` executes the chosen chapters even if cached; ``--table book/setup.md`` rewrites the profile table
between the ``<!-- profile-table -->`` markers of that page from those files: the slowest cells of every chapter
(chapter, section and first line of the cell, seconds, share of the chapter).

Usage::

    python tests/execute_chapters.py [--jobs N] [--profile] [--table book/setup.md] [chapter ...]

``EBMLIB_SCALE`` selects the scale (``book`` by default), as for ``make book``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CACHE = ROOT / "_build" / ".jupyter_cache"
PROFILE = ROOT / "_build" / "profile"
MARKERS = ("<!-- profile-table: start -->", "<!-- profile-table: end -->")
# The order the chapters start in, so that two workers finish close together: the two longest first, then the
# rest as the measured times (one thread each, book scale) pack best.
LONGEST_FIRST = ("01_ratio_matching", "03_energy_discrepancy", "02_joint_mixed", "04_flowmc_ebm", "06_which_method",
                 "05_noise_free", "00_primer")
# Chapters whose budgets are wall-clock seconds on a GPU: executed one at a time, after the others, on a GPU.
ALONE_ON_ACCELERATOR = ("06_which_method",)


def chapters(names: list[str]) -> list[Path]:
    """The chapter sources (``notebooks/NN_*.md``) named, or all of them, the longest first."""
    found = {p.stem: p for p in NOTEBOOKS.glob("[0-9][0-9]_*.md")}
    unknown = sorted(set(names) - set(found))
    if unknown:
        raise SystemExit(f"unknown chapters: {unknown}; choose from {sorted(found)}")
    order = {name: i for i, name in enumerate(LONGEST_FIRST)}
    return [found[n] for n in sorted(names or found, key=lambda n: (order.get(n, len(order)), n))]


def read_chapter(path: Path):
    """The chapter as Jupyter Book reads it (MyST-NB's reader), so that its cache key is the build's."""
    from myst_nb.core.config import NbParserConfig
    from myst_nb.core.read import create_nb_reader
    from myst_parser.config.main import MdParserConfig

    text = path.read_text()
    reader = create_nb_reader(str(path), MdParserConfig(), NbParserConfig(), text)
    return reader.read(text), reader.read_fmt


def cell_label(cells: list, index: int) -> str:
    """Where a code cell is: the section it is in and its first line of code."""
    section = ""
    for cell in cells[:index]:
        if cell.cell_type == "markdown":
            headings = re.findall(r"^#{1,4} (.+)$", cell.source, flags=re.M)
            section = headings[-1].strip() if headings else section
    lines = [ln.strip() for ln in cells[index].source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    first = lines[0] if lines else "(comments only)"
    first = first if len(first) <= 48 else first[:45] + "..."
    return f"{section}: `{first}`" if section else f"`{first}`"


def cell_seconds(cell) -> float:
    """Seconds a code cell took, from the timestamps nbclient recorded."""
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def _accelerated() -> bool:
    """Whether the chapters will run on a GPU (``ebmlib.utils.get_device``'s choice, ``EBMLIB_DEVICE`` included)."""
    from ebmlib.utils import get_device

    return get_device().type != "cpu"


def _execute(path: str, threads: int | None, timeout: int, ledger: str) -> tuple[object, float, str | None]:
    """In a worker process: execute one chapter (its kernel inherits this process's environment), recording its
    training runs and sampling loops in the cost ledger ``ledger`` (:mod:`ebmlib.ledger`)."""
    from jupyter_cache.executors.utils import single_nb_execution

    Path(ledger).parent.mkdir(parents=True, exist_ok=True)
    Path(ledger).unlink(missing_ok=True)
    os.environ["EBMLIB_COST"] = ledger
    if threads is not None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(threads)
    os.environ["TQDM_DISABLE"] = "1"  # progress bars belong to people running a notebook, not to the pages
    nb, _ = read_chapter(Path(path))
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout, allow_errors=False,
                                 meta_override=True, record_timing=True)
    return nb, result.time, result.exc_string if result.err is not None else None


def write_profile(path: Path, nb, seconds: float, scale: str, jobs: int, profiles: Path = PROFILE) -> Path:
    """Store every code cell's time of one execution in ``<profiles>/<scale>/<chapter>.json``."""
    cells = [{"index": i, "label": cell_label(nb.cells, i), "seconds": round(cell_seconds(c), 2)}
             for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    target = profiles / scale / f"{path.stem}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"chapter": path.stem, "scale": scale, "seconds": round(seconds, 1),
                                  "jobs": jobs, "cpus": os.cpu_count(), "cells": cells}, indent=1))
    return target


def profile_table(scale: str, top: int = 3, profiles: Path = PROFILE) -> str:
    """A Markdown table of the ``top`` slowest cells of every profiled chapter."""
    rows = ["| chapter | cell | seconds | share |", "|---|---|---|---|"]
    files = sorted((profiles / scale).glob("[0-9][0-9]_*.json"))
    if not files:
        raise SystemExit(f"no profiles in {profiles / scale}: execute the chapters first")
    for file in files:
        record = json.loads(file.read_text())
        total = sum(c["seconds"] for c in record["cells"]) or 1.0
        for cell in sorted(record["cells"], key=lambda c: -c["seconds"])[:top]:
            label = cell["label"].replace("|", "\\|")
            share = cell["seconds"] / total
            rows.append(f"| {record['chapter'][:2]} | {label} | {cell['seconds']:.0f} | {share:.0%} |")
    return "\n".join(rows)


def rewrite_between(page: Path, markers: tuple[str, str], body: str) -> None:
    """Replace what lies between the two ``markers`` of ``page`` with ``body`` (a generated table)."""
    text = page.read_text()
    start, end = (text.find(m) for m in markers)
    if start < 0 or end < start:
        raise SystemExit(f"{page} lacks the markers {markers}")
    page.write_text(text[: start + len(markers[0])] + "\n\n" + body + "\n\n" + text[end:])


def update_page(page: Path, scale: str, profiles: Path = PROFILE) -> None:
    """Rewrite the profile table between the markers of ``page``."""
    rewrite_between(page, MARKERS, profile_table(scale, profiles=profiles))


def execute(paths: list[Path], *, jobs: int, scale: str, force: bool = False, cache_dir: Path = CACHE,
            profiles: Path = PROFILE, timeout: int | None = None) -> list[str]:
    """Execute the chapters of ``paths`` missing from the cache (all of them with ``force``), ``jobs`` at a time,
    into the cache and the profiles; returns the names of the chapters that failed."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    if timeout is None:
        timeout = yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]["timeout"]
    cache = get_cache(str(cache_dir))
    todo = []
    for path in paths:
        nb, _ = read_chapter(path)
        try:
            cache.match_cache_notebook(nb)
            cached = True
        except KeyError:
            cached = False
        if force or not cached:
            todo.append(path)
    # Cores shared among the kernels that run at once (never more kernels than chapters to execute).
    threads = None if jobs == 1 else max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(todo))))
    alone = [p for p in todo if p.stem in ALONE_ON_ACCELERATOR] if jobs > 1 and _accelerated() else []
    print(f"executing {len(todo)} chapter(s) at {scale} scale, {jobs} at a time"
          + (f", {threads} thread(s) each" if threads else "")
          + (": " + ", ".join(p.stem for p in todo) if todo else " (all cached)")
          + (f"; on the GPU {', '.join(p.stem for p in alone)} after the others, alone" if alone else ""), flush=True)
    failed = []
    start = time.perf_counter()

    def ledger(path: Path) -> str:
        return str(profiles / scale / "cost" / f"{path.stem}.jsonl")

    def results():
        """(chapter, execution) pairs: the side-by-side chapters as they finish in order, then those run alone."""
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [(path, pool.submit(_execute, str(path), threads, timeout, ledger(path)))
                       for path in todo if path not in alone]
            for path, future in futures:
                yield path, future.result()
        with ProcessPoolExecutor(max_workers=1) as solo:
            for path in alone:
                yield path, solo.submit(_execute, str(path), None, timeout, ledger(path)).result()

    for path, (nb, seconds, error) in results():
        if error is not None:
            failed.append(path.stem)
            print(f"{path.stem}: FAILED after {seconds:.0f} s\n{error[-4000:]}", flush=True)
            continue
        profile = write_profile(path, nb, seconds, scale, jobs, profiles)
        for cell in nb.cells:  # jupyter-cache hashes cell metadata: drop the timings, or no build would match
            cell.metadata.pop("execution", None)
        _, read_fmt = read_chapter(path)
        record = cache.add_nb_to_project(str(path), read_data=read_fmt)
        cache.cache_notebook_bundle(CacheBundleIn(nb, record.uri, data={"execution_seconds": seconds}),
                                    check_validity=False, overwrite=True)
        print(f"{path.stem}: executed in {seconds:.0f} s (cell times: {profile})", flush=True)
    if todo:
        print(f"all executions took {time.perf_counter() - start:.0f} s", flush=True)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter names such as 01_ratio_matching (default: all)")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("BOOK_JOBS", os.cpu_count() or 1)),
                        help="chapters executed at a time (default: BOOK_JOBS or the number of cores)")
    parser.add_argument("--profile", action="store_true", help="execute the chapters even if they are cached")
    parser.add_argument("--table", type=Path, help="rewrite the profile table of this page (e.g. book/setup.md)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    scale = os.environ.get("EBMLIB_SCALE", "book")
    failed = execute(chapters(args.chapters), jobs=args.jobs, scale=scale, force=args.profile)
    if args.table is not None:
        update_page(args.table, scale)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
