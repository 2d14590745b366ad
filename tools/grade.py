"""Grade students' notebooks with the book's checkers: run each notebook, collect every check's status.

    python tools/grade.py alice/03_self_attention.ipynb bob/03_self_attention.ipynb
    python tools/grade.py submissions/*/05_*.ipynb --json grades.json

Each notebook is executed top to bottom in a fresh kernel (errors do not stop the run: a cell
that raises is counted, the next cells still run), with strict mode off, so a wrong answer is
reported and not raised. Every output of a checker, the report of a
:class:`gsa_tutorial.exercises.Feedback`, starts with a headline
``✓ <exercise>: passed``, ``✗ <exercise>: failed`` or ``… <exercise>: not implemented yet``;
the tool collects these headlines (the last one per exercise counts) and prints one line per
notebook: passed / total, then each exercise with its status. ``--json`` writes the same as a
file, with the full reports of the failed ones, for a gradebook.

The kernel imports ``gsa_tutorial`` as the notebooks do: from the environment this script runs
in (install the package, or set ``PYTHONPATH`` to the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

HEADLINE = re.compile(r"^(?P<mark>[✓✗…]) (?P<exercise>.+): (?P<status>passed|failed|not implemented yet)$")


@dataclass
class Grade:
    """What one notebook earned: the status of each checked exercise, and the cells that raised."""

    notebook: str
    statuses: dict[str, str] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(status == "passed" for status in self.statuses.values())

    def summary(self) -> str:
        lines = [f"{self.notebook}: {self.passed}/{len(self.statuses)} exercises passed"]
        lines += [f"  {status:>19}  {exercise}" for exercise, status in self.statuses.items()]
        lines += [f"  {'error':>19}  {error}" for error in self.errors]
        return "\n".join(lines)


def _texts(output: nbformat.NotebookNode) -> list[str]:
    if output.output_type == "stream":
        return [output.text]
    if output.output_type in ("execute_result", "display_data"):
        return [output.get("data", {}).get("text/plain", "")]
    return []


def collect(nb: nbformat.NotebookNode, name: str = "notebook") -> Grade:
    """The grade of an executed notebook, read from its outputs."""
    grade = Grade(name)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                grade.errors.append(f"cell {index}: {output.ename}: {output.evalue}"[:300])
            for text in _texts(output):
                lines = text.splitlines()
                for i, line in enumerate(lines):
                    match = HEADLINE.match(line.strip())
                    if match:
                        exercise = match.group("exercise")
                        grade.statuses[exercise] = match.group("status")
                        report = [line]
                        for more in lines[i + 1 :]:
                            if not more.startswith("  "):
                                break
                            report.append(more)
                        grade.reports[exercise] = "\n".join(report)
    return grade


def grade_notebook(path: Path, *, timeout: int = 600, kernel: str | None = None) -> Grade:
    """Execute ``path`` (a copy in memory; the file is not changed) and collect its checks."""
    from nbclient import NotebookClient  # the notebook runner of Jupyter (installed with the test extra)

    nb = nbformat.read(path, as_version=4)
    os.environ["GSA_EXERCISES_STRICT"] = "0"  # a wrong answer is a grade, not a crash
    client = NotebookClient(
        nb,
        timeout=timeout,
        allow_errors=True,
        kernel_name=kernel or nb.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return collect(nb, str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="the students' notebooks")
    parser.add_argument("--json", type=Path, help="also write the grades to this JSON file")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    parser.add_argument("--kernel", help="Jupyter kernel name (default: the notebook's own)")
    args = parser.parse_args(argv)
    grades = []
    for path in args.notebooks:
        grade = grade_notebook(path, timeout=args.timeout, kernel=args.kernel)
        grades.append(grade)
        print(grade.summary(), flush=True)
    if args.json:
        data = [
            {**asdict(g), "passed": g.passed, "total": len(g.statuses),
             "reports": {k: v for k, v in g.reports.items() if g.statuses[k] != "passed"}}
            for g in grades
        ]
        args.json.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
