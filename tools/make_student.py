"""Write the student edition of the book: every chapter notebook without its solutions.

    python tools/make_student.py            # book/NN_*.ipynb -> student/NN_*.ipynb  (= make student)
    python tools/make_student.py --check    # exit 1 if student/ differs from what it would write

From each chapter notebook it removes

* every *gated* solution: the cells from a markdown cell with a ```` ```{solution-start} ```` fence to
  the markdown cell with the matching ```` ```{solution-end} ```` fence, inclusive (text before the start
  fence in its cell, and after the end fence in its cell, is kept);
* every ```` ```{solution} ```` directive block of a markdown cell (a cell that held only the solution
  is removed; a block inside a larger cell is cut out, the rest of the cell kept);
* every output and execution count,

and points the Colab badge of the first cell at ``student/NN_*.ipynb`` (the same repository and
branch), with a line that says this is the student edition. Everything else (the scaffolds that
raise ``NotImplementedError``, the checks, the Colab install cell, the text) is kept as it is,
so a student notebook imports the package exactly as the full one does.

The student edition is committed (``student/``), so its Colab links work from GitHub;
``tests/test_student_edition.py`` checks that it equals what this tool writes now.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
STUDENT = ROOT / "student"

# An opening fence of a MyST directive: ``` or ::: (3 or more), then {name}, then an optional argument.
OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}(?P<arg>.*)$")
FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")
# The Colab badge's target: .../github/<owner>/<repo>/blob/<branch>/book/<file>.ipynb
BADGE_TARGET = re.compile(r"(https://colab\.research\.google\.com/github/[^\s)]+?/blob/[^\s/)]+/)book/([\w.-]+\.ipynb)")
STUDENT_NOTE = (
    "*Student edition: the solutions are removed. Write your code where a cell says "
    "`# your code here`; the check below it tells you what is right and what is wrong.*"
)


class SolutionMarkupError(ValueError):
    """A ``{solution-start}`` without its ``{solution-end}`` (or the reverse), with the notebook and cell."""


def _closing(lines: list[str], start: int, fence: str) -> int:
    """Index of the line that closes the fence opened at ``lines[start]`` (same character, at least as long).

    Fences of other characters, or shorter ones (a ```python block inside a ````{solution}), are
    content. Returns ``len(lines)`` when the block runs to the end of the text (as MyST reads it).
    """
    char = fence[0]
    inner: str | None = None  # a nested fence of another kind that is open
    for i in range(start + 1, len(lines)):
        match = FENCE.match(lines[i])
        if not match:
            continue
        f, info = match.group("fence"), match.group("info").strip()
        if inner is not None:
            if f[0] == inner[0] and len(f) >= len(inner) and not info:
                inner = None
            continue
        if f[0] == char and len(f) >= len(fence) and not info:
            return i
        if info and (f[0] != char or len(f) < len(fence)):
            inner = f  # a nested code block or directive: skip to its end
    return len(lines)


def _directives(text: str, name: str) -> list[tuple[int, int]]:
    """``(first line, last line)`` of every top-level ``{name}`` directive block in a markdown text."""
    lines = text.split("\n")
    found, i = [], 0
    while i < len(lines):
        match = OPEN.match(lines[i])
        fence_match = FENCE.match(lines[i])
        if match and match.group("name") == name:
            end = _closing(lines, i, match.group("fence"))
            found.append((i, end))
            i = end + 1
        elif fence_match and fence_match.group("info").strip():  # another block: its content is not ours
            i = _closing(lines, i, fence_match.group("fence")) + 1
        else:
            i += 1
    return found


def _cut(text: str, blocks: list[tuple[int, int]]) -> str:
    lines = text.split("\n")
    for first, last in reversed(blocks):
        del lines[first : last + 1]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def _marker(text: str, name: str) -> tuple[str, str] | None:
    """``(text before, text after)`` the first ``{name}`` block of ``text``, or None."""
    blocks = _directives(text, name)
    if not blocks:
        return None
    first, last = blocks[0]
    lines = text.split("\n")
    return "\n".join(lines[:first]).strip("\n"), "\n".join(lines[last + 1 :]).strip("\n")


def _retarget_badge(source: str) -> str:
    new, count = BADGE_TARGET.subn(r"\1student/\2", source)
    if count == 0:
        return source
    return new + "\n\n" + STUDENT_NOTE


def student_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student edition of one notebook (a new notebook; ``nb`` is not changed).

    Raises:
        SolutionMarkupError: a gated solution that is not closed, or an end without a start.
    """
    out = copy.deepcopy(nb)
    cells: list[nbformat.NotebookNode] = []
    inside: int | None = None  # index of the cell that opened the gated solution we are in
    for index, cell in enumerate(out.cells):
        if cell.cell_type == "code":
            if inside is None:
                cell.outputs = []
                cell.execution_count = None
                cells.append(cell)
            continue
        source = cell.source
        keep: list[str] = []
        while True:  # a cell may end one gated solution and start another
            if inside is None:
                start = _marker(source, "solution-start")
                stray = _marker(source, "solution-end")
                if stray is not None and (start is None or len(stray[0]) < len(start[0])):
                    raise SolutionMarkupError(f"{name}: cell {index} has a {{solution-end}} without a {{solution-start}}")
                if start is None:
                    keep.append(source)
                    break
                keep.append(start[0])
                inside, source = index, start[1]
            else:
                end = _marker(source, "solution-end")
                if end is None:
                    break
                inside, source = None, end[1]
        if cell.cell_type == "markdown":
            text = "\n\n".join(part for part in keep if part.strip())
            text = _cut(text, _directives(text, "solution"))
            if text.strip():
                cell.source = text
                cells.append(cell)
        elif inside is None:
            cells.append(cell)
    if inside is not None:
        raise SolutionMarkupError(f"{name}: the {{solution-start}} in cell {inside} has no {{solution-end}}")
    if cells and cells[0].cell_type == "markdown":
        cells[0].source = _retarget_badge(cells[0].source)
    out.cells = cells
    return out


def chapter_notebooks(book: Path = BOOK) -> list[Path]:
    """The chapter notebooks: ``book/*.ipynb`` at the top level, sorted."""
    return sorted(book.glob("*.ipynb"))


def render(nb: nbformat.NotebookNode) -> str:
    """The notebook as nbformat writes it (the text that goes into the file)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def build(book: Path = BOOK, student: Path = STUDENT) -> dict[Path, str]:
    """``{student path: text}`` for every chapter notebook."""
    result = {}
    for path in chapter_notebooks(book):
        nb = nbformat.read(path, as_version=4)
        result[student / path.name] = render(student_notebook(nb, path.name))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--book", type=Path, default=BOOK, help="folder of the chapter notebooks")
    parser.add_argument("--out", type=Path, default=STUDENT, help="folder of the student edition")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the folder is out of date")
    args = parser.parse_args(argv)
    wanted = build(args.book, args.out)
    stale = sorted(set(args.out.glob("*.ipynb")) - set(wanted))
    if args.check:
        differ = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
        for path in differ + stale:
            print(f"out of date: {path} (run `make student`)")
        return 1 if differ or stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for path in stale:
        path.unlink()
    for path, text in wanted.items():
        path.write_text(text)
    print(f"wrote {len(wanted)} notebooks to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
