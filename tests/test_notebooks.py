"""Execute every chapter at `ci` scale with papermill, build the book from the executed copies, read the pages.

The executed notebooks are kept in ``_build/ci/notebooks`` (CI uploads them), so a failure can be read
cell by cell. The chapters run two at a time (``EBMLIB_NOTEBOOK_WORKERS``), each kernel on one thread: their
tensors are small, so two single-threaded kernels finish sooner than one after the other on two threads.
Building the book from them with ``-W`` checks the pages (figures, glued numbers, citations,
cross-references and the API reference) without executing every chapter a second time, and headless Chromium
then reads every chapter page as a reader would (``tests/rendered_pages.py``).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from notebook_utils import CONFIG, NOTEBOOKS, ROOT
from rendered_pages import chromium_driver, page_problems, serve

pytestmark = pytest.mark.notebooks
OUT = ROOT / "_build" / "ci"
HTML = OUT / "book" / "_build" / "html"
IDS = [nb.stem for nb in NOTEBOOKS]
# The kernels' environment: `ci` scale, one thread each, and no progress bars in the pages built from them
# (tqdm reads TQDM_DISABLE; the library's bars honour it too).
KERNEL_ENV = {"EBMLIB_SCALE": "ci", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
# Chapters run as a Jupyter user runs them: no papermill parameters, SCALE read from EBMLIB_SCALE by the
# parameters cell. The others get `-p SCALE ci` as on the command line (papermill's injected cell).
AS_IN_JUPYTER = {"00_primer"}


def _execute(md: Path) -> tuple[int, str, float]:
    """Run one chapter at ``ci`` scale with papermill; return its exit status, log tail and seconds."""
    target = OUT / "notebooks" / f"{md.stem}.ipynb"
    target.unlink(missing_ok=True)
    partial = target.with_suffix(".partial.ipynb")
    papermill = Path(sys.executable).with_name("papermill")
    start = time.perf_counter()
    # papermill exits non-zero naming the failing cell; the checks cell's asserts are cells.
    parameters = [] if md.stem in AS_IN_JUPYTER else ["-p", "SCALE", "ci"]
    run = subprocess.run(
        [str(papermill), str(md.with_suffix(".ipynb")), str(partial), *parameters, "--cwd", str(md.parent),
         "-k", "python3", "--no-progress-bar"],
        capture_output=True, text=True, env={**os.environ, **KERNEL_ENV},
    )
    seconds = time.perf_counter() - start
    if run.returncode == 0:
        partial.rename(target)
    return run.returncode, (run.stdout + run.stderr)[-6000:], seconds


# Without a previous run to time (a fresh clone, as in CI): the order of the chapters' `ci` times on 2 cores.
_CI_LONGEST_FIRST = ("03_energy_discrepancy", "05_noise_free", "04_flowmc_ebm", "02_joint_mixed",
                     "01_ratio_matching", "00_primer", "06_which_method")


def _previous_seconds(md: Path) -> float:
    """How long the chapter took in the previous run kept in ``_build/ci/notebooks`` (0 when there is none)."""
    try:
        return float(json.loads((OUT / "notebooks" / f"{md.stem}.ipynb").read_text())["metadata"]["papermill"]
                     ["duration"])
    except (OSError, KeyError, TypeError, ValueError):
        return 0.0


def _start_order(md: Path) -> tuple[float, int]:
    """Sort key: the longest previous run first, ties (no previous run) in the measured order."""
    rank = _CI_LONGEST_FIRST.index(md.stem) if md.stem in _CI_LONGEST_FIRST else len(_CI_LONGEST_FIRST)
    return -_previous_seconds(md), rank


def start_executions(selected: set[str]) -> tuple[ThreadPoolExecutor, dict]:
    """Start the selected chapters, ``EBMLIB_NOTEBOOK_WORKERS`` (2) at a time, the longest of the previous run
    (in a fresh clone: of the measured order) first so that the two workers finish together; returns the pool
    and one future per chapter.

    ``tests/conftest.py`` calls this as soon as the tests are collected, so that the chapters execute while the
    unit tests run (each a single-threaded process: the two cores stay busy instead of one)."""
    (OUT / "notebooks").mkdir(parents=True, exist_ok=True)
    order = sorted((md for md in NOTEBOOKS if md.stem in selected), key=_start_order)
    pool = ThreadPoolExecutor(max_workers=int(os.environ.get("EBMLIB_NOTEBOOK_WORKERS", "2")))
    return pool, {md.stem: pool.submit(_execute, md) for md in order}


@pytest.fixture(scope="module")
def executions(request):
    """The futures of the chapters' executions (started at collection by conftest.py, or here)."""
    started = getattr(request.config, "notebook_executions", None)
    if started is None:
        selected = {item.callspec.id for item in request.session.items
                    if item.originalname == "test_notebook_runs_at_ci_scale"}
        started = start_executions(selected)
    pool, futures = started
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("md", NOTEBOOKS, ids=IDS)
def test_notebook_runs_at_ci_scale(md, executions):
    returncode, log, seconds = executions[md.stem].result()
    print(f"{md.stem}: executed in {seconds:.0f} s")
    assert returncode == 0, f"{md.stem} failed at ci scale after {seconds:.0f} s " \
        f"(executed copy: {OUT / 'notebooks' / md.stem}.partial.ipynb):\n{log}"


def test_book_builds_without_warnings_from_the_executed_notebooks():
    missing = [md.stem for md in NOTEBOOKS if not (OUT / "notebooks" / f"{md.stem}.ipynb").exists()]
    assert not missing, f"notebooks that did not execute: {missing}"
    src = OUT / "book"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for name in ("_toc.yml", "book", "_static"):
        (src / name).symlink_to(ROOT / name)
    (src / "ebmlib").symlink_to(ROOT / "ebmlib")  # for literalinclude ../ebmlib/...
    shutil.copytree(OUT / "notebooks", src / "notebooks", ignore=shutil.ignore_patterns("*.partial.ipynb"))
    config = dict(CONFIG)
    config["execute"] = {**CONFIG["execute"], "execute_notebooks": "off"}
    config["exclude_patterns"] = [p for p in CONFIG["exclude_patterns"] if not p.startswith("notebooks/")]
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    run = subprocess.run(
        [str(jupyter_book), "build", str(src), "--builder", "html", "-n", "-W", "--keep-going"],
        capture_output=True,
        text=True,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "WARNING:" not in log, log[-5000:]

    html = HTML
    for md in NOTEBOOKS:
        page = (html / "notebooks" / f"{md.stem}.html").read_text()
        assert "<img" in page, f"{md.stem}: no figures rendered"
        assert "<table" in page, f"{md.stem}: no results table rendered"
    api_pages = {page.stem: page.read_text() for page in (html / "book" / "api").glob("*.html")}
    for page, name in (
        ("data", "data.sample_toy"),
        ("data", "data.GrayCode"),
        ("samplers", "samplers.gibbs_binary"),
        ("samplers", "samplers.gwg_binary"),
        ("samplers", "samplers.langevin"),
        ("samplers", "samplers.gwg_categorical"),
        ("samplers", "samplers.mwg_joint"),
        ("samplers", "samplers.flowmc"),
        ("samplers", "samplers.isir_step"),
        ("samplers", "samplers.ode_sample"),
        ("samplers", "samplers.flow_log_prob"),
        ("losses", "losses.energy_discrepancy"),
        ("losses", "losses.heat_kernel"),
        ("losses", "losses.self_adversarial_loss"),
        ("metrics", "metrics.mmd2"),
        ("metrics", "metrics.split_rhat"),
        ("nets", "nets.MLPEnergy"),
        ("flows", "flows.RealNVP"),
        ("train", "train.fit"),
    ):
        assert f'id="ebmlib.{name}"' in api_pages[page], f"the API page {page} lacks ebmlib.{name}"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium and the address of the built book, served over HTTP."""
    chrome = chromium_driver()
    try:
        with serve(HTML) as base:
            yield chrome, base
    finally:
        chrome.quit()


@pytest.mark.parametrize("md", NOTEBOOKS, ids=IDS)
def test_chapter_page_reads_well_in_chromium(md, browser):
    """MathJax typeset without errors, tables within the column, captioned figures, no progress bars, no "nan"
    cells or Markdown tables printed as text, a claims table, and a Colab link to the chapter's .ipynb."""
    page = HTML / "notebooks" / f"{md.stem}.html"
    assert page.exists(), f"{md.stem}: the book build made no page {page}"
    chrome, base = browser
    problems = page_problems(chrome, f"{base}/notebooks/{page.name}", md.stem)
    assert not problems, f"{md.stem}: {len(problems)} problems on the rendered page:\n- " + "\n- ".join(problems)


REFERENCE_PAGES = ["book/intro", "book/setup", "book/bibliography", "book/api/index"] + [
    f"book/api/{page.stem}" for page in sorted((ROOT / "book" / "api").glob("*.md")) if page.stem != "index"]


@pytest.mark.parametrize("page", REFERENCE_PAGES)
def test_reference_page_reads_well_in_chromium(page, browser):
    """The pages around the chapters: math typeset, no TeX shown as source, tables within the column, one
    search box."""
    assert (HTML / f"{page}.html").exists(), f"the book build made no page {page}.html"
    chrome, base = browser
    problems = page_problems(chrome, f"{base}/{page}.html", Path(page).stem, chapter=False)
    assert not problems, f"{page}: {len(problems)} problems on the rendered page:\n- " + "\n- ".join(problems)
