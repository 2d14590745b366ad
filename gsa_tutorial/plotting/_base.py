"""The small base of :mod:`gsa_tutorial.plotting`: a figure helper, the one tensor-to-numpy
converter, tick hiding and the naming and colouring of group elements."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch


def figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, **kwargs: Any):
    """``plt.subplots`` that returns ``(fig, axes)`` with ``axes`` always a 2-D array, detached from pyplot."""
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, **kwargs)
    plt.close(fig)  # the caller owns the figure; pyplot forgets it (no double display, no leak)
    return fig, axes


def to_numpy(x: Any) -> np.ndarray:
    """The one converter: a tensor (detached, moved to the CPU) or array-like as a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def image_array(image: Any, *, gray: bool = False) -> np.ndarray:
    """An image as a 2-D ``(H, W)`` or RGB ``(H, W, 3)`` array.

    ``gray=False``: ``(H, W)``, ``(C, H, W)`` with ``C`` in (1, 3), or those with leading singleton
    axes. ``gray=True``: ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)``, the first sample's mean
    over channels.
    """
    a = to_numpy(image)
    if gray:
        while a.ndim > 2:
            a = a[0] if a.ndim == 4 else a.mean(0)
        return a
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]  # drop leading singleton axes: (1, 1, H, W) -> (H, W)
    if a.ndim == 3 and a.shape[0] == 3:
        a = np.moveaxis(a, 0, -1)  # (3, H, W) -> (H, W, 3)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3):
        return a
    raise ValueError(
        f"expected an image of shape (H, W), (C, H, W) with C in (1, 3), or (1, C, H, W); got {tuple(np.shape(image))}"
    )


def hide_ticks(ax) -> None:
    """No ticks on either axis (for pictures)."""
    ax.set_xticks([])
    ax.set_yticks([])


def tex(name: str) -> str:
    """A group element's name (``"r^1 s"``) as matplotlib math text (``"$r^1\\,s$"``)."""
    return "$" + name.replace(" ", r"\,") + "$"


def element_colours(order: int) -> np.ndarray:
    """One distinct colour per group element, ``(G, 4)`` RGBA."""
    cmap = plt.get_cmap("tab10" if order <= 10 else "tab20")
    return np.asarray([cmap(g % cmap.N) for g in range(order)])


def frame(ax, colour, width: float = 3.0) -> None:
    """Draw the axes' frame in ``colour``."""
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)
