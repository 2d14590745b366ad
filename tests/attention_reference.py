"""Slow loop-over-pixels references of the three attention formulas.

They share nothing with the fast layers but their parameters (the projections, ρ, the group
embedding): neighbourhoods, offsets, group actions and the softmax are recomputed here from
the formulas, one query pixel at a time. Float64 in, float64 out.
"""

from __future__ import annotations

import numpy as np
import torch


def _coords(height: int, width: int, row: int, col: int) -> np.ndarray:
    """Plane coordinates of pixel (row, col): x right, y up, centred."""
    return np.array([col - (width - 1) / 2, (height - 1) / 2 - row])


def _neighbours(layer, height: int, width: int, row: int, col: int) -> tuple[list[tuple[int, int]], float]:
    """The pixels j in N(i) inside the image and the offset scale."""
    if layer.window is None:
        pixels = [(a, b) for a in range(height) for b in range(width)]
        return pixels, float(max(max(height, width) - 1, 1))
    r = layer.window // 2
    pixels = [(a, b) for a in range(row - r, row + r + 1) for b in range(col - r, col + r + 1) if 0 <= a < height and 0 <= b < width]
    return pixels, float(max(r, 1))


def _qkv(layer, feats: torch.Tensor):
    """feats (..., C) -> q, k, v each (..., heads, dim_head); q scaled as in the layer."""
    m, d = layer.heads, layer.dim_head
    q = layer.to_q(feats).unflatten(-1, (m, d)) * d**-0.5
    return q, layer.to_k(feats).unflatten(-1, (m, d)), layer.to_v(feats).unflatten(-1, (m, d))


def _rho(layer, offset: np.ndarray) -> torch.Tensor:
    """ρ(offset), (heads, dim_head)."""
    return layer.pos(torch.as_tensor(offset, dtype=torch.float64)).view(layer.heads, layer.dim_head)


@torch.no_grad()
def lifting_reference(layer, x: torch.Tensor) -> torch.Tensor:
    """out(i, h) = Σ_{j∈N(i)} softmax_j(q_i·k_j + q_i·ρ(h⁻¹(x_j − x_i))) v_j, heads merged by to_out."""
    B, C, H, W = x.shape
    group = layer.group
    q, k, v = _qkv(layer, x.permute(0, 2, 3, 1))  # (B, H, W, m, d)
    out = torch.zeros(B, layer.out_channels, group.order, H, W, dtype=x.dtype)
    for row in range(H):
        for col in range(W):
            pixels, scale = _neighbours(layer, H, W, row, col)
            xi = _coords(H, W, row, col)
            for h in group.elements:
                m_inv = np.linalg.inv(group.matrix(h))
                logits, values = [], []
                for a, b in pixels:
                    rho = _rho(layer, m_inv @ (_coords(H, W, a, b) - xi) / scale)  # (m, d)
                    logits.append((q[:, row, col] * (k[:, a, b] + rho)).sum(-1))  # (B, m)
                    values.append(v[:, a, b])  # (B, m, d)
                weights = torch.stack(logits, -1).softmax(-1)  # (B, m, J)
                agg = torch.einsum("bmj,jbmd->bmd", weights, torch.stack(values))  # (B, m, d)
                out[:, :, h, row, col] = layer.to_out(agg.flatten(1))
    return out


def _group_entry(layer, h: int, t: int, s: int) -> int:
    """The embedding entry for (output h, query h̃ = t, key ĥ = s), from the definitions of chapter 6."""
    g = layer.group
    inv, mul = g.inverse, g.compose
    if layer.group_encoding == "relative":
        return mul(inv(t), s)  # h̃⁻¹ĥ
    if layer.group_encoding == "gevit":
        return mul(mul(inv(s), t), mul(inv(h), t))  # (ĥ⁻¹h̃)(h⁻¹h̃)
    if layer.group_encoding == "pair":
        return g.order * mul(inv(h), t) + mul(inv(h), s)  # (h⁻¹h̃, h⁻¹ĥ)
    return int(layer.group_index[h, t, s])  # the official table (checked against the official code in benchmarks/)


@torch.no_grad()
def group_reference(layer, x: torch.Tensor) -> torch.Tensor:
    """out(i,h) = Σ_h̃ Σ_{(j,ĥ)} softmax(q(i,h̃)·k(j,ĥ) + q(i,h̃)·[ρ(h⁻¹(x_j − x_i)) + e(T[h,h̃,ĥ])]) v(j,ĥ),

    with the sum over h̃ = h only for ``layer.query == "own"`` (and then the entry h⁻¹ĥ). Loops over
    the query pixel i and the elements h, h̃; the sum over keys (j, ĥ) is one tensor expression.
    """
    B, C, G, H, W = x.shape
    group = layer.group
    q, k, v = _qkv(layer, x.permute(0, 2, 3, 4, 1))  # (B, G, H, W, m, d)
    emb = layer.group_embedding  # (E, m, d)
    out = torch.zeros(B, layer.out_channels, G, H, W, dtype=x.dtype)
    for row in range(H):
        for col in range(W):
            pixels, scale = _neighbours(layer, H, W, row, col)
            xi = _coords(H, W, row, col)
            rows, cols = [a for a, _ in pixels], [b for _, b in pixels]
            k_js = k[:, :, rows, cols].transpose(1, 2)  # (B, J, G_s, m, d)
            v_js = v[:, :, rows, cols].transpose(1, 2)  # (B, J, G_s, m, d)
            for h in group.elements:
                m_inv = np.linalg.inv(group.matrix(h))
                rho = torch.stack([_rho(layer, m_inv @ (_coords(H, W, a, b) - xi) / scale) for a, b in pixels])  # (J, m, d)
                total = 0
                for t in ([h] if layer.query == "own" else group.elements):
                    if layer.query == "own":
                        g = [group.compose(group.inverse(h), s) for s in group.elements]  # h⁻¹ĥ
                    else:
                        g = [_group_entry(layer, h, t, s) for s in group.elements]
                    keys = k_js + rho[None, :, None] + emb[g][None, None]  # (B, J, G_s, m, d)
                    logits = (q[:, t, row, col][:, None, None] * keys).sum(-1)  # (B, J, G_s, m)
                    weights = logits.flatten(1, 2).softmax(1)  # softmax over (j, ĥ): (B, J*G_s, m)
                    total = total + torch.einsum("bjm,bjmd->bmd", weights, v_js.flatten(1, 2))
                out[:, :, h, row, col] = layer.to_out(total.flatten(1))
    return out
