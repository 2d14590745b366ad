"""Diagrams of a GSA-Net (chapter 7): one block, and the whole network from its stage list."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from ..groups import get_group
from ._base import figure


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
    fig, axes = figure(figsize=(11.0, 4.2))
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

    One box per entry of :meth:`~gsa_tutorial.model.GSANetConfig.stages` (the list the network is
    built from), with the shape of the map after it.

    Args:
        config: a :class:`~gsa_tutorial.model.GSANetConfig` (e.g. ``preset("rotmnist", "r4")``).
        image_size: side of the square input image.

    Returns:
        The figure.
    """
    G = get_group(config.group).order
    boxes: list[tuple[str, str, str]] = []  # (colour kind, label, shape below)
    for stage in config.stages(image_size):  # raises for sizes that break symmetry
        side = stage.size[0] if stage.size is not None else 0
        if stage.kind == "input":
            boxes.append(("misc", "image", f"{stage.in_channels}×{image_size}²"))
            if stage.pool > 1:
                boxes.append(("misc", f"avg pool\n{stage.pool}x{stage.pool}", f"{stage.out_channels}×{side}²"))
        elif stage.kind == "lifting":
            boxes.append(("attn", "lifting\nself-attn\n+ norm, act", f"{stage.out_channels}×{G}×{side}²"))
        elif stage.kind == "pool":
            boxes.append(("misc", "max pool\n2x2", f"{stage.out_channels}×{G}×{side}²"))
        elif stage.kind == "block":
            label = f"block {stage.block}" + (f"\ncrop {stage.crop}" if stage.crop else "")
            boxes.append(("block", label, f"{stage.out_channels}×{G}×{side}²"))
        else:  # head
            boxes.append(("pool", f"mean over\nspace,\n{config.group_pool} over H", f"{stage.in_channels}"))
            boxes.append(("lin", "linear", f"{stage.out_channels} logits"))
    colours = {"misc": "#eeeeee", "attn": "#f7c6c7", "block": "#e8d5f0", "pool": "#fff2b3", "lin": "#d5ecd4"}
    n = len(boxes)
    step = 1.3
    fig, axes = figure(figsize=(max(6.0, 1.0 * n + 0.6), 2.0))
    ax = axes[0, 0]
    ax.set_xlim(-0.7, (n - 1) * step + 0.7)
    ax.set_ylim(-0.9, 0.75)
    ax.set_aspect("equal")
    ax.set_axis_off()
    for i, (kind, label, shape) in enumerate(boxes):
        x = i * step
        _diagram_box(ax, x, 0.0, label, colours[kind], width=1.02, height=0.95, fontsize=7)
        ax.text(x, -0.6, shape, ha="center", va="top", fontsize=6.5, color="0.3")
        if i:
            _diagram_arrow(ax, (x - step + 0.51, 0.0), (x - 0.51, 0.0))
    ax.set_title(f"GSA-Net, group {config.group.upper()} (|H| = {G}); shapes C×|H|×side²", fontsize=9)
    fig.tight_layout()
    return fig
