"""Checkers of chapter 4 (invariant positional encodings): the lifted encoding, the relative group
element, radial encodings, and the action on a lifting layer's output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..actions import act_on_image, act_on_lifted
from ..attention import LiftingSelfAttention
from ..groups import Group, get_group
from ..positional import PositionMLP, transformed_offsets, window_offsets
from ._common import close_all
from ._core import Check, Feedback, checker

__all__ = ["check_lifted_encoding", "check_relative_element", "check_radial_count", "check_act_on_lifted"]


@checker(
    "the lifted encoding rho(h^-1 delta), from scratch (chapter 4)",
    hint="for every h take the matrix of its INVERSE, group.matrix(group.inverse(h)), apply it to every offset "
    "(x, y) of window_offsets(window) / (window // 2), then evaluate rho",
)
def _lifted_encoding(check: Check, encode: Callable[[PositionMLP, Group, int], torch.Tensor]) -> None:
    torch.manual_seed(41)
    rho = PositionMLP(3, hidden=16).double()
    cases = []
    for name, window in (("m4", 5), ("r8", 3), ("m4", 3)):
        group = get_group(name)
        offsets = window_offsets(window) / (window // 2)  # (K, 2)
        with torch.no_grad():
            reference = rho(transformed_offsets(group, offsets)).view(group.order, window, window, 3)
        cases.append((f"{name}, {window}x{window} window", lambda g=group, w=window: encode(rho, g, w), reference))
    if not close_all(check, cases, "rho_h(delta) matches the package for D4 and C8"):
        return
    m4 = get_group("m4")
    with torch.no_grad():
        maps = encode(rho, m4, 5).permute(0, 3, 1, 2)  # (G, C, k, k): one image per element
    errors = {h: float((maps[h] - act_on_image(m4, h, maps[:1])[0]).abs().max()) for h in m4.elements}
    worst = max(errors, key=lambda h: errors[h])
    check.expect(
        errors[worst] <= 1e-12,
        "every map rho_h is the identity's map acted on by h (D4, exactly)",
        f"the map of {m4.element_name(worst)} is not that element acting on the identity's map "
        f"(max difference {errors[worst]:.1e})",
    )


def check_lifted_encoding(encode: Callable[[PositionMLP, Group, int], torch.Tensor]) -> Feedback:
    """Check ``encode(rho, group, window)``: ``rho(h^-1 delta)`` for every ``h`` and window offset.

    The offsets are those of :func:`gsa_tutorial.windows.window_offsets` divided by the
    window radius ``window // 2``, as in the layers. The result, shape ``(G, k, k, C)``, is
    compared with ``rho(transformed_offsets(group, offsets))`` (to 1e-10), and the maps of D4
    must be the identity's map acted on by each element.

    Args:
        encode: the reader's function ``(rho, group, window) -> (G, k, k, C)``.

    Returns:
        The :class:`~gsa_tutorial.exercises.Feedback`.
    """
    return _lifted_encoding(encode)


@checker(
    "the relative group element (chapter 4)",
    hint="undo the query's element, then apply the key's: group.compose(group.inverse(t), s)",
)
def _relative_element(check: Check, relative: Callable[[Group, int, int], Any]) -> None:
    for name in ("r4", "m4", "m6"):
        group = get_group(name)
        G = group.elements
        table = {(t, s): relative(group, t, s) for t in G for s in G}
        moved = sum(table[group.compose(r, t), group.compose(r, s)] != table[t, s] for r in G for t in G for s in G)
        if not check.expect(
            moved == 0,
            f"{name}: invariant, the same for (r t, r s) as for (t, s) for every r",
            f"{name}: not invariant, it changes in {moved} of {len(G) ** 3} cases (r, t, s) when query and key are moved by r",
        ):
            return
        wrong = [(t, s) for (t, s), v in table.items() if v != group.compose(group.inverse(t), s)]
        if wrong:
            t, s = wrong[0]
            check.wrong.append(
                f"{name}: for t = {group.element_name(t)}, s = {group.element_name(s)} you give {table[t, s]!r}, "
                f"expected t^-1 s = {group.compose(group.inverse(t), s)} ({len(wrong)} pairs differ)"
            )
            return


def check_relative_element(relative: Callable[[Group, int, int], Any]) -> Feedback:
    """Check ``relative(group, t, s)``: the element of key ``s`` relative to query ``t``, ``t^-1 s``.

    It must be invariant when both are moved by any ``r`` (for C4, D4 and D6) and equal
    ``t^-1 s`` (the table of :func:`gsa_tutorial.positional.relative_group_index`).

    Args:
        relative: the reader's function, returning an element (int).

    Returns:
        The :class:`~gsa_tutorial.exercises.Feedback`.
    """
    return _relative_element(relative)


@checker(
    "how many encodings a radial rho gives (chapter 4)",
    hint="a radial encoding sees only |delta|: count the distinct values of a^2 + b^2 over the offsets (a, b) "
    "of the window",
)
def _radial_count(check: Check, count: Callable[[int], Any]) -> None:
    windows = (1, 3, 5, 7, 9, 11)
    for window in windows:
        r = window // 2
        expected = len({a * a + b * b for a in range(-r, r + 1) for b in range(-r, r + 1)})
        got = count(window)
        if got != expected:
            check.wrong.append(f"a {window}x{window} window has {expected} distinct lengths, you count {got!r}")
            return
    check.right.append(f"the count is right for windows {windows[0]} to {windows[-1]}")


def check_radial_count(count: Callable[[int], Any]) -> Feedback:
    """Check ``count(window)``: the number of distinct encodings a radial ``rho(|delta|)`` gives a window.

    Args:
        count: the reader's function ``window -> int``.

    Returns:
        The :class:`~gsa_tutorial.exercises.Feedback`.
    """
    return _radial_count(count)


@checker(
    "the action of C4 on a lifted map, by hand (chapter 4)",
    hint="rotate the spatial axes, torch.rot90(y, h, dims=(-2, -1)), AND move slot g to slot h g: "
    "torch.roll(..., shifts=h, dims=2)",
)
def _act_lifted(check: Check, act: Callable[[int, torch.Tensor], torch.Tensor]) -> None:
    gen = torch.Generator().manual_seed(44)
    y = torch.randn(2, 3, 4, 5, 5, dtype=torch.float64, generator=gen)
    cases = [(f"element r^{h}", lambda h=h: act(h, y), act_on_lifted("r4", h, y)) for h in range(4)]
    if not close_all(check, cases, "every element of C4 acts as act_on_lifted does"):
        return
    torch.manual_seed(45)
    layer = LiftingSelfAttention(3, 4, group="r4", heads=2, window=3).double().eval()
    x = torch.randn(1, 3, 9, 9, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        out = layer(x)
        errors = {h: float((layer(torch.rot90(x, h, dims=(-2, -1))) - act(h, out)).abs().max() / out.abs().max()) for h in range(4)}
    worst = max(errors, key=lambda h: errors[h])
    check.expect(
        errors[worst] <= 1e-10,
        f"with your action the lifting layer is equivariant: layer(r^h x) == r^h . layer(x) (largest error {errors[worst]:.1e})",
        f"layer(r^{worst} x) != r^{worst} . layer(x) with your action (relative error {errors[worst]:.1e})",
    )


def check_act_on_lifted(act: Callable[[int, torch.Tensor], torch.Tensor]) -> Feedback:
    """Check ``act(h, y)``: the rotation ``r^h`` of C4 acting on a lifted map ``(B, C, 4, H, W)``.

    Compared with :func:`gsa_tutorial.actions.act_on_lifted` for every element, then used to predict
    the output of a :class:`~gsa_tutorial.attention.LiftingSelfAttention` over C4 on a rotated input.

    Args:
        act: the reader's function ``(h, y) -> r^h . y``.

    Returns:
        The :class:`~gsa_tutorial.exercises.Feedback`.
    """
    return _act_lifted(act)
