"""Evaluation during and after training: loss and accuracy on a data set (summed over the
``torchrun`` processes), and the accuracy of rotated copies against the angle (chapter 8)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..data import rotate_images
from .distributed import _amp_dtype, _autocast, _dist_context

__all__ = ["evaluate", "accuracy_vs_angle"]


def _loader(dataset: Dataset, batch_size: int, device: torch.device, num_workers: int = 0) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


@torch.no_grad()
def _sums(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device, amp: torch.dtype | None, num_workers: int) -> torch.Tensor:
    """``[sum of losses, correct, count]`` over a dataset (float64 on ``device``)."""
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    if len(dataset) == 0:  # type: ignore[arg-type]  # map-style datasets have __len__
        return totals
    for images, labels in _loader(dataset, batch_size, device, num_workers):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(images)
        logits = logits.float()
        totals[0] += F.cross_entropy(logits, labels, reduction="sum").double()
        totals[1] += (logits.argmax(dim=1) == labels).sum()
        totals[2] += labels.numel()
    return totals


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    amp: bool = False,
    num_workers: int = 0,
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``dataset`` (eval mode, no gradients).

    Inside a ``torchrun`` job each process evaluates its contiguous shard and the sums are
    reduced, so every process gets the metrics of the whole data set.

    Returns:
        ``{"loss": float, "acc": float, "n": int}``.
    """
    ctx = _dist_context()
    if len(dataset) == 0:  # type: ignore[arg-type]  # map-style datasets have __len__
        raise ValueError("evaluate: the dataset is empty (0 images), so there is no loss or accuracy to report")
    if device is None:
        device = next(iter(model.parameters())).device
    device = torch.device(device)
    dtype = _amp_dtype(amp, "auto", device)
    was_training = model.training
    model.eval()
    try:
        shard = Subset(dataset, range(ctx.rank, len(dataset), ctx.world)) if ctx.active else dataset  # type: ignore[arg-type]  # map-style datasets have __len__
        totals = _sums(model, shard, batch_size, device, dtype, num_workers)
        if ctx.active:
            dist.all_reduce(totals)
    finally:
        model.train(was_training)
    loss, correct, n = totals.tolist()
    return {"loss": loss / max(n, 1), "acc": correct / max(n, 1), "n": int(n)}


@torch.no_grad()
def accuracy_vs_angle(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    angles: Sequence[float] | torch.Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> dict[str, list[float]]:
    """Accuracy on copies of ``images`` rotated by each angle (chapter 8's robustness curve).

    Rotations use :func:`gsa_tutorial.data.rotate_images` (the conventions of
    :mod:`gsa_tutorial.actions`: counter-clockwise, about the image centre, bilinear, zeros
    outside). For an exactly invariant network the curve is flat at multiples of 90° (and, for
    mirrors, those too); in between it measures the approximate invariance.

    Args:
        model: maps ``(B, C, H, W)`` to logits.
        images: ``(N, C, H, W)`` float in [0, 1].
        labels: ``(N,)`` integer labels.
        angles: rotation angles in **radians**.

    Returns:
        ``{"angles": [...], "accuracy": [...]}`` (radians, fractions in [0, 1]).
    """
    if images.dim() != 4 or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"need images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"accuracy_vs_angle needs at least one image, got images of shape {tuple(images.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"accuracy_vs_angle needs integer class labels, got dtype {labels.dtype}")
    if device is None:
        device = next(iter(model.parameters())).device
    device = torch.device(device)
    was_training = model.training
    model.eval()
    accs = []
    angle_list = [float(a) for a in torch.as_tensor(angles, dtype=torch.float64).reshape(-1)]
    try:
        for angle in angle_list:
            correct = 0
            for lo in range(0, images.shape[0], batch_size):
                x = rotate_images(images[lo : lo + batch_size].to(device), angle)
                pred = model(x).argmax(dim=1).cpu()
                correct += int((pred == labels[lo : lo + batch_size].cpu()).sum())
            accs.append(correct / max(images.shape[0], 1))
    finally:
        model.train(was_training)
    return {"angles": angle_list, "accuracy": accs}
