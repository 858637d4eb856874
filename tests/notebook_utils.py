"""Paths and parsed configuration shared by the book and notebook tests."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]
REPO_SLUG = REPO_URL.removeprefix("https://github.com/")


def colab_url(notebook: Path) -> str:
    """The Colab address of a chapter's paired .ipynb on the main branch."""
    return f"https://colab.research.google.com/github/{REPO_SLUG}/blob/main/notebooks/{notebook.stem}.ipynb"
