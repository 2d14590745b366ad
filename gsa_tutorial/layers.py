"""The pieces a GSA-Net is built from, besides attention (chapter 7 of the book).

Legend: ``B`` batch, ``C`` channels, ``G = |H|`` group size, ``H, W`` height and width.
Lifted feature maps are ``(B, C, G, H, W)``; images are ``(B, C, H, W)``.

Every module here commutes with the action of ``H`` on lifted maps,
``(h·f)(x, g) = f(h⁻¹x, h⁻¹g)`` (see :mod:`gsa_tutorial.actions`), for the reason stated in
its docstring, so that stacking them after the lifting layer keeps the whole network exactly
equivariant for the grid-exact elements (90° rotations and mirrors):

* pointwise maps (:class:`Pointwise`, activations, :class:`PointwiseMLP`) act on the channels
  of each ``(x, g)`` separately; the action only moves ``(x, g)`` around;
* the norms use statistics that are sums over *all* of ``(G, H, W)`` (or none of it), which
  the action merely reorders;
* :class:`Crop` removes the same number of pixels on every side, so the centre of the map
  (the origin of the action) stays the centre;
* :class:`SpatialPool2x2` pools 2x2 tiles of an *even* map; rotating or mirroring the map
  maps the tiling onto itself. On an odd map the tiling (which drops the last row and
  column) is not symmetric, so it refuses;
* :class:`InvariantPooling` reduces over all of space and the whole group: a permutation of
  the entries cannot change a mean or a max.

The block structure follows Romero & Cordonnier (2021), appendix (and their official code):
``norm → act → attention → norm → act → dropout`` with a residual, then a pointwise MLP
``1x1 → norm → act → 1x1 → norm`` with a second residual.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_dropout, check_input, check_int, mlp_hidden
from .attention import GroupSelfAttention
from .groups import Group

__all__ = [
    "NORMS",
    "ACTIVATIONS",
    "SPACE_POOLS",
    "GROUP_POOLS",
    "make_norm",
    "make_activation",
    "GroupLayerNorm",
    "ChannelLayerNorm",
    "Pointwise",
    "PointwiseMLP",
    "Crop",
    "SpatialPool2x2",
    "InvariantPooling",
    "TransformerBlock",
]

#: Names accepted by :func:`make_norm`.
NORMS = ("layer", "channel", "batch", "none")
#: Names accepted by :func:`make_activation`.
ACTIVATIONS = ("relu", "swish", "gelu")
#: Reductions over space accepted by :class:`InvariantPooling` (``space``).
SPACE_POOLS = ("mean", "max", "sum")
#: Reductions over the group axis accepted by :class:`InvariantPooling` (``group``).
GROUP_POOLS = ("max", "mean")


# ---------------------------------------------------------------------------------------
# Norms and activations
# ---------------------------------------------------------------------------------------


class GroupLayerNorm(nn.Module):
    """LayerNorm over a whole feature map: one mean and variance per sample over ``(C, G, H, W)``.

    This is the official code's ``LayerNorm`` (a ``GroupNorm`` with one group). The statistics
    are sums over every entry of the sample, which the action of ``H`` only permutes, and the
    affine parameters are per channel, so the norm is equivariant.

    Shape:
        ``(B, C, ...)`` -> same.
    """

    def __init__(self, channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        check_int("channels", channels, owner=type(self).__name__)
        self.norm = nn.GroupNorm(1, channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(self, x, self.norm.num_channels)
        return self.norm(x)


class ChannelLayerNorm(nn.Module):
    """Transformer-style LayerNorm over the channels of each position ``(g, x)`` separately.

    Pointwise in ``(g, x)``, hence equivariant.

    Shape:
        ``(B, C, ...)`` -> same.
    """

    def __init__(self, channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        check_int("channels", channels, owner=type(self).__name__)
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(self, x, self.norm.normalized_shape[0])
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)  # (B, ..., C) -> (B, C, ...)


class _BatchNorm(nn.Module):
    """BatchNorm per channel with statistics over ``(B, G, H, W)`` (the group axis as if spatial).

    A training batch with a non-finite entry (one NaN pixel is enough) gives NaN outputs, as
    it must, but does *not* update the running statistics: they would stay NaN for good and
    every later evaluation would be NaN. (The check is a ``torch.where`` on ``C`` numbers, no
    device synchronisation.)
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        check_int("channels", channels, owner="BatchNorm")
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(self, x, self.norm.num_features, who="BatchNorm")
        B, C = x.shape[:2]
        flat = x.reshape(B, C, -1)  # (B, C, G*H*W)
        norm = self.norm
        if not (self.training and norm.track_running_stats and type(norm) is nn.BatchNorm1d):
            return norm(flat).reshape(x.shape)  # eval mode, or SyncBatchNorm (torchrun on CUDA)
        # nn.BatchNorm1d's training step, on copies of the running statistics (autograd keeps
        # them for the backward pass, so the buffers themselves must not be what it updates).
        running_mean, running_var, tracked = norm.running_mean, norm.running_var, norm.num_batches_tracked
        assert running_mean is not None and running_var is not None and tracked is not None  # track_running_stats
        tracked.add_(1)
        factor = 1.0 / float(tracked) if norm.momentum is None else norm.momentum
        mean, var = running_mean.clone(), running_var.clone()
        out = F.batch_norm(flat, mean, var, norm.weight, norm.bias, True, factor, norm.eps)
        with torch.no_grad():
            ok = torch.isfinite(mean) & torch.isfinite(var)
            running_mean.copy_(torch.where(ok, mean, running_mean))
            running_var.copy_(torch.where(ok, var, running_var))
        return out.reshape(x.shape)  # (B, C, G*H*W) -> (B, C, G, H, W)


def _check_channels(module: nn.Module, x: torch.Tensor, channels: int, who: str | None = None) -> None:
    """An image or lifted map ``(B, C, ...)`` with ``C == channels`` (and the dtype rule)."""
    check_input(module, x, layout=f"(B, {channels}, [|H|,] H, W)", ranks=(2, 3, 4, 5), who=who, channels=channels)


def make_norm(kind: str, channels: int) -> nn.Module:
    """An equivariant norm for ``channels`` channels.

    Args:
        kind: ``"layer"`` (official: one mean/var per sample over ``(C, G, H, W)``),
            ``"channel"`` (LayerNorm over channels at every ``(g, x)``), ``"batch"``
            (BatchNorm, statistics over ``(B, G, H, W)`` per channel) or ``"none"``.
        channels: number of channels ``C``.
    """
    if check_choice("norm", kind, NORMS) == "none":
        return nn.Identity()
    return {"layer": GroupLayerNorm, "channel": ChannelLayerNorm, "batch": _BatchNorm}[kind](channels)


def make_activation(kind: str) -> nn.Module:
    """A pointwise nonlinearity: ``"relu"``, ``"swish"`` (SiLU) or ``"gelu"``."""
    return {"relu": nn.ReLU, "swish": nn.SiLU, "gelu": nn.GELU}[check_choice("activation", kind, ACTIVATIONS)]()


# ---------------------------------------------------------------------------------------
# Pointwise maps
# ---------------------------------------------------------------------------------------


class Pointwise(nn.Module):
    """A linear map of the channels at every position (a 1x1(x1) convolution).

    Works on images ``(B, C, H, W)`` and lifted maps ``(B, C, G, H, W)`` alike.

    Shape:
        ``(B, C_in, ...)`` -> ``(B, C_out, ...)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = True) -> None:
        super().__init__()
        check_int("in_channels", in_channels, owner="Pointwise")
        check_int("out_channels", out_channels, owner="Pointwise")
        self.linear = nn.Linear(in_channels, out_channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(self, x, self.linear.in_features)
        return self.linear(x.movedim(1, -1)).movedim(-1, 1)  # (B, ..., C_in) -> (B, C_out, ...)


class PointwiseMLP(nn.Module):
    """The block's MLP: ``1x1 → norm → act → 1x1 → norm`` (official code: hidden = C / 2).

    Shape:
        ``(B, C, G, H, W)`` -> same.
    """

    def __init__(self, channels: int, *, hidden: int, norm: str = "layer", activation: str = "relu") -> None:
        super().__init__()
        check_int("channels", channels, owner="PointwiseMLP")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"the MLP needs at least one hidden channel (an integer >= 1), got hidden={hidden!r}")
        self.net = nn.Sequential(
            Pointwise(channels, hidden),
            make_norm(norm, hidden),
            make_activation(activation),
            Pointwise(hidden, channels),
            make_norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ---------------------------------------------------------------------------------------
# Spatial resizing that keeps exact equivariance
# ---------------------------------------------------------------------------------------


class Crop(nn.Module):
    """Remove ``size`` pixels from every side of the last two axes.

    The same amount on every side keeps the centre of the map where it was, so cropping
    commutes with rotations by 90° and mirrors about the centre. (The official code crops
    to save memory; with windowed attention the border pixels are the least informative.)

    Shape:
        ``(..., H, W)`` -> ``(..., H - 2 size, W - 2 size)``.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = check_int("size", size, minimum=0, owner="Crop")  # pixels per side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, layout="(..., H, W)", ranks=tuple(range(2, 9)))
        s = self.size
        if s == 0:
            return x
        H, W = x.shape[-2:]
        if H <= 2 * s or W <= 2 * s:
            raise ValueError(f"cannot crop {s} pixels from each side of a {H}x{W} map")
        return x[..., s : H - s, s : W - s]

    def extra_repr(self) -> str:
        return f"size={self.size}"


class SpatialPool2x2(nn.Module):
    """2x2 max (or mean) pooling with stride 2 of the spatial axes, for *even* sizes only.

    For even ``H`` and ``W`` the 2x2 tiles ``{2i, 2i+1} x {2j, 2j+1}`` are mapped onto tiles by
    a 90° rotation or a mirror (row ``r`` goes to ``H-1-r``, and ``H-1-2i`` is odd), so pooling
    commutes with the action. For an odd size PyTorch drops the last row/column, which is not
    symmetric: the official code does this (PCam: 7x7 -> 3x3) and loses exact invariance; we
    raise instead.

    Shape:
        ``(B, C, [G,] H, W)`` -> ``(B, C, [G,] H/2, W/2)``.
    """

    def __init__(self, mode: str = "max") -> None:
        super().__init__()
        self.mode = check_choice("mode", mode, ("max", "mean"), owner="SpatialPool2x2")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, layout="(B, C, [|H|,] H, W)", ranks=(4, 5))
        *lead, H, W = x.shape
        if H % 2 or W % 2:
            raise ValueError(
                f"2x2 pooling of a {H}x{W} map would break exact equivariance (odd size); "
                "change the crops or the input size so that the map is even here"
            )
        flat = x.reshape(-1, 1, H, W)  # (B*C*G, 1, H, W)
        out = F.max_pool2d(flat, 2) if self.mode == "max" else F.avg_pool2d(flat, 2)
        return out.reshape(*lead, H // 2, W // 2)  # (B, C, [G,] H/2, W/2)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class InvariantPooling(nn.Module):
    """Reduce a lifted map over all of space and the whole group: an *invariant* vector per sample.

    First over space (``space``: ``"mean"``, ``"max"`` or ``"sum"``), then over the group axis
    (``group``: ``"max"`` as in the official code, or ``"mean"``). Any reduction over a whole
    orbit of entries is invariant to their permutation by ``h``, so the result is exactly
    invariant.

    Shape:
        ``(B, C, G, H, W)`` -> ``(B, C)``; an image ``(B, C, H, W)`` -> ``(B, C)`` (space only).
    """

    def __init__(self, *, space: str = "mean", group: str = "max") -> None:
        super().__init__()
        self.space = check_choice("space", space, SPACE_POOLS, owner="InvariantPooling")
        self.group = check_choice("group", group, GROUP_POOLS, owner="InvariantPooling")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, layout="(B, C, |H|, H, W) or an image (B, C, H, W)", ranks=(4, 5))
        if self.space == "max":
            x = x.amax(dim=(-2, -1))
        elif self.space == "sum":
            x = x.sum(dim=(-2, -1))
        else:
            x = x.mean(dim=(-2, -1))  # (B, C, G) or (B, C)
        if x.dim() == 3:
            x = x.amax(dim=2) if self.group == "max" else x.mean(dim=2)  # (B, C)
        return x

    def extra_repr(self) -> str:
        return f"space={self.space!r}, group={self.group!r}"


# ---------------------------------------------------------------------------------------
# The transformer block
# ---------------------------------------------------------------------------------------


class TransformerBlock(nn.Module):
    """One GSA-Net block on lifted maps (paper, appendix; chapter 7 of the book).

    ::

        x ─┬─ norm → act → GroupSelfAttention → norm → act → dropout ─┐
           └──────────────── (1x1 if C_in != C_out) ───────────────────+─ crop → y
        y ─┬─ 1x1 → norm → act → 1x1 → norm ─┐
           └─────────────────────────────────+→ out

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        group: the group ``H`` (name or :class:`Group`).
        heads, dim_head, window, pos_hidden, group_encoding, query: passed to :class:`GroupSelfAttention`.
        norm: see :func:`make_norm`.
        activation: see :func:`make_activation`.
        dropout: dropout on the attention branch (the official ``value_dropout_rate``).
        crop: pixels removed from every side after the attention (:class:`Crop`).
        mlp_ratio: hidden width of the MLP as a fraction of ``C_out`` (official: 0.5).

    Shape:
        ``(B, C_in, G, H, W)`` -> ``(B, C_out, G, H - 2 crop, W - 2 crop)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        group: str | Group,
        heads: int = 9,
        dim_head: int | None = None,
        window: int | None = None,
        pos_hidden: int = 32,
        group_encoding: str = "relative",
        query: str = "all",
        norm: str = "layer",
        activation: str = "relu",
        dropout: float = 0.0,
        crop: int = 0,
        mlp_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        check_int("out_channels", out_channels, owner="TransformerBlock")
        hidden = mlp_hidden(out_channels, mlp_ratio, owner="TransformerBlock")
        dropout = check_dropout("dropout", dropout, owner="TransformerBlock")
        self.attention = nn.Sequential(
            make_norm(norm, in_channels),
            make_activation(activation),
            GroupSelfAttention(
                in_channels,
                out_channels,
                group=group,
                heads=heads,
                dim_head=dim_head,
                window=window,
                pos_hidden=pos_hidden,
                group_encoding=group_encoding,  # type: ignore[arg-type]
                query=query,  # type: ignore[arg-type]
            ),
            make_norm(norm, out_channels),
            make_activation(activation),
            nn.Dropout(dropout),
        )
        self.shortcut = Pointwise(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        self.crop = Crop(crop)
        self.mlp = PointwiseMLP(out_channels, hidden=hidden, norm=norm, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, layout="(B, C_in, |H|, H, W)", ranks=(5,))
        y = self.crop(self.attention(x)) + self.crop(self.shortcut(x))  # (B, C_out, G, H', W')
        return self.mlp(y) + y
