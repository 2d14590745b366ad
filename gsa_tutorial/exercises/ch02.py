"""Checkers of chapter 2 (groups and actions): the action of D4 on images, the axis of a mirror."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..actions import act_on_image
from ..groups import Group, get_group
from ._common import close_all
from ._core import Check, Feedback, checker

__all__ = ["check_act_on_image", "check_mirror_axis"]


@checker(
    "the action of D4 on images, from scratch (chapter 2)",
    hint="element k < 4 is r^k: torch.rot90(x, k, dims=(-2, -1)); element 4 + k is r^k s: mirror first "
    "(torch.flip(x, dims=(-1,))), then rotate by k quarter turns",
)
def _act_on_image(check: Check, act: Callable[[int, torch.Tensor], torch.Tensor]) -> None:
    m4 = get_group("m4")
    gen = torch.Generator().manual_seed(21)
    images = [torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=gen), torch.randn(1, 1, 7, 7, dtype=torch.float64, generator=gen)]
    cases = [
        (f"element {h} ({m4.element_name(h)}) on a {tuple(x.shape)} image", lambda h=h, x=x: act(h, x), act_on_image(m4, h, x))
        for x in images
        for h in m4.elements
    ]
    if not close_all(check, cases, "every element of D4 acts as act_on_image does, on a 6x6 and a 7x7 image"):
        return
    x = images[0]
    broken = [
        (a, b)
        for a in m4.elements
        for b in m4.elements
        if not torch.equal(act(a, act(b, x)), act(m4.compose(a, b), x))
    ]
    pairs = ", ".join(f"a = {m4.element_name(a)}, b = {m4.element_name(b)}" for a, b in broken[:3])
    check.expect(
        not broken,
        "it is an action: a . (b . x) == (ab) . x for all 64 pairs (a, b) of D4, exactly",
        f"a . (b . x) != (ab) . x for {len(broken)} of 64 pairs, e.g. {pairs}",
    )


def check_act_on_image(act: Callable[[int, torch.Tensor], torch.Tensor]) -> Feedback:
    """Check ``act(h, x)``: element ``h`` of D4 (``"m4"``) acting on images ``(B, C, H, W)``.

    Compared with :func:`gsa_tutorial.actions.act_on_image` for all eight elements on two images in
    float64 (to 1e-10), then checked to be an action: ``act(a, act(b, x)) == act(ab, x)`` for
    every pair.

    Args:
        act: the reader's function ``(h, x) -> h . x``, with ``h`` the package's label
            (``k`` is ``r^k``, ``4 + k`` is ``r^k s``).

    Returns:
        The :class:`~gsa_tutorial.exercises.Feedback`.
    """
    return _act_on_image(act)


def _fixed_line_angle(group: Group, h: int) -> float:
    """The angle in degrees, in [0, 180), of the line that the mirror ``h`` fixes."""
    values, vectors = np.linalg.eigh(np.asarray(group.matrix(h), dtype=float))
    axis = vectors[:, int(np.argmax(values))]
    return float(np.degrees(np.arctan2(axis[1], axis[0]))) % 180.0


@checker(
    "the axis of a mirror (chapter 2)",
    hint="the fixed line is spanned by the eigenvector of eigenvalue +1 of group.matrix(h); its angle is "
    "atan2(y, x) in degrees, taken modulo 180",
)
def _mirror_axis(check: Check, axis_angle: Callable[[Group, int], Any]) -> None:
    for name in ("m4", "m6", "m8"):
        group = get_group(name)
        n = group.order // 2
        for h in range(n, 2 * n):
            expected = _fixed_line_angle(group, h)
            got = float(axis_angle(group, h)) % 180.0
            gap = min(abs(got - expected), 180.0 - abs(got - expected))
            if gap > 1e-6:
                check.wrong.append(f"{name}: {group.element_name(h)} fixes the line at {expected:.1f}°, you give {got:.1f}°")
                return
        check.right.append(f"the axis of every mirror of {name} is right")


def check_mirror_axis(axis_angle: Callable[[Group, int], Any]) -> Feedback:
    """Check ``axis_angle(group, h)``: the angle (degrees, modulo 180) of the line the mirror ``h`` fixes.

    Tried on every mirror of D4, D6 and D8 against the eigenvector of eigenvalue +1 of the
    element's matrix.

    Args:
        axis_angle: the reader's function ``(group, h) -> angle in degrees``.

    Returns:
        The :class:`~gsa_tutorial.exercises.Feedback`.
    """
    return _mirror_axis(axis_angle)
