"""The full-shape smoke run: every chapter at ``SCALE=full`` with ``EBMLIB_SMOKE=1`` (``make test-full-smoke``).

Each chapter is executed by papermill in its own child process, so that the peak resident memory of that
process tree (``getrusage(RUSAGE_CHILDREN)``: the largest of papermill and the kernel, which holds the data and
models) belongs to that chapter alone. The smoke run keeps every ``full`` shape and caps iterations and chain
lengths (:func:`ebmlib.scale.smoke_cap`); downloaded data are replaced by fixture files of the same format and
size (:func:`ebmlib.scale.smoke_data`). Training at ``full`` writes resumable checkpoints
(:func:`ebmlib.scale.run_dir`); each chapter's kernel gets its own temporary folder, in which the run directories
are found afterwards and their checkpoints measured: size on disk, and the time one save of that state takes
(:func:`ebmlib.checkpoint.save_checkpoint`, the atomic write ``fit`` uses, best of three).

Usage: ``python tests/smoke.py [--jobs N] [chapter ...]`` (default: one chapter at a time, every chapter whose
notebook reads ``EBMLIB_SMOKE``). With ``--jobs 2`` two chapters run side by side, each kernel on one thread
(``OMP_NUM_THREADS=1``), as ``.ci/run`` does on its two cores; each chapter's time is then its time beside
another. Prints a table and writes ``_build/smoke/report.json``; exits non-zero if a chapter failed.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from execute_chapters import rewrite_between

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "_build" / "smoke"
COST = OUT / "cost"
COST_MARKERS = ("<!-- cost-table: start -->", "<!-- cost-table: end -->")
COST_PAGES = (ROOT / "book" / "setup.md", ROOT / "README.md")


# The longest chapters first, as the last smoke run measured them (seconds, two at a time: 1 337, 4 289, 3 183,
# 5 152, 2 128, 6 88), so that two workers finish close together.
LONGEST_FIRST = ("01_ratio_matching", "04_flowmc_ebm", "03_energy_discrepancy", "05_noise_free", "02_joint_mixed",
                 "06_which_method")


def chapters() -> list[str]:
    """The chapters whose notebooks support the smoke run (their source calls ``smoke_cap`` or ``smoke_run``)."""
    found = [p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.md") if re.search(r"\bsmoke_(cap|run)\(", p.read_text())]
    return sorted(found, key=lambda c: (LONGEST_FIRST.index(c) if c in LONGEST_FIRST else len(LONGEST_FIRST), c))


def run_one(chapter: str) -> dict:
    """Execute one chapter in a child process; return its time, peak memory and checkpoints."""
    tmp = Path(tempfile.mkdtemp(prefix=f"ebm-smoke-{chapter}-"))
    ledger = COST / f"{chapter}.jsonl"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.unlink(missing_ok=True)
    env = dict(os.environ, EBMLIB_SMOKE="1", EBMLIB_SCALE="full", TMPDIR=str(tmp), MPLBACKEND="Agg",
               TQDM_DISABLE="1", EBMLIB_COST=str(ledger))
    env.pop("EBMLIB_MNIST", None)
    env.pop("EBMLIB_ADULT", None)
    command = [sys.executable, "-m", "papermill", str(NOTEBOOKS / f"{chapter}.ipynb"), str(OUT / f"{chapter}.ipynb"),
               "-p", "SCALE", "full", "--cwd", str(NOTEBOOKS), "-k", "python3", "--no-progress-bar"]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    row = {"chapter": chapter, "ok": proc.returncode == 0, "seconds": round(seconds, 1),
           "peak_rss_mb": round(peak_mb), "checkpoints": checkpoints(tmp)}
    shutil.rmtree(tmp, ignore_errors=True)  # fixture data and checkpoints: hundreds of MB
    if proc.returncode != 0:
        row["error"] = proc.stderr[-3000:]
    return row


def checkpoints(tmp: Path) -> list[dict]:
    """Size and save time of every run directory's checkpoint written under ``tmp``."""
    import torch

    from ebmlib.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint

    torch.set_num_threads(1)
    rows = []
    # rglob: run directories may nest (compare_tstr keeps one per loss inside its own)
    found = [(home, path) for home in tmp.glob("ebmlib-smoke-runs-*") for path in home.rglob(CHECKPOINT_NAME)]
    for home, path in sorted(found):
        state = load_checkpoint(path)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            save_checkpoint(tmp / "resave.pt", state)
            times.append(time.perf_counter() - start)
        rows.append({"experiment": path.parent.relative_to(home).as_posix(),
                     "mb": round(path.stat().st_size / 1e6, 2), "save_seconds": round(min(times), 3)})
    return rows


def run_isolated(chapter: str, threads: int | None) -> dict:
    """:func:`run_one` in a fresh interpreter (``RUSAGE_CHILDREN`` is a running maximum over all children)."""
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}))
    out = subprocess.run([sys.executable, __file__, "--one", chapter], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"chapter": chapter, "ok": False, "error": out.stderr[-3000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_row(row: dict) -> None:
    biggest = max(row.get("checkpoints", []), key=lambda c: c["mb"], default=None)
    print(f"{row['chapter']:24s} {'ok' if row['ok'] else 'FAILED':6s} {row.get('seconds', 0):7.1f} s "
          f"{row.get('peak_rss_mb', 0):6d} MB peak RSS  {len(row.get('checkpoints', []))} checkpoints"
          + (f", largest {biggest['experiment']} {biggest['mb']} MB saved in {biggest['save_seconds']} s"
             if biggest else ""), flush=True)
    if not row["ok"]:
        print(row.get("error", ""), file=sys.stderr)


def main(argv: list[str]) -> int:
    jobs = 1
    if argv[:1] == ["--jobs"]:
        if len(argv) < 2 or not argv[1].isdigit() or int(argv[1]) < 1:
            raise ValueError(f"--jobs needs a positive number of chapters to run at once, got {argv[1:2]}")
        jobs, argv = int(argv[1]), argv[2:]
    names = argv or chapters()
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_isolated, chapter, 1 if jobs > 1 else None) for chapter in names]
        report = []
        for future in futures:
            report.append(future.result())
            print_row(report[-1])
    wall = time.perf_counter() - start
    (OUT / "report.json").write_text(json.dumps({"jobs": jobs, "wall_seconds": round(wall, 1), "chapters": report},
                                                indent=1))
    print(f"{len(names)} chapters, {jobs} at a time, in {wall:.0f} s; report in {OUT / 'report.json'}")
    if all(r["ok"] for r in report):
        table = cost_table()
        print(table)
        # A partial run in a fresh clone leaves chapters without a ledger: the pages keep their table rather than
        # lose rows. A chapter of this run may have none (chapter 6's budgeted runs record nothing).
        missing = sorted(set(chapters()) - set(names) - {path.stem for path in COST.glob("*.jsonl")})
        if missing:
            print(f"cost table not written into {', '.join(p.name for p in COST_PAGES)}: no ledger of {missing}")
        else:
            for page in COST_PAGES:
                rewrite_between(page, COST_MARKERS, table)
        return 0
    return 1


def cost_table() -> str:
    """The predicted time of every chapter at ``full`` from this run's cost ledgers, with the model's
    check on this CPU: its prediction of the smoke run's own timed steps over their measured time."""
    from ebmlib.bench.cost import GPUS, check_on_this_cpu, format_cost_table, read_ledgers

    ledgers = read_ledgers(COST)
    checks = {chapter: predicted / measured if measured > 0 else None
              for chapter, (predicted, measured) in check_on_this_cpu(ledgers).items()}
    return format_cost_table(ledgers, GPUS, checks=checks)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(run_one(sys.argv[2])))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
