"""Relative positions, their transformation by H, and positional encoders (chapter 4).

Legend: ``G = |H|`` group size, ``K = k*k`` window offsets, ``D`` encoding width.

Self-attention without positions is blind to where a key sits (chapter 3). A *relative*
encoding ``ρ(x_j - x_i)`` restores position while keeping translation equivariance; the
*lifting* trick of the paper evaluates it on transformed offsets ``ρ(h⁻¹(x_j - x_i))``, one
copy per group element ``h`` (chapter 4 of the book, Romero & Cordonnier 2021 §4.1).

``ρ`` here is a small MLP on *continuous* coordinates, so the offsets may be rotated by any
angle, not only by multiples of 90°. The offsets are divided by a fixed scale (the window
radius) before the MLP; dividing by a constant commutes with rotations, so the invariance
argument is untouched.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ._checks import check_choice
from .actions import act_on_coordinates, pixel_coordinates
from .groups import CyclicGroup, DihedralGroup, Group, get_group
from .windows import window_offsets as window_offsets  # its home is gsa_tutorial.windows (the window convention)

__all__ = [
    "transformed_offsets",
    "GROUP_ENCODINGS",
    "group_encoding_size",
    "relative_group_index",
    "PositionMLP",
    "absolute_positions",
]


def transformed_offsets(group: Group | str, offsets: torch.Tensor) -> torch.Tensor:
    """``h⁻¹ (x_j - x_i)`` for every ``h`` in the group (the argument of ρ, chapter 4).

    Shape:
        offsets ``(K, 2)`` (e.g. :func:`gsa_tutorial.windows.window_offsets`) -> ``(G, K, 2)``.
    """
    group = get_group(group)
    return torch.stack([act_on_coordinates(group, group.inverse(h), offsets) for h in group.elements])


GROUP_ENCODINGS = ("relative", "gevit", "pair", "official")
"""The group parts of the group layer's positional encoding (chapter 6), see :func:`relative_group_index`."""


def _check_encoding(encoding: str) -> str:
    return check_choice("group encoding", encoding, GROUP_ENCODINGS)


def group_encoding_size(group: Group | str, encoding: str = "relative") -> int:
    """Number ``E`` of entries of the group embedding that :func:`relative_group_index` indexes into.

    ``|H|`` for ``"relative"``, ``"gevit"`` and ``"official"``; ``|H|²`` for ``"pair"``.
    """
    group = get_group(group)
    return group.order**2 if _check_encoding(encoding) == "pair" else group.order


def _official_labels(group: Group) -> np.ndarray:
    """``phi[h]``: the official code's index of our element ``h`` (the labelling in which the two
    lifting layers agree: the official layer's element ``phi[h]`` moves offsets by ``matrix(h⁻¹)``).

    The official ``SE2(n)`` (our C_n) lists rotations by ``2πk/n``; its ``E2(2n)`` (our D_n) lists
    ``[2πk/n, +1]`` for ``k < n``, then ``[2πk/n, -1]`` (rotate the mirrored offsets). Both act on
    offsets by the matrix of the element, where our lifting layer uses ``h⁻¹``.
    """
    phi = np.empty(group.order, dtype=np.int64)
    n = group.order // 2 if isinstance(group, DihedralGroup) else group.order
    for h in group.elements:
        k, mirrored = (group.split(h) if isinstance(group, DihedralGroup) else (h, 0))
        phi[h] = k + n if mirrored else (-k) % n  # reflections are their own inverse
    return phi


def _official_table(group: Group) -> np.ndarray:
    """The official code's group-embedding index ``g_indices[v, t, m]``, in its own labels.

    Rebuilt from what the official code computes (``g_selfatt/groups/SE2.py`` lines 25-30 and
    47-49, ``E2.py`` lines 33-47 and 78-83, ``group_local_self_attention.py`` lines 239-255, commit
    14204b3), as integer arithmetic; ``benchmarks/official_fidelity.py`` checks it against the
    official tables themselves.

    * ``SE2(n)``: ``g[v, t, m] = (m + v - t) mod n``.
    * ``E2(2n)``: a base table whose row ``u = [k, mu]`` is ``0..2n-1`` with the first half rolled by
      ``+k``, the second by ``-k`` (then the halves swapped if ``mu = -1``); the slice for ``v = [k, mu]``
      rolls that table's *rows* by ``-k`` in the first mirror half and ``+k`` in the second (halves
      swapped if ``mu = -1``). No short word in ``h, h̃, ĥ`` gives it.
    """
    G = group.order
    if isinstance(group, CyclicGroup) or G == 1:
        v, t, m = np.meshgrid(*(np.arange(G),) * 3, indexing="ij")
        return (m + v - t) % G
    n = G // 2

    def act(k: int, mirrored: bool, table: np.ndarray) -> np.ndarray:  # official left_action_on_H
        halves = table.reshape(2, n, -1).copy()  # (mirror half, rotation, rest)
        if k % n:
            halves[0] = np.roll(halves[0], -k, axis=0)  # the two halves rotate in opposite directions
            halves[1] = np.roll(halves[1], k, axis=0)
        if mirrored:
            halves = halves[::-1]
        return halves.reshape(table.shape)

    base = np.stack([act(-(u % n), u >= n, np.arange(G)) for u in range(G)])  # (u, m)
    return np.stack([act(v % n, v >= n, base) for v in range(G)])  # (v, t, m)


def relative_group_index(group: Group | str, encoding: str = "relative") -> torch.Tensor:
    """Index table of the group part ``e(·)`` of the group layer's positional encoding (chapter 6).

    ``index[h, t, s]`` (``h`` output element, ``t = h̃`` query element, ``s = ĥ`` key element) is the
    entry of an embedding with :func:`group_encoding_size` entries. Acting on the lifted input by
    ``r`` moves all three elements to ``r h, r t, r s``, so the layer is equivariant exactly when
    ``index[r h, r t, r s] = index[h, t, s]`` for every ``r``. The orbits of triples under this
    action are labelled by the pair ``(h⁻¹t, h⁻¹s)``: every invariant table is a function of it.

    * ``"relative"``: ``t⁻¹ s``. Invariant, but the same for every ``h``: with the paper's sum over
      query elements, the output sees ``h`` only through the spatial term (blind to orientation).
    * ``"gevit"``: ``(s⁻¹ t)(h⁻¹ t)``, the correction of Xu et al. (GE-ViT, 2023); for C_n it is
      ``(2t - s - h) mod n``. Invariant and depends on ``h``.
    * ``"pair"``: the pair ``(h⁻¹t, h⁻¹s)`` itself, entry ``|H|·(h⁻¹t) + h⁻¹s`` of ``|H|²``: the
      general invariant.
    * ``"official"``: the official GSA-Nets code's table, in our labelling (the one in which our
      and the official lifting layers agree). **Not** invariant: for C_n it is ``(t - s - h) mod n``
      (``h·t⁻¹s`` up to naming the embedding's entries), for D_n a table of rolls (see
      :func:`_official_table`).

    Shape:
        ``(G, G, G)`` long tensor, indexed ``[h, t, s]``.
    """
    group = get_group(group)
    encoding = _check_encoding(encoding)
    table = torch.as_tensor(group.cayley_table)  # (G, G): table[a, b] = a b
    inv = torch.as_tensor(group.inverse_table)  # (G,)
    G = group.order
    rel = table[inv]  # rel[a, b] = a⁻¹ b, (G, G)
    h, t, s = (torch.arange(G).view(shape) for shape in ((-1, 1, 1), (1, -1, 1), (1, 1, -1)))
    if encoding == "relative":
        return rel[t, s].expand(G, G, G).clone()  # [h, t, s] = t⁻¹ s
    if encoding == "gevit":
        return table[rel[s, t], rel[h, t]]  # (s⁻¹ t)(h⁻¹ t)
    if encoding == "pair":
        return G * rel[h, t] + rel[h, s]  # (h⁻¹ t, h⁻¹ s) -> one entry of G²
    phi = torch.as_tensor(_official_labels(group))
    return torch.as_tensor(_official_table(group))[phi[h], phi[t], phi[s]]  # official table in our labels


class PositionMLP(nn.Module):
    """ρ: a two-layer MLP from a 2-d position to ``dim`` numbers (one vector per position).

    Used for relative offsets (translation-invariant encodings) and, as the non-equivariant
    control of chapter 3, for absolute pixel positions.

    Args:
        dim: output width (``heads * dim_head`` in the attention layers).
        hidden: width of the hidden layer.

    Shape:
        ``(..., 2) -> (..., dim)``.
    """

    def __init__(self, dim: int, *, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.net(positions)


def absolute_positions(height: int, width: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalised absolute pixel coordinates in ``[-1, 1]``, shape ``(H, W, 2)`` (for the control of ch. 3)."""
    scale = max(height - 1, width - 1, 1) / 2
    return pixel_coordinates(height, width, dtype=dtype) / scale
