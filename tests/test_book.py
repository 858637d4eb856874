"""Static checks of the book: notebook pairing and structure, table of contents, one repository URL."""

import re

import jupytext
import pytest
import yaml
from notebook_utils import CONFIG, NOTEBOOKS, REPO_URL, ROOT, colab_url

IDS = [nb.stem for nb in NOTEBOOKS]


def _cells(notebook):
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in notebook.cells]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no chapter notebooks found in notebooks/"


@pytest.mark.parametrize("md", NOTEBOOKS, ids=IDS)
def test_pair_is_in_sync_and_output_free(md):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run `make sync`"
    paired = jupytext.read(ipynb)
    assert _cells(jupytext.read(md)) == _cells(paired), f"{md.name} and {ipynb.name} differ: run `make sync`"
    for cell in paired.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{ipynb.name} has outputs committed"


@pytest.mark.parametrize("md", NOTEBOOKS, ids=IDS)
def test_chapter_structure(md):
    cells = jupytext.read(md).cells
    code = [c for c in cells if c.cell_type == "code"]
    assert colab_url(md) in cells[0].source, "the first cell must carry the Open-in-Colab badge"
    assert '"google.colab" in sys.modules' in code[0].source and REPO_URL in code[0].source, (
        "the first code cell must install ebmlib from the repository, on Colab only"
    )
    parameters = [c for c in code if "parameters" in c.metadata.get("tags", ())]
    assert len(parameters) == 1, "exactly one code cell must be tagged `parameters`"
    assert 'SCALE = os.environ.get("EBMLIB_SCALE", "book")' in parameters[0].source
    assert re.search(r"^assert ", code[-1].source, re.MULTILINE), "the last code cell must be the checks cell"
    for previous, cell in zip(cells, cells[1:]):
        if cell.cell_type == "code":
            assert previous.cell_type == "markdown", (
                f"code cell without a sentence before it:\n{cell.source[:200]}"
            )


def test_toc_lists_every_chapter_and_only_existing_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    for entry in files:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry
    for md in NOTEBOOKS:
        assert f"notebooks/{md.stem}" in files, f"{md.name} is not in _toc.yml"


def test_repository_url_is_used_consistently():
    readme = (ROOT / "README.md").read_text()
    for md in NOTEBOOKS:
        assert colab_url(md) in readme, f"README lacks the Colab badge of {md.name}"
    urls = set(
        re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", readme + (ROOT / "book/setup.md").read_text())
    )
    assert urls == {REPO_URL}, f"repository URLs differ from _config.yml's {REPO_URL}: {urls}"
    assert CONFIG["execute"]["timeout"] >= 600, "training cells need a generous per-cell timeout"


@pytest.mark.parametrize("page", ["README.md", "book/setup.md"])
def test_python_examples_in_the_docs_run(page):
    """The code a reader copies from the README and the set-up page must run (training shortened)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.DOTALL)
    assert blocks, f"{page} has no python example"
    for block in blocks:
        exec(compile(re.sub(r"n_iters=[\d_]+", "n_iters=3, progress=False", block), page, "exec"), {})


INCLUDE = re.compile(r"```\{literalinclude\} (?P<path>\S+)\n:pyobject: (?P<object>\S+)\n:lines: (?P<lines>\S+)\n")


def _selected(spec: str, n_lines: int) -> list[int]:
    """The line numbers a Sphinx ``:lines:`` option selects ("1-3,7,9-" of ``n_lines`` lines)."""
    chosen = []
    for part in spec.split(","):
        first, dash, last = part.partition("-")
        stop = (int(last) if last else n_lines) if dash else int(first)
        chosen += range(int(first), stop + 1)
    return chosen


@pytest.mark.parametrize("md", NOTEBOOKS, ids=lambda p: p.stem)
def test_included_library_code_shows_code_not_its_docstring(md):
    """A ``:lines:`` selection of a ``:pyobject:`` counts lines from the object's first line: when its docstring
    grows, the same numbers pick docstring text instead of the code the prose describes."""
    import ast

    for match in INCLUDE.finditer(md.read_text()):
        source = (md.parent / match["path"]).read_text()
        node = ast.parse(source)
        for name in match["object"].split("."):
            node = next(n for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name)
        first = node.body[0]
        doc = first if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) else None
        n_lines = node.end_lineno - node.lineno + 1
        selected = _selected(match["lines"], n_lines)
        assert max(selected) <= n_lines, f"{md.name}: {match['object']} has {n_lines} lines, not {max(selected)}"
        if doc is not None:
            docstring = range(doc.lineno - node.lineno + 1, doc.end_lineno - node.lineno + 2)
            inside = sorted(set(selected) & set(docstring))
            assert not inside, f"{md.name}: lines {inside} of {match['object']} are its docstring"
