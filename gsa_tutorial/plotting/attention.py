"""Figures of attention (chapters 3, 5, 6 and 9): where a query looks, per group element,
the cost of the score tensors, and chapter 6's orientation probe."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..groups import Group, get_group
from ..windows import window_to_image
from ._base import figure, hide_ticks, image_array, tex, to_numpy


def _isqrt(n: int) -> int:
    return int(round(n**0.5))


def plot_attention_map(
    image: torch.Tensor,
    weights: torch.Tensor,
    query: tuple[int, int],
    window: int | None = None,
    *,
    ax=None,
    title: str | None = None,
    cmap: str = "magma",
) -> Figure:
    """Draw where one query pixel looks: its attention weights over the image (chapter 3).

    The weights are drawn as a heat map over the image grid (zero outside the window), the
    image as white contour lines at half its range, the query as a cyan cross and the window
    (clipped to the image) as a cyan frame.

    Args:
        image: the input, ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)`` (first sample, mean of channels).
        weights: ``(K,)`` for this query or ``(N, K)`` for one head (see :func:`gsa_tutorial.windows.window_to_image`),
            e.g. ``layer.attention_weights(x)[0, head]``.
        query: ``(row, col)`` of the query pixel.
        window: the window size ``k`` (``K = k*k``); inferred from ``weights`` when omitted. For
            global attention the layers use ``k = 2 max(H, W) - 1``.
        ax: draw into this axes instead of a new figure.
        title: axes title.
        cmap: colour map of the weights.

    Returns:
        The matplotlib Figure.
    """
    from matplotlib.patches import Rectangle

    gray = image_array(image, gray=True)
    height, width = gray.shape
    amap = window_to_image(weights, query, height, width).double().numpy()
    k = window if window is not None else _isqrt(torch.as_tensor(weights).shape[-1])
    if ax is None:
        fig, axes = figure(figsize=(3.4, 3.0), layout="constrained")
        ax = axes[0, 0]
    else:
        fig = ax.figure
    im = ax.imshow(amap, cmap=cmap, vmin=0.0, vmax=max(float(amap.max()), 1e-12), interpolation="nearest")
    lo, hi = float(gray.min()), float(gray.max())
    if hi > lo:  # the image as white contour lines on top of the weights
        ax.contour(gray, levels=[(lo + hi) / 2], colors="white", linewidths=1.0)
    row, col = query
    ax.plot(col, row, marker="+", color="cyan", markersize=12, markeredgewidth=2)
    r = k // 2
    top, left = max(row - r, 0), max(col - r, 0)
    bottom, right = min(row + r, height - 1), min(col + r, width - 1)
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1, fill=False, edgecolor="cyan", linewidth=1.2))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.75, label="attention weight")
    return fig


def plot_query_attention(
    weights: torch.Tensor | Sequence[torch.Tensor],
    group: Group | str,
    queries: tuple[int, int] | Sequence[tuple[int, int]],
    *,
    images: torch.Tensor | Sequence[torch.Tensor] | None = None,
    head: int = 0,
    row_labels: Sequence[str] | None = None,
    size: float = 1.6,
    cmap: str = "magma",
) -> Figure:
    """Where one query pixel looks, for every group element ``h`` of the lifting layer (chapter 5).

    Each row is one input; panel ``h`` shows the softmax weights of the query over its window
    (``LiftingSelfAttention.attention_weights``), placed on the image grid, with the query
    marked by a cyan ``+`` and the input's outline (if given) in white.

    Args:
        weights: one tensor or a list (one per row) of shape ``(1, heads, |H|, N, K)`` or
            ``(heads, |H|, N, K)`` with ``N = H*W`` and ``K = k*k``.
        group: the group H (name or :class:`Group`).
        queries: the query ``(row, col)`` per row (one tuple is used for every row).
        images: the inputs ``(1, 1, H, W)`` (one per row), for their outline and the image size.
        head: which head to draw.
        row_labels: a label per row.
        size: inches per panel.
        cmap: colour map of the weights.

    Returns:
        The figure.
    """
    group = get_group(group)
    weights = [weights] if isinstance(weights, torch.Tensor) else list(weights)
    rows = len(weights)
    if isinstance(queries, tuple) and len(queries) == 2 and all(isinstance(q, (int, np.integer)) for q in queries):
        queries = [queries] * rows  # type: ignore[list-item]  # one (row, col) query for every row
    queries = list(queries)  # type: ignore[arg-type]
    if len(queries) != rows:
        raise ValueError(f"got {rows} weight tensors but {len(queries)} queries")
    if images is not None:
        images = [images] * rows if isinstance(images, torch.Tensor) else list(images)
        if len(images) != rows:
            raise ValueError(f"got {rows} weight tensors but {len(images)} images")
    fig, axes = figure(rows, group.order, figsize=(size * group.order + 0.8, size * rows + 0.5))
    for row, w in enumerate(weights):
        w = torch.from_numpy(to_numpy(w))
        if w.dim() == 5:
            w = w[0]  # (heads, G, N, K)
        if w.dim() != 4 or w.shape[1] != group.order:
            raise ValueError(
                f"weights must have shape (1, heads, |H|, N, K) with |H| = {group.order} for {group.name}, "
                f"got {tuple(w.shape)}"
            )
        picture = image_array(images[row]) if images is not None else None
        if picture is not None:
            height, width = picture.shape[:2]
        else:
            height = width = int(round(np.sqrt(w.shape[2])))
        if height * width != w.shape[2]:
            raise ValueError(f"N = {w.shape[2]} query pixels do not match an image of {height}x{width}")
        qr, qc = queries[row]
        n = qr * width + qc  # row-major pixel index of the query
        maps = [window_to_image(w[head, h, n], (qr, qc), height, width).numpy() for h in group.elements]
        vmax = max(float(m.max()) for m in maps)
        for h in group.elements:
            ax = axes[row, h]
            ax.imshow(maps[h], cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
            if picture is not None and picture.ndim == 2 and picture.max() > picture.min():
                level = 0.5 * (float(picture.min()) + float(picture.max()))
                ax.contour(picture, levels=[level], colors="w", linewidths=0.7)
            ax.plot(qc, qr, "+", color="cyan", markersize=9, markeredgewidth=2)
            hide_ticks(ax)
            if row == 0:
                ax.set_title(f"h = {tex(group.element_name(h))}", fontsize=9)
            if h == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[row], fontsize=8)
    fig.suptitle(f"attention weights of one query, head {head}, per group element ({group.name})", fontsize=10)
    fig.tight_layout()
    return fig


def plot_attention_cost(
    names: Sequence[str],
    dense: Sequence[float],
    factorized: Sequence[float],
    *,
    ylabel: str = "scores per pixel and head",
    title: str | None = None,
) -> Figure:
    """Dense (``G³K``) against factorized (``G²K``) score-tensor sizes per group, log scale (chapter 6).

    Args:
        names: the groups, e.g. ``["z2", "r4", "r8"]``.
        dense, factorized: one number per group (sizes, bytes or seconds).
        ylabel: what the numbers are.
        title: a title.

    Returns:
        The figure.
    """
    if not (len(names) == len(dense) == len(factorized)):
        raise ValueError(f"names, dense and factorized must have the same length, got {len(names)}, {len(dense)}, {len(factorized)}")
    fig, axes = figure(figsize=(max(4.0, 0.8 * len(names) + 1.5), 3.2))
    ax = axes[0, 0]
    x = np.arange(len(names))
    ax.bar(x - 0.2, dense, 0.4, label="dense  (G³K)")
    ax.bar(x + 0.2, factorized, 0.4, label="factorized  (G²K)")
    ax.set_yscale("log")
    ax.set_xticks(x, list(names))
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def orientation_spread(output: torch.Tensor) -> float:
    """How much a ``(C, G)`` output varies along the group axis: ``max |y - mean_h y| / max |y|``.

    The measure of chapter 6's orientation probe (0 for an output that is the same at every ``h``).
    """
    y = torch.from_numpy(to_numpy(output))
    if y.dim() != 2:
        raise ValueError(f"output must have shape (C, G), got {tuple(y.shape)}")
    top = float(y.abs().max())
    return float((y - y.mean(1, keepdim=True)).abs().max()) / top if top > 0 else 0.0


def plot_orientation_probe(
    outputs: dict[str, torch.Tensor],
    group: Group | str,
    *,
    profile: torch.Tensor | None = None,
    title: str | None = None,
    size: float = 2.3,
) -> Figure:
    """Chapter 6's orientation probe: a group layer's output along the group axis, one panel per layer.

    The probe feeds a lifted map that is constant in space but varies along the group axis; a
    layer that sees orientation gives an output that varies along ``h`` at an interior pixel, a
    blind one gives flat lines. Each panel draws every channel ``c`` as a line ``h -> y[c, h] / max|y|``
    (scaled by the panel's largest value, so layers of different sizes compare) and names its
    :func:`orientation_spread` in the title.

    Args:
        outputs: panel title -> ``(C, G)`` output at the probed pixel (channels, output element ``h``).
        group: the group H (names the x ticks).
        profile: the input's ``(C_in, G)`` profile along the group axis, drawn first if given.
        title: a title over the figure.
        size: inches per panel.

    Returns:
        The figure.
    """
    group = get_group(group)
    G = group.order
    panels = ({"input (along the group axis)": profile} if profile is not None else {}) | dict(outputs)
    if not outputs:
        raise ValueError("plot_orientation_probe needs at least one output")
    for name, y in panels.items():
        shape = tuple(torch.as_tensor(y).shape)
        if len(shape) != 2 or shape[1] != G:
            raise ValueError(f"{name!r} must have shape (C, {G}), got {shape}")
    fig, axes = figure(1, len(panels), figsize=(size * len(panels) + 0.4, 2.8), sharey=True)
    x = np.arange(G)
    for ax, (name, y) in zip(axes[0], panels.items()):
        y = torch.from_numpy(to_numpy(y))
        top = float(y.abs().max()) or 1.0
        for c, row in enumerate(y.numpy() / top):
            ax.plot(x, row, marker="o", markersize=3, lw=1, color=plt.get_cmap("tab10")(c % 10))
        ax.axhline(0, color="0.7", lw=0.6)
        ax.set_xticks(x, [tex(n) for n in group.element_names], fontsize=7, rotation=90 if G > 4 else 0)
        ax.set_title(f"{name}\nspread {orientation_spread(y):.1e}", fontsize=8)
        ax.set_xlabel("group element", fontsize=8)
    axes[0, 0].set_ylabel("value / max |value|", fontsize=8)
    axes[0, 0].set_ylim(-1.15, 1.15)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
