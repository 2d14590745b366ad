"""Relative positions, their transformation by H, and positional encoders (chapter 4).

Legend: ``G = |H|`` group size, ``K = k*k`` window offsets, ``D`` encoding width.

Self-attention without positions is blind to where a key sits (chapter 3). A *relative*
encoding ``ρ(x_j - x_i)`` restores position while keeping translation equivariance; the
*lifting* trick of the paper evaluates it on transformed offsets ``ρ(h⁻¹(x_j - x_i))``, one
copy per group element ``h`` (eq. 4.2 of the book, Romero & Cordonnier 2021 §4.1).

``ρ`` here is a small MLP on *continuous* coordinates, so the offsets may be rotated by any
angle, not only by multiples of 90°. The offsets are divided by a fixed scale (the window
radius) before the MLP; dividing by a constant commutes with rotations, so the invariance
argument is untouched.
"""

from __future__ import annotations

import torch
from torch import nn

from .actions import act_on_coordinates, pixel_coordinates
from .groups import Group, get_group

__all__ = [
    "window_offsets",
    "transformed_offsets",
    "relative_group_index",
    "PositionMLP",
    "absolute_positions",
]


def window_offsets(window: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Offsets ``x_j - x_i`` of a centred ``window x window`` neighbourhood as ``(x, y)`` (y up).

    The order is row-major over the window, the same as :func:`torch.nn.functional.unfold`:
    entry ``a * window + b`` is the key ``a`` rows and ``b`` columns from the window's corner.

    Shape:
        ``(K, 2)`` with ``K = window**2``.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    return pixel_coordinates(window, window, dtype=dtype).reshape(-1, 2)  # (k, k, 2) -> (K, 2)


def transformed_offsets(group: Group | str, offsets: torch.Tensor) -> torch.Tensor:
    """``h⁻¹ (x_j - x_i)`` for every ``h`` in the group (the argument of ρ in eq. 4.2).

    Shape:
        offsets ``(K, 2)`` -> ``(G, K, 2)``.
    """
    group = get_group(group)
    return torch.stack([act_on_coordinates(group, group.inverse(h), offsets) for h in group.elements])


def relative_group_index(group: Group | str, official: bool = False) -> torch.Tensor:
    """Index of the group part of the positional encoding of the group layer.

    ``index[h, t, s]`` is the group element that encodes "key at ``ĥ = s`` seen from a query at
    ``h̃ = t``" for the output element ``h``:

    * ``official=False`` (ours): ``t⁻¹ s``. It does not depend on ``h``, and it is invariant
      when ``t`` and ``s`` are both moved by the same ``r``: ``(r t)⁻¹ (r s) = t⁻¹ s``.
    * ``official=True`` (the official GSA-Nets code): ``h⁻¹ t⁻¹ s``. Under ``r`` it becomes
      ``h⁻¹ r⁻¹ t⁻¹ s``, which differs, so the layer is *not* equivariant (chapter 6).

    Shape:
        ``(G, G, G)`` long tensor (``h``, ``t``, ``s``).
    """
    group = get_group(group)
    table = torch.as_tensor(group.cayley_table)  # (G, G): table[a, b] = a b
    inv = torch.as_tensor(group.inverse_table)  # (G,)
    rel = table[inv]  # rel[t, s] = t⁻¹ s, (G, G)
    if not official:
        return rel.unsqueeze(0).expand(group.order, -1, -1).clone()  # (G, G, G)
    return table[inv][:, rel]  # [h, t, s] = h⁻¹ (t⁻¹ s), (G, G, G)


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
