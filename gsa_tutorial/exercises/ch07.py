"""Checkers of chapter 7 (building a GSA-Net).

* :func:`check_attention_parameters`: the reader counts the parameters of a lifting and of a group
  self-attention layer from their settings; checked against ``count_parameters`` of the package's
  layers for several settings, groups and tables.
* :func:`check_invariant_head`: the reader writes the invariant head's pooling (mean over space,
  max over the group); checked against :class:`~gsa_tutorial.layers.InvariantPooling` and for
  exact invariance on odd and even maps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attention import GroupSelfAttention, LiftingSelfAttention
from ..layers import InvariantPooling
from ..model import count_parameters
from ..positional import group_encoding_size
from ._core import Check, checker

__all__ = ["check_attention_parameters", "check_invariant_head"]

#: (in_channels, out_channels, heads, dim_head, pos_hidden) of the layers the count is checked on.
_SETTINGS = ((1, 20, 9, 2, 32), (20, 20, 9, 2, 32), (3, 8, 2, 5, 16), (6, 12, 4, 3, 8))


@checker(
    "parameters of an attention layer (chapter 7)",
    hint="count w_q, w_k, w_v (no biases), to_out (weight and bias), the positional MLP ρ "
    "(Linear(2, pos_hidden) and Linear(pos_hidden, heads·dim_head), with biases) and, for the group layer, "
    "the embedding: one vector of size dim_head per head and per entry",
)
def check_attention_parameters(check: Check, answer: Callable[..., int]) -> None:
    """Check ``answer(in_channels, out_channels, heads, dim_head, pos_hidden, entries)``.

    ``entries`` is the number of entries of the group embedding: ``0`` for a lifting layer (it
    has none), ``|H|`` or ``|H|²`` for a group layer (:func:`~gsa_tutorial.positional.group_encoding_size`).
    The answer must equal :func:`~gsa_tutorial.model.count_parameters` of the package's layer for
    lifting layers over ``R_4`` and ``M_4`` and group layers with the ``"relative"`` and ``"pair"``
    tables, at four settings (the first is the rotated-MNIST lifting layer).

    Args:
        answer: the reader's function, returning an integer.
    """
    for c_in, c_out, heads, dim_head, hidden in _SETTINGS:
        cases = [("lifting", "r4", None), ("lifting", "m4", None), ("group", "r4", "relative"), ("group", "m4", "pair")]
        for kind, group, encoding in cases:
            setting = f"in {c_in}, out {c_out}, heads {heads}, dim_head {dim_head}, pos_hidden {hidden}"
            if kind == "lifting":
                layer: torch.nn.Module = LiftingSelfAttention(c_in, c_out, group=group, heads=heads, dim_head=dim_head, window=3, pos_hidden=hidden)
                entries = 0
                what = f"a lifting layer over {group} ({setting}, entries 0)"
            else:
                layer = GroupSelfAttention(c_in, c_out, group=group, heads=heads, dim_head=dim_head, window=3, pos_hidden=hidden, group_encoding=encoding)  # type: ignore[arg-type]
                entries = group_encoding_size(group, encoding)  # type: ignore[arg-type]
                what = f"a group layer over {group}, table {encoding!r} ({setting}, entries {entries})"
            expected = count_parameters(layer)
            got = answer(c_in, c_out, heads, dim_head, hidden, entries)
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            if not isinstance(got, int) or isinstance(got, bool):
                check.wrong.append(f"the answer should be an integer, got {type(got).__name__} {got!r} for {what}")
                return
            if got == expected:
                continue
            diff = expected - got
            clues = {
                c_out: "the bias of to_out (out_channels numbers)",
                hidden + heads * dim_head: "the biases of the positional MLP (pos_hidden + heads·dim_head numbers)",
                entries * heads * dim_head: "the group embedding (entries·heads·dim_head numbers)",
                3 * c_in * heads * dim_head: "the three projections w_q, w_k, w_v (3·in_channels·heads·dim_head numbers)",
            }
            clue = clues.get(abs(diff))
            check.wrong.append(
                f"for {what} you count {got:,} parameters, the layer has {expected:,} ({'+' if diff > 0 else '−'}{abs(diff):,})"
                + (f": the difference is exactly {clue}, {'missing' if diff > 0 else 'counted twice or extra'}" if clue else "")
            )
            return
    check.right.append(f"your count equals count_parameters for all {4 * len(_SETTINGS)} layers (lifting and group, 4 settings)")


def _head_inputs() -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(7)
    return [
        ("r4", torch.randn(2, 3, 4, 7, 7, generator=gen, dtype=torch.float64)),  # odd map
        ("m4", torch.randn(2, 3, 8, 6, 6, generator=gen, dtype=torch.float64)),  # even map
    ]


@checker(
    "the invariant head (chapter 7)",
    hint="reduce over whole orbits only: the mean over all pixels (both spatial axes), then the maximum over the "
    "group axis (axis 2); no pooling of part of the map before it",
)
def check_invariant_head(check: Check, answer: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(features)``: ``(B, C, |H|, H, W) -> (B, C)``, mean over space then max over the group.

    Equal to ``InvariantPooling(space="mean", group="max")`` to 1e-10 on a 7x7 map over ``R_4`` and a
    6x6 map over ``M_4``, and invariant to every element of both groups (an invariance failure names
    the element and the error).

    Args:
        answer: the reader's pooling function.
    """
    reference = InvariantPooling(space="mean", group="max")
    for group, features in _head_inputs():
        size = features.shape[-1]
        what = f"your head on a {size}x{size} map over {group}"
        got = answer(features)
        check.close(got, reference(features), what)
        check.equivariant(answer, group, features, what, output_kind="invariant",
                          hint="a pooling that reads only part of the map (e.g. 2x2 max pooling of an odd map) "
                          "or that treats group elements differently is not invariant")
