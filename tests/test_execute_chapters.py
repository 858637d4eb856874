"""The side-by-side chapter executor of ``make book``: what it caches, Jupyter Book finds and does not execute
again; every cell's time lands in the profile and in the page's table."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import execute_chapters as ex
import pytest

CHAPTER = textwrap.dedent("""\
    ---
    jupytext:
      formats: md:myst
      text_representation:
        extension: .md
        format_name: myst
    kernelspec:
      display_name: Python 3
      language: python
      name: python3
    ---

    # A chapter

    ## Waiting

    ```{code-cell} ipython3
    import time

    time.sleep(0.3)
    ```

    ## Printing

    ```{code-cell} ipython3
    print("done")
    ```
    """)


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    (root / "notebooks").mkdir()
    (root / "notebooks" / "01_chapter.md").write_text(CHAPTER)
    (root / "_toc.yml").write_text("format: jb-book\nroot: notebooks/01_chapter\n")
    (root / "_config.yml").write_text("title: t\nexecute:\n  execute_notebooks: cache\n  timeout: 60\n")
    failed = ex.execute([root / "notebooks" / "01_chapter.md"], jobs=1, scale="ci",
                        cache_dir=root / "_build" / ".jupyter_cache", profiles=root / "profile", timeout=60)
    assert failed == []
    return root


def test_the_profile_holds_every_code_cell_with_its_time(book):
    record = json.loads((book / "profile" / "ci" / "01_chapter.json").read_text())
    assert [c["label"] for c in record["cells"]] == ["Waiting: `import time`", "Printing: `print(\"done\")`"]
    assert record["cells"][0]["seconds"] >= 0.3 > record["cells"][1]["seconds"]
    table = ex.profile_table("ci", profiles=book / "profile")
    assert "| 01 | Waiting: `import time` | 0 |" in table and table.count("\n") == 3


def test_jupyter_book_uses_the_cached_execution(book):
    assert ex.execute([book / "notebooks" / "01_chapter.md"], jobs=1, scale="ci",
                      cache_dir=book / "_build" / ".jupyter_cache", profiles=book / "profile", timeout=60) == []
    run = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(book), "--builder",
                          "html"], capture_output=True, text=True)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "Using cached notebook" in log and "Executing notebook" not in log, log[-3000:]
    assert "done" in (book / "_build" / "html" / "notebooks" / "01_chapter.html").read_text()


def test_the_page_table_is_rewritten_between_its_markers(book, tmp_path):
    page = tmp_path / "setup.md"
    page.write_text(f"before\n{ex.MARKERS[0]}\nold\n{ex.MARKERS[1]}\nafter\n")
    ex.update_page(page, "ci", profiles=book / "profile")
    text = page.read_text()
    assert "old" not in text and "| 01 | Waiting" in text and text.startswith("before") and text.endswith("after\n")
    (tmp_path / "plain.md").write_text("no markers here\n")
    with pytest.raises(SystemExit, match="lacks the markers"):
        ex.update_page(tmp_path / "plain.md", "ci", profiles=book / "profile")


def test_on_a_gpu_a_wall_clock_chapter_runs_alone_after_the_others(book, monkeypatch, capsys):
    """Chapter 6's budgets are wall-clock seconds on a GPU: it must not share the device with another chapter."""
    monkeypatch.setattr(ex, "_accelerated", lambda: True)
    monkeypatch.setattr(ex, "ALONE_ON_ACCELERATOR", ("01_chapter",))
    assert ex.execute([book / "notebooks" / "01_chapter.md"], jobs=2, scale="ci", force=True,
                      cache_dir=book / "_build" / ".jupyter_cache", profiles=book / "profile", timeout=60) == []
    assert "on the GPU 01_chapter after the others, alone" in capsys.readouterr().out
