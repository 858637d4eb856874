"""The shape of the library: dependency direction, no private imports, small modules, complete re-exports,
an API page per subpackage that documents exactly its public names."""

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from notebook_utils import NOTEBOOKS, ROOT

PACKAGE = ROOT / "ebmlib"
SUBPACKAGES = ("data", "nets", "samplers", "losses", "metrics", "bench")
MAX_MODULE_LINES = 400
MODULES = sorted(PACKAGE.rglob("*.py"))


def _public_definitions(path: Path) -> list[str]:
    """Names a module defines at top level (functions, classes, constants) that do not start with ``_``."""
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return [n for n in names if not n.startswith("_")]


def test_import_layers_hold():
    """import-linter checks the layers in pyproject.toml: no upward import, no cycle between siblings."""
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def _private_imports(source: str, own_module: str | None) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ebmlib"):
            if node.module != own_module:
                found += [f"from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            chain = node.value
            while isinstance(chain, ast.Attribute):
                chain = chain.value
            if isinstance(chain, ast.Name) and chain.id == "ebmlib":
                found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_no_module_imports_another_modules_private_name(path):
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    assert not _private_imports(path.read_text(), module)


def test_chapters_and_tests_use_public_names_only():
    sources = {p.name: p.read_text() for p in sorted((ROOT / "tests").glob("*.py"))}
    for md in NOTEBOOKS:
        cells = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", md.read_text(), re.DOTALL)
        sources[md.name] = "\n".join(re.sub(r"^(:tags:.*|---[\s\S]*?---)\n", "", c) for c in cells)
    offenders = {name: hits for name, src in sources.items() if (hits := _private_imports(src, None))}
    assert not offenders


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_subpackage_reexports_every_public_name_of_its_modules(package):
    module = importlib.import_module(f"ebmlib.{package}")
    defined = [n for p in sorted((PACKAGE / package).glob("[!_]*.py")) for n in _public_definitions(p)]
    assert sorted(module.__all__) == sorted(defined)
    assert len(set(defined)) == len(defined), "two modules of one subpackage define the same public name"
    for name in module.__all__:
        assert hasattr(module, name)


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_api_page_documents_exactly_the_public_names(package):
    page = (ROOT / "book" / "api" / f"{package}.md").read_text()
    documented = re.findall(rf"\.\. auto(?:function|class):: ebmlib\.{package}\.(\w+)", page)
    documented += re.findall(rf"\.\. py:data:: (\w+)\n   :module: ebmlib\.{package}\n", page)
    assert sorted(documented) == sorted(importlib.import_module(f"ebmlib.{package}").__all__)


def test_every_public_callable_has_a_docstring():
    missing = []
    for package in SUBPACKAGES:
        module = importlib.import_module(f"ebmlib.{package}")
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not (obj.__doc__ or "").strip():
                missing.append(f"ebmlib.{package}.{name}")
    assert not missing
