"""Checkers of chapter 6 (group self-attention).

* :func:`check_pair_table`: the reader builds the general invariant index table
  ``T[h, h̃, ĥ] = |H|·(h⁻¹h̃) + h⁻¹ĥ``; checked for the invariance ``T[rh, rh̃, rĥ] = T[h, h̃, ĥ]``
  (naming a violating triple) and against :func:`~gsa_tutorial.positional.relative_group_index`.
* :func:`check_group_attention`: the reader writes group self-attention (equation ``ch6-group``) from the layer's
  weights, its positional table, its group embedding and an invariant index table; equal to
  :class:`~gsa_tutorial.attention.GroupSelfAttention` to 1e-10 in float64, and equivariant.
* :func:`check_constant_group`: the reader predicts the output of a group layer on a constant
  lifted map, for ``query="all"`` and ``query="own"``.

Legend: ``B`` batch, ``C`` channels, ``G = |H|``, ``K = k*k`` window offsets, ``m`` heads,
``d`` head width, ``E`` embedding entries; ``h`` output, ``t = h̃`` query, ``s = ĥ`` key element.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..attention import GroupSelfAttention
from ..groups import Group, get_group
from ..positional import relative_group_index
from ._core import Check, checker
from .ch05 import _attention_parts, _check_layer_answer

__all__ = ["group_parts", "reference_group_attention", "check_pair_table", "check_group_attention", "check_constant_group"]


def group_parts(layer: GroupSelfAttention) -> dict[str, torch.Tensor]:
    """The tensors of a group layer that the group formula (``ch6-group``) needs, as plain tensors (chapter 6's exercise).

    Args:
        layer: a group layer with a local window and ``query="all"``.

    Returns:
        as :func:`~gsa_tutorial.exercises.lifting_parts` (``w_q``, ``w_k``, ``w_v`` ``(m*d, C)``,
        ``rho`` ``(G, K, m, d)`` = ρ(h⁻¹ δ_k), ``w_out`` ``(C_out, m*d)``, ``b_out`` ``(C_out,)``),
        plus ``embedding`` ``(E, m, d)`` (the group embedding e) and ``table`` ``(G, G, G)`` long
        (the index ``T[h, h̃, ĥ]`` of the layer's ``group_encoding``).
    """
    if not isinstance(layer, GroupSelfAttention) or layer.window is None or layer.query != "all":
        raise ValueError("group_parts needs a GroupSelfAttention with a local window and query='all'")
    parts = _attention_parts(layer)  # the same projections and ρ table as the lifting layer
    parts["embedding"] = layer.group_embedding.detach().clone()
    parts["table"] = relative_group_index(layer.group, layer.group_encoding)
    return parts


def reference_group_attention(
    x: torch.Tensor,
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_v: torch.Tensor,
    rho: torch.Tensor,
    embedding: torch.Tensor,
    table: torch.Tensor,
    w_out: torch.Tensor,
    b_out: torch.Tensor,
    *,
    scale: bool = True,
    joint: bool = True,
    rho_index: Callable[[int], int] | None = None,
) -> torch.Tensor:
    """Group self-attention (``ch6-group``), one query pixel at a time, with switches that reproduce common mistakes.

    With the defaults it is the layer. ``scale=False`` drops the ``1/√d``; ``joint=False`` takes a
    separate softmax over the key pixels for every key element ĥ (instead of one over all
    ``(j, ĥ)``); ``rho_index`` reads ``rho[rho_index(h)]`` for the output element ``h``.

    Shape:
        x ``(B, C, G, H, W)`` -> ``(B, C_out, G, H, W)``.
    """
    B, C, G, H, W = x.shape
    _, K, m, d = rho.shape
    k = math.isqrt(K)
    r = k // 2
    feats = x.permute(0, 2, 3, 4, 1)  # (B, G, H, W, C)
    q = (feats @ w_q.T).unflatten(-1, (m, d)) * (d**-0.5 if scale else 1.0)  # (B, G, H, W, m, d)
    keys = (feats @ w_k.T).unflatten(-1, (m, d))  # (B, G, H, W, m, d)
    values = (feats @ w_v.T).unflatten(-1, (m, d))  # (B, G, H, W, m, d)
    spatial_table = rho if rho_index is None else torch.stack([rho[rho_index(h)] for h in range(G)])  # (G, K, m, d)
    e = embedding[table]  # e(T[h, t, s]): (h, t, s, m, d)
    out = x.new_zeros(B, w_out.shape[0], G, H, W)
    for row in range(H):
        for col in range(W):
            taps = [(a * k + b, row + a - r, col + b - r) for a in range(k) for b in range(k)]
            index, rows, cols = (list(t) for t in zip(*[(i, a, b) for i, a, b in taps if 0 <= a < H and 0 <= b < W]))
            k_j, v_j = keys[:, :, rows, cols], values[:, :, rows, cols]  # (B, s, J, m, d)
            q_i = q[:, :, row, col]  # (B, t, m, d)
            content = torch.einsum("btmd,bsjmd->btjsm", q_i, k_j)  # A: (B, t, J, s, m)
            spatial = torch.einsum("btmd,hjmd->bhtjm", q_i, spatial_table[:, index])  # B: (B, h, t, J, m)
            group = torch.einsum("btmd,htsmd->bhtsm", q_i, e)  # C: (B, h, t, s, m)
            logits = content[:, None] + spatial[:, :, :, :, None] + group[:, :, :, None]  # (B, h, t, J, s, m)
            if joint:
                weights = logits.flatten(3, 4).softmax(3).view_as(logits)  # softmax over (j, ĥ)
            else:
                weights = logits.softmax(3)  # over j only, separately for every ĥ
            agg = torch.einsum("bhtjsm,bsjmd->bhmd", weights, v_j).flatten(-2)  # Σ_h̃ Σ_(j,ĥ): (B, h, m*d)
            out[:, :, :, row, col] = (agg @ w_out.T + b_out).transpose(1, 2)  # (B, C_out, h)
    return out


def _moved(table: torch.Tensor, group: Group, r: int) -> torch.Tensor:
    """``table[r h, r h̃, r ĥ]`` as a table indexed ``[h, h̃, ĥ]``."""
    move = torch.as_tensor(group.cayley_table)[r]  # move[a] = r a
    return table[move][:, move][:, :, move]


@checker(
    "the pair table, the general invariant index (chapter 6)",
    hint="entry [h, h̃, ĥ] is |H|·a + b with a = h⁻¹h̃ and b = h⁻¹ĥ: use group.compose(group.inverse(h), ...)",
)
def check_pair_table(check: Check, answer: Callable[[Group], Any]) -> None:
    """Check ``answer(group)``, the table ``T[h, h̃, ĥ] = |H|·(h⁻¹h̃) + h⁻¹ĥ`` of shape ``(G, G, G)``.

    For ``R_4``, ``M_4`` and ``R_3``: integer entries in ``0 .. |H|²-1``, the invariance
    ``T[rh, rh̃, rĥ] = T[h, h̃, ĥ]`` for every ``r`` (a failure names a triple and ``r``), and equality
    with ``relative_group_index(group, "pair")`` (a failure names the entry).

    Args:
        answer: the reader's function; takes a :class:`~gsa_tutorial.groups.Group`, returns a tensor
            (or anything ``torch.as_tensor`` accepts) indexed ``[h, h̃, ĥ]``.
    """
    for name in ("r4", "m4", "r3"):
        group = get_group(name)
        G = group.order
        table = torch.as_tensor(answer(group))
        if tuple(table.shape) != (G, G, G):
            check.wrong.append(f"the {name} table has shape {tuple(table.shape)}, expected ({G}, {G}, {G}) indexed [h, h̃, ĥ]")
            return
        if table.is_floating_point() or table.dtype == torch.bool:
            check.wrong.append(f"the {name} table should hold integer indices (it indexes the embedding), got dtype {table.dtype}")
            return
        table = table.long()
        if not bool(((table >= 0) & (table < G * G)).all()):
            check.wrong.append(f"the {name} table has entries from {int(table.min())} to {int(table.max())}, "
                               f"expected 0..{G * G - 1} (|H|² = {G * G} entries)")
            return
        broken = None
        for r in group.elements:
            moved = _moved(table, group, r)
            if not torch.equal(moved, table):
                h, t, s = (int(i) for i in (moved != table).nonzero()[0])
                broken = (r, h, t, s, int(moved[h, t, s]), int(table[h, t, s]))
                break
        if broken is None:
            check.right.append(f"the {name} table, shape ({G}, {G}, {G}), is invariant: T[rh, rh̃, rĥ] = T[h, h̃, ĥ] for all {G} elements r")
        else:
            r, h, t, s, after, before = broken
            rh, rt, rs = (group.compose(r, g) for g in (h, t, s))
            check.wrong.append(
                f"the {name} table is not invariant: for r = {group.element_name(r)} and (h, h̃, ĥ) = ({h}, {t}, {s}), "
                f"T[rh, rh̃, rĥ] = T[{rh}, {rt}, {rs}] = {after} but T[{h}, {t}, {s}] = {before}"
            )
        expected = relative_group_index(group, "pair")
        if torch.equal(table, expected):
            check.right.append(f"the {name} table equals relative_group_index({name!r}, 'pair')")
        else:
            h, t, s = (int(i) for i in (table != expected).nonzero()[0])
            check.wrong.append(
                f"the {name} table differs from the package's pair table at [h, h̃, ĥ] = [{h}, {t}, {s}]: "
                f"yours {int(table[h, t, s])}, expected {int(expected[h, t, s])} "
                f"(= {G}·{group.compose(group.inverse(h), t)} + {group.compose(group.inverse(h), s)}); "
                f"{int((table != expected).sum())} of {G**3} entries differ"
            )


def _tiny_group_layer(group: str, encoding: str, seed: int) -> tuple[GroupSelfAttention, torch.Tensor]:
    torch.manual_seed(seed)
    layer = GroupSelfAttention(2, 3, group=group, heads=2, dim_head=2, window=3, pos_hidden=8, group_encoding=encoding).double().eval()  # type: ignore[arg-type]
    G = layer.group.order
    x = torch.randn(1, 2, G, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    return layer, x


_GROUP_HINT = (
    "for each query pixel and output element h: logits (q(i,h̃)·[k(j,ĥ) + rho[h, k] + embedding[table[h, h̃, ĥ]]]) / √d, "
    "one softmax per (h, h̃) over all keys (j, ĥ) of the window inside the image, weights times v(j, ĥ), "
    "summed over h̃ as well; then merge the heads and apply w_out, b_out"
)


@checker("group self-attention from scratch (chapter 6)", hint=_GROUP_HINT)
def check_group_attention(
    check: Check, answer: Callable[..., torch.Tensor], group: str = "r4", group_encoding: str = "pair"
) -> None:
    """Check ``answer(x, w_q, w_k, w_v, rho, embedding, table, w_out, b_out)`` against ``GroupSelfAttention``.

    On a tiny float64 layer (2 heads of width 2, a 3x3 window, a 4x4 lifted map with 2 channels)
    with ``group_encoding`` (an invariant one: ``"pair"``, ``"gevit"`` or ``"relative"``) and
    ``query="all"``: equal to the layer to 1e-10, and equivariant for every grid-exact element.
    A mismatch is compared with the usual mistakes (no ``1/√d``, a softmax over the key pixels
    only, the identity's positional encoding for every ``h``).

    Args:
        answer: the reader's function; shapes as in :func:`group_parts`, x ``(B, C, G, H, W)``,
            returning ``(B, C_out, G, H, W)``.
        group: the group of the layer.
        group_encoding: the layer's table.
    """
    if group_encoding == "official":
        raise ValueError("the official table is not invariant: the exercise asks for an invariant one ('pair', 'gevit' or 'relative')")
    layer, x = _tiny_group_layer(group, group_encoding, seed=0)
    _check_layer_answer(
        check, answer, layer, x, group_parts(layer), group, reference_group_attention,
        {
            "the logits are not divided by √d (d = dim_head = 2)": {"scale": False},
            "the softmax runs over the key pixels j separately for every ĥ, not jointly over (j, ĥ)": {"joint": False},
            "every output element h uses the positional encoding of the identity, rho[0]": {"rho_index": lambda h: 0},
        },
        "group self-attention",
        hint="read the embedding at table[h, h̃, ĥ] with h the output element, h̃ the query's and ĥ the key's; "
        "the spatial encoding of output element h is rho[h]",
    )  # fmt: skip


@checker(
    "a group layer on a constant lifted map (chapter 6)",
    hint="every value is w_v c and each softmax sums to one; with query='all' the layer sums (not averages) over the |H| "
    "query elements h̃, with query='own' there is one query per output element; then to_out (weight and bias)",
)
def check_constant_group(check: Check, predict: Callable[[GroupSelfAttention, torch.Tensor], torch.Tensor]) -> None:
    """Check ``predict(layer, c)``, the output vector ``(C_out,)`` of a group layer on a lifted map equal to ``c``.

    Two layers over ``R_4``, one with ``query="all"`` and one with ``query="own"``; the prediction is
    compared with the output at every pixel and group element.

    Args:
        predict: the reader's function; ``c`` has shape ``(C,)``; returns ``(C_out,)``.
    """
    for seed, query in enumerate(("all", "own")):
        torch.manual_seed(20 + seed)
        layer = GroupSelfAttention(3, 4, group="r4", heads=2, window=3, query=query).double().eval()  # type: ignore[arg-type]
        c = torch.randn(3, dtype=torch.float64, generator=torch.Generator().manual_seed(30 + seed))
        with torch.no_grad():
            out = layer(c.view(1, 3, 1, 1, 1).expand(1, 3, 4, 5, 5).contiguous())[0]  # (4, G, 5, 5)
            pred = predict(layer, c)
        what = f"the query={query!r} layer"
        if not check.tensor(pred, f"predict(layer, c) for {what}"):
            return
        if tuple(pred.shape) != (4,):
            check.expect(False, "", f"predict(layer, c) should return the vector of the 4 output channels, shape (4,), got {tuple(pred.shape)}")
            return
        pred = pred.detach().to(out.dtype)
        diff = (out - pred.view(4, 1, 1, 1)).abs()
        worst = float(diff.max())
        channel, h, row, col = (int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        if check.expect(
            worst <= 1e-10,
            f"your prediction is the output of {what} at every pixel and group element (largest difference {worst:.1e})",
            f"your prediction differs from the output of {what} by up to {worst:.2g}, at channel {channel}, group element {h}, "
            f"pixel ({row}, {col}): yours {float(pred[channel]):.6g}, the layer's {float(out[channel, h, row, col]):.6g}",
        ):
            continue
        with torch.no_grad():
            value = layer.to_v(c)  # (m*d,)
            for copies in (1, 4):
                if copies != (4 if query == "all" else 1) and float((layer.to_out(copies * value) - pred).abs().max()) <= 1e-10:
                    check.wrong.append(
                        f"for {what} your prediction counts {copies} query cop{'y' if copies == 1 else 'ies'}: "
                        + ("the layer sums over all |H| = 4 elements h̃" if query == "all" else "with query='own' only h̃ = h attends")
                    )
