"""The student edition (tools/make_student.py, `make student`, committed in student/).

* The tool on a small synthetic notebook: gated solutions and {solution} blocks removed, the
  scaffold and the check kept, the Colab badge pointed at student/, outputs cleared.
* The committed student/ equals what the tool writes now from book/.
* No solution text of a full-edition notebook appears in its student notebook.
* Every gated solution with code ends with a call of a `check_...` function (so strict mode
  checks it at build time), and every scaffold raises NotImplementedError.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
STUDENT = ROOT / "student"

_spec = importlib.util.spec_from_file_location("make_student", ROOT / "tools" / "make_student.py")
assert _spec is not None and _spec.loader is not None
make_student = importlib.util.module_from_spec(_spec)
sys.modules["make_student"] = make_student
_spec.loader.exec_module(make_student)

NOTEBOOKS = make_student.chapter_notebooks(BOOK)
CHECK_CALL = re.compile(r"^\s*(display\()?check_\w+\(")
BADGE = "https://colab.research.google.com/github/owner/repo/blob/main/{}/01_x.ipynb"


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text)


def code(text: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(text)
    cell.outputs = [nbformat.v4.new_output("stream", text="an output\n")]
    cell.execution_count = 3
    return cell


def synthetic() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        md(f"# A chapter\n\n[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({BADGE.format('book')})"),
        code('import sys\nif "google.colab" in sys.modules:\n    %pip install -q gsa_tutorial'),
        md("```{exercise}\n:label: ex-one\n\nWrite `f`.\n```"),
        code('def f(x):\n    # your code here\n    raise NotImplementedError("Exercise: write f")'),
        code("check_f(f)"),
        md("Text before the start.\n\n```{solution-start} ex-one\n:class: dropdown\n```\n\nGATED SOLUTION TEXT"),
        code("def f(x):\n    return GATED_SOLUTION_CODE\ncheck_f(f)"),
        md("MORE GATED TEXT in a cell of its own"),
        md("```{solution-end}\n```\n\nText after the end, kept."),
        md("```{exercise}\n:label: ex-two\n\nProve it.\n```\n\n```{solution} ex-two\n:class: dropdown\n\nINLINE SOLUTION\n```\n\nA paragraph after the solution."),
        md("````{solution} ex-two\n:class: dropdown\n\n```python\nNESTED_SOLUTION_CODE\n```\n\nafter the nested block, STILL SOLUTION\n````"),
        md("```{note}\nA note that stays.\n```"),
        md("```{solution-start} ex-three\n:class: dropdown\n```"),
        code("THIRD_SOLUTION_CODE\ncheck_g(g)"),
        md("```{solution-end}\n```"),
        code("print('the end')"),
    ]
    return nb


def test_the_tool_on_a_synthetic_notebook():
    nb = synthetic()
    before = nbformat.writes(nb)
    out = make_student.student_notebook(nb, "synthetic")
    assert nbformat.writes(nb) == before, "the tool must not change its input"
    text = "\n".join(cell.source for cell in out.cells)
    for gone in ("GATED SOLUTION TEXT", "GATED_SOLUTION_CODE", "MORE GATED TEXT", "INLINE SOLUTION",
                 "NESTED_SOLUTION_CODE", "STILL SOLUTION", "THIRD_SOLUTION_CODE", "solution-start", "solution-end",
                 "{solution}"):
        assert gone not in text, gone
    for kept in ("Text before the start.", "Text after the end, kept.", "A paragraph after the solution.",
                 "A note that stays.", 'raise NotImplementedError("Exercise: write f")', "check_f(f)",
                 "print('the end')", "%pip install", ":label: ex-two"):
        assert kept in text, kept
    assert BADGE.format("student") in out.cells[0].source and BADGE.format("book") not in out.cells[0].source
    assert "Student edition" in out.cells[0].source
    assert out.cells[1].source.startswith("import sys"), "the Colab install cell stays second"
    for cell in out.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    # the cell that was only a (nested) solution is gone, not left empty
    assert all(cell.source.strip() for cell in out.cells)
    nbformat.validate(out)


@pytest.mark.parametrize(
    "cells, message",
    [
        ([md("```{solution-start} a\n```"), code("x")], "has no {solution-end}"),
        ([md("```{solution-end}\n```")], "without a {solution-start}"),
    ],
)
def test_unbalanced_markers_are_errors(cells, message):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    with pytest.raises(make_student.SolutionMarkupError, match=re.escape(message)):
        make_student.student_notebook(nb, "bad")


def test_the_committed_edition_is_up_to_date():
    wanted = make_student.build(BOOK, STUDENT)
    assert sorted(p.name for p in STUDENT.glob("*.ipynb")) == sorted(p.name for p in wanted), (
        "student/ and book/ hold different notebooks: run `make student` and commit student/"
    )
    stale = [p.name for p, text in wanted.items() if p.read_text() != text]
    assert not stale, f"student/{stale} differ from what tools/make_student.py writes: run `make student` and commit student/"


def gated_regions(nb: nbformat.NotebookNode) -> list[tuple[int, list[nbformat.NotebookNode]]]:
    """(index of the start cell, the cells inside) of every gated solution."""
    regions, inside = [], None
    for index, cell in enumerate(nb.cells):
        starts = cell.cell_type == "markdown" and "{solution-start}" in cell.source
        ends = cell.cell_type == "markdown" and "{solution-end}" in cell.source
        if inside is not None:
            if ends:
                regions.append(inside)
                inside = None
            else:
                inside[1].append(cell)
        if starts and not (ends and cell.source.index("{solution-end}") > cell.source.index("{solution-start}")):
            inside = (index, [])
    return regions


def solution_code_lines(nb: nbformat.NotebookNode) -> set[str]:
    """The lines (over 20 characters) of the code cells of every gated solution."""
    return {
        line.strip()
        for _, cells in gated_regions(nb)
        for cell in cells
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if len(line.strip()) > 20
    }


def text_outside_solutions(nb: nbformat.NotebookNode) -> str:
    """Every cell outside the gated solutions, with the {solution} blocks of markdown cells left out."""
    inside_ids = {id(cell) for _, cells in gated_regions(nb) for cell in cells}
    parts = []
    for cell in nb.cells:
        if id(cell) in inside_ids:
            continue
        if cell.cell_type == "markdown":
            lines = cell.source.split("\n")
            for first, last in reversed(make_student._directives(cell.source, "solution")):
                del lines[first : last + 1]
            parts.append("\n".join(lines))
        else:
            parts.append(cell.source)
    return "\n".join(parts)


def solution_blocks(nb: nbformat.NotebookNode) -> list[str]:
    """The lines (over 20 characters) of every {solution} directive block's body."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.split("\n")
        for first, last in make_student._directives(cell.source, "solution"):
            found += [line.strip() for line in lines[first + 1 : last] if len(line.strip()) > 20 and not line.startswith(":")]
    return found


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_no_solution_text_in_the_student_edition(notebook):
    full = nbformat.read(notebook, as_version=4)
    student_path = STUDENT / notebook.name
    if not student_path.exists():
        pytest.fail(f"student/{notebook.name} is missing: run `make student`")
    student_text = "\n".join(cell.source for cell in nbformat.read(student_path, as_version=4).cells)
    # a solution line may also stand outside the solutions (a scaffold's signature, `check_x(f)`,
    # `with torch.no_grad():`); only the others must be absent
    outside = text_outside_solutions(full)
    leaked = sorted(
        line for line in solution_code_lines(full) | set(solution_blocks(full)) if line in student_text and line not in outside
    )
    assert not leaked, f"student/{notebook.name} contains solution text: {leaked[:5]}"
    assert "{solution" not in student_text


def _has_scaffold(nb, start: int) -> bool:
    """Whether the exercise whose gated solution starts at cell ``start`` gives the reader a scaffold
    to fill in (a code cell raising NotImplementedError after the exercise's statement)."""
    for cell in reversed(nb.cells[:start]):
        if cell.cell_type == "code" and "raise NotImplementedError" in cell.source:
            return True
        if cell.cell_type == "markdown" and "{exercise" in cell.source:
            return False
    return False


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_gated_solutions_with_code_end_with_a_check(notebook):
    """The solution of a coding exercise (one with a scaffold) ends with its checker; a written
    exercise's solution may run code of its own (a demonstration) without one."""
    nb = nbformat.read(notebook, as_version=4)
    bad = []
    for start, cells in gated_regions(nb):
        sources = [cell.source for cell in cells if cell.cell_type == "code" and cell.source.strip()]
        if not sources or not _has_scaffold(nb, start):
            continue
        last = sources[-1].rstrip().splitlines()[-1]
        if not CHECK_CALL.match(last):
            bad.append(f"the solution starting in cell {start} ends with {last!r}")
    assert not bad, (
        f"{notebook.name}: a gated solution with code must end with a call of its checker, check_...(...), "
        f"so that strict mode checks it when the book is built: {bad}"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_scaffolds_raise_not_implemented(notebook):
    # every `# your code here` scaffold outside the solutions raises NotImplementedError with the friendly message
    nb = make_student.student_notebook(nbformat.read(notebook, as_version=4), notebook.name)
    bad = [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and "# your code here" in cell.source
        and 'raise NotImplementedError("Exercise: ' not in cell.source
    ]
    assert not bad, f"{notebook.name}: scaffold cells {bad} (student edition) do not raise NotImplementedError(\"Exercise: ...\")"


def test_instructors_page_links_every_student_notebook():
    import yaml

    config = yaml.safe_load((BOOK / "_config.yml").read_text())["repository"]
    base = (
        "https://colab.research.google.com/github/"
        + config["url"].removeprefix("https://github.com/").rstrip("/")
        + f"/blob/{config['branch']}/student/"
    )
    page = (BOOK / "instructors.md").read_text()
    links = set(re.findall(r"\((https://colab\.research\.google\.com/github/[^)\s]+)\)", page))
    wanted = {base + path.name for path in NOTEBOOKS}
    assert links == wanted, f"book/instructors.md should link exactly the student notebooks: missing {sorted(wanted - links)}, extra {sorted(links - wanted)}"
    for path in NOTEBOOKS:
        first = nbformat.read(STUDENT / path.name, as_version=4).cells[0].source
        assert base + path.name in first, f"student/{path.name}: the Colab badge should open {base + path.name}"
