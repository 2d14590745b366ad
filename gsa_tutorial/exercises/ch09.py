"""Checkers of chapter 9 (cost, scale and limits).

* :func:`check_score_counts`: the reader predicts the number of attention scores of the lifting
  layer, the factorised group layer and the dense group layer (equations ``ch9-dense`` and ``ch9-factorized``); checked against
  :func:`gsa_tutorial.costs.score_tensor_sizes` on the paper's configurations and a few more.
* :func:`check_factorized_softmax`: the reader writes the factorised softmax of equation ``ch9-factorization`` for one
  query and output element; checked against the joint softmax, with large logits and masked keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from ..groups import get_group
from ..profiling import paper_configs, score_tensor_sizes
from ._core import Check, checker

__all__ = ["check_score_counts", "check_factorized_softmax"]

_KEYS = ("lifting", "factorized", "dense")


@checker(
    "counting attention scores (chapter 9)",
    hint="per image, head, query pixel and window key: |H| scores for the lifting layer (one per output element h), "
    "|H|² for the factorised group layer (one per (h̃, ĥ) inside, per (h, h̃) outside), |H|³ for the dense one "
    "(one per (h, h̃, ĥ)); N = side², K = window²",
)
def check_score_counts(check: Check, answer: Callable[..., Mapping[str, int]]) -> None:
    """Check ``answer(group, side, window, heads, batch)`` -> ``{"lifting", "factorized", "dense"}`` counts.

    Compared with :func:`~gsa_tutorial.costs.score_tensor_sizes` on the paper's
    configurations (rotated MNIST over every group, CIFAR-10, PCam) at batch 1, and on three
    more (batch 8, a 3x3 window, ``R_3``). A failure names the configuration and the entry, and
    how far off it is.

    Args:
        answer: the reader's function; ``group`` a name such as ``"r12"``; returns a mapping of ints.
    """
    cases = [(c.group, c.size, c.window, c.heads, 1) for c in paper_configs()]
    cases += [("r4", 28, 5, 9, 8), ("m4", 10, 3, 2, 2), ("r3", 7, 3, 1, 1)]
    for group, side, window, heads, batch in cases:
        expected = score_tensor_sizes(group, side, window=window, heads=heads, batch=batch)
        got = answer(group, side, window, heads, batch)
        what = f"{group}, {side}x{side}, {window}x{window} window, {heads} heads, batch {batch}"
        if not isinstance(got, Mapping) or any(key not in got for key in _KEYS):
            check.wrong.append(f"the answer should be a dict with the keys {', '.join(map(repr, _KEYS))}; got {got!r} for {what}")
            return
        G = get_group(group).order
        for key in _KEYS:
            value = got[key]
            value = int(value.item()) if isinstance(value, torch.Tensor) else value
            if value == expected[key]:
                continue
            ratio = value / expected[key] if expected[key] else float("nan")
            powers = {G**p: f"|H|^{p}" for p in range(-3, 4) if p} if G > 1 else {}
            clue = next((text for factor, text in powers.items() if abs(ratio - factor) <= 1e-9 * factor), None)
            check.wrong.append(
                f"{key!r} for {what}: you count {value:,}, expected {expected[key]:,} (ratio {ratio:.4g}"
                + (f" = {clue} with |H| = {G}: a power of |H| is off" if clue else "")
                + ")"
            )
            return
    check.right.append(f"all three counts equal score_tensor_sizes for {len(cases)} configurations")


def _logit_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(9)
    K, S = 9, 4
    cases = []
    A, B, C = (torch.randn(*shape, generator=gen, dtype=torch.float64) for shape in ((K, S), (K,), (S,)))
    cases.append(("random logits", A, B, C))
    cases.append(("large logits (×400: a naive exp overflows)", 400 * A, 400 * B, 400 * C))
    masked = B.clone()
    masked[[0, 1, 2]] = float("-inf")  # three keys outside the image
    cases.append(("three keys masked out (B = −inf)", A, masked, C))
    return cases


@checker(
    "the factorised softmax (chapter 9)",
    hint="L = logsumexp over ĥ of A + C (one number per key pixel j), then softmax over j of B + L, "
    "times softmax over ĥ of A + C; use torch.logsumexp and torch.softmax (they subtract the maximum)",
)
def check_factorized_softmax(check: Check, answer: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(A, B, C)``, the weights ``(K, |H|)`` of equation ``ch9-factorization`` for one query and output element.

    ``A`` ``(K, |H|)`` content logits ``A(j, ĥ)``, ``B`` ``(K,)`` spatial logits ``B(j)`` (``−inf`` for
    keys outside the image), ``C`` ``(|H|,)`` group logits ``C(ĥ)``. Compared with the joint softmax
    of ``A + B + C`` over all ``(j, ĥ)`` to 1e-12, on random, very large and masked logits.

    Args:
        answer: the reader's function.
    """
    for what, A, B, C in _logit_cases():
        joint = (A + B[:, None] + C[None, :]).flatten().softmax(0).view_as(A)  # the definition
        got = answer(A.clone(), B.clone(), C.clone())
        if not check.close(got, joint, f"your weights ({what})", atol=1e-12):
            if isinstance(got, torch.Tensor) and got.shape == A.shape and bool(torch.isfinite(got).all()):
                forgot = B.softmax(0)[:, None] * (A + C[None, :]).softmax(1)
                if float((got - forgot).abs().max()) <= 1e-12:
                    check.wrong.append("your weights are softmax_j(B)·softmax_ĥ(A + C): the outer softmax needs B + L, "
                                       "L = logsumexp_ĥ(A + C), the weight of each key pixel's group")
            return
