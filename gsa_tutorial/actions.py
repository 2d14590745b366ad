"""How a group element ``h`` acts on coordinates, images and lifted feature maps (chapter 2).

This is the ONE module that knows the conventions; every other module calls it.

Conventions
-----------
* A pixel at ``(row, col)`` of an ``H x W`` image sits at the plane coordinates
  ``x = col - (W - 1) / 2`` (right) and ``y = (H - 1) / 2 - row`` (up): the centre of the
  image is the origin, for odd and even sizes alike.
* ``matrix(h)`` acts on column vectors ``(x, y)``; a positive rotation is counter-clockwise
  on screen.
* Images transform as functions on the plane, ``(h·f)(x) = f(h⁻¹ x)``: the picture moves
  *with* ``h``. The generator of C4 (``r``, +90°) acting on an image equals
  ``torch.rot90(f, 1, dims=(-2, -1))``; the mirror ``s`` of D_n equals ``torch.flip(f, (-1,))``.
* Lifted features ``f(x, g)`` (shape ``(B, C, |H|, H, W)``) transform with the *regular*
  representation: ``(h·f)(x, g) = f(h⁻¹ x, h⁻¹ g)``: the spatial maps move and the group
  axis is permuted.

Grid-exact elements (multiples of 90°, mirrors) move pixels exactly; other rotations
resample the image bilinearly (approximate; values outside the image are zero).

Shapes: ``B`` batch, ``C`` channels, ``G = |H|`` group size, ``H, W`` height and width.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .groups import Group, get_group

__all__ = [
    "pixel_coordinates",
    "act_on_coordinates",
    "act_on_image",
    "act_on_lifted",
    "group_permutation",
]


def pixel_coordinates(height: int, width: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Plane coordinates ``(x, y)`` of every pixel, shape ``(H, W, 2)`` (x right, y up, centred)."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"pixel_coordinates needs a positive integer {name} (pixels), got {value!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"pixel_coordinates needs a floating dtype such as torch.float64, got {dtype!r}")
    rows = torch.arange(height, dtype=dtype)
    cols = torch.arange(width, dtype=dtype)
    y = (height - 1) / 2 - rows  # (H,)
    x = cols - (width - 1) / 2  # (W,)
    return torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)  # (H, W, 2)


def act_on_coordinates(group: Group | str, h: int, coords: torch.Tensor) -> torch.Tensor:
    """Apply ``h`` to points ``coords[..., :] = (x, y)``; returns ``matrix(h) @ coords``.

    Shape:
        coords ``(..., 2)`` -> ``(..., 2)``, same dtype.
    """
    group = get_group(group)
    if coords.shape[-1] != 2:
        raise ValueError(f"coordinates must have a last axis of size 2 (x, y), got shape {tuple(coords.shape)}")
    if not (coords.is_floating_point() or coords.is_complex()) and not group.is_grid_exact(h):
        # an integer matrix would truncate cos/sin to 0 and silently give wrong points
        raise TypeError(
            f"element {h} of {group.name} is not a multiple of 90°: pass floating-point coordinates, "
            f"got dtype {coords.dtype}"
        )
    m = torch.as_tensor(group.matrix(h), dtype=coords.dtype, device=coords.device)
    return coords @ m.T


def _quarter_turns(group: Group, h: int) -> tuple[int, bool]:
    """For a grid-exact ``h``: ``h = rot(90° * q) ∘ mirror^m``; returns ``(q, m)``."""
    m = group.matrix(h)
    mirrored = bool(np.linalg.det(m) < 0)
    rot = m @ np.diag([-1.0, 1.0]) if mirrored else m  # remove the mirror s (its own inverse)
    q = int(round(np.arctan2(rot[1, 0], rot[0, 0]) / (np.pi / 2))) % 4
    return q, mirrored


def _check_image(x: torch.Tensor, what: str, rank: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != rank:
        layout = "(B, C, H, W)" if rank == 4 else "(B, C, |H|, H, W)"
        raise ValueError(f"{what} must have shape {layout}, got a tensor of shape {tuple(x.shape)}")


def _spatial(group: Group, h: int, x: torch.Tensor) -> torch.Tensor:
    """``(h·x)(p) = x(h⁻¹ p)`` on the last two axes of any tensor ``(..., H, W)``."""
    if group.is_grid_exact(h):
        q, mirrored = _quarter_turns(group, h)
        if mirrored:
            x = torch.flip(x, dims=(-1,))  # s: (x, y) -> (-x, y)
        return torch.rot90(x, q, dims=(-2, -1)) if q else x
    return _resample(group, h, x)


def _resample(group: Group, h: int, x: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling ``out(p) = x(h⁻¹ p)`` (zeros outside the image)."""
    *lead, height, width = x.shape
    flat = x.reshape(-1, 1, height, width)  # (N, 1, H, W)
    coords = pixel_coordinates(height, width, dtype=torch.float64)  # (H, W, 2)
    src = act_on_coordinates(group, group.inverse(h), coords)  # (H, W, 2) points h⁻¹ p
    return _sample_at(flat, src).reshape(*lead, height, width)


def _sample_at(x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear values of images ``x`` at plane points (this module's conventions; zeros outside).

    The one resampling step of the package: :func:`act_on_image` (non-grid elements) and
    :func:`gsa_tutorial.data.rotate_images` (one angle per image) both end here.

    Shape:
        x ``(N, C, H, W)``, points ``(H, W, 2)`` (the same for every image) or ``(N, H, W, 2)``
        (float64 plane coordinates ``(x, y)``) -> ``(N, C, H, W)``.
    """
    N, _, height, width = x.shape
    # grid_sample wants (x, y) in [-1, 1], y pointing *down*, align_corners=True: centres of
    # the corner pixels at ±1.
    gx = points[..., 0] / max((width - 1) / 2, 0.5)
    gy = -points[..., 1] / max((height - 1) / 2, 0.5)
    grid = torch.stack([gx, gy], dim=-1).to(dtype=x.dtype, device=x.device)  # (H, W, 2) or (N, H, W, 2)
    grid = grid.expand(N, height, width, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def act_on_image(group: Group | str, h: int, x: torch.Tensor) -> torch.Tensor:
    """Act with ``h`` on images: ``(h·x)(p) = x(h⁻¹ p)``.

    Exact (a permutation of pixels) when ``group.is_grid_exact(h)``; bilinear interpolation
    otherwise. Non-square images are only rotated exactly by 0° and 180° and mirrors; a
    quarter turn swaps height and width.

    Shape:
        x ``(B, C, H, W)`` -> ``(B, C, H, W)`` (``(B, C, W, H)`` for a quarter turn of a non-square image).
    """
    group = get_group(group)
    _check_image(x, "image", 4)
    if not x.is_floating_point() and not group.is_grid_exact(h):
        raise TypeError(
            f"element {h} of {group.name} is not a multiple of 90°, so the image is interpolated: pass a floating-point "
            f"image (e.g. x.float() / 255 for uint8), got dtype {x.dtype}"
        )
    return _spatial(group, h, x)


def group_permutation(group: Group | str, h: int) -> torch.Tensor:
    """Indices ``perm`` with ``perm[g] = h⁻¹ g``, so ``f[:, :, perm]`` is ``f(·, h⁻¹ g)``."""
    group = get_group(group)
    h_inv = group.inverse(h)
    return torch.as_tensor(group.cayley_table[h_inv], dtype=torch.long)


def act_on_lifted(group: Group | str, h: int, f: torch.Tensor) -> torch.Tensor:
    """Act with ``h`` on lifted features: ``(h·f)(p, g) = f(h⁻¹ p, h⁻¹ g)``.

    The spatial maps move as images do (:func:`act_on_image`) and the group axis is permuted
    by the regular representation.

    Shape:
        f ``(B, C, |H|, H, W)`` -> ``(B, C, |H|, H, W)``.
    """
    group = get_group(group)
    _check_image(f, "lifted feature map", 5)
    if f.shape[2] != group.order:
        raise ValueError(
            f"lifted feature map has a group axis of size {f.shape[2]} (axis 2 of {tuple(f.shape)}), "
            f"but {group.name} has {group.order} elements"
        )
    if not f.is_floating_point() and not group.is_grid_exact(h):
        raise TypeError(
            f"element {h} of {group.name} is not a multiple of 90°, so the map is interpolated: pass a floating-point "
            f"tensor, got dtype {f.dtype}"
        )
    perm = group_permutation(group, h).to(f.device)
    return _spatial(group, h, f[:, :, perm])  # (B, C, G, H, W)
