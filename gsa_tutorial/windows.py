"""Local windows: how a ``k x k`` neighbourhood is laid out, gathered, masked and scattered back.

Legend: ``k`` window size (odd), ``p = k // 2``, ``K = k*k`` window entries, ``N = H*W`` query
pixels (row-major), ``P = (H + 2p)(W + 2p)`` pixels of the map zero-padded by ``p``.

**The convention** (one for the whole package). Entry ``a * k + b`` of a window is the key
``a - p`` rows below and ``b - p`` columns right of the query (row-major from the window's top
left corner, the order of :func:`torch.nn.functional.unfold`). As a relative position
``x_j - x_i`` in the plane (``x`` right, ``y`` up, :func:`gsa_tutorial.actions.pixel_coordinates`)
that entry is :func:`window_offsets`\\ ``[a * k + b]``.

**The mechanism** (one for every layer and figure). Every key of every query has a place in the
map zero-padded by ``p`` on each side, :func:`neighbour_index`. Gathering the windows is one
``index_select`` of that index along the flattened padded pixel axis (:func:`gather_windows`):
keys outside the image read the zero padding, and :func:`inside_mask` says which they are (the
attention layers mask them out of the softmax, chapter 3). :func:`window_to_image` is the
inverse scatter: it writes one query's window back onto the image grid (for pictures).

Why ``pad + index_select`` and not ``F.unfold``: it works on any layout (the pixel axes may sit
anywhere; with the channels after them it copies whole channel vectors, which is what the group
layer needs, chapter 9), and the same index gives the mask and the scatter. Measured once on one
CPU thread for the rotMNIST layer (28x28, 20 channels, ``k = 5``, batch 1 and 16): on
channels-last maps it takes 0.3-0.5x the time of ``unfold`` forward and 0.7-1.3x forward +
backward; on channels-first maps ``unfold`` is faster (1.3-2.4x), so the layers gather
channels-last maps. The whole lifting layer of the rotMNIST preset (batch 8, forward +
backward) went from 1.03 s (``unfold``) to 0.91 s, with the same numbers bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_window
from .actions import pixel_coordinates

__all__ = [
    "window_offsets",
    "neighbour_index",
    "inside_mask",
    "pad_for_windows",
    "gather_windows",
    "unfold_neighbourhood",
    "window_to_image",
]


def window_offsets(window: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Offsets ``x_j - x_i`` of a centred ``window x window`` neighbourhood as ``(x, y)`` (y up).

    The order is the window convention of this module (row-major, as
    :func:`torch.nn.functional.unfold`): entry ``a * window + b`` is the key ``a`` rows and ``b``
    columns from the window's top left corner.

    Shape:
        ``(K, 2)`` with ``K = window**2``.
    """
    check_window(window, allow_none=False)
    return pixel_coordinates(window, window, dtype=dtype).reshape(-1, 2)  # (k, k, 2) -> (K, 2)


def _key_positions(height: int, width: int, window: int, device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column in the image of key ``k`` of query ``n`` (outside the image where the window is).

    Shape: two ``(N, K)`` long tensors.
    """
    p = window // 2
    rows = torch.arange(height, device=device).view(-1, 1, 1, 1)  # query row
    cols = torch.arange(width, device=device).view(1, -1, 1, 1)  # query column
    dy = torch.arange(window, device=device).view(1, 1, -1, 1) - p  # window row - p
    dx = torch.arange(window, device=device).view(1, 1, 1, -1) - p  # window column - p
    N, K = height * width, window * window
    key_rows = (rows + dy).expand(height, width, window, window).reshape(N, K)  # (H, W, k, k) -> (N, K)
    key_cols = (cols + dx).expand(height, width, window, window).reshape(N, K)  # (N, K)
    return key_rows, key_cols


def neighbour_index(height: int, width: int, window: int, device: torch.device | None = None) -> torch.Tensor:
    """Where key ``k`` of query ``n`` sits in the map zero-padded by ``window // 2`` on every side.

    ``index[n, k]`` is a flat row-major index into the ``(H + 2p) x (W + 2p)`` padded map
    (:func:`pad_for_windows`), with ``k`` in the order of :func:`window_offsets`.
    ``padded.index_select(pixel_axis, index.view(-1))`` gathers every window, query pixels first
    (:func:`gather_windows`).

    Shape:
        ``(N, K)`` long, ``N = H*W``, ``K = window**2``.
    """
    p = window // 2
    key_rows, key_cols = _key_positions(height, width, window, device)  # (N, K) each
    return (key_rows + p) * (width + 2 * p) + key_cols + p  # (N, K)


def inside_mask(height: int, width: int, window: int, device: torch.device | None = None) -> torch.Tensor:
    """``mask[n, k]`` is True where key ``k`` of query ``n`` lies inside the ``height x width`` image.

    Shape:
        ``(N, K)`` bool.
    """
    key_rows, key_cols = _key_positions(height, width, window, device)  # (N, K) each
    return (key_rows >= 0) & (key_rows < height) & (key_cols >= 0) & (key_cols < width)


def pad_for_windows(x: torch.Tensor, window: int, dim: int = -2) -> torch.Tensor:
    """Zero-pad the pixel axes ``(dim, dim + 1)`` (height, width) by ``window // 2`` and flatten them.

    Shape:
        ``(..., H, W, ...)`` -> ``(..., P, ...)`` with ``P = (H + 2p)(W + 2p)`` (row-major).
    """
    dim = dim % x.dim()
    p = window // 2
    after = x.dim() - dim - 2  # axes after the width axis
    padded = F.pad(x, (0, 0) * after + (p, p, p, p))  # (..., H + 2p, W + 2p, ...)
    return padded.flatten(dim, dim + 1)  # (..., P, ...)


def gather_windows(x: torch.Tensor, window: int, dim: int = -2) -> torch.Tensor:
    """The ``window x window`` neighbourhood of every pixel, zero outside the image.

    Args:
        x: a map whose height and width are the axes ``dim`` and ``dim + 1``.
        window: the odd window size ``k``.
        dim: the height axis.

    Shape:
        ``(..., H, W, ...)`` -> ``(..., N, K, ...)`` with ``N = H*W`` query pixels (row-major) and
        ``K = k*k`` keys in the order of :func:`window_offsets`.
    """
    dim = dim % x.dim()
    H, W = x.shape[dim], x.shape[dim + 1]
    # Key-major (K, N) order: the backward pass (a scatter-add) then sums the contributions to
    # each pixel in window order, as the backward of F.unfold does: the same gradients, bit for bit.
    index = neighbour_index(H, W, window, x.device).t().reshape(-1)  # (K*N,)
    windows = pad_for_windows(x, window, dim).index_select(dim, index)  # (..., K*N, ...)
    return windows.unflatten(dim, (window * window, H * W)).transpose(dim, dim + 1)  # (..., N, K, ...)


def unfold_neighbourhood(x: torch.Tensor, window: int) -> torch.Tensor:
    """The windows of a channels-first map: :func:`gather_windows` with the pixel axes last.

    Shape:
        x ``(B, C, H, W)`` -> ``(B, C, N, K)`` with ``N = H*W`` (row-major) and ``K = window**2``
        in the order of :func:`window_offsets` (the numbers of ``F.unfold``, laid out per pixel).
    """
    return gather_windows(x, window, dim=-2)


def window_to_image(weights: torch.Tensor, query: tuple[int, int], height: int, width: int) -> torch.Tensor:
    """Scatter one query's window (e.g. of attention weights) onto the image grid (chapter 3).

    The inverse of :func:`gather_windows` for one query: entry ``a * k + b`` of ``weights`` goes
    to the key ``a - k//2`` rows and ``b - k//2`` columns away from the query (the order of
    :func:`window_offsets`); keys that fall outside the image are dropped (the layers give them
    weight 0 anyway).

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
    k = int(round(w.shape[0] ** 0.5))
    if k * k != w.shape[0] or k % 2 == 0:
        raise ValueError(f"the number of weights {w.shape[0]} is not the square of an odd window size")
    n = row * width + col
    key_rows, key_cols = (t[n] for t in _key_positions(height, width, k, None))  # (K,) each
    inside = inside_mask(height, width, k)[n]  # (K,)
    out = torch.zeros(height, width, dtype=w.dtype)
    out[key_rows[inside], key_cols[inside]] = w[inside]
    return out
