"""Tiny deterministic test images for the book (chapters 1 and 2).

Nothing here is downloaded or read from disk: the images are drawn with numpy, so the
chapters run offline and in Colab. They are chosen to make symmetries *visible*:

* :func:`sample_image` draws an asymmetric letter ("F" or "R"). No element of D_4 other
  than the identity maps it to itself, so every rotation and mirror shows.
* :func:`gaussian_image` evaluates an (anisotropic, possibly off-centre) Gaussian bump at
  the pixel centres. It is smooth and known in closed form, so an interpolated rotation can
  be compared with the *analytic* rotation of the bump.
* :func:`disk_mask` zeroes the corners, which leave the image under non-grid rotations.

All coordinates follow :mod:`gsa_tutorial.actions` (x right, y up, origin at the image centre).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .actions import pixel_coordinates

__all__ = ["SAMPLE_KINDS", "sample_image", "gaussian_image", "disk_mask"]

#: The shapes :func:`sample_image` can draw.
SAMPLE_KINDS = ("F", "R")

_SUPERSAMPLE = 4  # sub-pixels per pixel side: soft, anti-aliased edges (kinder to interpolation)


def _letter_f(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Indicator of the letter F in the unit box; ``u`` right, ``v`` *down*, both in [0, 1]."""
    stem = (u >= 0.22) & (u <= 0.40) & (v >= 0.12) & (v <= 0.88)
    top = (u >= 0.22) & (u <= 0.78) & (v >= 0.12) & (v <= 0.28)
    middle = (u >= 0.22) & (u <= 0.64) & (v >= 0.44) & (v <= 0.58)
    return stem | top | middle


def _letter_r(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Indicator of the letter R in the unit box (stem, bowl, leg); ``v`` points down."""
    stem = (u >= 0.22) & (u <= 0.38) & (v >= 0.12) & (v <= 0.88)
    bars = (u >= 0.22) & (u <= 0.50) & (((v >= 0.12) & (v <= 0.26)) | ((v >= 0.46) & (v <= 0.60)))
    radius = np.hypot(u - 0.50, v - 0.36)
    bowl = (u >= 0.50) & (radius >= 0.10) & (radius <= 0.24)
    # leg: a thick segment from (0.46, 0.56) to (0.76, 0.88)
    a = np.array([0.46, 0.56])
    d = np.array([0.76, 0.88]) - a
    t = np.clip(((u - a[0]) * d[0] + (v - a[1]) * d[1]) / (d @ d), 0.0, 1.0)
    leg = np.hypot(u - a[0] - t * d[0], v - a[1] - t * d[1]) <= 0.075
    return stem | bars | bowl | leg


def sample_image(size: int = 28, kind: str = "F", *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An asymmetric letter on a black background, values in ``[0, 1]``.

    The letter fills the central part of the image (it stays inside the inscribed disk,
    so rotations by any angle keep it whole). Edges are anti-aliased by averaging
    ``4 x 4`` sub-pixels. The result is the same on every machine.

    Args:
        size: height = width in pixels (at least 8).
        kind: ``"F"`` or ``"R"`` (case-insensitive), see :data:`SAMPLE_KINDS`.
        dtype: a floating dtype.

    Returns:
        A tensor of shape ``(1, 1, size, size)``.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise ValueError(f"size must be an integer >= 8 (pixels per side), got {size!r}")
    key = str(kind).upper()
    letters = {"F": _letter_f, "R": _letter_r}
    if key not in letters:
        raise ValueError(f"unknown sample image kind {kind!r}: expected one of {', '.join(SAMPLE_KINDS)}")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating dtype such as torch.float32, got {dtype}")
    s = _SUPERSAMPLE
    fine = (np.arange(size * s) + 0.5) / (size * s)  # sub-pixel centres in (0, 1)
    # shrink the unit box so the letter lies inside the disk inscribed in the image
    margin = 0.16
    box = (fine - margin) / (1 - 2 * margin)
    u, v = np.meshgrid(box, box, indexing="xy")  # (size*s, size*s): u along columns, v along rows
    ink = letters[key](u, v).astype(np.float64)
    pixels = ink.reshape(size, s, size, s).mean(axis=(1, 3))  # (size, size)
    return torch.as_tensor(pixels, dtype=dtype).reshape(1, 1, size, size)  # (1, 1, H, W)


def gaussian_image(
    size: int = 33,
    *,
    centre: tuple[float, float] = (0.0, 0.0),
    sigma: tuple[float, float] = (4.0, 4.0),
    angle: float = 0.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A Gaussian bump ``exp(-|S⁻¹ R_{-angle} (p - centre)|² / 2)`` sampled at the pixel centres.

    Rotating this image by ``θ`` about the origin (analytically) gives the bump with
    ``centre`` rotated by ``θ`` and ``angle + θ``; chapter 2 uses that to measure the error
    of interpolated rotations.

    Args:
        size: height = width in pixels.
        centre: ``(x, y)`` of the peak in pixel units (x right, y up, 0 = image centre).
        sigma: standard deviations along the bump's own axes, in pixels.
        angle: orientation of the bump's first axis, radians counter-clockwise.
        dtype: a floating dtype.

    Returns:
        A tensor of shape ``(1, 1, size, size)`` with peak value 1 (if the peak is on a pixel).
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if (
        not isinstance(sigma, (tuple, list))
        or len(sigma) != 2
        or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in sigma)
    ):
        raise ValueError(f"sigma must be two finite positive numbers (sx, sy) in pixels, got {sigma!r}")
    if not (isinstance(centre, (tuple, list)) and len(centre) == 2 and all(math.isfinite(float(v)) for v in centre)):
        raise ValueError(f"centre must be two finite numbers (x, y) in pixels, got {centre!r}")
    if not math.isfinite(float(angle)):
        raise ValueError(f"angle must be a finite number (radians), got {angle!r}")
    p = pixel_coordinates(size, size, dtype=torch.float64) - torch.tensor(centre, dtype=torch.float64)  # (H, W, 2)
    c, s = math.cos(angle), math.sin(angle)
    local = p @ torch.tensor([[c, -s], [s, c]], dtype=torch.float64)  # (H, W, 2): R_{-angle} p
    z = local / torch.tensor(sigma, dtype=torch.float64)
    img = torch.exp(-0.5 * (z**2).sum(-1))  # (H, W)
    return img.to(dtype).reshape(1, 1, size, size)  # (1, 1, H, W)


def disk_mask(size: int, *, radius: float | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """1 inside the disk of ``radius`` pixels around the image centre, 0 outside.

    Multiplying an image by it removes the corners, which any non-grid rotation pushes out
    of (or pulls into) the image. ``radius`` defaults to ``size / 2`` (the inscribed disk).

    Returns:
        A tensor of shape ``(1, 1, size, size)``.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius <= 0):
        raise ValueError(f"radius must be a finite number > 0 (pixels) or None (size / 2), got {radius!r}")
    r = size / 2 if radius is None else float(radius)
    p = pixel_coordinates(size, size, dtype=torch.float64)  # (H, W, 2)
    inside = p.norm(dim=-1) <= r
    return inside.to(dtype).reshape(1, 1, size, size)  # (1, 1, H, W)
