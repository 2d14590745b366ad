"""Approximate equivariance at the rotations off the pixel grid (chapter 9): how far the lifting
layer is from equivariant at 45°, 30°, ..., where rotating an image resamples it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .actions import act_on_image, act_on_lifted
from .attention import LiftingSelfAttention
from .groups import get_group
from .images import disk_mask, gaussian_image

__all__ = ["nongrid_equivariance_errors"]


def nongrid_equivariance_errors(
    groups: Sequence[str] = ("r8", "r12", "r16"),
    *,
    size: int = 21,
    radius: float = 6.0,
    window: int = 5,
    channels: int = 20,
    heads: int = 9,
    dim_head: int = 8,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Relative equivariance error of the lifting layer at the rotations that are not multiples of 90°.

    Rotating an image by 45°, 30°, ... resamples it (bilinear interpolation in
    :func:`~gsa_tutorial.actions.act_on_image`) and the square window does not rotate into
    itself, so equivariance is only approximate (chapter 9). Measured in float64 on a smooth
    Gaussian blob (off-centre, width 3 pixels), on the central disk of ``radius`` pixels where no
    content is lost at the corners: ``max_disk |L(h·f) − h·L(f)| / max |L(f)|``.

    Args:
        groups: cyclic groups to check.
        size: image side (odd, so the rotation centre is a pixel).
        radius: radius of the disk the error is measured on.
        window, channels, heads, dim_head: the lifting layer (one input channel).
        seed: seeds the layer's weights.

    Returns:
        ``{group: {angle in degrees (str): error}}`` for every non-grid element.
    """
    blob = gaussian_image(size, centre=(2.0, 1.0), sigma=(3.0, 3.0))  # (1, 1, H, W), float64
    disk = disk_mask(size, radius=radius, dtype=torch.bool)[0, 0]  # (H, W)
    errors: dict[str, dict[str, float]] = {}
    for name in groups:
        group = get_group(name)
        torch.manual_seed(seed)
        layer = LiftingSelfAttention(1, channels, group=group, heads=heads, dim_head=dim_head, window=window).double().eval()
        per_element: dict[str, float] = {}
        with torch.no_grad():
            y = layer(blob)  # (1, C, G, H, W)
            for h in group.elements:
                if group.is_grid_exact(h):
                    continue
                diff = layer(act_on_image(group, h, blob)) - act_on_lifted(group, h, y)  # (1, C, G, H, W)
                degrees = math.degrees(group.angle(h))  # type: ignore[attr-defined]  # C_n, D_n: the groups with such h
                per_element[f"{degrees:g}"] = float(diff[..., disk].abs().max() / y.abs().max())
        errors[name] = per_element
    return errors
