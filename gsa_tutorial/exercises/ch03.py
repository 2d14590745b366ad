"""Checkers of chapter 3 (self-attention): one pixel of relative self-attention by hand, measuring
equivariance errors by hand, and counting the layer's parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..attention import RelativeSelfAttention
from ..testing import equivariance_error, translation_error
from ._common import close_all
from ._core import Check, Feedback, checker

__all__ = [
    "pixel_attention_inputs",
    "check_attention_pixel",
    "check_dihedral_errors",
    "check_translation_error",
    "check_parameter_count",
]


def pixel_attention_inputs(layer: RelativeSelfAttention, x: torch.Tensor, *, batch: int = 0) -> dict[str, Any]:
    """The inputs of the one-pixel exercise, read off a relative layer's own weights.

    Args:
        layer: a :class:`~gsa_tutorial.attention.RelativeSelfAttention` with ``positional="relative"`` and a window.
        x: its input ``(B, C, H, W)``.
        batch: which image of the batch.

    Returns:
        A dict with ``f`` ``(H, W, C)`` (the feature vector of every pixel), ``W_Q``, ``W_K``,
        ``W_V`` ``(M, d, C)`` (one matrix per head), ``rho`` (a function: an offset
        ``x_j - x_i`` as the plane vector ``(x, y)``, x right and y up, in pixels, shape
        ``(2,)`` -> ``(M, d)``, one vector per head), ``W_O`` ``(C_out, M*d)``, ``b_O``
        ``(C_out,)`` and ``window`` (the odd window size k).
    """
    if not isinstance(layer, RelativeSelfAttention) or layer.positional != "relative" or layer.window is None:
        raise ValueError("pixel_attention_inputs needs a RelativeSelfAttention with positional='relative' and a window")
    M, d, C = layer.heads, layer.dim_head, layer.in_channels
    scale = float(max(layer.window // 2, 1))  # the layer divides offsets by the window radius

    def rho(offset: torch.Tensor) -> torch.Tensor:
        return layer.pos(offset.to(x.dtype) / scale).view(M, d)

    return {
        "f": x[batch].detach().permute(1, 2, 0),
        "W_Q": layer.to_q.weight.detach().view(M, d, C),
        "W_K": layer.to_k.weight.detach().view(M, d, C),
        "W_V": layer.to_v.weight.detach().view(M, d, C),
        "rho": rho,
        "W_O": layer.to_out.weight.detach(),
        "b_O": layer.to_out.bias.detach(),
        "window": layer.window,
    }


def _relative_layer(c_in: int, c_out: int, heads: int, window: int | None, positional: str = "relative", seed: int = 0) -> RelativeSelfAttention:
    torch.manual_seed(seed)
    layer = RelativeSelfAttention(c_in, c_out, heads=heads, window=window, positional=positional)  # type: ignore[arg-type]
    return layer.double().eval()


@checker(
    "relative self-attention for one pixel, from scratch (chapter 3)",
    hint="q = W_Q[m] @ f[row, col]; for each key (a, b) rows/columns away the offset is the plane vector "
    "(x, y) = (b, -a) (y points up); logit = q·(k + rho(offset)[m]) / sqrt(d)",
)
def _attention_pixel(check: Check, attend: Callable[..., torch.Tensor]) -> None:
    gen = torch.Generator().manual_seed(31)
    for window, heads in ((3, 2), (5, 3)):
        layer = _relative_layer(3, 6, heads, window, seed=window)
        x = torch.randn(1, 3, 7, 7, dtype=torch.float64, generator=gen)
        with torch.no_grad():
            y = layer(x)  # (1, C_out, H, W)
            inputs = pixel_attention_inputs(layer, x)
            groups = (
                ("interior", [(3, 3), (2, 4)] if window == 3 else [(3, 3)], None),
                (
                    "border",
                    [(0, 0), (0, 3), (6, 5)],
                    "near the border the keys outside the image are left out of the softmax (skip them), "
                    "they are not zeros inside it",
                ),
            )
            for where, pixels, hint in groups:
                cases = [
                    (
                        f"pixel ({r}, {c}), {window}x{window} window, {heads} heads",
                        lambda r=r, c=c, inputs=inputs: attend(row=r, col=c, **inputs),
                        y[0, :, r, c],
                    )
                    for r, c in pixels
                ]
                if not close_all(check, cases, f"{where} pixels match the layer ({window}x{window} window)", hint=hint):
                    return


def check_attention_pixel(attend: Callable[..., torch.Tensor]) -> Feedback:
    """Check ``attend(f, row, col, *, W_Q, W_K, W_V, rho, W_O, b_O, window)``: one output pixel.

    The reader computes the output of relative self-attention at
    pixel ``(row, col)`` with a loop over the window (the equations of chapter 3); it is compared in float64 (to 1e-10) with
    :class:`~gsa_tutorial.attention.RelativeSelfAttention` at interior and border pixels, for a 3x3 and a
    5x5 window. The arguments are those of :func:`pixel_attention_inputs`.

    Args:
        attend: the reader's function, returning the ``(C_out,)`` output vector.

    Returns:
        The :class:`~gsa_tutorial.exercises.Feedback`.
    """
    return _attention_pixel(attend)


@checker(
    "equivariance errors for every element of D4, by hand (chapter 3)",
    hint="for each h in group.elements compare layer(act_on_image(group, h, x)) with act_on_image(group, h, layer(x)); "
    "divide the largest absolute difference by max |layer(x)|",
)
def _dihedral_errors(check: Check, errors_of: Callable[[torch.nn.Module, torch.Tensor], Any]) -> None:
    x = torch.randn(1, 3, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(32))
    for positional, window in (("none", 5), ("relative", 3)):
        layer = _relative_layer(3, 8, 2, window, positional)
        with torch.no_grad():
            got = errors_of(layer, x)
        reference = equivariance_error(layer, "m4", x)
        label = f"the {window}x{window} layer with positional={positional!r}"
        if not check.expect(
            isinstance(got, dict) and sorted(got) == sorted(reference),
            f"for {label} you return one error per element of D4",
            f"for {label} the answer should be a dict {{h: error}} with keys 0, ..., 7, got {got!r:.80}",
        ):
            return
        values = torch.tensor([float(got[h]) for h in sorted(reference)], dtype=torch.float64)
        check.close(values, torch.tensor([reference[h] for h in sorted(reference)], dtype=torch.float64), f"the errors of {label}")


def check_dihedral_errors(errors_of: Callable[[torch.nn.Module, torch.Tensor], Any]) -> Feedback:
    """Check ``errors_of(layer, x)``: the relative equivariance error of an image layer for each element of D4.

    Compared with :func:`gsa_tutorial.testing.equivariance_error` over ``"m4"`` for a 5x5
    layer without positions (round-off) and a 3x3 relative layer (clear errors).

    Args:
        errors_of: the reader's function ``(layer, x) -> {h: error}``, written with
            :func:`gsa_tutorial.actions.act_on_image`.

    Returns:
        The :class:`~gsa_tutorial.exercises.Feedback`.
    """
    return _dihedral_errors(errors_of)


@checker(
    "translation error on the interior, by hand (chapter 3)",
    hint="roll the input and the output with torch.roll(t, shift, dims=(-2, -1)), then keep only the pixels "
    "farther than margin + max(|dy|, |dx|) from every border before taking the max",
)
def _translation_error(check: Check, error_of: Callable[..., Any]) -> None:
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(33))
    cases = [("relative", 3, (2, 1), 1), ("absolute", 3, (1, -2), 1), ("relative", None, (2, 3), 0), ("relative", 5, (-3, 2), 2)]
    got, expected, labels = [], [], []
    for positional, window, shift, margin in cases:
        layer = _relative_layer(3, 4, 2, window, positional, seed=1)
        labels.append(f"positional={positional!r}, window={window}, shift={shift}, margin={margin}")
        with torch.no_grad():
            value = error_of(layer, x, shift, margin)
        if not (isinstance(value, (float, int)) or (isinstance(value, torch.Tensor) and value.numel() == 1)):
            check.wrong.append(f"the answer should be one number, got {type(value).__name__}")
            return
        got.append(float(value))
        expected.append(translation_error(layer, x, shift, margin=margin))
    diffs = [abs(a - b) for a, b in zip(got, expected)]
    bad = [i for i, gap in enumerate(diffs) if gap > 1e-10]
    check.expect(
        not bad,
        f"all {len(cases)} errors match translation_error (largest difference {max(diffs):.1e})",
        "; ".join(f"{labels[i]}: you give {got[i]:.3e}, expected {expected[i]:.3e}" for i in bad[:2]),
    )


def check_translation_error(error_of: Callable[..., Any]) -> Feedback:
    """Check ``error_of(layer, x, shift, margin)``: the relative translation error on the interior.

    Compared with :func:`gsa_tutorial.testing.translation_error` for local relative and
    absolute layers and a global relative one.

    Args:
        error_of: the reader's function, returning one number.

    Returns:
        The :class:`~gsa_tutorial.exercises.Feedback`.
    """
    return _translation_error(error_of)


@checker(
    "the parameters of a relative self-attention layer (chapter 3)",
    hint="count to_q, to_k, to_v (no bias), to_out (with bias) and the two linear layers of rho "
    "(2 -> pos_hidden -> heads*dim_head, with biases); dim_head = max(c_out // heads, 1)",
)
def _parameter_count(check: Check, count: Callable[..., Any]) -> None:
    configs = [(16, 16, 4, 3, 32), (16, 16, 4, 11, 32), (3, 8, 2, 5, 16), (5, 7, 3, 7, 8)]
    for c_in, c_out, heads, window, hidden in configs:
        layer = RelativeSelfAttention(c_in, c_out, heads=heads, window=window, pos_hidden=hidden)
        expected = sum(p.numel() for p in layer.parameters())
        got = count(c_in, c_out, heads, window, hidden)
        if not (isinstance(got, int) and got == expected):
            check.wrong.append(
                f"RelativeSelfAttention({c_in}, {c_out}, heads={heads}, window={window}, pos_hidden={hidden}) has "
                f"{expected} parameters, you count {got!r}"
            )
            return
    check.right.append(f"the count is right for all {len(configs)} layers, for windows 3 to 11 alike")


def check_parameter_count(count: Callable[..., Any]) -> Feedback:
    """Check ``count(c_in, c_out, heads, window, pos_hidden)``: the number of parameters of the layer.

    Compared with the parameters of :class:`~gsa_tutorial.attention.RelativeSelfAttention` for four
    configurations.

    Args:
        count: the reader's formula, returning an int.

    Returns:
        The :class:`~gsa_tutorial.exercises.Feedback`.
    """
    return _parameter_count(count)
