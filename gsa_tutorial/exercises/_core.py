"""The machinery behind every checker: a :class:`Check` collects findings, :func:`checker` runs it.

A checker is written as a function ``body(check, answer, ...)`` that calls the reader's
``answer`` and records what it finds with :meth:`Check.expect`, :meth:`Check.close`,
:meth:`Check.shape` and :meth:`Check.equivariant`. :func:`checker` turns it into the public
function the notebooks call: it never raises on a wrong or unfinished answer (unless strict
mode is on), it returns a :class:`Feedback` whose text says what is right, what is wrong and a
hint.

Strict mode (environment variable ``GSA_EXERCISES_STRICT=1``, set by ``make test`` and
``make book`` for the full edition): a *failed* check raises :class:`ExerciseFailed`, so a wrong
solution in the book fails the build. An answer that is not written yet (it raises
``NotImplementedError``, as every scaffold does) is reported as "not implemented yet" in both
modes: the notebooks show the scaffold's check before the hidden solution.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from ..groups import Group, get_group
from ..testing import equivariance_error

__all__ = ["STRICT_ENV", "ExerciseFailed", "Feedback", "Check", "checker", "strict"]

#: The environment variable that makes every checker raise on a wrong answer (strict mode).
STRICT_ENV = "GSA_EXERCISES_STRICT"

PASSED, FAILED, NOT_IMPLEMENTED = "passed", "failed", "not implemented yet"

T = TypeVar("T")


def strict() -> bool:
    """Whether a failed check raises (``GSA_EXERCISES_STRICT`` set to ``1``, ``true`` or ``yes``)."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes")


class ExerciseFailed(AssertionError):
    """Raised in strict mode when an answer fails its checker; the message is the whole report."""


@dataclass
class Feedback:
    """The outcome of one checker call.

    Attributes:
        exercise: the exercise's title, e.g. ``"lifting self-attention (chapter 5)"``.
        status: ``"passed"``, ``"failed"`` or ``"not implemented yet"``.
        right: what the answer gets right, one sentence each.
        wrong: what it gets wrong, one sentence each (with the numbers).
        hint: what to look at when something is wrong (empty when the answer passed).
    """

    exercise: str
    status: str
    right: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    hint: str = ""

    @property
    def passed(self) -> bool:
        """True only for an answer that passed every check."""
        return self.status == PASSED

    def __bool__(self) -> bool:
        return self.passed

    def report(self) -> str:
        """The report as text: a headline, then one line per finding, then the hint."""
        mark = {PASSED: "✓", FAILED: "✗", NOT_IMPLEMENTED: "…"}[self.status]
        lines = [f"{mark} {self.exercise}: {self.status}"]
        lines += [f"  ✓ {line}" for line in self.right]
        lines += [f"  ✗ {line}" for line in self.wrong]
        if self.hint and self.status != PASSED:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()

    def __repr__(self) -> str:  # the notebook shows the report when a check is a cell's last line
        return self.report()


def _fmt(value: float) -> str:
    return f"{value:.1e}"


class Check:
    """Collects the findings of one checker call (what is right, what is wrong)."""

    def __init__(self, exercise: str, hint: str = "") -> None:
        self.exercise = exercise
        self.hint = hint
        self.right: list[str] = []
        self.wrong: list[str] = []

    @property
    def ok(self) -> bool:
        """No finding so far is wrong."""
        return not self.wrong

    def expect(self, condition: bool, right: str, wrong: str, *, hint: str | None = None) -> bool:
        """Record ``right`` if ``condition`` holds, else ``wrong`` (and replace the hint by ``hint``)."""
        if condition:
            self.right.append(right)
        else:
            self.wrong.append(wrong)
            if hint is not None:
                self.hint = hint
        return bool(condition)

    def tensor(self, value: Any, what: str) -> bool:
        """The answer returned a floating-point tensor."""
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return True
        got = f"a {value.dtype} tensor" if isinstance(value, torch.Tensor) else f"{type(value).__name__}"
        self.wrong.append(f"{what} should be a floating-point torch.Tensor, got {got}")
        return False

    def shape(self, value: Any, expected: Sequence[int], what: str) -> bool:
        """``value`` is a tensor of shape ``expected``."""
        if not self.tensor(value, what):
            return False
        return self.expect(
            tuple(value.shape) == tuple(expected),
            f"{what} has the expected shape {tuple(expected)}",
            f"{what} has shape {tuple(value.shape)}, expected {tuple(expected)}",
        )

    def close(
        self,
        value: Any,
        reference: torch.Tensor,
        what: str,
        *,
        atol: float = 1e-10,
        hint: str | None = None,
    ) -> bool:
        """``value`` equals ``reference`` to ``atol`` (max abs difference); says where it differs most."""
        if not self.shape(value, reference.shape, what):
            return False
        diff = (value.detach().to(reference.dtype) - reference).abs()
        if not bool(torch.isfinite(diff).all()):
            return self.expect(False, "", f"{what} has NaN or infinite entries", hint=hint)
        worst = float(diff.max()) if diff.numel() else 0.0
        where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.numel() else ()
        return self.expect(
            worst <= atol,
            f"{what} matches the package (largest difference {_fmt(worst)} ≤ {_fmt(atol)})",
            f"{what} differs from the package by up to {_fmt(worst)} (at index {where}; "
            f"yours {float(value.detach().reshape(-1)[diff.argmax()]):.6g}, "
            f"expected {float(reference.reshape(-1)[diff.argmax()]):.6g})",
            hint=hint,
        )

    def name_mistake(
        self, got: torch.Tensor, variants: dict[str, Callable[[], torch.Tensor]], what: str, *, atol: float = 1e-8
    ) -> bool:
        """If ``got`` equals one of the known wrong ``variants`` (text -> its output), say which mistake it is."""
        for text, wrong in variants.items():
            other = wrong()
            if other.shape == got.shape and float((got.detach().to(other.dtype) - other).abs().max()) <= atol:
                self.wrong.append(f"your output is {what} with a mistake: {text}")
                return True
        return False

    def equivariant(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        group: Group | str,
        x: torch.Tensor,
        what: str,
        *,
        elements: Iterable[int] | None = None,
        output_kind: str | None = None,
        rtol: float = 1e-10,
        hint: str | None = None,
    ) -> bool:
        """``fn`` is equivariant for every element (default: the grid-exact ones); names the worst one."""
        g = get_group(group)
        errors = equivariance_error(fn, g, x, elements=elements, output_kind=output_kind)
        worst = max(errors, key=lambda h: errors[h])
        bad = [h for h, e in errors.items() if not e <= rtol]
        return self.expect(
            not bad,
            f"{what} is equivariant for all {len(errors)} checked elements of {g.name} "
            f"(largest error {_fmt(errors[worst])})",
            f"{what} is not equivariant: element {worst} ({g.element_name(worst)}) of {g.name} gives "
            f"a relative error {_fmt(errors[worst])} (tolerance {_fmt(rtol)}); "
            f"{len(bad)} of {len(errors)} elements fail",
            hint=hint,
        )

    def feedback(self) -> Feedback:
        """The :class:`Feedback` of the findings so far."""
        status = PASSED if self.ok and self.right else FAILED
        if self.ok and not self.right:
            self.wrong.append("the checker found nothing to check (an internal error: please report it)")
        return Feedback(self.exercise, status, list(self.right), list(self.wrong), self.hint)


def checker(exercise: str, hint: str = "") -> Callable[[Callable[..., None]], Callable[..., Feedback]]:
    """Turn ``body(check, *args, **kwargs)`` into a checker that returns a :class:`Feedback`.

    An answer that raises ``NotImplementedError`` gives "not implemented yet"; any other
    exception raised while checking is reported as a failure with its type and message (the
    reader's code raised it). In strict mode (:func:`strict`) a failure raises
    :class:`ExerciseFailed`.

    Args:
        exercise: the exercise's title as the report names it.
        hint: the default hint shown with a failure.
    """

    def wrap(body: Callable[..., None]) -> Callable[..., Feedback]:
        @functools.wraps(body)
        def run(*args: Any, **kwargs: Any) -> Feedback:
            check = Check(exercise, hint)
            try:
                body(check, *args, **kwargs)
            except NotImplementedError:
                return Feedback(
                    exercise,
                    NOT_IMPLEMENTED,
                    wrong=["the function still raises NotImplementedError: fill in the scaffold, then run this cell again"],
                )
            except ExerciseFailed:
                raise
            except Exception as error:  # the reader's code raised: report it, do not crash the notebook
                check.wrong.append(f"calling your code raised {type(error).__name__}: {error}")
            result = check.feedback()
            if strict() and result.status == FAILED:
                raise ExerciseFailed(result.report())
            return result

        run.__doc__ = body.__doc__
        return run

    return wrap

