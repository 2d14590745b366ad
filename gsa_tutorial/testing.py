"""Public equivariance checks, used by the tests *and* by the book's chapters.

``equivariance_error`` only measures; ``assert_equivariant`` applies a dtype-aware tolerance
and names the failing element and its error. Both infer what kind of map they check from the
tensors: an input of rank 4 is an image ``(B, C, H, W)``, rank 5 a lifted map
``(B, C, |H|, H, W)``; an output of rank 4 is an image, rank 5 a lifted map and anything else
(logits ``(B, classes)``, pooled features) is expected to be *invariant*.

For a map ``Φ`` and a group element ``h`` the relative equivariance error is::

    max |Φ(h·x) − h·Φ(x)|  /  max |Φ(x)|

which is ``~1e-16`` in float64 for an exactly equivariant map and grid-exact ``h``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from .actions import act_on_image, act_on_lifted
from .groups import Group, get_group

__all__ = ["equivariance_error", "assert_equivariant", "translation_error", "default_rtol"]

Fn = Callable[[torch.Tensor], torch.Tensor]


def default_rtol(dtype: torch.dtype) -> float:
    """Tolerance for a relative equivariance error: tight for float64, loose for lower precision."""
    return {torch.float64: 1e-10, torch.float32: 1e-4}.get(dtype, 1e-2)


def _act(group: Group, h: int, t: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "image":
        return act_on_image(group, h, t)
    if kind == "lifted":
        return act_on_lifted(group, h, t)
    return t  # invariant


def _kind(t: torch.Tensor, role: str) -> str:
    if role == "input":
        if t.dim() == 4:
            return "image"
        if t.dim() == 5:
            return "lifted"
        raise ValueError(f"input must be an image (B, C, H, W) or a lifted map (B, C, |H|, H, W), got shape {tuple(t.shape)}")
    return {4: "image", 5: "lifted"}.get(t.dim(), "invariant")


def _check_x(x: object, who: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who}: x must be a tensor (B, C, H, W) or (B, C, |H|, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{who}: x must be a floating-point tensor (float64 for a check to round-off), got dtype {x.dtype}; "
            "convert it with x.double()"
        )
    if x.numel() == 0:
        raise ValueError(f"{who}: x is empty (shape {tuple(x.shape)}): there is nothing to check")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{who}: x has NaN or infinite entries, so every error would be NaN; use a finite input")
    return x


def _check_elements(group: Group, elements: Iterable[int] | None) -> list[int]:
    chosen = list(group.grid_exact_elements if elements is None else elements)
    for h in chosen:
        group.inverse(h)  # TypeError / ValueError naming the valid range for a bad element
    return [int(h) for h in chosen]


def _prepare(fn: Fn, x: torch.Tensor) -> Fn:
    """Run modules in eval mode on a copy in the input's dtype (the caller's module is untouched)."""
    if isinstance(fn, nn.Module):
        module = copy.deepcopy(fn).to(dtype=x.dtype, device=x.device).eval()
        return module
    return fn


def equivariance_error(
    fn: Fn,
    group: Group | str,
    x: torch.Tensor,
    *,
    elements: Iterable[int] | None = None,
    output_kind: str | None = None,
) -> dict[int, float]:
    """Relative equivariance error of ``fn`` for each group element.

    Args:
        fn: a function or module mapping ``x`` to an image, a lifted map or an invariant.
            Modules are evaluated on a copy in eval mode and in ``x``'s dtype.
        group: the group H (name or :class:`~gsa_tutorial.groups.Group`).
        x: the input, ``(B, C, H, W)`` or ``(B, C, |H|, H, W)``.
        elements: the elements to check (default: the grid-exact ones, where the check is exact).
        output_kind: ``"image"``, ``"lifted"`` or ``"invariant"``; inferred from the output rank
            when omitted.

    Returns:
        ``{h: max|fn(h·x) − h·fn(x)| / max|fn(x)|}``.
    """
    return _measure(fn, get_group(group), x, elements, output_kind)[0]


def _measure(
    fn: Fn, group: Group, x: torch.Tensor, elements: Iterable[int] | None, output_kind: str | None
) -> tuple[dict[int, float], float]:
    """The errors of :func:`equivariance_error` and ``max |fn(x)|``."""
    _check_x(x, "equivariance_error")
    in_kind = _kind(x, "input")
    elements = _check_elements(group, elements)
    fn = _prepare(fn, x)
    with torch.no_grad():
        y = fn(x)
        out_kind = output_kind or _kind(y, "output")
        if out_kind not in ("image", "lifted", "invariant"):
            raise ValueError(f"output_kind must be 'image', 'lifted' or 'invariant', got {out_kind!r}")
        if not y.is_floating_point():
            raise TypeError(f"equivariance_error: fn(x) must be a floating-point tensor, got dtype {y.dtype}")
        peak = y.abs().max()
        scale = peak.clamp_min(torch.finfo(y.dtype).tiny)
        errors = {}
        for h in elements:
            diff = fn(_act(group, h, x, in_kind)) - _act(group, h, y, out_kind)
            errors[int(h)] = float(diff.abs().max() / scale)
    return errors, float(peak)


def assert_equivariant(
    fn: Fn,
    group: Group | str,
    x: torch.Tensor | None = None,
    *,
    shape: Sequence[int] | None = None,
    elements: Iterable[int] | None = None,
    rtol: float | None = None,
    output_kind: str | None = None,
    seed: int = 0,
) -> dict[int, float]:
    """Check that ``fn`` is equivariant (or invariant) under ``group``; raise ``AssertionError`` if not.

    The check refuses to pass without checking anything (:class:`ValueError`): no element to
    check, only the identity (e.g. ``"z2"``, or ``"r3"`` whose only grid-exact element is the
    identity: pass ``elements=`` and a looser ``rtol`` for interpolated rotations), an input
    that every checked element leaves unchanged (a constant image), an output that is zero
    everywhere, or a tolerance that is negative, NaN or infinite. A non-floating ``x`` is a
    :class:`TypeError`.

    Args:
        fn, group, elements, output_kind: as in :func:`equivariance_error`.
        x: the input. If omitted, a random float64 input of ``shape`` is drawn (seeded).
        shape: the input shape when ``x`` is omitted, e.g. ``(2, 3, 9, 9)``.
        rtol: tolerance on the relative error, a finite number >= 0; default 1e-10 in float64,
            1e-4 in float32.
        seed: seed for the random input.

    Returns:
        The measured errors (as :func:`equivariance_error`), so a test can print them.

    Example:
        >>> from gsa_tutorial import LiftingSelfAttention
        >>> layer = LiftingSelfAttention(3, 8, group="r4", heads=2, window=3)
        >>> errors = assert_equivariant(layer, "r4", shape=(1, 3, 7, 7))
    """
    group = get_group(group)
    if x is None:
        if shape is None:
            raise ValueError("assert_equivariant needs an input x or its shape, e.g. shape=(2, 3, 9, 9)")
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = _check_x(x, "assert_equivariant")
    if rtol is not None and (isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not math.isfinite(rtol) or rtol < 0):
        raise ValueError(f"assert_equivariant: rtol must be a finite number >= 0, got {rtol!r}")
    rtol = default_rtol(x.dtype) if rtol is None else float(rtol)
    chosen = _check_elements(group, elements)
    if not chosen:
        raise ValueError(
            f"assert_equivariant: no group element to check (elements={list(elements or [])!r}); "
            f"{group.name} has elements 0..{group.order - 1}"
        )
    moving = [h for h in chosen if h != group.identity]
    if not moving:
        exact = group.grid_exact_elements
        hint = (
            f"{group.name} has no grid-exact element besides the identity: pass elements=[...] explicitly "
            "with a looser rtol (rotations that are not multiples of 90° are interpolated, so only approximately equivariant)"
            if exact == [group.identity]
            else f"pass elements that move the input, e.g. {[h for h in exact if h != group.identity]}"
        )
        if group.order == 1:
            hint = f"{group.name} has only the identity: use translation_error for translations"
        raise ValueError(f"assert_equivariant: only the identity would be checked, which passes for any map; {hint}")
    in_kind = _kind(x, "input")
    if all(torch.equal(_act(group, h, x, in_kind), x) for h in moving):
        raise ValueError(
            "assert_equivariant: every checked element leaves x unchanged (a constant or symmetric input), "
            "so the check would pass for any map; use a random input, e.g. shape=(2, 3, 9, 9)"
        )
    errors, peak = _measure(fn, group, x, chosen, output_kind)
    if peak == 0.0:
        raise ValueError(
            "assert_equivariant: fn(x) is zero everywhere, so every error is 0 whatever fn does; "
            "use an input (or weights) for which the output is not zero"
        )
    failed = {h: e for h, e in errors.items() if not e <= rtol}  # `not <=` also catches NaN
    if failed:
        name = type(fn).__name__ if isinstance(fn, nn.Module) else getattr(fn, "__name__", repr(fn))
        worst = max(failed, key=lambda h: failed[h] if failed[h] == failed[h] else float("inf"))
        lines = ", ".join(f"{group.element_name(h)} (element {h}): {e:.2e}" for h, e in failed.items())
        raise AssertionError(
            f"{name} is not {group.name}-equivariant in {x.dtype}: relative error {failed[worst]:.2e} at "
            f"element {worst} ({group.element_name(worst)}) exceeds rtol={rtol:.0e}. Failing elements: {lines}"
        )
    return errors


def translation_error(fn: Fn, x: torch.Tensor, shift: tuple[int, int], *, margin: int) -> float:
    """Relative translation-equivariance error of an image -> image (or lifted) map on the interior.

    Compares ``fn(roll(x, shift))`` with ``roll(fn(x), shift)`` on pixels farther than
    ``margin + |shift|`` from every border, where neither the image border nor the roll's seam
    is seen by a window of radius ``margin``.

    Shape:
        x ``(B, C, H, W)``; ``fn(x)`` ``(B, ..., H, W)``.
    """
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise ValueError(f"translation_error: margin must be an integer >= 0 (the window radius), got {margin!r}")
    if len(shift) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in shift) or tuple(shift) == (0, 0):
        raise ValueError(f"translation_error: shift must be two integers (dy, dx), not both 0, got {shift!r}")
    _check_x(x, "translation_error")
    dy, dx = shift
    fn = _prepare(fn, x)
    with torch.no_grad():
        y = fn(x)
        moved = fn(torch.roll(x, shifts=(dy, dx), dims=(-2, -1)))
        expected = torch.roll(y, shifts=(dy, dx), dims=(-2, -1))
    H, W = x.shape[-2:]
    cut = margin + max(abs(dy), abs(dx))
    if 2 * cut >= min(H, W):
        raise ValueError(f"no interior left: image {H}x{W}, margin {margin}, shift {shift}")
    inner = (moved - expected)[..., cut : H - cut, cut : W - cut]
    return float(inner.abs().max() / y.abs().max().clamp_min(torch.finfo(y.dtype).tiny))
