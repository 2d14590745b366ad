"""House rules for the book's sources, checked without executing anything.

Every chapter notebook (book/*.ipynb) is stored clean, opens with the Colab badge and the
Colab-only install cell, has a single `# Title`, and is listed in book/_toc.yml; every {cite}
key exists in book/references.bib. The repository URL is read from pyproject.toml, the one
place it is set. Executing the notebooks is nbval's job (`make test`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
REPO_URL: str = PROJECT["urls"]["Repository"]
# The release the Colab install cells pin: tag v<version>, the version set once in pyproject.
RELEASE_TAG = f"v{PROJECT['version']}"
GITHUB = "https://github.com/"
COLAB_BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
CHECK_OUTPUT_MARK = "# NBVAL_CHECK_OUTPUT"

# Top level of book/ only: never book/_build or .ipynb_checkpoints.
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
MARKDOWN_PAGES = sorted(BOOK.glob("*.md"))

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+|$)(.*)$")
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
BIB_ENTRY = re.compile(r"^\s*@(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)
URL = re.compile(r"https?://[^\s\"'@]+")  # stops before `@ref` in `git+URL@ref`
PIP_PIN = re.compile(r"git\+(https://[^\s\"'@]+)@([^\s\"'#]+)")
COLAB_GUARD = re.compile(r"""^if\s+["']google\.colab["']\s+in\s+sys\.modules\s*:\s*$""")


# ---------------------------------------------------------------- helpers


def colab_url(notebook: Path) -> str:
    """The Colab address of a chapter: Repository URL + /blob/main/book/<file> on Colab."""
    assert REPO_URL.startswith(GITHUB), f"pyproject Repository URL {REPO_URL!r} is not on GitHub"
    return (
        "https://colab.research.google.com/github/"
        + REPO_URL.removeprefix(GITHUB).rstrip("/")
        + f"/blob/main/book/{notebook.name}"
    )


def read(notebook: Path) -> nbformat.NotebookNode:
    return nbformat.read(notebook, as_version=4)


def outside_fences(text: str) -> list[str]:
    """The lines of a markdown text that are not inside ``` or ~~~ code fences."""
    lines, fence = [], None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)):
            fence = None
        elif fence is None:
            lines.append(line)
    return lines


def headings(markdown_sources: list[str]) -> list[tuple[int, str]]:
    """(level, text) of every ATX heading, in order, ignoring code fences."""
    found = []
    for source in markdown_sources:
        for line in outside_fences(source):
            match = HEADING.match(line)
            if match:
                found.append((len(match.group(1)), match.group(2).strip()))
    return found


def markdown_sources(path: Path) -> list[str]:
    if path.suffix == ".ipynb":
        return [cell.source for cell in read(path).cells if cell.cell_type == "markdown"]
    return [path.read_text()]


def cited_keys(path: Path) -> set[str]:
    keys: set[str] = set()
    for source in markdown_sources(path):
        for match in CITE.finditer("\n".join(outside_fences(source))):
            keys.update(key.strip() for key in match.group(1).split(",") if key.strip())
    return keys


def bib_keys() -> list[str]:
    text = (BOOK / "references.bib").read_text()
    return [
        key
        for kind, key in BIB_ENTRY.findall(text)
        if kind.lower() not in {"comment", "string", "preamble"}
    ]


def toc_files(node: Any) -> list[str]:
    """Every `root:` / `file:` entry of a jb-book table of contents, in order."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"root", "file"} and isinstance(value, str):
                found.append(value)
            else:
                found += toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found += toc_files(item)
    return found


def without_suffix(entry: str) -> str:
    return re.sub(r"\.(ipynb|md)$", "", entry)


def toc() -> dict[str, Any]:
    return yaml.safe_load((BOOK / "_toc.yml").read_text())


notebooks = pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])


# ---------------------------------------------------------------- every chapter notebook


@notebooks
def test_notebook_is_stored_without_outputs(notebook: Path) -> None:
    dirty = [
        index
        for index, cell in enumerate(read(notebook).cells)
        if cell.cell_type == "code"
        and not cell.source.startswith(CHECK_OUTPUT_MARK)
        and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{notebook.name}: code cells {dirty} (0-based) keep outputs or execution counts; "
        f"clear them (only cells starting with {CHECK_OUTPUT_MARK!r} may keep outputs)"
    )


@notebooks
def test_check_output_cells_store_their_reference_output(notebook: Path) -> None:
    # nbval compares only cells that were run: a marked cell without outputs checks nothing,
    # and one with outputs but no execution count fails ("Unrun reference cell has outputs").
    bad = [
        index
        for index, cell in enumerate(read(notebook).cells)
        if cell.cell_type == "code"
        and cell.source.startswith(CHECK_OUTPUT_MARK)
        and (not cell.outputs or cell.execution_count is None)
    ]
    assert not bad, (
        f"{notebook.name}: code cells {bad} (0-based) start with {CHECK_OUTPUT_MARK!r} but do not "
        "store both their expected outputs and an execution count; run them and keep both"
    )


@notebooks
def test_first_cell_is_the_colab_badge(notebook: Path) -> None:
    cell = read(notebook).cells[0]
    assert cell.cell_type == "markdown", f"{notebook.name}: cell 1 must be markdown (Colab badge)"
    assert colab_url(notebook) in cell.source, (
        f"{notebook.name}: cell 1 must link to {colab_url(notebook)}"
    )
    assert COLAB_BADGE_SVG in cell.source, f"{notebook.name}: cell 1 must show {COLAB_BADGE_SVG}"


@notebooks
def test_second_cell_installs_the_package_only_in_colab(notebook: Path) -> None:
    cell = read(notebook).cells[1]
    assert cell.cell_type == "code", f"{notebook.name}: cell 2 must be the Colab install cell"
    lines = cell.source.splitlines()
    urls = set(URL.findall(cell.source))
    assert urls == {REPO_URL}, (
        f"{notebook.name}: cell 2 must install from exactly {REPO_URL} (pyproject Repository), "
        f"found {sorted(urls)}"
    )
    guards = [i for i, line in enumerate(lines) if COLAB_GUARD.match(line)]
    assert guards, f'{notebook.name}: cell 2 needs `if "google.colab" in sys.modules:`'
    assert any(line.strip() == "import sys" for line in lines[: guards[0]]), (
        f"{notebook.name}: cell 2 must `import sys` before the Colab guard"
    )
    installs = [i for i, line in enumerate(lines) if "pip install" in line]
    assert installs, f"{notebook.name}: cell 2 must `%pip install` the package"
    unguarded = [
        lines[i] for i in installs if i <= guards[0] or not lines[i].startswith((" ", "\t"))
    ]
    assert not unguarded, f"{notebook.name}: installs outside the Colab guard: {unguarded}"


@notebooks
def test_install_cell_pins_the_release_of_pyproject(notebook: Path) -> None:
    # Colab must install the release the book was written for, not whatever `main` is that day.
    source = read(notebook).cells[1].source
    pins = PIP_PIN.findall(source)
    assert pins, f"{notebook.name}: cell 2 must install git+{REPO_URL}@{RELEASE_TAG}, found no @ref"
    refs = {ref for _, ref in pins}
    assert refs == {RELEASE_TAG}, (
        f"{notebook.name}: cell 2 installs {sorted(refs)}, but pyproject's version is "
        f"{PROJECT['version']!r}: pin @{RELEASE_TAG} (bump the version in pyproject.toml, then here)"
    )


@notebooks
def test_install_cell_keeps_colabs_torch_and_widgets(notebook: Path) -> None:
    # No extras and no upgrade flags: Colab's CUDA torch and its ipywidgets 7 stay installed.
    source = read(notebook).cells[1].source
    installs = [line for line in source.splitlines() if "pip install" in line]
    bad = [line for line in installs if re.search(r"(--upgrade|\s-U\b|--force-reinstall|\btorch\b|ipywidgets|\[)", line)]
    assert not bad, f"{notebook.name}: the Colab install must not upgrade or add packages: {bad}"


@notebooks
def test_notebook_starts_with_a_single_title(notebook: Path) -> None:
    found = headings(markdown_sources(notebook))
    assert found, f"{notebook.name}: no markdown heading; start with `# Title`"
    assert found[0][0] == 1, f"{notebook.name}: first heading {found[0]} must be a `# Title`"
    titles = [text for level, text in found if level == 1]
    assert len(titles) == 1, f"{notebook.name}: exactly one `# ` heading expected, got {titles}"


@pytest.mark.parametrize(
    "page", NOTEBOOKS + MARKDOWN_PAGES, ids=[p.name for p in NOTEBOOKS + MARKDOWN_PAGES]
)
def test_headings_do_not_skip_levels(page: Path) -> None:
    levels = [level for level, _ in headings(markdown_sources(page))]
    jumps = [(a, b) for a, b in zip(levels, levels[1:]) if b > a + 1]
    assert not jumps, f"{page.name}: heading levels jump {jumps} (e.g. ## followed by ####)"


@notebooks
def test_notebook_is_listed_in_the_toc(notebook: Path) -> None:
    listed = {without_suffix(entry) for entry in toc_files(toc())}
    assert notebook.stem in listed, f"{notebook.name} is missing from book/_toc.yml"


# ---------------------------------------------------------------- the book as a whole


def test_every_toc_entry_exists() -> None:
    entries = toc_files(toc())
    assert entries, "book/_toc.yml lists no files"
    missing = [
        entry
        for entry in entries
        if not any((BOOK / (without_suffix(entry) + ext)).is_file() for ext in (".ipynb", ".md"))
    ]
    assert not missing, f"book/_toc.yml lists files that do not exist in book/: {missing}"


def test_toc_lists_each_file_once() -> None:
    entries = [without_suffix(entry) for entry in toc_files(toc())]
    duplicates = sorted({entry for entry in entries if entries.count(entry) > 1})
    assert not duplicates, f"book/_toc.yml lists {duplicates} more than once"


def test_every_cited_key_is_in_references_bib() -> None:
    known = set(bib_keys())
    missing = {
        page.name: sorted(cited_keys(page) - known)
        for page in NOTEBOOKS + MARKDOWN_PAGES
        if cited_keys(page) - known
    }
    assert not missing, f"{{cite}} keys missing from book/references.bib: {missing}"


def test_references_bib_keys_are_unique() -> None:
    keys = bib_keys()
    assert keys, "book/references.bib has no entries"
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    assert not duplicates, f"book/references.bib defines {duplicates} more than once"


def test_book_config_points_at_the_pyproject_repository() -> None:
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    assert config["repository"]["url"] == REPO_URL, (
        f"book/_config.yml repository.url {config['repository']['url']!r} != "
        f"pyproject Repository {REPO_URL!r}"
    )


# ---------------------------------------------------------------- the API reference (book/api)

PACKAGE = ROOT / "gsa_tutorial"
# Modules (gsa_tutorial/x.py) and subpackages (gsa_tutorial/x/__init__.py): one API page each.
MODULES = sorted(
    [p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")]
    + [p.parent.name for p in PACKAGE.glob("*/__init__.py") if not p.parent.name.startswith("_")]
)


def module_files(module: str) -> list[Path]:
    """The files that define gsa_tutorial.<module>: x.py, or every file of the subpackage x/
    (its __init__ re-exports names defined in its modules)."""
    path = PACKAGE / f"{module}.py"
    return [path] if path.is_file() else sorted((PACKAGE / module).glob("*.py"))


def documented_attributes(path: Path) -> set[str]:
    """Module-level names with a `#:` comment above them or a string right after (as autodoc reads them)."""
    import ast

    source = path.read_text()
    lines = source.splitlines()
    body = ast.parse(source).body
    found = set()
    for i, stmt in enumerate(body):
        if not isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            continue
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names = {t.id for t in targets if isinstance(t, ast.Name)}
        above = lines[stmt.lineno - 2].strip() if stmt.lineno >= 2 else ""
        after = body[i + 1] if i + 1 < len(body) else None
        string_after = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)
        if above.startswith("#:") or string_after:
            found |= names
    return found


@pytest.mark.parametrize("module", MODULES)
def test_every_module_has_an_api_page_in_the_toc(module: str) -> None:
    page = BOOK / "api" / f"{module}.md"
    assert page.is_file(), f"gsa_tutorial/{module}.py has no API page: add book/api/{module}.md"
    assert f".. automodule:: gsa_tutorial.{module}\n   :members:" in page.read_text(), (
        f"book/api/{module}.md must document the module with `.. automodule:: gsa_tutorial.{module}` and `:members:`"
    )
    assert f"api/{module}" in toc_files(toc()), f"book/_toc.yml does not list api/{module}"


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_has_a_docstring(module: str) -> None:
    # autodoc shows the names of __all__ that have a docstring (or a `#:` comment for data):
    # an undocumented public name would be missing from the API reference.
    import importlib
    import inspect

    mod = importlib.import_module(f"gsa_tutorial.{module}")
    assert mod.__doc__ and mod.__doc__.strip(), f"gsa_tutorial.{module} has no module docstring"
    names = getattr(mod, "__all__", None)
    assert names, f"gsa_tutorial.{module} must list its public names in __all__"
    attribute_docs = set().union(*(documented_attributes(f) for f in module_files(module)))
    undocumented = []
    for name in names:
        obj = getattr(mod, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            own = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
            if not (own or "").strip():
                undocumented.append(name)
        elif name not in attribute_docs:
            undocumented.append(name)
    assert not undocumented, f"gsa_tutorial.{module}: public names without a docstring (or `#:` comment): {undocumented}"
