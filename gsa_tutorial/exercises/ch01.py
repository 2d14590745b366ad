"""Checkers of chapter 1 (why symmetry): a rotation-symmetric filter, rotation errors by hand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..testing import equivariance_error
from ._core import Check, Feedback, checker

__all__ = ["check_symmetric_filter", "check_rotation_errors"]


def _rot(t: torch.Tensor, q: int) -> torch.Tensor:
    return torch.rot90(t, q, dims=(-2, -1))


def _quarter_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` plus its rotations by 1, 2 and 3 quarter turns (last two axes)."""
    return t + _rot(t, 1) + _rot(t, 2) + _rot(t, 3)


@checker(
    "a filter symmetric under quarter turns (chapter 1)",
    hint="sum the filter rotated by 0, 1, 2 and 3 quarter turns (torch.rot90 on the last two axes)",
)
def _symmetric_filter(check: Check, symmetrize: Callable[[torch.Tensor], torch.Tensor]) -> None:
    gen = torch.Generator().manual_seed(11)
    k = torch.randn(4, 2, 5, 5, dtype=torch.float64, generator=gen)  # (O, I, k, k)
    x = torch.randn(1, 2, 12, 12, dtype=torch.float64, generator=gen)
    k_sym = symmetrize(k)
    reference = _quarter_sum(k)
    if not check.shape(k_sym, k.shape, "symmetrize(k)"):
        return
    turn = float((_rot(k_sym, 1) - k_sym).abs().max())
    check.expect(
        turn <= 1e-12,
        "the filter is unchanged by a quarter turn",
        f"the filter changes under a quarter turn (max |rot90(k_sym) - k_sym| = {turn:.1e})",
    )
    check.equivariant(
        lambda t: nn.functional.conv2d(t, k_sym, padding=2), "r4", x, "a convolution with your filter", output_kind="image"
    )
    check.close(k_sym, reference, "symmetrize(k)")


def check_symmetric_filter(symmetrize: Callable[[torch.Tensor], torch.Tensor]) -> Feedback:
    """Check ``symmetrize(k)``: a filter ``(O, I, k, k)`` made symmetric under quarter turns.

    Passes when the result is the sum of the four rotated copies of ``k``, is unchanged by
    ``torch.rot90`` and makes a zero-padded convolution commute with every quarter turn.

    Args:
        symmetrize: the reader's function, filter ``(O, I, k, k)`` -> ``(O, I, k, k)``.

    Returns:
        The :class:`~gsa_tutorial.exercises.Feedback` (its text is the report).
    """
    return _symmetric_filter(symmetrize)


def _small_cnn(seed: int, symmetric: bool) -> nn.Module:
    torch.manual_seed(seed)
    convs = [nn.Conv2d(1, 4, 5, padding=2).double(), nn.Conv2d(4, 4, 3, padding=1).double()]
    if symmetric:
        with torch.no_grad():
            for conv in convs:
                conv.weight.copy_(_quarter_sum(conv.weight))
    return nn.Sequential(convs[0], nn.ReLU(), convs[1]).eval()


@checker(
    "rotation equivariance errors by hand (chapter 1)",
    hint="for q quarter turns compare cnn(rot90(x, q)) with rot90(cnn(x), q), then divide the largest "
    "absolute difference by max |cnn(x)|",
)
def _rotation_errors(check: Check, errors_of: Callable[[nn.Module, torch.Tensor], Any]) -> None:
    x = torch.randn(1, 1, 14, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    for label, symmetric in (("a random CNN", False), ("a CNN with symmetric filters", True)):
        cnn = _small_cnn(3, symmetric)
        with torch.no_grad():
            got = errors_of(cnn, x)
        reference = equivariance_error(cnn, "r4", x)
        if not check.expect(
            isinstance(got, dict) and sorted(got) == [0, 1, 2, 3],
            f"for {label} you return one error per quarter turn q = 0, 1, 2, 3",
            f"for {label} the answer should be a dict {{q: error}} with keys 0, 1, 2, 3, got {got!r:.80}",
        ):
            return
        values = torch.tensor([float(got[q]) for q in range(4)], dtype=torch.float64)
        check.close(values, torch.tensor([reference[q] for q in range(4)], dtype=torch.float64), f"the errors of {label}")


def check_rotation_errors(errors_of: Callable[[nn.Module, torch.Tensor], Any]) -> Feedback:
    """Check ``errors_of(cnn, x)``: the relative rotation error for each quarter turn, with ``torch.rot90``.

    Compared with :func:`gsa_tutorial.testing.equivariance_error` over ``"r4"`` on a random CNN
    (errors of order one) and on a CNN with symmetric filters (round-off).

    Args:
        errors_of: the reader's function ``(cnn, x) -> {q: max|cnn(R^q x) - R^q cnn(x)| / max|cnn(x)|}``.

    Returns:
        The :class:`~gsa_tutorial.exercises.Feedback`.
    """
    return _rotation_errors(errors_of)
