"""Execute every chapter at `ci` scale with papermill, then build the book from the executed copies.

The executed notebooks are kept in ``_build/ci/notebooks`` (CI uploads them), so a failure can be read
cell by cell. Building the book from them with ``-W`` checks the pages (figures, glued numbers, citations,
cross-references and the API reference) without executing every chapter a second time.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import papermill
import pytest
import yaml
from notebook_utils import CONFIG, NOTEBOOKS, ROOT

pytestmark = pytest.mark.notebooks
OUT = ROOT / "_build" / "ci"


@pytest.mark.parametrize("md", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_at_ci_scale(md):
    target = OUT / "notebooks" / f"{md.stem}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    partial = target.with_suffix(".partial.ipynb")
    # papermill raises PapermillExecutionError naming the failing cell; the checks cell's asserts are cells.
    papermill.execute_notebook(
        md.with_suffix(".ipynb"),
        partial,
        parameters={"SCALE": "ci"},
        cwd=md.parent,
        kernel_name="python3",
        progress_bar=False,
    )
    partial.rename(target)


def test_book_builds_without_warnings_from_the_executed_notebooks():
    missing = [md.stem for md in NOTEBOOKS if not (OUT / "notebooks" / f"{md.stem}.ipynb").exists()]
    assert not missing, f"notebooks that did not execute: {missing}"
    src = OUT / "book"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for name in ("_toc.yml", "book"):
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

    html = src / "_build" / "html"
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
