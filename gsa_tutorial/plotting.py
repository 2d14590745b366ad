"""Figures for the book: images, orbits, Cayley tables, feature maps on the group, ...

Every function returns a :class:`matplotlib.figure.Figure`; none calls ``plt.show()`` or
touches ``rcParams``. Figures are detached from pyplot right after they are made
(:func:`_figure`), so a notebook cell that *returns* a figure shows it exactly once, and
scripts or tests that make many figures leak nothing. Display one by making it the last
expression of a cell (or ``IPython.display.display(fig)``); save it with ``fig.savefig``.

This is the only module of :mod:`gsa_tutorial` that imports matplotlib.

Shapes: ``B`` batch, ``C`` channels, ``G = |H|`` group size, ``H, W`` height and width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.figure import Figure

from .actions import act_on_coordinates, act_on_image
from .groups import Group, get_group

__all__ = [
    "plot_images",
    "plot_orbit",
    "plot_cayley_table",
    "plot_group_action_on_image",
    "plot_lifted",
    "plot_regular_representation",
    "window_to_image",
    "plot_attention_map",
    "plot_errors",
    "plot_offsets",
    "plot_position_encoding",
    "plot_group_tables",
]


# ---- small shared helpers -----------------------------------------------------------------------


def _figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, **kwargs: Any):
    """``plt.subplots`` that returns ``(fig, axes)`` with ``axes`` always a 2-D array, detached from pyplot."""
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, **kwargs)
    plt.close(fig)  # the caller owns the figure; pyplot forgets it (no double display, no leak)
    return fig, axes


def _to_numpy_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A 2-D ``(H, W)`` or RGB ``(H, W, 3)`` numpy array from a tensor with leading singleton axes."""
    a = image.detach().cpu().double().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, dtype=float)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]  # drop leading singleton axes: (1, 1, H, W) -> (H, W)
    if a.ndim == 3 and a.shape[0] == 3:
        a = np.moveaxis(a, 0, -1)  # (3, H, W) -> (H, W, 3)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3):
        return a
    raise ValueError(
        f"expected an image of shape (H, W), (C, H, W) with C in (1, 3), or (1, C, H, W); got {image.shape}"
    )


def _hide_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ---- chapter 1 and 2: images ------------------------------------------------------------------------


def plot_images(
    images: Sequence[torch.Tensor | np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    shared_scale: bool = True,
    size: float = 2.0,
    suptitle: str | None = None,
) -> Figure:
    """Show images side by side (one row, or a grid of ``ncols`` columns).

    Args:
        images: each ``(H, W)``, ``(1, H, W)``, ``(1, 1, H, W)`` or RGB ``(3, H, W)``.
        titles: one title per image.
        ncols: columns of the grid (default: all images in one row).
        cmap: colour map of single-channel images.
        vmin, vmax: colour limits; default: shared by all images if ``shared_scale``.
        shared_scale: use one colour scale for all images, so equal values look equal.
        size: inches per panel.
        suptitle: a title over the whole figure.

    Returns:
        The figure.
    """
    arrays = [_to_numpy_image(im) for im in images]
    if not arrays:
        raise ValueError("plot_images needs at least one image")
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"got {len(arrays)} images but {len(titles)} titles")
    if shared_scale:
        vmin = min(float(a.min()) for a in arrays) if vmin is None else vmin
        vmax = max(float(a.max()) for a in arrays) if vmax is None else vmax
    ncols = len(arrays) if ncols is None else max(1, min(ncols, len(arrays)))
    nrows = -(-len(arrays) // ncols)
    title_lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    row_height = size + 0.18 * title_lines  # room for the panel titles
    fig, axes = _figure(nrows, ncols, figsize=(size * ncols, row_height * nrows + (0.4 if suptitle else 0)))
    for i, ax in enumerate(axes.flat):
        _hide_ticks(ax)
        if i >= len(arrays):
            ax.set_axis_off()
            continue
        ax.imshow(arrays[i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_group_action_on_image(
    group: Group | str,
    image: torch.Tensor,
    *,
    elements: Sequence[int] | None = None,
    ncols: int | None = None,
    size: float = 1.8,
) -> Figure:
    """The image acted on by every element of ``group`` (chapter 2, eq. ``(h·f)(x) = f(h⁻¹x)``).

    Each panel is titled with the element's name and rotation angle (mirrors: the angle of
    the rotation applied after the mirror); grid-exact elements
    (exact pixel permutations) are marked "exact", the others "interp." (bilinear).

    Args:
        group: a :class:`Group` or its name.
        image: ``(1, C, H, W)``, ``(C, H, W)`` or ``(H, W)``; only the first channel is drawn.
        elements: which elements to show (default: all).
        ncols: columns (default: all in a row up to 8, then a grid).
        size: inches per panel.

    Returns:
        The figure.
    """
    group = get_group(group)
    x = torch.as_tensor(image)
    while x.dim() < 4:
        x = x.unsqueeze(0)  # (H, W) -> (1, 1, H, W)
    x = x[:1, :1]  # (1, 1, H, W)
    elements = list(group.elements if elements is None else elements)
    moved = [act_on_image(group, h, x) for h in elements]
    titles = []
    for h in elements:
        m = group.matrix(h)
        mirror = np.linalg.det(m) < 0
        rot = m @ np.diag([-1.0, 1.0]) if mirror else m  # the rotation part of r^k s
        angle = np.degrees(np.arctan2(rot[1, 0], rot[0, 0])) % 360
        tag = "exact" if group.is_grid_exact(h) else "interp."
        titles.append(f"{group.element_name(h)}\n{angle:.4g}°{' + mirror' if mirror else ''}, {tag}")
    if ncols is None:
        ncols = len(elements) if len(elements) <= 8 else int(np.ceil(len(elements) / 2))
    return plot_images(moved, titles, ncols=ncols, size=size, suptitle=f"{group.name}: h · image")


# ---- chapter 2: groups on the plane ----------------------------------------------------------------


def plot_orbit(
    group: Group | str,
    points: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
    *,
    closed: bool | None = None,
    size: float = 4.0,
    title: str | None = None,
) -> Figure:
    """The orbit ``{h·p : h ∈ H}`` of a point, or of a shape, in the plane (chapter 2).

    A single point ``(x, y)`` is drawn as one dot per element, labelled with the element's
    name. Several points are a shape (a polyline, closed if ``closed``): each element gets
    a copy in its own colour, mirrors dashed, labelled at its centroid; the shape's first
    point is marked with a dot so the reader can follow where it goes.

    Args:
        group: a :class:`Group` or its name.
        points: ``(2,)`` one point or ``(N, 2)`` the vertices of a shape, in (x right, y up).
        closed: close the polyline (default: ``True`` for 3 points or more).
        size: inches per side.
        title: default ``"orbit under <name>"``.

    Returns:
        The figure.
    """
    group = get_group(group)
    pts = torch.as_tensor(np.asarray(points, dtype=np.float64) if not isinstance(points, torch.Tensor) else points)
    pts = pts.to(torch.float64)
    if pts.dim() == 1:
        pts = pts[None]  # (2,) -> (1, 2)
    if pts.dim() != 2 or pts.shape[-1] != 2:
        raise ValueError(f"points must have shape (2,) or (N, 2) (x, y), got {tuple(pts.shape)}")
    single = pts.shape[0] == 1
    closed = pts.shape[0] >= 3 if closed is None else closed
    fig, axes = _figure(figsize=(size, size))
    ax = axes[0, 0]
    colours = plt.get_cmap("hsv")(np.linspace(0, 1, group.order, endpoint=False))
    radius = float(pts.norm(dim=-1).max()) or 1.0
    for h in group.elements:
        moved = act_on_coordinates(group, h, pts).numpy()  # (N, 2)
        mirror = np.linalg.det(group.matrix(h)) < 0
        name = group.element_name(h)
        if single:
            ax.plot(*moved[0], "o", color=colours[h], markersize=8, markeredgecolor="k")
        else:
            line = np.vstack([moved, moved[:1]]) if closed else moved
            ax.plot(line[:, 0], line[:, 1], "--" if mirror else "-", color=colours[h], lw=2)
            ax.plot(*moved[0], "o", color=colours[h], markersize=5)
        ax.annotate(
            name,
            moved[0] if single else moved.mean(axis=0),  # a shape is labelled at its centroid
            xytext=(6, 6) if single else (0, 0),
            textcoords="offset points",
            ha="left" if single else "center",
            va="bottom" if single else "center",
            fontsize=8,
            color="k",
            bbox={"boxstyle": "round,pad=0.15", "fc": colours[h], "alpha": 0.35, "lw": 0},
        )
    ax.axhline(0, color="0.8", lw=0.8, zorder=0)
    ax.axvline(0, color="0.8", lw=0.8, zorder=0)
    ax.plot(0, 0, "k+", markersize=10)
    lim = 1.35 * radius
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title or f"orbit under {group.name} (|H| = {group.order})")
    fig.tight_layout()
    return fig


def plot_cayley_table(group: Group | str, *, annotate: bool | None = None, size: float | None = None) -> Figure:
    """The Cayley table ``a b`` of ``group`` as a coloured grid (row ``a``, column ``b``; chapter 2).

    Each colour is one element, so the Latin-square property (every element once per row
    and column) is visible at a glance.

    Args:
        group: a :class:`Group` or its name.
        annotate: write the element names in the cells (default: for groups of order <= 12).
        size: inches per side (default grows with the order).

    Returns:
        The figure.
    """
    group = get_group(group)
    n = group.order
    annotate = n <= 12 if annotate is None else annotate
    size = max(3.0, 0.45 * n + 1.5) if size is None else size
    fig, axes = _figure(figsize=(size, size))
    ax = axes[0, 0]
    table = np.asarray(group.cayley_table)
    ax.imshow(table, cmap="tab20" if n <= 20 else "viridis", vmin=0, vmax=max(n - 1, 1) if n > 20 else 19)
    names = group.element_names
    ax.set_xticks(range(n), names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_xlabel("b")
    ax.xaxis.set_label_position("top")
    ax.set_ylabel("a")
    if annotate:
        for a in range(n):
            for b in range(n):
                ax.text(b, a, names[table[a, b]], ha="center", va="center", fontsize=7)
    ax.set_title(f"Cayley table of {group.name}: entry (a, b) = a b", fontsize=10, pad=10)
    fig.tight_layout()
    return fig


def plot_regular_representation(group: Group | str, h: int, *, size: float = 3.0) -> Figure:
    """The permutation matrix of the regular representation ``(L_h f)(g) = f(h⁻¹ g)`` (chapter 2).

    Row ``g`` has its 1 in column ``h⁻¹ g``: the output slot ``g`` reads the input slot ``h⁻¹ g``.

    Returns:
        The figure.
    """
    group = get_group(group)
    n = group.order
    h_inv = group.inverse(h)
    matrix = np.zeros((n, n))
    for g in group.elements:
        matrix[g, group.compose(h_inv, g)] = 1.0
    fig, axes = _figure(figsize=(size, size))
    ax = axes[0, 0]
    ax.imshow(matrix, cmap="Greys", vmin=0, vmax=1)
    names = group.element_names
    ax.set_xticks(range(n), names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("input slot  h⁻¹g")
    ax.set_ylabel("output slot  g")
    ax.set_title(f"L_h for h = {group.element_name(h)} in {group.name}", fontsize=10)
    fig.tight_layout()
    return fig


# ---- lifted feature maps -------------------------------------------------------------------------


def plot_lifted(
    f: torch.Tensor,
    group: Group | str,
    *,
    max_channels: int = 4,
    size: float = 1.6,
    cmap: str = "viridis",
    title: str | None = None,
) -> Figure:
    """A lifted feature map ``f(x, g)``: one column per group element ``g``, one row per channel.

    All panels share one colour scale, so that acting with ``h`` (which moves the maps *and*
    permutes the columns, chapter 2) is visible as a rearrangement of the same pictures.

    Args:
        f: ``(1, C, |H|, H, W)``, ``(C, |H|, H, W)`` or ``(|H|, H, W)``.
        group: a :class:`Group` or its name (for the column titles).
        max_channels: draw at most this many channels (rows).
        size: inches per panel.
        cmap: colour map.
        title: a title over the figure.

    Returns:
        The figure.
    """
    group = get_group(group)
    x = torch.as_tensor(f).detach().cpu().double()
    if x.dim() == 5:
        if x.shape[0] != 1:
            raise ValueError(f"plot_lifted draws one lifted map; got a batch of {x.shape[0]} (shape {tuple(x.shape)})")
        x = x[0]  # (C, G, H, W)
    if x.dim() == 3:
        x = x[None]  # (G, H, W) -> (1, G, H, W)
    if x.dim() != 4 or x.shape[1] != group.order:
        raise ValueError(
            f"expected a lifted map (1, C, |H|, H, W), (C, |H|, H, W) or (|H|, H, W) with |H| = {group.order} "
            f"for {group.name}; got shape {tuple(torch.as_tensor(f).shape)}"
        )
    x = x[:max_channels]  # (C', G, H, W)
    channels = x.shape[0]
    vmin, vmax = float(x.min()), float(x.max())
    fig, axes = _figure(channels, group.order, figsize=(size * group.order, size * channels + (0.4 if title else 0)))
    for c in range(channels):
        for g in group.elements:
            ax = axes[c, g]
            ax.imshow(x[c, g].numpy(), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            _hide_ticks(ax)
            if c == 0:
                ax.set_title(f"g = {group.element_name(g)}", fontsize=9)
            if g == 0:
                ax.set_ylabel(f"channel {c}", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---- chapters 3 and 4: attention maps, equivariance errors, offsets, positional encodings ----------


def window_to_image(weights: torch.Tensor, query: tuple[int, int], height: int, width: int) -> torch.Tensor:
    """Scatter one query's window of attention weights onto the image grid (chapter 3).

    Entry ``a * k + b`` of ``weights`` belongs to the key ``a - k//2`` rows and ``b - k//2``
    columns away from the query (the order of :func:`gsa_tutorial.positional.window_offsets`);
    keys that fall outside the image are dropped (the layers give them weight 0 anyway).

    Args:
        weights: the weights of one query ``(K,)``, or of all queries of one head ``(N, K)``
            (``N = height * width``, row-major; ``query`` then picks the row), e.g.
            ``layer.attention_weights(x)[0, head]``.
        query: ``(row, col)`` of the query pixel.
        height, width: the image size.

    Returns:
        An ``(height, width)`` tensor: the weight the query gives to every pixel.
    """
    row, col = query
    if not (0 <= row < height and 0 <= col < width):
        raise ValueError(f"query {query} lies outside the {height}x{width} image")
    w = torch.as_tensor(weights).detach().cpu()
    if w.dim() == 2:
        if w.shape[0] != height * width:
            raise ValueError(f"weights of shape {tuple(w.shape)} must be (N, K) with N = {height}*{width}")
        w = w[row * width + col]  # (K,)
    if w.dim() != 1:
        raise ValueError(f"weights must have shape (K,) or (N, K), got {tuple(w.shape)}")
    k = _isqrt(w.shape[0])
    if k * k != w.shape[0] or k % 2 == 0:
        raise ValueError(f"the number of weights {w.shape[0]} is not the square of an odd window size")
    r = k // 2
    out = torch.zeros(height, width, dtype=w.dtype)
    window = w.view(k, k)  # (K,) -> (k, k)
    top, left = row - r, col - r
    r0, r1 = max(top, 0), min(top + k, height)
    c0, c1 = max(left, 0), min(left + k, width)
    out[r0:r1, c0:c1] = window[r0 - top : r1 - top, c0 - left : c1 - left]
    return out


def _isqrt(n: int) -> int:
    return int(round(n**0.5))


def _tex(name: str) -> str:
    """A group element's name (``"r^1 s"``) as matplotlib math text (``"$r^1\\,s$"``)."""
    return "$" + name.replace(" ", r"\,") + "$"


def _gray(image: torch.Tensor) -> np.ndarray:
    """An image ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)`` as a 2-d numpy array (mean over channels)."""
    img = torch.as_tensor(image).detach().cpu().double()
    while img.dim() > 2:
        img = img[0] if img.dim() == 4 else img.mean(0)
    return img.numpy()


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
        weights: ``(K,)`` for this query or ``(N, K)`` for one head (see :func:`window_to_image`),
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

    gray = _gray(image)
    height, width = gray.shape
    amap = window_to_image(weights, query, height, width).double().numpy()
    k = window if window is not None else _isqrt(torch.as_tensor(weights).shape[-1])
    if ax is None:
        fig, axes = _figure(figsize=(3.4, 3.0), layout="constrained")
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


def plot_errors(
    errors: dict[str, Sequence[float]],
    labels: Sequence[str],
    *,
    floor: float = 1e-17,
    title: str | None = None,
    ylabel: str = "relative equivariance error",
) -> Figure:
    """Grouped bar chart of equivariance errors on a log scale (chapters 3 to 6).

    A dashed line marks float64 round-off (``2.2e-16``). Errors that are exactly 0 cannot be
    drawn on a log axis: their bar stops at ``floor`` and is labelled ``0``.

    Args:
        errors: one series per check, e.g. ``{"translation": [...], "rotation (C4)": [...]}``,
            each with one value per entry of ``labels``.
        labels: the groups of bars, e.g. the layer variants ``["none", "absolute", "relative"]``.
        floor: where a zero bar stops.
        title: figure title.
        ylabel: y-axis label.

    Returns:
        The matplotlib Figure.
    """
    labels = list(labels)
    for name, values in errors.items():
        if len(values) != len(labels):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(labels)} labels {labels}")
    n_series = max(len(errors), 1)
    width = 0.8 / n_series
    fig, axes = _figure(figsize=(1.2 + 0.65 * len(labels) * max(n_series, 2), 3.4), layout="constrained")
    ax = axes[0, 0]
    xs = np.arange(len(labels))
    for i, (name, values) in enumerate(errors.items()):
        vals = np.array([float(v) for v in values])
        shown = np.maximum(vals, floor)
        bars = ax.bar(xs + (i - (n_series - 1) / 2) * width, shown, width, label=name, bottom=0)
        for bar, v in zip(bars, vals):
            text = "0" if v == 0 else f"{v:.0e}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_ylim(floor / 3, max(1.0, max((max(v) for v in errors.values()), default=1.0)) * 30)
    ax.axhline(np.finfo(np.float64).eps, color="gray", linestyle="--", linewidth=1, label="float64 round-off")
    ax.set_xticks(xs, labels)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    return fig


def plot_offsets(group: Group | str, window: int, *, elements: Sequence[int] | None = None) -> Figure:
    """The window offsets seen through each group element, ``h⁻¹(x_j − x_i)`` (chapter 4).

    One panel per element: the integer grid in light gray, the transformed offsets coloured by
    their index in the window (so the rotation is visible), and offsets that fall *off* the
    grid circled in red (a lookup table has no entry there; a continuous ρ does).

    Args:
        group: the group H (name or :class:`~gsa_tutorial.groups.Group`).
        window: the odd window size k.
        elements: the elements to draw (default: all).

    Returns:
        The matplotlib Figure.
    """
    from .positional import transformed_offsets, window_offsets

    group = get_group(group)
    elements = list(group.elements if elements is None else elements)
    offsets = window_offsets(window)  # (K, 2)
    moved = transformed_offsets(group, offsets)  # (G, K, 2)
    ncols = min(len(elements), 4)
    nrows = -(-len(elements) // ncols)
    fig, axes = _figure(nrows, ncols, figsize=(2.4 * ncols, 2.5 * nrows + 0.3), layout="constrained")
    r = window // 2 + 1
    grid = np.arange(-r, r + 1)
    gx, gy = np.meshgrid(grid, grid)
    colours = np.arange(offsets.shape[0])
    for ax in axes.flat[len(elements) :]:
        ax.axis("off")
    for ax, h in zip(axes.flat, elements):
        pts = moved[h].numpy()  # (K, 2)
        off = np.abs(pts - np.round(pts)).max(axis=1) > 1e-9
        ax.scatter(gx, gy, s=4, color="lightgray", zorder=1)
        ax.scatter(pts[:, 0], pts[:, 1], c=colours, cmap="viridis", s=22, zorder=2)
        if off.any():
            ax.scatter(pts[off, 0], pts[off, 1], s=70, facecolors="none", edgecolors="red", linewidths=0.9, zorder=3)
        ax.set_title(f"h = {_tex(group.element_name(h))}: {int((~off).sum())}/{len(pts)} on grid", fontsize=8)
        ax.set_xlim(-r - 0.5, r + 0.5)
        ax.set_ylim(-r - 0.5, r + 0.5)
        ax.set_aspect("equal")
        ax.set_xticks(grid[1:-1])
        ax.set_yticks(grid[1:-1])
        ax.tick_params(labelsize=6)
    fig.suptitle(f"$h^{{-1}}(x_j - x_i)$ for a {window}x{window} window, H = {group.name}", fontsize=10)
    return fig


def plot_position_encoding(
    maps: torch.Tensor,
    group: Group | str,
    *,
    elements: Sequence[int] | None = None,
    title: str | None = None,
    cmap: str = "RdBu_r",
) -> Figure:
    """Heat maps of one channel of a positional encoding over the window, one per group element (chapter 4).

    Args:
        maps: ``(G, k, k)`` (or ``(len(elements), k, k)``): e.g. channel ``c`` of
            ``ρ(h⁻¹ d)`` for every element ``h`` and offset ``d`` of a ``k x k`` window, row-major
            like :func:`gsa_tutorial.positional.window_offsets` (row 0 is the top of the window).
        group: the group H, used for the panel titles.
        elements: which element each map belongs to (default: ``0 .. len(maps)-1``).
        title: figure title.
        cmap: a diverging colour map, centred at 0.

    Returns:
        The matplotlib Figure.
    """
    group = get_group(group)
    m = torch.as_tensor(maps).detach().cpu().double()
    if m.dim() != 3 or m.shape[-1] != m.shape[-2]:
        raise ValueError(f"maps must have shape (G, k, k), got {tuple(m.shape)}")
    elements = list(range(m.shape[0]) if elements is None else elements)
    if len(elements) != m.shape[0]:
        raise ValueError(f"{m.shape[0]} maps for {len(elements)} elements")
    ncols = min(len(elements), 4)
    nrows = -(-len(elements) // ncols)
    fig, axes = _figure(nrows, ncols, figsize=(2.3 * ncols + 0.6, 2.3 * nrows + (0.3 if title else 0)), layout="constrained")
    vmax = float(m.abs().max()) or 1.0
    for ax in axes.flat[len(elements) :]:
        ax.axis("off")
    im = None
    for ax, h, img in zip(axes.flat, elements, m):
        im = ax.imshow(img.numpy(), cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
        k = img.shape[-1]
        ax.plot(k // 2, k // 2, marker="+", color="black", markersize=8)
        ax.set_title(f"h = {_tex(group.element_name(h))}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_group_tables(
    tables: dict[str, torch.Tensor],
    group: Group | str,
    *,
    row_label: str = r"query $\tilde h$",
    col_label: str = r"key $\hat h$",
    entries: int | None = None,
) -> Figure:
    """Integer tables indexed by two group elements, drawn side by side with element names (chapters 4, 6).

    Each cell shows the name of the entry ``table[row, col]`` and is coloured by it, so equal
    entries have equal colours. Used for the group part of the encoding of the group layer:
    ``relative_group_index(group)[0]`` (``"relative"``, ``h̃⁻¹ĥ``) next to
    ``relative_group_index(group, "official")[h]`` (the official code's table) for each ``h``.

    Entries below ``|H|`` are group elements and are labelled by their names. With ``|H|²``
    entries (the ``"pair"`` encoding, entry ``|H|·a + b`` for the pair ``(a, b)``) every cell is
    labelled by its pair ``(a, b)`` of element names.

    Args:
        tables: panel title -> ``(G, G)`` integer tensor of entries.
        group: the group H.
        row_label, col_label: axis labels.
        entries: the number of entries the tables index into, ``|H|`` or ``|H|²``; default
            ``|H|²`` if some entry is ``>= |H|``, else ``|H|``.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: a table has the wrong shape, ``entries`` is neither ``|H|`` nor ``|H|²``, or an
            entry lies outside ``0 .. entries - 1``.
    """
    group = get_group(group)
    G = group.order
    names = [_tex(n) for n in group.element_names]
    checked = {}
    for name, table in tables.items():
        t = torch.as_tensor(table).detach().cpu().long()
        if t.shape != (G, G):
            raise ValueError(f"table {name!r} must have shape ({G}, {G}), got {tuple(t.shape)}")
        checked[name] = t
    if entries is None:
        entries = G * G if any(int(t.max()) >= G for t in checked.values()) else G
    if entries not in (G, G * G):
        raise ValueError(f"entries must be |H| = {G} (group elements) or |H|² = {G * G} (pairs), got {entries}")
    for name, t in checked.items():
        if int(t.min()) < 0 or int(t.max()) >= entries:
            raise ValueError(f"table {name!r} has entries in {int(t.min())}..{int(t.max())}, expected 0..{entries - 1}")
    pairs = entries > G
    if pairs:
        plain = [n.strip("$") for n in names]
        labels = [f"$({plain[a // G]},{plain[a % G]})$" for a in range(entries)]
        cmap = plt.get_cmap("tab20" if entries <= 20 else "viridis", entries)
    else:
        labels = names
        cmap = plt.get_cmap("tab20" if G > 10 else "tab10", max(G, 2))
    cell = 0.45 * (1.6 if pairs else 1.0)
    fig, axes = _figure(1, len(checked), figsize=(max(cell * G, 1.6) * len(checked) + 0.8, max(cell * G, 1.6) + 1.1), layout="constrained")
    for ax, (name, t) in zip(axes[0], checked.items()):
        ax.imshow(t.numpy(), cmap=cmap, vmin=-0.5, vmax=max(entries, 2) - 0.5, interpolation="nearest")
        for a in range(G):
            for b in range(G):
                ax.text(b, a, labels[int(t[a, b])], ha="center", va="center", fontsize=6 if pairs else 7)
        ax.set_xticks(range(G), names, fontsize=7, rotation=90 if G > 4 else 0)
        ax.set_yticks(range(G), names, fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(col_label, fontsize=8)
        ax.set_ylabel(row_label, fontsize=8)
    return fig


# ---- chapters 5 and 6: lifting and group self-attention ------------------------------------------


def _element_colours(order: int) -> np.ndarray:
    """One distinct colour per group element, ``(G, 4)`` RGBA."""
    cmap = plt.get_cmap("tab10" if order <= 10 else "tab20")
    return np.asarray([cmap(g % cmap.N) for g in range(order)])


def _frame(ax, colour, width: float = 3.0) -> None:
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)


def _lifted_channel(f: torch.Tensor, group: Group, channel: int, what: str) -> np.ndarray:
    """``(G, H, W)`` numpy maps of one channel of a lifted map ``(1, C, G, H, W)`` or ``(C, G, H, W)``."""
    x = torch.as_tensor(f).detach().cpu().double()
    if x.dim() == 5:
        if x.shape[0] != 1:
            raise ValueError(f"{what}: expected one lifted map (1, C, |H|, H, W), got a batch of shape {tuple(x.shape)}")
        x = x[0]  # (C, G, H, W)
    if x.dim() != 4 or x.shape[1] != group.order:
        raise ValueError(
            f"{what}: expected a lifted map (1, C, |H|, H, W) with |H| = {group.order} for {group.name}, "
            f"got shape {tuple(torch.as_tensor(f).shape)}"
        )
    if not 0 <= channel < x.shape[0]:
        raise ValueError(f"{what}: channel {channel} out of range for {x.shape[0]} channels")
    return x[channel].numpy()  # (G, H, W)


def plot_lifted_rotation(
    lifted: torch.Tensor,
    lifted_moved: torch.Tensor,
    group: Group | str,
    r: int,
    *,
    image: torch.Tensor | None = None,
    image_moved: torch.Tensor | None = None,
    channel: int = 0,
    layout: str = "rows",
    size: float = 1.5,
    cmap: str = "viridis",
    title: str | None = None,
) -> Figure:
    """The lifted maps of ``f`` and of ``r·f`` side by side, one panel per group element (chapter 5).

    Equivariance of the lifting layer, ``L[r·f](x, h) = L[f](r⁻¹x, r⁻¹h)``, says that the map of
    ``r·f`` at element ``h`` is the map of ``f`` at element ``r⁻¹h``, rotated by ``r``: the maps
    rotate *and* shift cyclically along the group axis. To make the shift visible, the map of
    ``f`` at ``h`` gets a frame in the colour of ``h``, and the map of ``r·f`` at ``h`` gets the
    colour of ``r⁻¹h`` (the panel it is a rotated copy of) and the label ``= r·[r⁻¹h]``.

    Args:
        lifted: ``L[f]``, ``(1, C, |H|, H, W)`` or ``(C, |H|, H, W)``.
        lifted_moved: ``L[r·f]``, same shape.
        group: the group H (name or :class:`Group`).
        r: the element that acted on the input.
        image, image_moved: optional inputs ``f`` and ``r·f`` (any shape :func:`plot_images` takes),
            drawn in grey above (or left of) the maps.
        channel: which output channel to draw.
        layout: ``"rows"`` (one row per group element, ``f`` left and ``r·f`` right) or
            ``"columns"`` (one column per element, ``f`` on top and ``r·f`` below).
        size: inches per panel.
        cmap: colour map of the feature maps (one colour scale for all panels).
        title: a title over the figure (default names ``r``).

    Returns:
        The figure.
    """
    group = get_group(group)
    if layout not in ("rows", "columns"):
        raise ValueError(f"layout must be 'rows' or 'columns', got {layout!r}")
    maps = _lifted_channel(lifted, group, channel, "lifted")  # (G, H, W)
    moved = _lifted_channel(lifted_moved, group, channel, "lifted_moved")  # (G, H, W)
    r_inv = group.inverse(r)
    colours = _element_colours(group.order)
    with_images = image is not None and image_moved is not None
    offset = 1 if with_images else 0
    n_el = group.order + offset
    vmin, vmax = float(min(maps.min(), moved.min())), float(max(maps.max(), moved.max()))
    if layout == "rows":
        fig, axes = _figure(n_el, 2, figsize=(2 * size + 1.0, size * n_el + 0.5))
        panel = lambda side, e: axes[e, side]  # noqa: E731  side 0 = f, 1 = r·f
    else:
        fig, axes = _figure(2, n_el, figsize=(size * n_el + 0.6, 2 * size + 1.6))
        panel = lambda side, e: axes[side, e]  # noqa: E731
    rname = _tex(group.element_name(r))
    if with_images:
        assert image is not None and image_moved is not None
        pictures = [_to_numpy_image(image), _to_numpy_image(image_moved)]
        lo, hi = min(p.min() for p in pictures), max(p.max() for p in pictures)
        for side, (pic, label) in enumerate(zip(pictures, ["input f", f"input r·f, r = {rname}"])):
            ax = panel(side, 0)
            ax.imshow(pic, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            _hide_ticks(ax)
            ax.set_title(label, fontsize=8)
    for h in group.elements:
        source = group.compose(r_inv, h)
        for side, data, colour, label in (
            (0, maps[h], colours[h], f"L[f](·, {_tex(group.element_name(h))})"),
            (1, moved[h], colours[source], f"L[r·f](·, {_tex(group.element_name(h))})\n= r·[{_tex(group.element_name(source))}]"),
        ):
            ax = panel(side, h + offset)
            ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            _hide_ticks(ax)
            _frame(ax, colour)
            ax.set_title(label, fontsize=8)
    fig.suptitle(title or f"{group.name}: lifted maps of f and of r·f (r = {rname}), channel {channel}", fontsize=10)
    fig.tight_layout()
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
    fig, axes = _figure(rows, group.order, figsize=(size * group.order + 0.8, size * rows + 0.5))
    for row, w in enumerate(weights):
        w = torch.as_tensor(w).detach().cpu().double()
        if w.dim() == 5:
            w = w[0]  # (heads, G, N, K)
        if w.dim() != 4 or w.shape[1] != group.order:
            raise ValueError(
                f"weights must have shape (1, heads, |H|, N, K) with |H| = {group.order} for {group.name}, "
                f"got {tuple(w.shape)}"
            )
        picture = _to_numpy_image(images[row]) if images is not None else None
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
            _hide_ticks(ax)
            if row == 0:
                ax.set_title(f"h = {_tex(group.element_name(h))}", fontsize=9)
            if h == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[row], fontsize=8)
    fig.suptitle(f"attention weights of one query, head {head}, per group element ({group.name})", fontsize=10)
    fig.tight_layout()
    return fig


def plot_element_errors(
    errors: dict[str, dict[str, dict[int, float]]],
    *,
    tolerance: float | None = 1e-10,
    floor: float = 1e-18,
    title: str | None = None,
    ylabel: str = "relative equivariance error",
    size: float = 0.42,
) -> Figure:
    """Equivariance error per group element, one panel per group, one bar per series (chapters 5, 6).

    Unlike :func:`plot_errors` (one group of bars per layer variant), this draws every element
    of several groups, e.g. the official table against the ``"relative"`` encoding of the group layer
    for all elements of R4, the grid-exact elements of R8 and all of M4, on a shared log axis.

    Args:
        errors: ``{series: {group name: {element: error}}}``, e.g.
            ``{"official": {"r4": equivariance_error(...), ...}, "relative": {...}}``.
            The groups and elements of the first series set the panels and the x axes.
        tolerance: draw this tolerance (``assert_equivariant``'s float64 default) as a dashed
            line; ``None`` for no line.
        floor: an error of exactly 0 is drawn as a hatched bar up to ``floor`` and labelled "0".
        title: a title over the figure.
        ylabel: the y label.
        size: inches per element on the x axis.

    Returns:
        The figure.
    """
    if not errors:
        raise ValueError("plot_element_errors needs at least one series")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    first = next(iter(errors.values()))
    groups = {name: list(elements) for name, elements in first.items()}
    for series, per_group in errors.items():
        if set(per_group) != set(groups):
            raise ValueError(f"series {series!r} has groups {sorted(per_group)}, expected {sorted(groups)}")
    n_series = len(errors)
    width = 0.8 / n_series
    widths = [max(len(elements), 2) for elements in groups.values()]
    fig, axes = _figure(
        1, len(groups), figsize=(size * sum(widths) * max(n_series, 2) / 2 + 1.2, 3.4),
        sharey=True, gridspec_kw={"width_ratios": widths},
    )
    colours = plt.get_cmap("tab10")
    top = floor
    for ax, (name, elements) in zip(axes[0], groups.items()):
        group = get_group(name)
        x = np.arange(len(elements))
        for s, (series, per_group) in enumerate(errors.items()):
            values = np.array([per_group[name].get(h, np.nan) for h in elements], dtype=float)
            top = max(top, float(np.nanmax(values)) if np.isfinite(values).any() else top)
            bars = ax.bar(x + (s - (n_series - 1) / 2) * width, np.where(values == 0, floor, values), width,
                          color=colours(s), label=series)
            for bar, value in zip(bars, values):
                if value == 0:
                    bar.set_hatch("//")
                    bar.set_alpha(0.5)
                    ax.text(bar.get_x() + bar.get_width() / 2, floor * 2, "0", ha="center", va="bottom", fontsize=7)
        if tolerance is not None:
            ax.axhline(tolerance, color="k", ls="--", lw=1)
        ax.set_xticks(x, [_tex(group.element_name(h)) for h in elements], rotation=60, fontsize=8)
        ax.set_title(name, fontsize=9)
    ax0 = axes[0, 0]
    ax0.set_yscale("log")
    ax0.set_ylim(floor / 2, top * 30)
    ax0.set_ylabel(ylabel)
    handles: list[Artist] = [Patch(color=colours(s), label=series) for s, series in enumerate(errors)]
    if tolerance is not None:
        handles.append(Line2D([], [], color="k", ls="--", lw=1, label=f"tolerance {tolerance:.0e}"))
    fig.legend(handles=handles, loc="lower center", ncols=len(handles), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
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
    fig, axes = _figure(figsize=(max(4.0, 0.8 * len(names) + 1.5), 3.2))
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
    y = torch.as_tensor(output).detach().cpu().double()
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
    fig, axes = _figure(1, len(panels), figsize=(size * len(panels) + 0.4, 2.8), sharey=True)
    x = np.arange(G)
    for ax, (name, y) in zip(axes[0], panels.items()):
        y = torch.as_tensor(y).detach().cpu().double()
        top = float(y.abs().max()) or 1.0
        for c, row in enumerate(y.numpy() / top):
            ax.plot(x, row, marker="o", markersize=3, lw=1, color=plt.get_cmap("tab10")(c % 10))
        ax.axhline(0, color="0.7", lw=0.6)
        ax.set_xticks(x, [_tex(n) for n in group.element_names], fontsize=7, rotation=90 if G > 4 else 0)
        ax.set_title(f"{name}\nspread {orientation_spread(y):.1e}", fontsize=8)
        ax.set_xlabel("group element", fontsize=8)
    axes[0, 0].set_ylabel("value / max |value|", fontsize=8)
    axes[0, 0].set_ylim(-1.15, 1.15)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_encoding_study(
    summary: dict[str, dict[str, Any]],
    *,
    title: str | None = None,
) -> Figure:
    """Test accuracy (mean ± std over seeds) against seconds per epoch, one point per variant (chapter 6).

    Args:
        summary: ``{variant: {"test_acc_mean", "test_acc_std", "s_per_epoch_mean", "s_per_epoch_std",
            "seeds", "group"}}``, the ``"summary"`` block of ``load_results("encodings")``. Each point
            is labelled with its variant and its number of seeds.
        title: a title.

    Returns:
        The figure.
    """
    if not summary:
        raise ValueError("plot_encoding_study needs at least one variant")
    needed = ("test_acc_mean", "test_acc_std", "s_per_epoch_mean", "s_per_epoch_std", "seeds")
    for name, row in summary.items():
        missing = [key for key in needed if key not in row]
        if missing:
            raise ValueError(f"variant {name!r} lacks {', '.join(missing)}")
    fig, axes = _figure(figsize=(5.6, 3.6))
    ax = axes[0, 0]
    groups = sorted({str(row.get("group", name)) for name, row in summary.items()})
    colours = {g: plt.get_cmap("tab10")(i) for i, g in enumerate(groups)}
    for name, row in summary.items():
        colour = colours[str(row.get("group", name))]
        ax.errorbar(row["s_per_epoch_mean"], 100 * row["test_acc_mean"], xerr=row["s_per_epoch_std"], yerr=100 * row["test_acc_std"],
                    marker="o", capsize=3, color=colour, label=name)
        ax.annotate(f"{name} (n={row['seeds']})", (row["s_per_epoch_mean"], 100 * row["test_acc_mean"]),
                    textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.set_xlabel("seconds per epoch (CPU)")
    ax.set_ylabel("test accuracy (%)")
    ax.margins(x=0.25, y=0.25)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


__all__ += ["plot_lifted_rotation", "plot_query_attention", "plot_element_errors", "plot_attention_cost"]
__all__ += ["orientation_spread", "plot_orientation_probe", "plot_encoding_study"]


# ---- chapters 7 and 8: GSA-Nets, parameter counts, training -----------------------------------------


def _diagram_box(ax, x: float, y: float, text: str, colour: str, *, width: float = 1.0, height: float = 0.62,
                 fontsize: float = 8) -> None:
    """A rounded box centred at ``(x, y)`` with ``text`` (data coordinates)."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=colour, edgecolor="0.25", linewidth=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _diagram_arrow(ax, start: tuple[float, float], end: tuple[float, float], **kwargs: Any) -> None:
    style = dict(arrowstyle="-|>", color="0.25", lw=1.0, shrinkA=0, shrinkB=0, mutation_scale=9)
    style.update(kwargs)
    ax.annotate("", xy=end, xytext=start, arrowprops=style)


def _diagram_sum(ax, x: float, y: float, r: float = 0.17) -> None:
    from matplotlib.patches import Circle

    ax.add_patch(Circle((x, y), r, facecolor="white", edgecolor="0.25", linewidth=1.0, zorder=3))
    ax.text(x, y, "+", ha="center", va="center", fontsize=10, zorder=4)


def plot_block_diagram(*, norm: str = "LayerNorm", activation: str = "ReLU", mlp_ratio: float = 0.5) -> Figure:
    """Diagram of one GSA-Net block: the attention sub-block and the pointwise MLP, each with a residual (chapter 7).

    Mirrors :class:`gsa_tutorial.layers.TransformerBlock`::

        x ─┬─ norm → act → group self-attention → norm → act → dropout ─┐
           └──────────── identity, or 1x1 if C_in ≠ C_out ───────────────+─ crop → y
        y ─┬─ 1x1 → norm → act → 1x1 → norm ─┐
           └─────────────────────────────────+→ out

    Args:
        norm: the name written in the norm boxes.
        activation: the name written in the activation boxes.
        mlp_ratio: hidden width of the MLP relative to the block width (shown as ``C/2`` for 0.5).

    Returns:
        The figure.
    """
    colours = {"norm": "#dbe9f6", "act": "#fde4c8", "attn": "#f7c6c7", "lin": "#d5ecd4", "misc": "#eeeeee"}
    hidden = "C/2" if mlp_ratio == 0.5 else f"{mlp_ratio:g}C"
    rows = [
        [("norm", norm), ("act", activation), ("attn", "group\nself-attention\n(chapter 6)"), ("norm", norm),
         ("act", activation), ("misc", "dropout")],
        [("lin", f"1x1\nC → {hidden}"), ("norm", norm), ("act", activation), ("lin", f"1x1\n{hidden} → C"), ("norm", norm)],
    ]
    fig, axes = _figure(figsize=(11.0, 4.2))
    ax = axes[0, 0]
    ax.set_xlim(-0.3, 11.6)
    ax.set_ylim(-0.25, 4.35)
    ax.set_aspect("equal")
    ax.set_axis_off()
    step = 1.35
    for r, (row, y) in enumerate(zip(rows, (3.0, 0.85))):
        x0 = 1.5
        name_in, name_out = ("x", "y") if r == 0 else ("y", "out")
        ax.text(0.15, y, name_in, ha="center", va="center", fontsize=11, style="italic")
        _diagram_arrow(ax, (0.35, y), (x0 - 0.5, y))
        xs = [x0 + i * step for i in range(len(row))]
        for (kind, label), x in zip(row, xs):
            is_attn = kind == "attn"
            _diagram_box(ax, x, y, label, colours[kind], width=1.15 if is_attn else 1.0, height=0.9 if is_attn else 0.62,
                         fontsize=7.5 if is_attn else 8)
        half = [0.58 if kind == "attn" else 0.5 for kind, _ in row]  # half widths of the boxes
        for i in range(len(xs) - 1):
            _diagram_arrow(ax, (xs[i] + half[i], y), (xs[i + 1] - half[i + 1], y))
        xsum = xs[-1] + 0.95
        _diagram_arrow(ax, (xs[-1] + 0.5, y), (xsum - 0.17, y))
        _diagram_sum(ax, xsum, y)
        # residual: up from the input, along the top, down into the sum
        top = y + 0.85
        ax.plot([0.6, 0.6, xsum, xsum], [y, top, top, y + 0.42], color="0.25", lw=1.0)
        _diagram_arrow(ax, (xsum, y + 0.42), (xsum, y + 0.17))
        skip = "identity, or 1x1 if C_in ≠ C_out" if r == 0 else "identity"
        ax.text((0.6 + xsum) / 2, top + 0.08, skip, ha="center", va="bottom", fontsize=7.5, color="0.3")
        if r == 0:
            _diagram_arrow(ax, (xsum + 0.17, y), (xsum + 0.55, y))
            _diagram_box(ax, xsum + 1.05, y, "crop", colours["misc"], width=0.9)
            ax.text(xsum + 1.05, y - 0.55, "same on every side", ha="center", va="top", fontsize=6.5, color="0.3")
            _diagram_arrow(ax, (xsum + 1.5, y), (xsum + 1.9, y))
            ax.text(xsum + 2.05, y, name_out, ha="center", va="center", fontsize=11, style="italic")
        else:
            _diagram_arrow(ax, (xsum + 0.17, y), (xsum + 0.65, y))
            ax.text(xsum + 0.85, y, name_out, ha="center", va="center", fontsize=11, style="italic")
    ax.text(0.0, 4.3, "attention sub-block", fontsize=9, weight="bold", va="top")
    ax.text(0.0, 2.0, "pointwise MLP sub-block", fontsize=9, weight="bold", va="top")
    ax.text(11.5, -0.2, "every box maps (B, C, |H|, H, W) to the same kind of map and commutes with the action of H",
            ha="right", va="bottom", fontsize=7, color="0.3")
    fig.tight_layout()
    return fig


def plot_network_diagram(config: Any, image_size: int = 28) -> Figure:
    """The whole GSA-Net of a :class:`~gsa_tutorial.model.GSANetConfig`, left to right, with feature shapes (chapter 7).

    Args:
        config: a :class:`~gsa_tutorial.model.GSANetConfig` (e.g. ``preset("rotmnist", "r4")``).
        image_size: side of the square input image.

    Returns:
        The figure.
    """
    from .groups import get_group as _get_group

    sizes = config.feature_sizes(image_size)  # raises for sizes that break symmetry
    G = _get_group(config.group).order
    stages: list[tuple[str, str, str]] = []  # (kind, label, shape below)
    stages.append(("misc", "image", f"{config.in_channels}×{image_size}²"))
    if config.input_pool > 1:
        side = image_size // config.input_pool
        stages.append(("misc", f"avg pool\n{config.input_pool}x{config.input_pool}", f"{config.in_channels}×{side}²"))
    h0 = sizes[0][0] * (2 if 0 in config.pool_after else 1)
    stages.append(("attn", "lifting\nself-attn\n+ norm, act", f"{config.channels}×{G}×{h0}²"))
    if 0 in config.pool_after:
        stages.append(("misc", "max pool\n2x2", f"{config.channels}×{G}×{sizes[0][0]}²"))
    for i, (width, crop) in enumerate(zip(config.widths, config.crops), start=1):
        pooled = i in config.pool_after
        side_after_block = sizes[i][0] * (2 if pooled else 1)
        label = f"block {i}" + (f"\ncrop {crop}" if crop else "")
        stages.append(("block", label, f"{width}×{G}×{side_after_block}²"))
        if pooled:
            stages.append(("misc", "max pool\n2x2", f"{width}×{G}×{sizes[i][0]}²"))
    pool_group = config.group_pool
    stages.append(("pool", f"mean over\nspace,\n{pool_group} over H", f"{config.widths[-1] if config.num_blocks else config.channels}"))
    stages.append(("lin", "linear", f"{config.num_classes} logits"))
    colours = {"misc": "#eeeeee", "attn": "#f7c6c7", "block": "#e8d5f0", "pool": "#fff2b3", "lin": "#d5ecd4"}
    n = len(stages)
    step = 1.3
    fig, axes = _figure(figsize=(max(6.0, 1.0 * n + 0.6), 2.0))
    ax = axes[0, 0]
    ax.set_xlim(-0.7, (n - 1) * step + 0.7)
    ax.set_ylim(-0.9, 0.75)
    ax.set_aspect("equal")
    ax.set_axis_off()
    for i, (kind, label, shape) in enumerate(stages):
        x = i * step
        _diagram_box(ax, x, 0.0, label, colours[kind], width=1.02, height=0.95, fontsize=7)
        ax.text(x, -0.6, shape, ha="center", va="top", fontsize=6.5, color="0.3")
        if i:
            _diagram_arrow(ax, (x - step + 0.51, 0.0), (x - 0.51, 0.0))
    ax.set_title(f"GSA-Net, group {config.group.upper()} (|H| = {G}); shapes C×|H|×side²", fontsize=9)
    fig.tight_layout()
    return fig


def plot_parameter_counts(
    counts: dict[str, dict[str, int]],
    paper: dict[str, int] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Trainable parameters per preset (one panel each) and per group (one bar each) (chapter 7).

    Args:
        counts: ``{preset: {group: number of parameters}}``, e.g. from
            :func:`gsa_tutorial.model.count_parameters`.
        paper: ``{preset: number}`` reported in the paper, drawn as a dashed line (presets
            missing from it get none), e.g. :data:`gsa_tutorial.model.PAPER_PARAMETERS`.
        title: a title over the figure.

    Returns:
        The figure.
    """
    if not counts or any(not per_group for per_group in counts.values()):
        raise ValueError("plot_parameter_counts needs {preset: {group: count}} with at least one group per preset")
    from matplotlib.ticker import FuncFormatter

    paper = paper or {}
    fig, axes = _figure(1, len(counts), figsize=(2.6 * len(counts) + 0.4, 3.2))
    colours = plt.get_cmap("tab10")

    def short(v: float) -> str:
        return f"{v / 1e6:.2f}M" if v >= 1e6 else (f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}")

    for ax, (name, per_group) in zip(axes[0], counts.items()):
        groups = list(per_group)
        values = np.array([per_group[g] for g in groups], dtype=float)
        x = np.arange(len(groups))
        bars = ax.bar(x, values, color=[colours(i % 10) for i in range(len(groups))])
        for bar, v in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, v / 2, short(v), ha="center", va="center", fontsize=7.5,
                    rotation=90, color="white", weight="bold")
        top = values.max()
        if name in paper:
            ax.axhline(paper[name], color="k", ls="--", lw=1, label=f"paper {short(paper[name])}")
            ax.legend(fontsize=7, loc="upper right")
            top = max(top, paper[name])
        ax.set_ylim(0, top * 1.25)
        ax.set_xticks(x, [g.upper() for g in groups], fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: short(v) if v else "0"))
        ax.tick_params(axis="y", labelsize=7)
    axes[0, 0].set_ylabel("trainable parameters")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_angle(
    curves: dict[str, dict[str, Sequence[float]]],
    *,
    period: float | None = 90.0,
    chance: float | None = 0.1,
    title: str | None = None,
) -> Figure:
    """Test accuracy against the rotation of the test images, one line per model (chapter 8).

    Args:
        curves: ``{label: {"angles": radians, "accuracy": fractions}}``, as returned by
            :func:`gsa_tutorial.train.accuracy_vs_angle`.
        period: draw dotted vertical lines at multiples of this angle (degrees); None for none.
        chance: draw the chance level (e.g. 0.1 for ten classes); None for none.
        title: axes title.

    Returns:
        The figure.
    """
    if not curves:
        raise ValueError("plot_accuracy_vs_angle needs at least one curve")
    fig, axes = _figure(figsize=(6.4, 3.4))
    ax = axes[0, 0]
    top = 0.0
    for label, curve in curves.items():
        angles, accuracy = np.asarray(curve["angles"], dtype=float), np.asarray(curve["accuracy"], dtype=float)
        if angles.shape != accuracy.shape:
            raise ValueError(f"curve {label!r}: {angles.size} angles but {accuracy.size} accuracies")
        degrees = np.degrees(angles)
        ax.plot(degrees, accuracy, marker="o", ms=3.5, lw=1.5, label=label)
        top = max(top, float(degrees.max(initial=0.0)))
    if period:
        for a in np.arange(0.0, top + 1e-9, period):
            ax.axvline(a, color="0.6", ls=":", lw=1)
    if chance is not None:
        ax.axhline(chance, color="0.4", ls="--", lw=1, label="chance")
    ax.set_xlabel("rotation of the test images (degrees)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    if period:
        ax.set_xticks(np.arange(0.0, top + 1e-9, period / 2 if top <= 4 * period else period))
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_training_curves(records: dict[str, Any], *, title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, training (solid) and validation (dashed), one colour per run (chapter 8).

    Args:
        records: ``{label: record}`` with ``record`` the dict returned by
            :func:`gsa_tutorial.train.fit` (or ``metrics.json``), or directly its ``history``:
            a list of rows with ``epoch, train_loss, train_acc, valid_loss, valid_acc``.
        title: a title over the figure.

    Returns:
        The figure.
    """
    if not records:
        raise ValueError("plot_training_curves needs at least one run")
    fig, axes = _figure(1, 2, figsize=(8.4, 3.2))
    colours = plt.get_cmap("tab10")
    for i, (label, record) in enumerate(records.items()):
        history = record["history"] if isinstance(record, dict) else record
        if not history:
            raise ValueError(f"run {label!r} has no epochs")
        epochs = [row["epoch"] for row in history]
        for ax, key in zip(axes[0], ("loss", "acc")):
            ax.plot(epochs, [row[f"train_{key}"] for row in history], color=colours(i), marker="o", ms=3, label=f"{label} train")
            ax.plot(epochs, [row[f"valid_{key}"] for row in history], color=colours(i), marker="s", ms=3, ls="--",
                    label=f"{label} valid")
    axes[0, 0].set_ylabel("cross-entropy")
    axes[0, 1].set_ylabel("accuracy")
    axes[0, 1].set_ylim(0, 1.02)
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0, 1].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


__all__ += [
    "plot_block_diagram",
    "plot_network_diagram",
    "plot_parameter_counts",
    "plot_accuracy_vs_angle",
    "plot_training_curves",
]


# ---- chapter 9: cost and approximate equivariance ------------------------------------------------


def plot_cost_sweep(
    labels: Sequence[str | int],
    times: dict[str, Sequence[float | None]],
    peaks: dict[str, Sequence[float | None]],
    *,
    xlabel: str,
    title: str | None = None,
) -> Figure:
    """Time and peak memory of several implementations against one swept quantity (chapter 9).

    Two panels on log axes: seconds per forward+backward step, and peak memory in MB. A missing
    measurement (``None`` or NaN, e.g. a dense run that did not fit) leaves a gap. The first
    series is taken as the reference of the ratios printed under the points of the others.

    Args:
        labels: the x values, e.g. ``["z2", "r4", "r8"]`` or window sizes ``[3, 5, 7]``.
        times: ``{series: seconds per label}``, e.g. ``{"dense": [...], "fast": [...]}``.
        peaks: ``{series: peak bytes per label}`` (same series).
        xlabel: the x-axis label.
        title: a title over both panels.

    Returns:
        The figure.
    """
    labels = list(labels)
    for name, values in list(times.items()) + list(peaks.items()):
        if len(values) != len(labels):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(labels)} labels {labels}")
    fig, axes = _figure(1, 2, figsize=(max(7.0, 1.1 * len(labels) + 4.5), 3.3), layout="constrained")
    x = np.arange(len(labels))
    colours = plt.get_cmap("tab10")
    for ax, data, ylabel, scale in ((axes[0, 0], times, "seconds per step (fwd + bwd)", 1.0),
                                    (axes[0, 1], peaks, "peak memory (MB)", 1e-6)):
        reference = None
        for i, (name, values) in enumerate(data.items()):
            vals = np.array([np.nan if v is None else float(v) * scale for v in values])
            ax.plot(x, vals, "o-", color=colours(i), label=name)
            if reference is None:
                reference = vals
                continue
            for xi, v, r in zip(x, vals, reference):
                if np.isfinite(v) and np.isfinite(r) and v > 0:
                    ax.annotate(f"{v / r:.2g}×", (xi, v), xytext=(0, -11), textcoords="offset points",
                                ha="center", fontsize=7, color=colours(i))
        ax.set_yscale("log")
        ax.set_xticks(x, [str(v) for v in labels])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_angle_errors(
    errors: dict[str, dict[str | float, float]],
    *,
    exact: dict[str, dict[str | float, float]] | None = None,
    floor: float = 1e-17,
    title: str | None = None,
) -> Figure:
    """Relative equivariance error against the rotation angle, one marker style per group (chapter 9).

    Args:
        errors: ``{group: {angle in degrees: error}}`` (angles may be strings, as in JSON), e.g.
            from :func:`gsa_tutorial.profiling.nongrid_equivariance_errors`.
        exact: optional errors of the grid-exact angles (0°, 90°, ...), drawn in grey; an error of
            exactly 0 is drawn at ``floor``.
        floor: where zeros are drawn on the log axis.
        title: a title.

    Returns:
        The figure.
    """
    fig, axes = _figure(figsize=(6.4, 3.2), layout="constrained")
    ax = axes[0, 0]
    markers = "osD^v<>"
    for i, (name, per_angle) in enumerate(errors.items()):
        angles = [float(a) for a in per_angle]
        ax.plot(angles, list(per_angle.values()), markers[i % len(markers)], label=name, alpha=0.8)
    if exact:
        for per_angle in exact.values():
            ax.plot([float(a) for a in per_angle], [max(v, floor) for v in per_angle.values()], "x", color="0.5")
        ax.plot([], [], "x", color="0.5", label="grid-exact angles")
        ax.axhline(np.finfo(np.float64).eps, color="gray", ls="--", lw=1, label="float64 round-off")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(0, 361, 45))
    ax.set_xlabel("rotation angle (degrees)")
    ax.set_ylabel("relative equivariance error")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncols=2)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


__all__ += ["plot_cost_sweep", "plot_angle_errors"]
