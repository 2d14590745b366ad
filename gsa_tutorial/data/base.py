"""What every data set here shares: the splits, the checks of loaded data, images held in
memory, and rotating a batch by one angle per image (chapters 8, 9).

Every data set returns ``(image, label)`` with ``image`` a float32 tensor ``(C, H, W)`` in
``[0, 1]`` and ``label`` a Python ``int``.

Shapes: ``B`` batch, ``C`` channels, ``H, W`` height and width.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..actions import _sample_at, pixel_coordinates

__all__ = ["SPLITS", "check_images_and_labels", "rotate_images"]

#: The splits every data set offers, in this order.
SPLITS = ("train", "valid", "test")


def check_split(split: str, allowed: Iterable[str] = SPLITS) -> str:
    """``split`` if it is one of ``allowed``, else a :class:`ValueError` that lists them."""
    allowed = tuple(allowed)
    if split not in allowed:
        raise ValueError(f"split must be one of {', '.join(repr(s) for s in allowed)}, got {split!r}")
    return split


def check_images_and_labels(
    images: Any,
    labels: Any,
    *,
    source: str,
    image_shape: tuple[int, ...],
    num_classes: int,
) -> None:
    """Refuse data that would crash or mislead training later: images ``(N, *image_shape)`` uint8
    and labels ``(N,)`` integers in ``[0, num_classes)``.

    Args:
        images, labels: the loaded tensors.
        source: the file(s) they came from, for the message.
        image_shape: e.g. ``(28, 28)`` or ``(3, 32, 32)``.
        num_classes: labels must lie in ``0 .. num_classes - 1``.

    Raises:
        ValueError: naming the file, what was expected and what was found.
    """
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError(f"{source}: expected image and label tensors, got {type(images).__name__} and {type(labels).__name__}")
    expected = "(N, " + ", ".join(map(str, image_shape)) + ")"
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{source}: expected {images.shape[0] if images.dim() else 'N'} images of shape {expected} uint8, got shape {tuple(images.shape)} {images.dtype}")
    if labels.dim() != 1 or labels.shape[0] != images.shape[0] or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{source}: expected {images.shape[0]} integer labels (N,), got shape {tuple(labels.shape)} {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{source}: labels must lie in 0..{num_classes - 1} ({num_classes} classes), got labels from "
            f"{int(labels.min())} to {int(labels.max())}"
        )


def rotate_images(images: torch.Tensor, angles: torch.Tensor | float) -> torch.Tensor:
    """Rotate each image about its centre by its own angle (radians, counter-clockwise on screen).

    Uses the conventions of :mod:`gsa_tutorial.actions`: ``out(p) = x(R(-θ) p)`` with
    centred coordinates (x right, y up) and bilinear interpolation, zeros outside the
    image. For an angle ``2πk/n`` this equals ``act_on_image("r<n>", k, x)``, and for
    ``π/2`` it equals ``torch.rot90(x, 1, dims=(-2, -1))`` up to float round-off.
    Used for accuracy-against-angle curves (chapter 8) and to build rotated data sets.

    Args:
        images: float tensor ``(B, C, H, W)``.
        angles: one angle for all images, or a tensor ``(B,)`` of angles in radians.

    Returns:
        The rotated images, ``(B, C, H, W)``, same dtype and device.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor of shape (B, C, H, W), got {shape}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point (convert uint8 with .float() / 255), got {images.dtype}")
    B, C, H, W = images.shape
    theta = torch.as_tensor(angles, dtype=torch.float64).reshape(-1)  # (B,) or (1,)
    if theta.numel() == 1:
        theta = theta.expand(B)
    if theta.numel() != B:
        raise ValueError(f"got {theta.numel()} angles for a batch of {B} images")
    if not bool(torch.isfinite(theta).all()):
        raise ValueError(f"rotation angles must be finite numbers (radians), got {theta[~torch.isfinite(theta)][:3].tolist()}")
    coords = pixel_coordinates(H, W, dtype=torch.float64)  # (H, W, 2) plane points p
    x, y = coords[..., 0], coords[..., 1]  # (H, W)
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]  # (B, 1, 1)
    # R(-θ) p, one rotation per image (written out, not as a matmul: the shipped data and
    # weights were made with exactly this arithmetic)
    source = torch.stack([cos * x + sin * y, -sin * x + cos * y], dim=-1)  # (B, H, W, 2)
    return _sample_at(images, source)  # the resampling step of gsa_tutorial.actions


class _InMemoryImages(Dataset):
    """Images held as a tensor ``(N, C, H, W)`` (uint8 or float in [0, 1]) and labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _as_float(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._as_float(self.images[index]), int(self.labels[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float32 ``(N, C, H, W)`` in [0, 1] and labels ``(N,)`` int64 (fast batching)."""
        return self._as_float(self.images), self.labels.to(torch.int64)

    def __repr__(self) -> str:
        shape = tuple(self.images.shape[1:])
        return f"{type(self).__name__}(split={getattr(self, 'split', None)!r}, n={len(self)}, image={shape})"


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8 by ``round(255 * clip(x, 0, 1))`` (1.0 -> 255, never wrapped to 0)."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
