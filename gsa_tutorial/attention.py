"""Relative, lifting and group self-attention (chapters 3, 5 and 6).

Legend (einsum letters and shape comments):

    b  batch                     m  heads                 d  dim_head
    n  query pixels (N = H*W)    k  window offsets (K)    c  channels
    h  output group element      t  query group element h̃  s  key group element ĥ
    G  = |H|, the group size

The three layers follow the paper (Romero & Cordonnier, ICLR 2021), with ``q``, ``k``, ``v``
pointwise (1x1) projections of the input and ``N(i)`` a ``window x window`` neighbourhood
(keys outside the image are *masked out* of the softmax, never zero-padded into it):

All logits are divided by ``√d`` (``d = dim_head``; the code scales ``q``):

* relative self-attention (Z2, chapter 3 of the book)::

      out(i) = Σ_{j∈N(i)} softmax_j((q_i·k_j + q_i·ρ(x_j − x_i)) / √d) v_j

* lifting self-attention (image -> lifted, chapter 5)::

      out(i, h) = Σ_{j∈N(i)} softmax_j((q_i·k_j + q_i·ρ(h⁻¹(x_j − x_i))) / √d) v_j

* group self-attention (lifted -> lifted, chapter 6)::

      out(i, h) = Σ_{h̃} Σ_{(j,ĥ)} softmax_{(j,ĥ)}((q(i,h̃)·k(j,ĥ) + q(i,h̃)·[ρ(h⁻¹(x_j − x_i)) + e(T[h,h̃,ĥ])]) / √d) v(j,ĥ)

  with ``ρ`` the spatial MLP and ``e`` a learned embedding of the group part, indexed by a table
  ``T`` (:func:`gsa_tutorial.positional.relative_group_index`): ``"relative"`` (``h̃⁻¹ĥ``),
  ``"gevit"``, ``"pair"`` (``(h⁻¹h̃, h⁻¹ĥ)``, the general invariant) or ``"official"`` (the
  official code's table, which is not invariant: for C_n it is ``(h̃ − ĥ − h) mod n`` in our
  labelling; it exists to show the bug, chapter 6). ``query="own"`` keeps only ``h̃ = h`` with
  ``e(h⁻¹ĥ)``.

Heads are concatenated and mixed by an output projection. ``window=None`` is global attention,
computed as a window of ``2*max(H, W) - 1`` with masking (every pixel sees every other pixel;
memory grows as ``(H W)²``, so keep it for small images).

Speed (chapter 9). The positional logits are computed once per distinct (offset, group
element), never per query. The group layer's logits are a sum
``A[t,k,s] + B[h,t,k] + C[h,t,s]`` (content, spatial, group part) whose spatial part does not
depend on ``s``, so the softmax over ``(k, s)`` factorises:
``softmax_{k,s} = softmax_k(B + LSE_s(A+C)) · softmax_s(A+C)``, for every table. When ``C`` does
not depend on ``h`` (``"relative"``) the inner softmax is shared by all ``h`` and the fast path
(``implementation="factorized"``) holds only ``G²·K`` numbers per pixel and head;
``query="own"`` has only ``G²·K`` scores to begin with; the tables that depend on ``h`` need all
``G³·K``, computed a block of pixels at a time and never stored (:mod:`gsa_tutorial._fused`).
``implementation="dense"`` computes the textbook ``G³·K`` score tensor for the whole map (the
official layout) and serves as the reference.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ._checks import check_choice, check_group_encoding, check_input, check_int, check_window
from ._fused import group_window_attention, softmax_lse, window_attention
from .groups import Group, get_group
from .positional import (
    GROUP_ENCODINGS,
    PositionMLP,
    absolute_positions,
    group_encoding_size,
    relative_group_index,
    transformed_offsets,
)
from .windows import gather_windows, inside_mask, neighbour_index, pad_for_windows, window_offsets
from .windows import unfold_neighbourhood as unfold_neighbourhood  # importable here as before; its home is gsa_tutorial.windows

__all__ = ["RelativeSelfAttention", "LiftingSelfAttention", "GroupSelfAttention"]


class _SelfAttentionBase(nn.Module):
    """Projections, window handling and the positional MLP shared by the three layers."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        group: Group | str,
        heads: int = 4,
        dim_head: int | None = None,
        window: int | None = None,
        pos_hidden: int = 32,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("heads", heads), ("pos_hidden", pos_hidden)):
            check_int(name, value, minimum=1, owner=type(self).__name__)
        if dim_head is not None:
            check_int("dim_head", dim_head, minimum=1, owner=type(self).__name__)
        check_window(window, owner=type(self).__name__)
        self.group = get_group(group)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.dim_head = dim_head if dim_head is not None else max(out_channels // heads, 1)
        self.window = window
        inner = self.heads * self.dim_head
        self.to_q = nn.Linear(in_channels, inner, bias=False)
        self.to_k = nn.Linear(in_channels, inner, bias=False)
        self.to_v = nn.Linear(in_channels, inner, bias=False)
        self.to_out = nn.Linear(inner, out_channels)
        self.pos = PositionMLP(inner, hidden=pos_hidden)  # ρ, one vector per head

    def extra_repr(self) -> str:
        window = "global" if self.window is None else f"{self.window}x{self.window}"
        return f"{self.in_channels} -> {self.out_channels}, group={self.group.name}, heads={self.heads}, dim_head={self.dim_head}, window={window}"

    # ---- step helpers ---------------------------------------------------------------------
    def _window_for(self, height: int, width: int) -> tuple[int, float]:
        """The window size used for an ``H x W`` input and the scale that normalises offsets."""
        if self.window is None:
            size = max(height, width)
            return 2 * size - 1, float(max(size - 1, 1))  # global: every pixel reaches every pixel
        if self.window > min(height, width):
            raise ValueError(
                f"window {self.window} is larger than the {height}x{width} input; use a window of at most "
                f"{min(height, width)} (odd) or window=None for global attention"
            )
        return self.window, float(max(self.window // 2, 1))

    def _positional_table(self, window: int, scale: float, ref: torch.Tensor) -> torch.Tensor:
        """ρ(h⁻¹ d) for every group element h and window offset d: computed once per forward.

        Shape: ``(G, K, m, d)``.
        """
        offsets = window_offsets(window, dtype=ref.dtype).to(ref.device) / scale  # (K, 2)
        moved = transformed_offsets(self.group, offsets)  # (G, K, 2)
        return self.pos(moved).view(self.group.order, window * window, self.heads, self.dim_head)  # (G, K, m, d)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pointwise q, k, v. x is channels-last ``(..., c)``; returns three ``(..., m, d)``."""
        q = self.to_q(x).unflatten(-1, (self.heads, self.dim_head)) * self.dim_head**-0.5  # (..., m, d)
        k = self.to_k(x).unflatten(-1, (self.heads, self.dim_head))  # (..., m, d)
        v = self.to_v(x).unflatten(-1, (self.heads, self.dim_head))  # (..., m, d)
        return q, k, v

    def _check_input(self, x: torch.Tensor, rank: int) -> None:
        """Rank, channels, group axis, non-empty, and the dtype rule of :mod:`gsa_tutorial._checks`."""
        layout = "(B, C, H, W)" if rank == 4 else "(B, C, |H|, H, W)"
        check_input(self, x, layout=layout, ranks=(rank,), channels=self.in_channels)
        if rank == 5 and x.shape[2] != self.group.order:
            raise ValueError(
                f"{type(self).__name__} over {self.group.name} expects a group axis of size {self.group.order} "
                f"(axis 2), got shape {tuple(x.shape)}; did you feed an image instead of a lifted map, "
                "or a map lifted over another group?"
            )


class LiftingSelfAttention(_SelfAttentionBase):
    """Lifting self-attention: image ``(B, C, H, W)`` -> lifted map ``(B, C_out, |H|, H, W)`` (chapter 5).

    One attention map per group element ``h``, identical content logits, positional logits
    ``q_i·ρ(h⁻¹(x_j − x_i))``. Equivariant: ``L[h·f] = h·L[f]`` (chapter 5).

    Args:
        in_channels, out_channels: channel widths.
        group: the group H (a name such as ``"r4"`` or a :class:`~gsa_tutorial.groups.Group`).
        heads: number of attention heads.
        dim_head: width of each head (default ``out_channels // heads``).
        window: odd neighbourhood size k (k x k), or ``None`` for global attention.
        pos_hidden: hidden width of the positional MLP ρ.
    """

    def _positional_logits(self, q: torch.Tensor, window: int, scale: float, height: int, width: int) -> torch.Tensor:
        """``q_i · ρ(h⁻¹ d)``; q ``(B, m, N, d)`` -> ``(B, m, G, N, K)``."""
        table = self._positional_table(window, scale, q)  # (G, K, m, d)
        return torch.einsum("bmnd,gkmd->bmgnk", q, table)  # (B, m, G, N, K)

    def _logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked logits ``(B, m, G, N, K)``, neighbour values ``(B, N, K, m, d)`` and the mask ``(N, K)``."""
        B, C, H, W = x.shape
        window, scale = self._window_for(H, W)
        q, k, v = self._project(x.permute(0, 2, 3, 1).reshape(B, H * W, C))  # 3 x (B, N, m, d)
        q = q.permute(0, 2, 1, 3)  # (B, m, N, d)
        kv = torch.cat([k, v], dim=-1).view(B, H, W, self.heads, 2 * self.dim_head)  # (B, H, W, m, 2d)
        k_nb, v_nb = gather_windows(kv, window, dim=1).split(self.dim_head, dim=-1)  # 2 x (B, N, K, m, d)
        content = torch.einsum("bmnd,bnkmd->bmnk", q, k_nb)  # (B, m, N, K)
        logits = content.unsqueeze(2) + self._positional_logits(q, window, scale, H, W)  # (B, m, G, N, K)
        mask = inside_mask(H, W, window, x.device)  # (N, K)
        return logits.masked_fill(~mask, float("-inf")), v_nb, mask

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax weights over the window, shape ``(B, heads, |H|, N, K)`` (zero outside the image)."""
        self._check_input(x, 4)
        logits, _, _ = self._logits(x)
        return logits.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x, 4)
        B, _, H, W = x.shape
        logits, v_nb, _ = self._logits(x)  # (B, m, G, N, K), (B, N, K, m, d)
        attn, _ = softmax_lse(logits)  # (B, m, G, N, K)
        out = torch.einsum("bmgnk,bnkmd->bgnmd", attn, v_nb).flatten(-2)  # (B, G, N, m*d)
        out = self.to_out(out)  # (B, G, N, c)
        return out.permute(0, 3, 1, 2).reshape(B, self.out_channels, self.group.order, H, W)  # (B, c, G, H, W)


class RelativeSelfAttention(LiftingSelfAttention):
    """Stand-alone self-attention on images (Ramachandran et al. 2019): ``(B, C, H, W) -> (B, C_out, H, W)``.

    ``positional="relative"`` (default): ``q_i·ρ(x_j − x_i)``, translation equivariant; this is the
    lifting layer over the trivial group. ``"absolute"``: ``q_i·ρ(x_j / scale)`` on absolute pixel
    positions, which breaks translation equivariance (the control of chapter 3). ``"none"``: no
    position at all; global attention is then equivariant to every permutation of the pixels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        heads: int = 4,
        dim_head: int | None = None,
        window: int | None = None,
        positional: Literal["relative", "absolute", "none"] = "relative",
        pos_hidden: int = 32,
    ) -> None:
        check_choice("positional", positional, ("relative", "absolute", "none"), owner="RelativeSelfAttention")
        super().__init__(in_channels, out_channels, group="z2", heads=heads, dim_head=dim_head, window=window, pos_hidden=pos_hidden)
        self.positional = positional

    def extra_repr(self) -> str:
        return super().extra_repr() + f", positional={self.positional}"

    def _positional_logits(self, q: torch.Tensor, window: int, scale: float, height: int, width: int) -> torch.Tensor:
        B, m, N, _ = q.shape
        if self.positional == "relative":
            return super()._positional_logits(q, window, scale, height, width)
        if self.positional == "none":
            return q.new_zeros(B, m, 1, N, window * window)
        # absolute: ρ of the *key's* position in the image, gathered into each window
        enc = self.pos(absolute_positions(height, width, dtype=q.dtype).to(q.device))  # (H, W, m*d)
        enc = gather_windows(enc.permute(2, 0, 1), window).view(self.heads, self.dim_head, N, -1)  # (m, d, N, K)
        return torch.einsum("bmnd,mdnk->bmnk", q, enc).unsqueeze(2)  # (B, m, 1, N, K)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax weights over the window, shape ``(B, heads, N, K)``."""
        return super().attention_weights(x).squeeze(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(2)  # (B, c, 1, H, W) -> (B, c, H, W)


class GroupSelfAttention(_SelfAttentionBase):
    """Group self-attention: lifted map ``(B, C, |H|, H, W)`` -> ``(B, C_out, |H|, H, W)`` (chapter 6).

    ``query="all"`` (the paper): every query ``(i, h̃)`` attends jointly over keys
    ``(j, ĥ) ∈ N(i) × H`` and the output at ``h`` sums these over ``h̃``::

        out(i, h) = Σ_h̃ Σ_{(j,ĥ)} softmax_{(j,ĥ)}(q(i,h̃)·k(j,ĥ) + q(i,h̃)·[ρ(h⁻¹(x_j − x_i)) + e(T[h,h̃,ĥ])]) / √d · v(j,ĥ)

    ``query="own"``: the output at ``h`` uses only the query at its own element ``h̃ = h``, with the
    group term ``e(h⁻¹ĥ)`` (``|H|²·k²`` logits per pixel instead of ``|H|³·k²``)::

        out(i, h) = Σ_{(j,ĥ)} softmax_{(j,ĥ)}(q(i,h)·k(j,ĥ) + q(i,h)·[ρ(h⁻¹(x_j − x_i)) + e(h⁻¹ĥ)]) / √d · v(j,ĥ)

    The table ``T`` is :func:`gsa_tutorial.positional.relative_group_index` (chapter 6):
    ``"relative"`` (``h̃⁻¹ĥ``; blind to orientation with ``query="all"``), ``"gevit"``
    (``(ĥ⁻¹h̃)(h⁻¹h̃)``, Xu et al. 2023), ``"pair"`` (``(h⁻¹h̃, h⁻¹ĥ)``, ``|H|²`` entries, the general
    invariant) and ``"official"`` (the official code's table; **not** equivariant, kept for
    chapter 6's demonstration).

    Args:
        in_channels, out_channels, group, heads, dim_head, window, pos_hidden: as in
            :class:`LiftingSelfAttention`.
        group_encoding: ``"relative"`` (default), ``"gevit"``, ``"pair"`` or ``"official"``.
        query: ``"all"`` (default, the paper's sum over h̃) or ``"own"`` (only ``"relative"``).
        implementation: ``"factorized"`` (default; no score tensor for the whole map: for
            ``"relative"`` the softmax over ``(j, ĥ)`` split into one over ``ĥ`` inside each key pixel
            and one over the pixels, shared by every ``h``; for the other choices the scores computed
            a block of pixels at a time and recomputed in the backward pass instead of stored) or
            ``"dense"`` (the textbook score tensor, ``|H|³·k²`` per pixel and head: the reference).
            Same mathematics.
    """

    group_index: torch.Tensor  # buffer (G_h, G_t, G_s), registered in __init__

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        group: Group | str,
        heads: int = 4,
        dim_head: int | None = None,
        window: int | None = None,
        pos_hidden: int = 32,
        group_encoding: Literal["relative", "gevit", "pair", "official"] = "relative",
        query: Literal["all", "own"] = "all",
        implementation: Literal["factorized", "dense"] = "factorized",
    ) -> None:
        super().__init__(in_channels, out_channels, group=group, heads=heads, dim_head=dim_head, window=window, pos_hidden=pos_hidden)
        check_group_encoding(group_encoding, query, GROUP_ENCODINGS, owner="GroupSelfAttention")
        check_choice("implementation", implementation, ("factorized", "dense"), owner="GroupSelfAttention")
        self.group_encoding = group_encoding
        self.query = query
        self.implementation = implementation
        entries = group_encoding_size(self.group, group_encoding)
        self.group_embedding = nn.Parameter(torch.randn(entries, self.heads, self.dim_head) / math.sqrt(self.dim_head))  # e, (E, m, d)
        index = relative_group_index(self.group, group_encoding)  # (h, t, s)
        if query == "own":
            index = index[0]  # t⁻¹ s read at t = h: [h, s] = h⁻¹ s, (G, G)
        self.register_buffer("group_index", index, persistent=False)  # (h, t, s), or (h, s) for query="own"

    def extra_repr(self) -> str:
        return super().extra_repr() + f", group_encoding={self.group_encoding}, query={self.query}, implementation={self.implementation}"

    # ---- the reference: the textbook score tensor -------------------------------------------
    def _queries_and_neighbours(self, x: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries ``(B, m, t, N, d)`` and the windows of keys and values ``(B, s, N, K, m, 2d)``."""
        B, C, G, H, W = x.shape
        q, k, v = self._project(x.permute(0, 2, 3, 4, 1).reshape(B, G, H * W, C))  # 3 x (B, G, N, m, d)
        q = q.permute(0, 3, 1, 2, 4)  # (B, m, t, N, d)
        kv = torch.cat([k, v], dim=-1).view(B, G, H, W, self.heads, 2 * self.dim_head)  # (B, G, H, W, m, 2d)
        return q, gather_windows(kv, window, dim=2)  # (B, s, N, K, m, 2d)

    def _dense_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The masked score tensor and the neighbour values ``(B, s, N, K, m, d)``.

        ``query="all"``: ``(B, m, h, t, N, K, s)``; ``query="own"``: ``(B, m, h, N, K, s)``.
        """
        B, C, G, H, W = x.shape
        window, scale = self._window_for(H, W)
        q, kv = self._queries_and_neighbours(x, window)  # (B, m, t, N, d), (B, s, N, K, m, 2d)
        k_nb, v_nb = kv.split(self.dim_head, dim=-1)  # 2 x (B, s, N, K, m, d)
        content = torch.einsum("bmtnd,bsnkmd->bmtnks", q, k_nb)  # q·k: (B, m, t, N, K, s)
        table = self._positional_table(window, scale, x)  # ρ(h⁻¹ d): (h, K, m, d)
        spatial = torch.einsum("bmtnd,hkmd->bmhtnk", q, table)  # q·ρ: (B, m, h, t, N, K)
        q_e = torch.einsum("bmtnd,emd->bmtne", q, self.group_embedding)  # q(i,t)·e(E): (B, m, t, N, E)
        mask = inside_mask(H, W, window, x.device)[:, :, None]  # (N, K, 1)
        if self.query == "own":
            index = self.group_index[None, None, :, None, :].expand(B, self.heads, G, H * W, G)  # h⁻¹s: (B, m, h, N, s)
            group_part = torch.gather(q_e, -1, index)  # q(i,h)·e(h⁻¹s): (B, m, h, N, s)
            own_spatial = spatial.diagonal(dim1=2, dim2=3).permute(0, 1, 4, 2, 3)  # t = h: (B, m, h, N, K)
            logits = content + own_spatial.unsqueeze(-1) + group_part.unsqueeze(-2)  # (B, m, h, N, K, s)
            return logits.masked_fill(~mask, float("-inf")), v_nb
        index = self.group_index[None, None, :, :, None, :].expand(B, self.heads, G, G, H * W, G)  # T: (B, m, h, t, N, s)
        group_part = torch.gather(q_e.unsqueeze(2).expand(-1, -1, G, -1, -1, -1), -1, index)  # q·e(T[h,t,s]): (B, m, h, t, N, s)
        logits = content.unsqueeze(2) + spatial.unsqueeze(-1) + group_part.unsqueeze(-2)  # (B, m, h, t, N, K, s)
        return logits.masked_fill(~mask, float("-inf")), v_nb

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax weights over ``(j, ĥ)`` (dense: for small inputs and pictures).

        Shape: ``(B, heads, h, h̃, N, K, ĥ)`` for ``query="all"``, ``(B, heads, h, N, K, ĥ)`` for ``"own"``.
        """
        self._check_input(x, 5)
        logits, _ = self._dense_logits(x)
        return logits.flatten(-2).softmax(dim=-1).view_as(logits)

    def _forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """``out[h] = Σ_t Σ_{k,s} w[h,t,k,s] v[s,k]`` with the whole score tensor (the official layout)."""
        logits, v_nb = self._dense_logits(x)  # (B, m, h, [t,] N, K, s), (B, s, N, K, m, d)
        attn = logits.flatten(-2).softmax(dim=-1).view_as(logits)  # softmax over (K, s)
        if self.query == "own":
            return torch.einsum("bmhnks,bsnkmd->bhnmd", attn, v_nb)  # (B, h, N, m, d)
        return torch.einsum("bmhtnks,bsnkmd->bhnmd", attn, v_nb)  # (B, h, N, m, d)

    # ---- the fast path ------------------------------------------------------------------------
    #: ``"relative"`` with ``query="all"``: score tensors larger than this many numbers are
    #: computed one head at a time (recomputed in the backward pass instead of stored when
    #: gradients are needed). Below it everything is one batched pass, which is fastest for small
    #: maps. (The other choices always work in pixel blocks, :mod:`gsa_tutorial._fused`.)
    chunk_elements: int = 2**22

    def _forward_factorized(self, x: torch.Tensor) -> torch.Tensor:
        """Same result as :meth:`_forward_dense` without its score tensor for the whole map (module docstring).

        Three paths, by what the group term ``C`` depends on:

        * ``"relative"``, ``query="all"``: the logits are a sum ``A[t,k,s] + B[h,t,k] + C[t,s]``
          (content, spatial, group) whose spatial part does not depend on ``s`` and whose group part
          does not depend on ``h``, so the softmax over ``(k, s)`` splits exactly::

              softmax_{k,s} = softmax_k(B + LSE_s(A + C)) · softmax_s(A + C)

          and the inner softmax (over the key's element ``s`` inside each key pixel) is shared by
          every ``h``: ``|H|²·k²`` numbers per pixel and head (:meth:`_heads`). Large inputs are
          computed one head at a time and, under autograd, recomputed in the backward pass
          (:func:`torch.utils.checkpoint.checkpoint`) instead of storing the scores (:attr:`chunk_elements`).
        * ``query="own"``: only ``|H|²·k²`` scores per pixel and head in the first place; one joint
          softmax over ``(k, s)`` per query (:meth:`_own`).
        * ``"gevit"``, ``"pair"``, ``"official"``: ``C[h,t,s]`` changes with ``h``, nothing is shared
          across output elements, and every ``(h, t)`` has its own joint softmax: ``|H|³·k²`` scores
          per pixel and head (:meth:`_h_dependent`).

        The last two run through the fused functions of :mod:`gsa_tutorial._fused`, which compute
        the scores a block of pixels at a time in both passes and keep only the log-sum-exps for the
        backward pass (as flash attention does), so no score tensor for the whole map ever exists.
        Windows are gathered pixels-first (:func:`gsa_tutorial.windows.neighbour_index`), so every
        contraction is a batched matmul over pixels.
        """
        B, C, G, H, W = x.shape
        m, d = self.heads, self.dim_head
        window, scale = self._window_for(H, W)
        K, N = window * window, H * W
        q, k, v = self._project(x.permute(0, 3, 4, 2, 1))  # 3 x (B, H, W, G, m, d)
        q = q.permute(0, 4, 1, 2, 3, 5).reshape(B, m, N, G, d)  # (B, m, N, t, d)
        # (B, H, W, G, m, d) -> (B, m, P, s, d): zero border, P = (H+2p)(W+2p); gathered in _heads
        k_pad, v_pad = (pad_for_windows(t.permute(0, 4, 1, 2, 3, 5), window, dim=2) for t in (k, v))
        index = neighbour_index(H, W, window, x.device).view(-1)  # (N*K,)
        outside = ~inside_mask(H, W, window, x.device)  # (N, K)
        table = self._positional_table(window, scale, x).permute(2, 0, 1, 3)  # ρ(h⁻¹ d): (m, h, K, d)
        embedding = self.group_embedding.transpose(0, 1)  # (m, E, d)
        if self.query == "own":  # |H|²·k² scores per pixel: one joint softmax, in pixel blocks
            return self._own(q, k_pad, v_pad, table, embedding, index, outside)
        if self.group_encoding != "relative":  # C[h, t, s] changes with h: |H|³·k² scores, in pixel blocks
            return self._h_dependent(q, k_pad, v_pad, table, embedding, index, outside)

        per_head = B * N * K * G * G  # numbers in one head's inner scores
        if per_head * m <= self.chunk_elements:  # small: one batched pass
            return self._heads(q, k_pad, v_pad, table, embedding, index, outside).transpose(1, 2)  # (B, h, N, m, d)
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k_pad, v_pad, table, embedding))
        out = []
        for i in range(m):  # one head at a time: (B, 1, N, ...) slices
            args: tuple[Any, ...] = tuple(t[:, i : i + 1] for t in (q, k_pad, v_pad)) + (table[i : i + 1], embedding[i : i + 1], index, outside)
            out.append(checkpoint(self._heads, *args, use_reentrant=False) if grad else self._heads(*args))
        return torch.cat(out, dim=3).transpose(1, 2)  # (B, N, h, m, d) -> (B, h, N, m, d)

    def _own(
        self,
        q: torch.Tensor,
        k_pad: torch.Tensor,
        v_pad: torch.Tensor,
        table: torch.Tensor,
        embedding: torch.Tensor,
        index: torch.Tensor,
        outside: torch.Tensor,
    ) -> torch.Tensor:
        """``query="own"``: the joint softmax over ``(k, s)`` of each query ``(i, h)`` without a
        factorisation (only ``|H|²·k²`` scores per pixel), by :func:`gsa_tutorial._fused.window_attention`,
        which computes them a block of pixels at a time in both passes and stores none of them.

        q ``(B, m, N, h, d)``, padded keys and values ``(B, m, P, s, d)``, ρ table ``(m, h, K, d)``,
        embedding ``(m, E, d)`` -> ``(B, h, N, m, d)``.
        """
        B, m, N, G, d = q.shape
        K = table.shape[2]
        spatial = torch.einsum("mhkd,bmnhd->bmnhk", table, q)  # q(i,h)·ρ(h⁻¹(x_j − x_i)): (B, m, N, h, K)
        spatial = spatial.masked_fill(outside[:, None, :], float("-inf"))  # keys outside get weight 0
        q_e = q @ embedding.unsqueeze(1).transpose(-1, -2)  # q(i,h)·e(E): (B, m, N, h, E)
        group_part = torch.gather(q_e, -1, self.group_index.expand(B, m, N, G, G))  # q(i,h)·e(h⁻¹s): (B, m, N, h, s)
        rows = B * m
        out = window_attention(
            q.reshape(rows, N, G, d),
            k_pad.reshape(rows, -1, G, d),
            v_pad.reshape(rows, -1, G, d),
            spatial.reshape(rows, N, G, K),
            group_part.reshape(rows, N, G, G),
            index.view(N, K),
        )  # (B·m, N, h, d)
        return out.view(B, m, N, G, d).permute(0, 3, 2, 1, 4)  # (B, h, N, m, d)

    def _h_dependent(
        self,
        q: torch.Tensor,
        k_pad: torch.Tensor,
        v_pad: torch.Tensor,
        table: torch.Tensor,
        embedding: torch.Tensor,
        index: torch.Tensor,
        outside: torch.Tensor,
    ) -> torch.Tensor:
        """``query="all"`` with a table that depends on ``h`` (``"gevit"``, ``"pair"``, ``"official"``):
        the inner softmax cannot be shared by the output elements, so every ``(h, h̃)`` pair has its
        own joint softmax over ``(k, s)``; :func:`gsa_tutorial._fused.group_window_attention` computes
        these ``|H|³·k²`` scores a block of pixels at a time in both passes and stores none of them.

        q ``(B, m, N, t, d)``, padded keys and values ``(B, m, P, s, d)``, ρ table ``(m, h, K, d)``,
        embedding ``(m, E, d)`` -> ``(B, h, N, m, d)``.
        """
        B, m, N, G, d = q.shape
        K = table.shape[2]
        q_e = q @ embedding.unsqueeze(1).transpose(-1, -2)  # q(i,t)·e(E): (B, m, N, t, E)
        E = q_e.shape[-1]
        flat = (torch.arange(G, device=q.device)[None, :, None] * E + self.group_index).view(-1)  # t·E + T[h, t, s]: (h·t·s,)
        group_part = q_e.flatten(-2).index_select(-1, flat)  # C = q(i,t)·e(T[h,t,s]): (B, m, N, h·t·s); backward adds into q_e
        rows = B * m
        rho = table.reshape(1, m, G * K, d).expand(B, -1, -1, -1).reshape(rows, G * K, d)  # each row's head: (B·m, h·K, d)
        out = group_window_attention(
            q.reshape(rows, N, G, d),
            k_pad.reshape(rows, -1, G, d),
            v_pad.reshape(rows, -1, G, d),
            rho,
            group_part.view(rows, N, G, G, G),
            index.view(N, K),
            outside,
        )  # (B·m, N, h, d)
        return out.view(B, m, N, G, d).permute(0, 3, 2, 1, 4)  # (B, h, N, m, d)

    def _heads(
        self,
        q: torch.Tensor,
        k_pad: torch.Tensor,
        v_pad: torch.Tensor,
        table: torch.Tensor,
        embedding: torch.Tensor,
        index: torch.Tensor,
        outside: torch.Tensor,
    ) -> torch.Tensor:
        """The factorised attention of ``m'`` heads for ``"relative"`` with ``query="all"``: q ``(B, m', N, t, d)``,
        padded keys and values ``(B, m', P, s, d)``, ρ table ``(m', h, K, d)``, embedding ``(m', E, d)`` -> ``(B, N, h, m', d)``."""
        B, m, N, G, d = q.shape
        K = table.shape[2]
        k_nb = k_pad.index_select(2, index).view(B, m, N, K, G, d)  # the windows: (B, m, N, K, s, d); zero outside
        v_nb = v_pad.index_select(2, index).view(B, m, N, K, G, d)  # (B, m, N, K, s, d)
        content = (k_nb.view(B, m, N, K * G, d) @ q.transpose(-1, -2)).view(B, m, N, K, G, G)  # A, transposed: (B, m, N, K, s, t)
        q_e = q @ embedding.unsqueeze(1).transpose(-1, -2)  # q(i,t)·e(E): (B, m, N, t, E)
        spatial = torch.einsum("mjd,bmntd->bmnjt", table.flatten(1, 2), q).view(B, m, N, G, K, G)  # B: (B, m, N, h, K, t)
        # C does not depend on h: one inner softmax (over s, inside each key pixel) for every h
        index_ts = self.group_index[0].expand(B, m, N, G, G)  # t⁻¹s: (B, m, N, t, s)
        group_part = torch.gather(q_e, -1, index_ts).transpose(-1, -2)  # C^T: (B, m, N, s, t)
        probs, lse = softmax_lse(content + group_part.unsqueeze(3), dim=-2)  # softmax_s: (B, m, N, K, s, t), (B, m, N, K, t)
        v_bar = probs.transpose(-1, -2) @ v_nb  # Σ_s softmax_s · v: (B, m, N, K, t, d)
        lse = lse.masked_fill(outside[:, :, None], float("-inf"))  # keys outside get weight 0
        weights, _ = softmax_lse(spatial + lse.unsqueeze(3), dim=-2)  # softmax_k: (B, m, N, h, K, t)
        out = weights.reshape(B, m, N, G, K * G) @ v_bar.reshape(B, m, N, K * G, d)  # Σ_t Σ_k: (B, m, N, h, d)
        return out.permute(0, 2, 3, 1, 4)  # (B, N, h, m, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x, 5)
        B, _, G, H, W = x.shape
        out = self._forward_dense(x) if self.implementation == "dense" else self._forward_factorized(x)  # (B, G, N, m, d)
        out = self.to_out(out.flatten(-2))  # (B, G, N, c)
        return out.permute(0, 3, 1, 2).reshape(B, self.out_channels, G, H, W)  # (B, c, G, H, W)
