"""Helpers shared by the checkers of chapters 1-4 (private)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._core import Check


def _gap(value: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest absolute difference (0 for empty tensors)."""
    diff = (value.detach().to(reference.dtype) - reference).abs()
    return float(diff.max()) if diff.numel() else 0.0


def close_all(
    check: Check,
    cases: Iterable[tuple[str, Callable[[], Any], torch.Tensor]],
    summary: str,
    *,
    atol: float = 1e-10,
    hint: str | None = None,
) -> bool:
    """Compare many answers with their references; one line when all match, the first mismatch otherwise.

    Args:
        check: the findings so far.
        cases: ``(what, compute the answer, reference)`` for each case, in order.
        summary: the sentence recorded when every case matches, e.g. "all 8 elements match".
        atol: the tolerance (max absolute difference).
        hint: the hint to show with a mismatch.

    Returns:
        True when every case matched.
    """
    worst = 0.0
    count = 0
    for what, compute, reference in cases:
        value = compute()
        if isinstance(value, torch.Tensor):
            value = value.detach()  # the reader's tensor may require grad (a module's output)
        ok = (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and tuple(value.shape) == tuple(reference.shape)
            and bool(torch.isfinite(value).all())
            and _gap(value, reference) <= atol
        )
        if not ok:  # let Check.close say what is wrong (type, shape, where and by how much)
            check.close(value, reference, what, atol=atol, hint=hint)
            return False
        worst = max(worst, _gap(value, reference))
        count += 1
    check.right.append(f"{summary} (largest difference {worst:.1e} ≤ {atol:.0e}, {count} cases)")
    return True
