"""Figures of groups acting on the plane (chapters 2, 4 and 6): orbits, Cayley tables, the
regular representation, window offsets seen through each element, index tables."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..actions import act_on_coordinates
from ..groups import Group, get_group
from ..positional import transformed_offsets
from ..windows import window_offsets
from ._base import figure, tex


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
    fig, axes = figure(figsize=(size, size))
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
    fig, axes = figure(figsize=(size, size))
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
    fig, axes = figure(figsize=(size, size))
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
    group = get_group(group)
    elements = list(group.elements if elements is None else elements)
    offsets = window_offsets(window)  # (K, 2)
    moved = transformed_offsets(group, offsets)  # (G, K, 2)
    ncols = min(len(elements), 4)
    nrows = -(-len(elements) // ncols)
    fig, axes = figure(nrows, ncols, figsize=(2.4 * ncols, 2.5 * nrows + 0.3), layout="constrained")
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
        ax.set_title(f"h = {tex(group.element_name(h))}: {int((~off).sum())}/{len(pts)} on grid", fontsize=8)
        ax.set_xlim(-r - 0.5, r + 0.5)
        ax.set_ylim(-r - 0.5, r + 0.5)
        ax.set_aspect("equal")
        ax.set_xticks(grid[1:-1])
        ax.set_yticks(grid[1:-1])
        ax.tick_params(labelsize=6)
    fig.suptitle(f"$h^{{-1}}(x_j - x_i)$ for a {window}x{window} window, H = {group.name}", fontsize=10)
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
    names = [tex(n) for n in group.element_names]
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
    fig, axes = figure(1, len(checked), figsize=(max(cell * G, 1.6) * len(checked) + 0.8, max(cell * G, 1.6) + 1.1), layout="constrained")
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
