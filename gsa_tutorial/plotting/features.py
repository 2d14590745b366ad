"""Figures of images and feature maps (chapters 1, 2, 4 and 5): images side by side, an image
acted on by a group, lifted maps per group element, positional encodings over the window."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..actions import act_on_image
from ..groups import Group, get_group
from ._base import element_colours, figure, frame, hide_ticks, image_array, tex, to_numpy


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
    arrays = [image_array(im) for im in images]
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
    fig, axes = figure(nrows, ncols, figsize=(size * ncols, row_height * nrows + (0.4 if suptitle else 0)))
    for i, ax in enumerate(axes.flat):
        hide_ticks(ax)
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
    x = torch.from_numpy(to_numpy(f))
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
    fig, axes = figure(channels, group.order, figsize=(size * group.order, size * channels + (0.4 if title else 0)))
    for c in range(channels):
        for g in group.elements:
            ax = axes[c, g]
            ax.imshow(x[c, g].numpy(), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            hide_ticks(ax)
            if c == 0:
                ax.set_title(f"g = {group.element_name(g)}", fontsize=9)
            if g == 0:
                ax.set_ylabel(f"channel {c}", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _lifted_channel(f: torch.Tensor, group: Group, channel: int, what: str) -> np.ndarray:
    """``(G, H, W)`` numpy maps of one channel of a lifted map ``(1, C, G, H, W)`` or ``(C, G, H, W)``."""
    x = torch.from_numpy(to_numpy(f))
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
    colours = element_colours(group.order)
    with_images = image is not None and image_moved is not None
    offset = 1 if with_images else 0
    n_el = group.order + offset
    vmin, vmax = float(min(maps.min(), moved.min())), float(max(maps.max(), moved.max()))
    if layout == "rows":
        fig, axes = figure(n_el, 2, figsize=(2 * size + 1.0, size * n_el + 0.5))
        panel = lambda side, e: axes[e, side]  # noqa: E731  side 0 = f, 1 = r·f
    else:
        fig, axes = figure(2, n_el, figsize=(size * n_el + 0.6, 2 * size + 1.6))
        panel = lambda side, e: axes[side, e]  # noqa: E731
    rname = tex(group.element_name(r))
    if with_images:
        assert image is not None and image_moved is not None
        pictures = [image_array(image), image_array(image_moved)]
        lo, hi = min(p.min() for p in pictures), max(p.max() for p in pictures)
        for side, (pic, label) in enumerate(zip(pictures, ["input f", f"input r·f, r = {rname}"])):
            ax = panel(side, 0)
            ax.imshow(pic, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            hide_ticks(ax)
            ax.set_title(label, fontsize=8)
    for h in group.elements:
        source = group.compose(r_inv, h)
        for side, data, colour, label in (
            (0, maps[h], colours[h], f"L[f](·, {tex(group.element_name(h))})"),
            (1, moved[h], colours[source], f"L[r·f](·, {tex(group.element_name(h))})\n= r·[{tex(group.element_name(source))}]"),
        ):
            ax = panel(side, h + offset)
            ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            hide_ticks(ax)
            frame(ax, colour)
            ax.set_title(label, fontsize=8)
    fig.suptitle(title or f"{group.name}: lifted maps of f and of r·f (r = {rname}), channel {channel}", fontsize=10)
    fig.tight_layout()
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
            like :func:`gsa_tutorial.windows.window_offsets` (row 0 is the top of the window).
        group: the group H, used for the panel titles.
        elements: which element each map belongs to (default: ``0 .. len(maps)-1``).
        title: figure title.
        cmap: a diverging colour map, centred at 0.

    Returns:
        The matplotlib Figure.
    """
    group = get_group(group)
    m = torch.from_numpy(to_numpy(maps))
    if m.dim() != 3 or m.shape[-1] != m.shape[-2]:
        raise ValueError(f"maps must have shape (G, k, k), got {tuple(m.shape)}")
    elements = list(range(m.shape[0]) if elements is None else elements)
    if len(elements) != m.shape[0]:
        raise ValueError(f"{m.shape[0]} maps for {len(elements)} elements")
    ncols = min(len(elements), 4)
    nrows = -(-len(elements) // ncols)
    fig, axes = figure(nrows, ncols, figsize=(2.3 * ncols + 0.6, 2.3 * nrows + (0.3 if title else 0)), layout="constrained")
    vmax = float(m.abs().max()) or 1.0
    for ax in axes.flat[len(elements) :]:
        ax.axis("off")
    im = None
    for ax, h, img in zip(axes.flat, elements, m):
        im = ax.imshow(img.numpy(), cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
        k = img.shape[-1]
        ax.plot(k // 2, k // 2, marker="+", color="black", markersize=8)
        ax.set_title(f"h = {tex(group.element_name(h))}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
