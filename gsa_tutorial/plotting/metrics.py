"""Figures of measurements (chapters 3 to 9): equivariance errors, parameter counts,
training curves, accuracy against angle, cost sweeps and the encoding study."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure

from ..groups import get_group
from ._base import figure, tex


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
    fig, axes = figure(figsize=(1.2 + 0.65 * len(labels) * max(n_series, 2), 3.4), layout="constrained")
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
    fig, axes = figure(
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
        ax.set_xticks(x, [tex(group.element_name(h)) for h in elements], rotation=60, fontsize=8)
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
    fig, axes = figure(figsize=(5.6, 3.6))
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
    fig, axes = figure(1, len(counts), figsize=(2.6 * len(counts) + 0.4, 3.2))
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
    fig, axes = figure(figsize=(6.4, 3.4))
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
    fig, axes = figure(1, 2, figsize=(8.4, 3.2))
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
    fig, axes = figure(1, 2, figsize=(max(7.0, 1.1 * len(labels) + 4.5), 3.3), layout="constrained")
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
            from :func:`gsa_tutorial.offgrid.nongrid_equivariance_errors`.
        exact: optional errors of the grid-exact angles (0°, 90°, ...), drawn in grey; an error of
            exactly 0 is drawn at ``floor``.
        floor: where zeros are drawn on the log axis.
        title: a title.

    Returns:
        The figure.
    """
    fig, axes = figure(figsize=(6.4, 3.2), layout="constrained")
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
