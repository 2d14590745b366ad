"""Checkers of chapter 5 (lifting self-attention).

* :func:`check_lifting_attention`: the reader writes lifting self-attention (equation ``ch5-lifting``) from the
  layer's weights and its table of positional encodings; it must equal
  :class:`~gsa_tutorial.attention.LiftingSelfAttention` to 1e-10 in float64 and be equivariant
  for every grid-exact element.
* :func:`check_constant_lifting`: the reader predicts the output of a lifting layer on a constant
  image, before computing it.

Legend: ``B`` batch, ``C`` channels, ``G = |H|``, ``K = k*k`` window offsets, ``m`` heads,
``d`` head width.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..attention import LiftingSelfAttention
from ..groups import get_group
from ..positional import transformed_offsets, window_offsets
from ._core import Check, checker

__all__ = ["lifting_parts", "reference_lifting_attention", "check_lifting_attention", "check_constant_lifting"]


def lifting_parts(layer: LiftingSelfAttention) -> dict[str, torch.Tensor]:
    """The tensors of a lifting layer that the lifting formula (``ch5-lifting``) needs, as plain tensors (chapter 5's exercise).

    Args:
        layer: a lifting layer with a local window (``window`` an odd integer).

    Returns:
        ``w_q``, ``w_k``, ``w_v`` ``(m*d, C)`` (the projections' weight matrices: ``q = w_q f``),
        ``rho`` ``(G, K, m, d)`` (``rho[h, k]`` = ρ(h⁻¹ δ_k) per head, δ_k the ``k``-th window offset
        of :func:`~gsa_tutorial.windows.window_offsets`, divided by the window radius as in the
        layer), ``w_out`` ``(C_out, m*d)`` and ``b_out`` ``(C_out,)`` (the output projection).
    """
    if not isinstance(layer, LiftingSelfAttention) or layer.window is None:
        raise ValueError("lifting_parts needs a LiftingSelfAttention with a local window (an odd integer, not None)")
    return _attention_parts(layer)


def _attention_parts(layer: Any) -> dict[str, torch.Tensor]:
    """The projections and the ρ table of any of the attention layers with a local window."""
    window = layer.window
    dtype = layer.to_q.weight.dtype
    offsets = window_offsets(window, dtype=dtype) / float(max(window // 2, 1))  # (K, 2), as the layer scales them
    with torch.no_grad():
        rho = layer.pos(transformed_offsets(layer.group, offsets))  # ρ(h⁻¹ δ): (G, K, m*d)
    return {
        "w_q": layer.to_q.weight.detach().clone(),
        "w_k": layer.to_k.weight.detach().clone(),
        "w_v": layer.to_v.weight.detach().clone(),
        "rho": rho.view(layer.group.order, window * window, layer.heads, layer.dim_head),
        "w_out": layer.to_out.weight.detach().clone(),
        "b_out": layer.to_out.bias.detach().clone(),
    }


def reference_lifting_attention(
    x: torch.Tensor,
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_v: torch.Tensor,
    rho: torch.Tensor,
    w_out: torch.Tensor,
    b_out: torch.Tensor,
    *,
    scale: bool = True,
    mask: bool = True,
    rho_index: Callable[[int], int] | None = None,
) -> torch.Tensor:
    """Lifting self-attention (``ch5-lifting``), one query pixel at a time, with switches that reproduce common mistakes.

    The checker uses it to say *which* mistake an answer makes. With the defaults it is the
    layer: ``scale=False`` drops the ``1/√d``, ``mask=False`` lets keys outside the image take part
    with zero keys and values (zero padding), ``rho_index`` reads ``rho[h, rho_index(h)]`` instead
    of ``rho[h]`` (e.g. always the identity's encoding).

    Shape:
        x ``(B, C, H, W)`` -> ``(B, C_out, G, H, W)``.
    """
    B, C, H, W = x.shape
    G, K, m, d = rho.shape
    k = math.isqrt(K)
    r = k // 2
    feats = x.permute(0, 2, 3, 1)  # (B, H, W, C)
    q = (feats @ w_q.T).unflatten(-1, (m, d)) * (d**-0.5 if scale else 1.0)  # (B, H, W, m, d)
    keys = (feats @ w_k.T).unflatten(-1, (m, d))  # (B, H, W, m, d)
    values = (feats @ w_v.T).unflatten(-1, (m, d))  # (B, H, W, m, d)
    if not mask:  # zero padding: keys outside the image are zero vectors that still get weight
        keys = torch.nn.functional.pad(keys, (0, 0, 0, 0, r, r, r, r))
        values = torch.nn.functional.pad(values, (0, 0, 0, 0, r, r, r, r))
    table = rho if rho_index is None else torch.stack([rho[rho_index(h)] for h in range(G)])  # (G, K, m, d)
    out = x.new_zeros(B, w_out.shape[0], G, H, W)
    for row in range(H):
        for col in range(W):
            taps = [(a * k + b, row + a - r, col + b - r) for a in range(k) for b in range(k)]
            if mask:
                taps = [(i, a, b) for i, a, b in taps if 0 <= a < H and 0 <= b < W]
                index, rows, cols = (list(t) for t in zip(*taps))
            else:
                index, rows, cols = [i for i, _, _ in taps], [a + r for _, a, _ in taps], [b + r for _, _, b in taps]
            k_j, v_j = keys[:, rows, cols], values[:, rows, cols]  # (B, J, m, d)
            q_i = q[:, row, col]  # (B, m, d)
            content = torch.einsum("bmd,bjmd->bmj", q_i, k_j)  # (B, m, J), shared by every h
            position = torch.einsum("bmd,gjmd->bgmj", q_i, table[:, index])  # (B, G, m, J)
            weights = (content[:, None] + position).softmax(-1)  # (B, G, m, J)
            agg = torch.einsum("bgmj,bjmd->bgmd", weights, v_j).flatten(-2)  # (B, G, m*d)
            out[:, :, :, row, col] = (agg @ w_out.T + b_out).transpose(1, 2)  # (B, C_out, G)
    return out


def _tiny_lifting(group: str, seed: int) -> tuple[LiftingSelfAttention, torch.Tensor]:
    """A tiny float64 lifting layer and input (a second or less for a loop over pixels)."""
    torch.manual_seed(seed)
    layer = LiftingSelfAttention(3, 5, group=group, heads=2, dim_head=3, window=3, pos_hidden=8).double().eval()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    return layer, x


def _check_layer_answer(
    check: Check,
    answer: Callable[..., torch.Tensor],
    layer: torch.nn.Module,
    x: torch.Tensor,
    parts: dict[str, Any],
    group: str,
    reference: Callable[..., torch.Tensor],
    mistakes: dict[str, dict[str, Any]],
    what: str,
    *,
    hint: str,
) -> None:
    """The checks of a from-scratch layer (chapters 5 and 6): ``answer(x, **parts)`` equals ``layer(x)``;
    if not, which of the usual ``mistakes`` (text -> switches of ``reference``) it makes; then
    equivariance for every grid-exact element of ``group``."""
    with torch.no_grad():
        expected = layer(x)
    got = answer(x, **parts)
    if not check.close(got, expected, f"your {what}") and isinstance(got, torch.Tensor) and got.shape == expected.shape:
        variants = {text: (lambda switches=switches: reference(x, **parts, **switches)) for text, switches in mistakes.items()}
        check.name_mistake(got, variants, what)  # type: ignore[arg-type]
    elif not check.ok:
        return
    check.equivariant(lambda t: answer(t, **parts), group, x, f"your {what}", output_kind="lifted", hint=hint)


_LIFT_HINT = (
    "compute q, k, v with the weight matrices (q = f @ w_q.T, split into heads), divide the logits by √d, "
    "add q·rho[h, k] for the window offset k of each key, take the softmax over the keys inside the image only, "
    "sum the values, merge the heads and apply w_out and b_out"
)


@checker("lifting self-attention from scratch (chapter 5)", hint=_LIFT_HINT)
def check_lifting_attention(check: Check, answer: Callable[..., torch.Tensor], group: str = "r4") -> None:
    """Check ``answer(x, w_q, w_k, w_v, rho, w_out, b_out)`` against ``LiftingSelfAttention``.

    On a tiny float64 layer over ``group`` (2 heads of width 3, a 3x3 window, a 5x5 image with 3
    channels): equal to the layer to 1e-10, then equivariant for every grid-exact element. A
    mismatch is compared with the usual mistakes (no ``1/√d``, zero padding instead of masking,
    the same positional encoding for every ``h``) and the one that matches is named.

    Args:
        answer: the reader's function, shapes as in :func:`lifting_parts` and x ``(B, C, H, W)``,
            returning ``(B, C_out, G, H, W)``.
        group: the group of the layer (``"r4"`` or ``"m4"`` keep it fast).
    """
    layer, x = _tiny_lifting(group, seed=0)
    _check_layer_answer(
        check, answer, layer, x, lifting_parts(layer), group, reference_lifting_attention,
        {
            "the logits are not divided by √d (d = dim_head = 3)": {"scale": False},
            "keys outside the image take part in the softmax (zero padding instead of masking them out)": {"mask": False},
            "every group element h uses the positional encoding of the identity, rho[0]": {"rho_index": lambda h: 0},
        },
        "lifting self-attention",
        hint="the rotated input must use rho[h] for the output element h; do not reorder the window offsets",
    )  # fmt: skip


@checker(
    "a lifting layer on a constant image (chapter 5)",
    hint="the softmax weights sum to one over the keys inside the image, whatever the logits; "
    "every value is w_v c; then the heads are merged by to_out (weight and bias)",
)
def check_constant_lifting(check: Check, predict: Callable[[LiftingSelfAttention, torch.Tensor], torch.Tensor]) -> None:
    """Check ``predict(layer, c)``, the predicted output vector ``(C_out,)`` on an image equal to ``c`` everywhere.

    The prediction is compared with the layer's output at every pixel (the border included) and
    every group element, for two layers (``R_4`` and ``M_4``, different windows).

    Args:
        predict: the reader's function; ``c`` has shape ``(C,)``; returns ``(C_out,)``.
    """
    for seed, (group, window) in enumerate((("r4", 3), ("m4", 5))):
        torch.manual_seed(3 + seed)
        layer = LiftingSelfAttention(3, 4, group=group, heads=2, window=window).double().eval()
        c = torch.randn(3, dtype=torch.float64, generator=torch.Generator().manual_seed(10 + seed))
        with torch.no_grad():
            out = layer(c.view(1, 3, 1, 1).expand(1, 3, 7, 7).contiguous())[0]  # (4, G, 7, 7)
            pred = predict(layer, c)
        what = f"the {get_group(group).name} layer (window {window}, 7x7 image)"
        if not check.tensor(pred, f"predict(layer, c) for {what}"):
            return
        if tuple(pred.shape) != (4,):
            check.expect(False, "", f"predict(layer, c) should return the vector of the 4 output channels, shape (4,), got {tuple(pred.shape)}")
            return
        diff = (out - pred.detach().to(out.dtype).view(4, 1, 1, 1)).abs()  # (4, G, 7, 7)
        worst = float(diff.max())
        channel, h, row, col = (int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        if check.expect(
            worst <= 1e-10,
            f"your prediction is the output of {what} at every pixel and group element (largest difference {worst:.1e})",
            f"your prediction differs from the output of {what} by up to {worst:.2g}, at channel {channel}, "
            f"group element {h}, pixel ({row}, {col}): yours {float(pred[channel]):.6g}, the layer's {float(out[channel, h, row, col]):.6g}",
        ):
            continue
        no_bias = (out - layer.to_out.bias.detach().view(4, 1, 1, 1) - pred.detach().to(out.dtype).view(4, 1, 1, 1)).abs().max()
        if float(no_bias) <= 1e-10:
            check.wrong.append("your prediction is the layer's output without the bias of to_out")
