"""Relative, lifting and group self-attention (chapters 3, 5 and 6).

Legend (einsum letters and shape comments):

    b  batch                     m  heads                 d  dim_head
    n  query pixels (N = H*W)    k  window offsets (K)    c  channels
    h  output group element      t  query group element h̃  s  key group element ĥ
    G  = |H|, the group size

The three layers follow the paper (Romero & Cordonnier, ICLR 2021), with ``q``, ``k``, ``v``
pointwise (1x1) projections of the input and ``N(i)`` a ``window x window`` neighbourhood
(keys outside the image are *masked out* of the softmax, never zero-padded into it):

* relative self-attention (Z2, eq. 3.4 of the book)::

      out(i) = Σ_{j∈N(i)} softmax_j(q_i·k_j + q_i·ρ(x_j − x_i)) v_j

* lifting self-attention (image -> lifted, eq. 5.1)::

      out(i, h) = Σ_{j∈N(i)} softmax_j(q_i·k_j + q_i·ρ(h⁻¹(x_j − x_i))) v_j

* group self-attention (lifted -> lifted, eq. 6.1)::

      out(i, h) = Σ_{h̃} Σ_{(j,ĥ)} softmax_{(j,ĥ)}(q(i,h̃)·k(j,ĥ) + q(i,h̃)·ρ^P(h⁻¹(x_j − x_i), h̃⁻¹ĥ)) v(j,ĥ)

  with ``ρ^P(d, g) = ρ(d) + e(g)``: the spatial MLP plus a learned embedding of the relative
  group element. ``group_encoding="official"`` indexes ``e`` by ``h⁻¹h̃⁻¹ĥ`` as the official
  code does; that breaks equivariance and exists only to show it (chapter 6).

Heads are concatenated and mixed by an output projection. ``window=None`` is global attention,
computed as a window of ``2*max(H, W) - 1`` with masking (every pixel sees every other pixel;
memory grows as ``(H W)²``, so keep it for small images).

Speed (chapter 9). The positional logits are computed once per distinct (offset, group
element), never per query. The group layer's logits are a sum
``A[t,k,s] + B[h,t,k] + C[t,s]`` (content, spatial, group part), so the softmax over ``(k, s)``
factorises: ``softmax_{k,s} = softmax_k(B + LSE_s(A+C)) · softmax_s(A+C)``. The fast path
(``implementation="factorized"``) never builds the ``G³·K`` score tensor of the official code,
only ``G²·K`` ones; ``implementation="dense"`` computes the textbook formula and is used for
``attention_weights``, the official encoding, and as the benchmark reference.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .groups import Group, get_group
from .positional import PositionMLP, absolute_positions, relative_group_index, transformed_offsets, window_offsets

__all__ = ["RelativeSelfAttention", "LiftingSelfAttention", "GroupSelfAttention", "unfold_neighbourhood", "neighbour_index"]


def unfold_neighbourhood(x: torch.Tensor, window: int) -> torch.Tensor:
    """The ``window x window`` neighbourhood of every pixel, zero outside the image.

    Shape:
        x ``(B, C, H, W)`` -> ``(B, C, N, K)`` with ``N = H*W`` (row-major) and ``K = window**2``
        in the order of :func:`gsa_tutorial.positional.window_offsets`.
    """
    B, C, H, W = x.shape
    cols = F.unfold(x, kernel_size=window, padding=window // 2)  # (B, C*K, N)
    return cols.view(B, C, window * window, H * W).transpose(-1, -2)  # (B, C, N, K)


class _SoftmaxLSE(torch.autograd.Function):
    """``softmax(x, dim)`` and ``logsumexp(x, dim)`` in one pass, with a hand-written backward.

    Same numbers as ``torch.softmax``/``torch.logsumexp`` (max-subtracted), but several times
    faster on CPU for the short last axes of the group layer (|H| or k*k entries): PyTorch's
    softmax kernel is slow when the reduced axis is short, and we need both results anyway.
    Backward: ``∂L/∂x = p ⊙ (g_p − Σ(g_p ⊙ p) + g_lse)``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        ctx.dim = dim
        m = x.amax(dim=dim, keepdim=True)  # (..., 1, ...); finite: every row has an unmasked entry
        p = (x - m).exp_()  # like x
        total = p.sum(dim=dim, keepdim=True)  # (..., 1, ...)
        p.div_(total)
        lse = (total.log_() + m).squeeze(dim)  # x without the axis dim
        ctx.save_for_backward(p)
        return p, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_p: torch.Tensor | None, grad_lse: torch.Tensor | None) -> tuple[torch.Tensor, None]:
        (p,) = ctx.saved_tensors
        if grad_p is None:
            return (None if grad_lse is None else p * grad_lse.unsqueeze(ctx.dim)), None
        grad = p * grad_p  # the only new tensor of the size of x
        dot = grad.sum(dim=ctx.dim, keepdim=True)  # Σ g_p ⊙ p
        if grad_lse is not None:
            dot = dot - grad_lse.unsqueeze(ctx.dim)
        return grad.addcmul_(p, dot, value=-1.0), None  # p ⊙ (g_p − Σ g_p ⊙ p + g_lse)


def softmax_lse(x: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax and log-sum-exp over the axis ``dim``: ``x -> (like x, x without that axis)``.

    Half-precision inputs (under mixed precision) are computed in float32 and cast back, as
    autocast does for ``torch.softmax``: exponentials and sums of 16-bit numbers lose too much.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        p, lse = _SoftmaxLSE.apply(x.float(), dim)
        return p.to(x.dtype), lse.to(x.dtype)
    return _SoftmaxLSE.apply(x, dim)


def _inside_mask(height: int, width: int, window: int, device: torch.device) -> torch.Tensor:
    """``mask[n, k]`` is True where key ``k`` of query ``n`` lies inside the image.  Shape ``(N, K)``."""
    ones = torch.ones(1, 1, height, width, device=device)
    return unfold_neighbourhood(ones, window)[0, 0] > 0.5  # (N, K)


def neighbour_index(height: int, width: int, window: int, device: torch.device | None = None) -> torch.Tensor:
    """Where key ``k`` of query ``n`` sits in the map zero-padded by ``window // 2`` on every side.

    ``index[n, k]`` is a flat row-major index into the ``(H + 2p) x (W + 2p)`` padded map, with
    ``k`` in the order of :func:`gsa_tutorial.positional.window_offsets` (as
    :func:`unfold_neighbourhood`). ``padded.index_select(pixel_axis, index.view(-1))`` gathers
    every window with the query pixels in front, where ``unfold`` puts them last (chapter 9).

    Shape:
        ``(N, K)`` long, ``N = H*W``, ``K = window**2``.
    """
    p = window // 2
    rows = torch.arange(height, device=device).view(-1, 1, 1, 1)  # query row
    cols = torch.arange(width, device=device).view(1, -1, 1, 1)  # query column
    dy = torch.arange(window, device=device).view(1, 1, -1, 1)  # window row
    dx = torch.arange(window, device=device).view(1, 1, 1, -1)  # window column
    return ((rows + dy) * (width + 2 * p) + cols + dx).reshape(height * width, window * window)  # (N, K)


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
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("heads", heads)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if window is not None and (not isinstance(window, int) or window < 1 or window % 2 == 0):
            raise ValueError(f"window must be a positive odd integer (k for a k x k neighbourhood) or None (global), got {window!r}")
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
        layout = "(B, C, H, W)" if rank == 4 else "(B, C, |H|, H, W)"
        if not isinstance(x, torch.Tensor) or x.dim() != rank:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} expects input of shape {layout}, got {got}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} input channels (axis 1), got shape {tuple(x.shape)}")
        if rank == 5 and x.shape[2] != self.group.order:
            raise ValueError(
                f"{type(self).__name__} over {self.group.name} expects a group axis of size {self.group.order} "
                f"(axis 2), got shape {tuple(x.shape)}; did you feed an image instead of a lifted map, "
                "or a map lifted over another group?"
            )


class LiftingSelfAttention(_SelfAttentionBase):
    """Lifting self-attention: image ``(B, C, H, W)`` -> lifted map ``(B, C_out, |H|, H, W)`` (eq. 5.1).

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
        """Masked logits ``(B, m, G, N, K)``, neighbour values ``(B, m, d, N, K)`` and the mask ``(N, K)``."""
        B, C, H, W = x.shape
        window, scale = self._window_for(H, W)
        q, k, v = self._project(x.permute(0, 2, 3, 1).reshape(B, H * W, C))  # 3 x (B, N, m, d)
        q = q.permute(0, 2, 1, 3)  # (B, m, N, d)
        kv = torch.cat([k, v], dim=-1).flatten(2).transpose(1, 2).reshape(B, -1, H, W)  # (B, m*2d, H, W)
        kv = unfold_neighbourhood(kv, window).view(B, self.heads, 2 * self.dim_head, H * W, -1)  # (B, m, 2d, N, K)
        k_nb, v_nb = kv.split(self.dim_head, dim=2)  # 2 x (B, m, d, N, K)
        content = torch.einsum("bmnd,bmdnk->bmnk", q, k_nb)  # (B, m, N, K)
        logits = content.unsqueeze(2) + self._positional_logits(q, window, scale, H, W)  # (B, m, G, N, K)
        mask = _inside_mask(H, W, window, x.device)  # (N, K)
        return logits.masked_fill(~mask, float("-inf")), v_nb, mask

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax weights over the window, shape ``(B, heads, |H|, N, K)`` (zero outside the image)."""
        self._check_input(x, 4)
        logits, _, _ = self._logits(x)
        return logits.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x, 4)
        B, _, H, W = x.shape
        logits, v_nb, _ = self._logits(x)  # (B, m, G, N, K), (B, m, d, N, K)
        attn, _ = softmax_lse(logits)  # (B, m, G, N, K)
        out = torch.einsum("bmgnk,bmdnk->bgnmd", attn, v_nb).flatten(-2)  # (B, G, N, m*d)
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
        if positional not in ("relative", "absolute", "none"):
            raise ValueError(f"positional must be 'relative', 'absolute' or 'none', got {positional!r}")
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
        enc = enc.permute(2, 0, 1).unsqueeze(0)  # (1, m*d, H, W)
        enc = unfold_neighbourhood(enc, window).view(self.heads, self.dim_head, N, -1)  # (m, d, N, K)
        return torch.einsum("bmnd,mdnk->bmnk", q, enc).unsqueeze(2)  # (B, m, 1, N, K)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax weights over the window, shape ``(B, heads, N, K)``."""
        return super().attention_weights(x).squeeze(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(2)  # (B, c, 1, H, W) -> (B, c, H, W)


class GroupSelfAttention(_SelfAttentionBase):
    """Group self-attention: lifted map ``(B, C, |H|, H, W)`` -> ``(B, C_out, |H|, H, W)`` (eq. 6.1).

    Every query ``(i, h̃)`` attends jointly over keys ``(j, ĥ) ∈ N(i) × H``; the output at group
    element ``h`` sums these over ``h̃``, with the spatial offsets seen through ``h⁻¹`` and the
    group part of the encoding indexed by the relative element ``h̃⁻¹ĥ``.

    Args:
        in_channels, out_channels, group, heads, dim_head, window, pos_hidden: as in
            :class:`LiftingSelfAttention`.
        group_encoding: ``"equivariant"`` (``h̃⁻¹ĥ``, default) or ``"official"`` (``h⁻¹h̃⁻¹ĥ``, the
            official code's index; **not** equivariant, kept for chapter 6's demonstration).
        implementation: ``"factorized"`` (default; ``G²K`` memory per pixel and head) or
            ``"dense"`` (the textbook ``G³K`` score tensor). Same mathematics; the official
            encoding always uses ``"dense"`` because it does not factorise.
    """

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
        group_encoding: Literal["equivariant", "official"] = "equivariant",
        implementation: Literal["factorized", "dense"] = "factorized",
    ) -> None:
        super().__init__(in_channels, out_channels, group=group, heads=heads, dim_head=dim_head, window=window, pos_hidden=pos_hidden)
        if group_encoding not in ("equivariant", "official"):
            raise ValueError(f"group_encoding must be 'equivariant' or 'official', got {group_encoding!r}")
        if implementation not in ("factorized", "dense"):
            raise ValueError(f"implementation must be 'factorized' or 'dense', got {implementation!r}")
        self.group_encoding = group_encoding
        self.implementation = implementation
        self.group_embedding = nn.Parameter(torch.randn(self.group.order, self.heads, self.dim_head) / math.sqrt(self.dim_head))  # e(g), (G, m, d)
        official = group_encoding == "official"
        self.register_buffer("group_index", relative_group_index(self.group, official=official), persistent=False)  # (G_h, G_t, G_s)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", group_encoding={self.group_encoding}, implementation={self.implementation}"

    def _queries_and_neighbours(self, x: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries ``(B, m, t, N, d)`` and the unfolded keys and values ``(B, m, 2d, s, N, K)``."""
        B, C, G, H, W = x.shape
        q, k, v = self._project(x.permute(0, 2, 3, 4, 1).reshape(B, G, H * W, C))  # 3 x (B, G, N, m, d)
        q = q.permute(0, 3, 1, 2, 4)  # (B, m, t, N, d)
        kv = torch.cat([k, v], dim=-1)  # (B, G, N, m, 2d)
        kv = kv.permute(0, 3, 4, 1, 2).reshape(B, -1, H, W)  # (B, m*2d*G, H, W)
        kv = unfold_neighbourhood(kv, window).view(B, self.heads, 2 * self.dim_head, G, H * W, -1)  # (B, m, 2d, s, N, K)
        return q, kv

    def _parts(self, x: torch.Tensor):
        """The three logit parts and the neighbour values.

        Returns:
            content ``A`` (B, m, t, N, K, s); spatial ``Bsp`` (B, m, t, h, N, K);
            group ``Cg`` (B, m, h or 1, t, N, s); values ``v_nb`` (B, m, d, s, N, K); mask (N, K).
        """
        B, C, G, H, W = x.shape
        window, scale = self._window_for(H, W)
        q, kv = self._queries_and_neighbours(x, window)  # (B, m, t, N, d), (B, m, 2d, s, N, K)
        k_nb, v_nb = kv.split(self.dim_head, dim=2)  # 2 x (B, m, d, s, N, K)

        content = torch.einsum("bmtnd,bmdsnk->bmtnks", q, k_nb)  # A: (B, m, t, N, K, s)
        table = self._positional_table(window, scale, x)  # ρ(h⁻¹ d): (h, K, m, d)
        spatial = torch.einsum("bmtnd,hkmd->bmthnk", q, table)  # B: (B, m, t, h, N, K)
        q_e = torch.einsum("bmtnd,gmd->bmtng", q, self.group_embedding)  # q(i,t)·e(g): (B, m, t, N, g)
        index = self.group_index if self.group_encoding == "official" else self.group_index[:1]  # (h or 1, t, s)
        hh = index.shape[0]
        gathered = torch.gather(
            q_e.unsqueeze(2).expand(-1, -1, hh, -1, -1, -1),  # (B, m, h, t, N, g)
            -1,
            index[None, None, :, :, None, :].expand(B, self.heads, hh, G, H * W, G),  # (B, m, h, t, N, s)
        )  # Cg: (B, m, h or 1, t, N, s)
        mask = _inside_mask(H, W, window, x.device)  # (N, K)
        return content, spatial, gathered, v_nb, mask

    def _dense_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The full score tensor ``(B, m, h, t, N, K, s)`` (masked) and values ``(B, m, d, s, N, K)``."""
        content, spatial, group_part, v_nb, mask = self._parts(x)
        logits = (
            content.unsqueeze(2)  # (B, m, 1, t, N, K, s)
            + spatial.transpose(2, 3).unsqueeze(-1)  # (B, m, h, t, N, K, 1)
            + group_part.unsqueeze(-2)  # (B, m, h or 1, t, N, 1, s)
        )
        return logits.masked_fill(~mask[:, :, None], float("-inf")), v_nb

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax weights over ``(j, ĥ)``, shape ``(B, heads, |H| (h), |H| (h̃), N, K, |H| (ĥ))``.

        Dense: ``G³ N K`` numbers per head, for small inputs and pictures.
        """
        self._check_input(x, 5)
        logits, _ = self._dense_logits(x)
        return logits.flatten(-2).softmax(dim=-1).view_as(logits)

    def _forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """``out[h] = Σ_t Σ_{k,s} w[h,t,k,s] v[s,k]`` with the full score tensor (the official layout)."""
        logits, v_nb = self._dense_logits(x)  # (B, m, h, t, N, K, s)
        attn = logits.flatten(-2).softmax(dim=-1).view_as(logits)  # softmax over (K, s)
        return torch.einsum("bmhtnks,bmdsnk->bhnmd", attn, v_nb)  # (B, h, N, m, d)

    def _forward_factorized(self, x: torch.Tensor) -> torch.Tensor:
        """Same result without the ``G³K`` tensor (module docstring): a softmax over ``s`` inside each
        key pixel, then a softmax over ``k`` that adds the spatial part.

        Every tensor keeps the query pixels in front, ``(B, m, N, ...)``, so that each contraction
        is a batched matmul over pixels with no large copy: the windows are gathered straight into
        that layout (:func:`neighbour_index`), the content logits come out as ``(k s) x t`` per
        pixel, and the spatial logits are one product per head with the ``(h k, d)`` table that all
        pixels share (chapter 9).
        """
        B, C, G, H, W = x.shape
        m, d = self.heads, self.dim_head
        window, scale = self._window_for(H, W)
        K, N, p = window * window, H * W, window // 2
        q, k, v = self._project(x.permute(0, 3, 4, 2, 1))  # 3 x (B, H, W, G, m, d)
        q = q.permute(0, 4, 1, 2, 3, 5).reshape(B, m, N, G, d)  # (B, m, N, t, d)
        index = neighbour_index(H, W, window, x.device).view(-1)  # (N*K,)

        def neighbours(t: torch.Tensor) -> torch.Tensor:  # (B, H, W, G, m, d) -> (B, m, N, K, s, d)
            t = F.pad(t.permute(0, 4, 1, 2, 3, 5), (0, 0, 0, 0, p, p, p, p))  # zero border: (B, m, H+2p, W+2p, G, d)
            return t.reshape(B, m, -1, G, d).index_select(2, index).view(B, m, N, K, G, d)  # (B, m, N, K, s, d)

        k_nb, v_nb = neighbours(k), neighbours(v)  # 2 x (B, m, N, K, s, d); zero outside the image

        # softmax over the key's group element s, inside each key pixel k
        content = k_nb.view(B, m, N, K * G, d) @ q.transpose(-1, -2)  # A, transposed: (B, m, N, K*s, t)
        q_e = torch.einsum("bmntd,gmd->bmntg", q, self.group_embedding)  # q(i,t)·e(g): (B, m, N, t, g)
        index_ts = self.group_index[0].expand(B, m, N, G, G)  # t⁻¹s: (B, m, N, t, s)
        group_part = torch.gather(q_e, -1, index_ts).transpose(-1, -2)  # C, transposed: (B, m, N, s, t)
        inner = content.view(B, m, N, K, G, G) + group_part.unsqueeze(3)  # A + C: (B, m, N, K, s, t); finite
        del content
        p_inner, lse = softmax_lse(inner, dim=-2)  # softmax_s, log Σ_s exp(A + C): (B, m, N, K, s, t), (B, m, N, K, t)
        del inner
        v_bar = p_inner.transpose(-1, -2) @ v_nb  # Σ_s softmax_s · v: (B, m, N, K, t, d)

        # softmax over the key pixel k, with the spatial encoding ρ(h⁻¹ d_k), one head at a time
        mask = _inside_mask(H, W, window, x.device)  # (N, K)
        lse = lse.masked_fill(~mask[:, :, None], float("-inf"))  # keys outside get weight 0: (B, m, N, K, t)
        table = self._positional_table(window, scale, x)  # ρ(h⁻¹ d): (h, K, m, d)
        table = table.permute(2, 0, 1, 3).reshape(m, G * K, d)  # (m, h*K, d)
        out = []
        for table_i, q_i, lse_i, v_i in zip(table.unbind(0), q.unbind(1), lse.unbind(1), v_bar.unbind(1)):
            spatial = (table_i @ q_i.transpose(-1, -2)).view(B, N, G, K, G)  # B, one table for all pixels: (B, N, h, K, t)
            weights, _ = softmax_lse(spatial + lse_i.unsqueeze(2), dim=-2)  # softmax_k: (B, N, h, K, t)
            out.append(weights.view(B, N, G, K * G) @ v_i.view(B, N, K * G, d))  # Σ_t Σ_k: (B, N, h, d)
        return torch.stack(out, dim=-2).transpose(1, 2)  # (B, N, h, m, d) -> (B, h, N, m, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x, 5)
        B, _, G, H, W = x.shape
        dense = self.implementation == "dense" or self.group_encoding == "official"
        out = self._forward_dense(x) if dense else self._forward_factorized(x)  # (B, G, N, m, d)
        out = self.to_out(out.flatten(-2))  # (B, G, N, c)
        return out.permute(0, 3, 1, 2).reshape(B, self.out_channels, G, H, W)  # (B, c, G, H, W)
