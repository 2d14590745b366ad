"""The checker machinery of gsa_tutorial.exercises: statuses, reports, strict mode."""

from __future__ import annotations

import pytest
import torch

from gsa_tutorial import act_on_image
from gsa_tutorial.exercises import STRICT_ENV, ExerciseFailed, checker


@checker("rotate an image (test)", hint="use act_on_image's conventions")
def check_rotation(check, answer):
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    check.close(answer(x), act_on_image("r4", 1, x), "answer(x)")
    check.equivariant(lambda t: answer(t), "r4", x, "answer", output_kind="image")


def right(x):
    return torch.rot90(x, 1, dims=(-2, -1))


def wrong(x):
    return torch.rot90(x, -1, dims=(-2, -1))


def unfinished(x):
    raise NotImplementedError("Exercise: yours to write")


def test_statuses_and_reports(monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    ok = check_rotation(right)
    assert ok.passed and bool(ok) and ok.status == "passed"
    assert "matches the package" in ok.report() and "equivariant for all 4" in ok.report()

    bad = check_rotation(wrong)
    assert not bad and bad.status == "failed"
    text = bad.report()
    assert "differs from the package by up to" in text and "at index" in text
    assert "hint: use act_on_image's conventions" in text

    todo = check_rotation(unfinished)
    assert todo.status == "not implemented yet" and not todo
    assert "NotImplementedError" in todo.report()


def test_reader_errors_are_reported_not_raised(monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)

    def broken(x):
        return x.reshape(7)

    result = check_rotation(broken)
    assert result.status == "failed"
    assert "calling your code raised RuntimeError" in result.report()

    def wrong_shape(x):
        return x[..., :2]

    assert "has shape (2, 3, 5, 2), expected (2, 3, 6, 5)" in check_rotation(wrong_shape).report()


def test_equivariance_finding_names_the_element(monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)

    @checker("equivariance only (test)")
    def check_eq(check, answer):
        check.equivariant(answer, "r4", torch.randn(1, 1, 5, 5, dtype=torch.float64), "answer", output_kind="image")

    weights = torch.arange(25, dtype=torch.float64).reshape(5, 5)
    result = check_eq(lambda x: x * weights)  # position-dependent: not equivariant
    assert result.status == "failed"
    assert "is not equivariant: element" in result.report() and "of r4 gives a relative error" in result.report()
    assert check_eq(lambda x: 2 * x).passed


def test_strict_mode_raises_on_failure_only(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    assert check_rotation(right).passed
    assert check_rotation(unfinished).status == "not implemented yet"
    with pytest.raises(ExerciseFailed, match="differs from the package"):
        check_rotation(wrong)


def test_a_checker_that_checks_nothing_fails(monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)

    @checker("empty (test)")
    def check_nothing(check, answer):
        answer()

    assert check_nothing(lambda: None).status == "failed"
