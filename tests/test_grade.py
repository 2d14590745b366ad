"""tools/grade.py: run a student's notebook and collect the status of every check."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("grade", ROOT / "tools" / "grade.py")
assert _spec is not None and _spec.loader is not None
grade = importlib.util.module_from_spec(_spec)
sys.modules["grade"] = grade
_spec.loader.exec_module(grade)

pytest.importorskip("nbclient")

CELLS = [
    "from gsa_tutorial.exercises import check_radial_count, check_relative_element, check_parameter_count",
    # right
    "def radial_count(window):\n"
    "    r = window // 2\n"
    "    return len({a * a + b * b for a in range(-r, r + 1) for b in range(-r, r + 1)})\n"
    "check_radial_count(radial_count)",
    # wrong
    "check_relative_element(lambda g, t, s: g.compose(s, g.inverse(t)))",
    # not written yet
    "def count(*args):\n    raise NotImplementedError('Exercise: count')\ncheck_parameter_count(count)",
    # a student's cell that raises: counted, the notebook goes on
    "1 / 0",
    "print('still running')",
]


def test_grade_a_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + ":" + __import__("os").environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("GSA_EXERCISES_STRICT", "1")  # grading turns strict mode off for the kernel
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    path = tmp_path / "student.ipynb"
    nbformat.write(nb, path)
    before = path.read_text()

    out = tmp_path / "grades.json"
    assert grade.main([str(path), "--json", str(out), "--timeout", "120"]) == 0
    assert path.read_text() == before, "grading must not change the student's file"
    [result] = json.loads(out.read_text())
    assert result["passed"] == 1 and result["total"] == 3
    statuses = result["statuses"]
    assert statuses["how many encodings a radial rho gives (chapter 4)"] == "passed"
    assert statuses["the relative group element (chapter 4)"] == "failed"
    assert statuses["the parameters of a relative self-attention layer (chapter 3)"] == "not implemented yet"
    assert "not invariant" in result["reports"]["the relative group element (chapter 4)"]
    assert any("ZeroDivisionError" in error for error in result["errors"])


def test_collect_reads_headlines():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("check_x(f)")
    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "✗ an exercise (chapter 9): failed\n  ✗ off by 2\n  hint: h"}, execution_count=1)]
    nb.cells = [cell]
    result = grade.collect(nb, "nb")
    assert result.statuses == {"an exercise (chapter 9): failed".rsplit(": ", 1)[0]: "failed"}
    assert result.reports["an exercise (chapter 9)"].endswith("hint: h")
    assert "0/1 exercises passed" in result.summary()
