"""The committed chapters: paired with their jupytext source, executed in full mode, linked right.

nbval (configured in pyproject.toml) re-runs every notebook in fast mode; these tests check the
files themselves: notebooks/NN_topic.py and NN_topic.ipynb hold the same cells, the .ipynb carries
the outputs of a real full-mode run without errors, the Colab links match book/_config.yml, and
the folder stays small. A chapter that does not exist yet is simply not tested.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re

import jupytext
import nbformat
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"
SOURCES = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))
IPYNBS = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
MAX_FOLDER_BYTES = 4_000_000  # every chapter with its figures; ~400 KB each is the target
MAX_NOTEBOOK_BYTES = 1_000_000
MIN_SHARE_WITH_OUTPUT = 0.5  # install, parameter, import and def cells print nothing


def _cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def _text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    return output.get("data", {}).get("text/plain", "")


def _load_colab_script():
    spec = importlib.util.spec_from_file_location("book_colab", BOOK / "colab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_py_and_ipynb_in_sync(source):
    paired = source.with_suffix(".ipynb")
    fix = f"run: jupytext --sync notebooks/{source.name}"
    assert paired.exists(), f"{source.name} has no paired {paired.name}; {fix}"
    assert _cells(jupytext.read(source)) == _cells(jupytext.read(paired)), (
        f"{source.name} and {paired.name} hold different cells; {fix}")


@pytest.mark.parametrize("path", IPYNBS, ids=lambda p: p.name)
def test_ipynb_has_outputs_of_a_clean_full_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    with_output = [cell for cell in code if cell.get("outputs")]
    assert len(with_output) >= MIN_SHARE_WITH_OUTPUT * len(code), (
        f"{path.name}: only {len(with_output)} of {len(code)} code cells have outputs; "
        "commit the outputs of a full-mode run (the command is in book/intro.md)")
    for index, cell in enumerate(code):
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", (
                f"{path.name}, code cell {index}: error output {output.get('ename')}: {output.get('evalue')}")
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                assert "Traceback (most recent call last)" not in output.get("text", ""), (
                    f"{path.name}, code cell {index}: a traceback in stderr")
    provenance = "".join(_text(output) for output in code[-1].get("outputs", []))
    assert re.search(r"^mode\s+full\s*$", provenance, re.MULTILINE), (
        f"{path.name}: the last cell's provenance does not show 'mode  full'; "
        "the committed notebook must come from a full-mode run (ESASREC_FAST unset)")


def test_colab_links_match_book_config():
    problems = _load_colab_script().check()
    assert not problems, "\n".join(problems) + "\nfix with: python book/colab.py --fix"


def test_colab_check_catches_a_wrong_link(tmp_path):
    colab = _load_colab_script()
    url, branch = colab.repository()
    (tmp_path / "01_demo.py").write_text(
        "# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/someone/else/blob/{branch}/notebooks/01_demo.ipynb)\n"
        f'# "esasrec[plot] @ git+{url}"\n')
    problems = colab.check(notebooks=tmp_path)
    assert len(problems) == 1 and "someone/else" in problems[0]
    colab.check(notebooks=tmp_path, fix=True)
    assert colab.check(notebooks=tmp_path) == []


def test_every_chapter_is_in_the_book():
    assert (BOOK / "notebooks").resolve() == NOTEBOOKS, "book/notebooks must be a symlink to ../notebooks"
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]
    missing = [p.stem for p in IPYNBS if f"notebooks/{p.stem}" not in files]
    assert not missing, f"chapters missing from book/_toc.yml: {missing}"


def test_notebooks_folder_is_small():
    sizes = {p.name: p.stat().st_size for p in NOTEBOOKS.rglob("*")
             if p.is_file() and not any(part.startswith((".", "__pycache__")) for part in p.parts)}
    big = {name: size for name, size in sizes.items() if name.endswith(".ipynb") and size > MAX_NOTEBOOK_BYTES}
    assert not big, f"notebooks over {MAX_NOTEBOOK_BYTES:,} bytes (shrink figures: dpi, fewer points): {big}"
    assert sum(sizes.values()) <= MAX_FOLDER_BYTES, (
        f"notebooks/ holds {sum(sizes.values()):,} bytes, over {MAX_FOLDER_BYTES:,}")
