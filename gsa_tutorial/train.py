"""Training and evaluation: a plain PyTorch loop, checkpoints, resume, AMP, ``torchrun`` (chapters 8, 9).

The trainer knows nothing about the model: :func:`fit` trains any ``nn.Module`` that maps a
batch of images ``(B, C, H, W)`` to logits ``(B, classes)``.

Python API (used by the book)::

    record = fit(model, train_set, valid_set, TrainConfig(epochs=5), "runs/demo", test_set=test_set)
    evaluate(model, test_set)                                 # {"loss": ..., "acc": ..., "n": ...}
    accuracy_vs_angle(model, images, labels, angles)          # accuracy of rotated copies
    model, record = train_or_load(model, train_set, valid_set, config, "runs/demo")

Command line (the same under ``torchrun``)::

    python -m gsa_tutorial.train --preset rotmnist --group r12 --out runs/rotmnist-r12
    torchrun --nproc_per_node 4 -m gsa_tutorial.train --preset cifar10 --group m4 --amp

What happens in a run (``run_dir``):

* each epoch: train, evaluate on the *validation* split, append a row to ``metrics.json`` /
  ``metrics.csv``, save ``last.pt`` (everything needed to resume) and, when the validation
  accuracy is the best so far, ``best.pt`` (weights only). Files are written atomically
  (temporary file + rename), so a killed run never leaves a half-written checkpoint;
* at the end: the best weights are loaded back and the *test* split is evaluated once
  (model selection never looks at the test set; the official code selects on it);
* ``resume=True`` continues from ``last.pt``: weights, optimiser, schedule, AMP scaler,
  history and random states, so a resumed run ends bitwise equal to an uninterrupted one
  (on the same device);
* ``max_minutes`` (``--max-minutes``) is a time budget for one call: before each epoch after
  the first, the run stops if the time spent so far plus its longest epoch would overrun the
  budget. ``last.pt`` is then the last finished epoch (resume later with ``resume=True`` /
  ``--resume``), the best model is evaluated on the test split all the same, and
  ``record["stop"]`` says why the call stopped (for Colab sessions and time-limited GPUs).

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with
``torch.load(path, weights_only=True)``; state dicts are saved without the ``module.``
(DDP) / ``_orig_mod.`` (``torch.compile``) prefixes and loaded with ``strict=True`` (the
official code saves with the prefix and loads with ``strict=False``, which silently loads
nothing).

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) every process trains on its shard of
each global batch (``DistributedSampler``; the per-process batch is ``batch_size /
world_size``, so the global batch and the schedule do not change with the number of
processes), gradients are averaged by ``DistributedDataParallel``, metrics are summed over
processes, and only rank 0 prints and writes files. Backend: NCCL on CUDA, Gloo on CPU.
BatchNorm layers become ``SyncBatchNorm`` on CUDA; on CPU (PyTorch has no CPU SyncBatchNorm)
each process normalises with the statistics of its own shard.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

__all__ = [
    "TrainConfig",
    "train_preset",
    "fit",
    "evaluate",
    "accuracy_vs_angle",
    "train_or_load",
    "load_checkpoint",
    "save_checkpoint",
    "clean_state_dict",
    "load_state_dict",
    "load_model",
    "set_seed",
    "main",
]

LAST, BEST, METRICS_JSON, METRICS_CSV = "last.pt", "best.pt", "metrics.json", "metrics.csv"


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """How to train (not what: the model has its own config)."""

    epochs: int = 10
    # The *global* batch: under torchrun each of the N processes takes batch_size / N.
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adam"  # "adam" (as the official code), "adamw" or "sgd"
    momentum: float = 0.9  # SGD only
    # "warmup_cosine": linear warm-up from 0 for warmup_epochs, then a cosine decay to 0 at
    # the last step (the official trainer's linear_warmup_cosine); "constant": no schedule.
    schedule: str = "warmup_cosine"
    warmup_epochs: float = 1.0
    grad_clip: float | None = None  # max global gradient norm; None: no clipping
    # Mixed precision is off by default: the official code forces fp16 autocast on every CUDA
    # forward and reports divergence with learning-rate schedules.
    amp: bool = False
    amp_dtype: str = "auto"  # "bf16", "fp16" or "auto" (bf16 where supported, else fp16)
    device: str | None = None  # None: CUDA when available, else CPU
    seed: int = 0
    num_workers: int = 0
    eval_batch_size: int | None = None  # None: 2 x batch_size
    # Stop after this many epochs in this call (the run stays resumable): for time-limited
    # jobs, and to test that an interrupted and resumed run equals an uninterrupted one.
    max_epochs_this_run: int | None = None
    # Time budget of this call, in minutes (the run stays resumable): before each epoch after
    # the first, stop if the elapsed time plus the longest epoch of this call would exceed it.
    # The best model is still evaluated on the test split. For Colab sessions and GPU leases.
    max_minutes: float | None = None
    progress: bool = True  # tqdm bars (rank 0 only)
    verbose: bool = True  # one summary line per epoch (rank 0 only)

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("warmup_cosine", "constant"):
            raise ValueError(f"schedule must be 'warmup_cosine' or 'constant', got {self.schedule!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs!r}")
        if self.amp_dtype not in ("auto", "bf16", "fp16"):
            raise ValueError(f"amp_dtype must be 'auto', 'bf16' or 'fp16', got {self.amp_dtype!r}")
        if self.max_epochs_this_run is not None and self.max_epochs_this_run < 1:
            raise ValueError(f"max_epochs_this_run must be >= 1 or None, got {self.max_epochs_this_run!r}")
        if self.max_minutes is not None and not (isinstance(self.max_minutes, (int, float)) and self.max_minutes > 0 and math.isfinite(self.max_minutes)):
            raise ValueError(f"max_minutes must be a positive number of minutes or None, got {self.max_minutes!r}")


def train_preset(name: str, **overrides: Any) -> TrainConfig:
    """The training settings that go with a model preset of :func:`gsa_tutorial.model.preset`.

    Adam with learning rate 1e-3 and weight decay 1e-4 (the official trainer builds
    ``Adam(lr, weight_decay)`` from its command line), linear warm-up + cosine decay. The
    official repository does not record its command lines; the epochs and batch sizes below
    are our reading of the paper's appendix. ``"small"`` is the CPU quick mode.
    """
    table: dict[str, dict[str, Any]] = {
        "rotmnist": dict(epochs=300, batch_size=8, lr=1e-3, weight_decay=1e-4, warmup_epochs=5),
        "cifar10": dict(epochs=350, batch_size=24, lr=1e-3, weight_decay=1e-4, warmup_epochs=10),
        "pcam": dict(epochs=100, batch_size=16, lr=1e-3, weight_decay=1e-4, warmup_epochs=5),
        "small": dict(epochs=8, batch_size=32, lr=2e-2, weight_decay=0.0, warmup_epochs=0.5),
    }
    key = name.strip().lower()
    if key not in table:
        raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(table)}")
    return TrainConfig(**{**table[key], **overrides})


# ---------------------------------------------------------------------------------------
# Small utilities: seeds, devices, distributed context, checkpoints
# ---------------------------------------------------------------------------------------


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def _dist_context() -> _Dist:
    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return _Dist()


def _init_distributed_from_env(device: str | None) -> _Dist:
    """Start the process group when launched by torchrun (``WORLD_SIZE > 1``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return _dist_context()
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _dist_context()


def _resolve_device(name: str | None, ctx: _Dist) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        if ctx.active or device.index is None:
            device = torch.device("cuda", ctx.local_rank if ctx.active else torch.cuda.current_device())
    return device


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = cast(nn.Module, model.module)
        elif hasattr(model, "_orig_mod"):
            model = cast(nn.Module, model._orig_mod)
        else:
            return model


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip ``module.`` (DDP, DataParallel) and ``_orig_mod.`` (torch.compile) prefixes from keys."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in ("module.", "_orig_mod."):
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def load_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load weights *strictly* (every key must match) after :func:`clean_state_dict`."""
    _unwrap(model).load_state_dict(clean_state_dict(state), strict=True)


def _model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in clean_state_dict(_unwrap(model).state_dict()).items()}


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``: tensors and plain Python containers only."""
    return torch.load(path, map_location=map_location, weights_only=True)


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a :class:`~gsa_tutorial.model.GSANet` from a checkpoint (``best.pt`` or ``last.pt``)."""
    from .model import GSANet, GSANetConfig

    ckpt = load_checkpoint(path, map_location)
    if ckpt.get("model_config") is None:
        raise ValueError(f"{path} has no 'model_config': it was not saved from a GSANet; build the model and use load_state_dict")
    model = GSANet(GSANetConfig.from_dict(ckpt["model_config"]))
    load_state_dict(model, ckpt["model"])
    return model


def _rng_state() -> dict[str, Any]:
    np_state = cast(tuple[Any, ...], np.random.get_state())  # the legacy tuple (MT19937)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ---------------------------------------------------------------------------------------
# Optimiser, schedule, mixed precision
# ---------------------------------------------------------------------------------------


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Per-step LambdaLR: linear warm-up to ``lr``, then cosine to 0 at the last step."""
    total = max(config.epochs * steps_per_epoch, 1)
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)

    def factor(step: int) -> float:
        if config.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not config.amp:
        return None
    if config.amp_dtype == "bf16":
        return torch.bfloat16
    if config.amp_dtype == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------


def _loader(dataset: Dataset, batch_size: int, device: torch.device, num_workers: int = 0, sampler=None) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
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
    if device is None:
        device = next(iter(model.parameters())).device
    device = torch.device(device)
    dtype = _amp_dtype(TrainConfig(amp=amp), device)
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
    from .data import rotate_images

    if images.dim() != 4 or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"need images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}")
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


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


def _progress(iterable, *, enabled: bool, total: int, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _log(message: str, enabled: bool) -> None:
    if enabled:
        from tqdm.auto import tqdm

        tqdm.write(message)


def _write_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    _write_text_atomic(run_dir / METRICS_JSON, json.dumps(record, indent=2))
    rows = record["history"]
    columns = ["epoch", "lr", "train_loss", "train_acc", "valid_loss", "valid_acc", "time_s"]
    fd, tmp = tempfile.mkstemp(prefix=METRICS_CSV + ".", suffix=".tmp", dir=run_dir)
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, run_dir / METRICS_CSV)


def _model_config(model: nn.Module) -> dict[str, Any] | None:
    config: Any = getattr(_unwrap(model), "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else None


def _over_budget(call_start: float, epoch_seconds: list[float], max_minutes: float, device: torch.device, ctx: _Dist) -> bool:
    """Whether another epoch, as long as the longest one of this call, would end after the budget.

    The first epoch of a call always runs (there is nothing to judge from). Under torchrun
    rank 0 decides for everyone, so all processes stop at the same epoch.
    """
    stop = bool(epoch_seconds) and time.perf_counter() - call_start + max(epoch_seconds) > 60.0 * max_minutes
    if ctx.active:
        flag = torch.tensor([1.0 if stop else 0.0], device=device)
        dist.broadcast(flag, src=0)
        stop = bool(flag.item())
    return stop


def fit(
    model: nn.Module,
    train_set: Dataset,
    valid_set: Dataset,
    config: TrainConfig = TrainConfig(),
    run_dir: str | os.PathLike | None = None,
    *,
    test_set: Dataset | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``model`` with model selection on ``valid_set``; evaluate ``test_set`` once at the end.

    Args:
        model: any module mapping images ``(B, C, H, W)`` to logits ``(B, classes)``. It is
            moved to the device and, at the end, holds the *best* weights (by validation
            accuracy, ties broken by validation loss).
        train_set, valid_set, test_set: datasets of ``(image, label)``.
        config: a :class:`TrainConfig`.
        run_dir: folder for checkpoints and metrics; None keeps everything in memory.
        resume: continue from ``run_dir/last.pt`` if it exists.

    Returns:
        The run record, the same dict as ``metrics.json``: ``history`` (one row per epoch:
        ``epoch, lr, train_loss, train_acc, valid_loss, valid_acc, time_s``), ``best``
        (``epoch, valid_acc, valid_loss``), ``test`` (``loss, acc, n`` or None), ``finished``,
        ``num_parameters``, ``train_config``, ``model_config``, and ``stop``: why this call
        stopped (``reason``: ``"epochs"``, ``"max_epochs_this_run"`` or ``"max_minutes"``),
        ``epochs_this_run``, ``elapsed_s``, ``max_minutes``, ``longest_epoch_s``. A call stopped
        by ``max_minutes`` still evaluates the best model on ``test_set`` (``finished`` stays
        False and the run resumes from ``last.pt``).
    """
    ctx = _dist_context()
    device = _resolve_device(config.device, ctx)
    if config.batch_size % ctx.world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {ctx.world} processes")
    run_path = Path(run_dir) if run_dir is not None else None
    writer = ctx.main and run_path is not None
    if writer and run_path is not None:  # (writer implies a run folder; says so to mypy)
        run_path.mkdir(parents=True, exist_ok=True)
    show = config.progress and ctx.main
    say = config.verbose and ctx.main

    bare = _unwrap(model).to(device)
    ckpt = None
    if resume and run_path is not None and (run_path / LAST).exists():
        ckpt = load_checkpoint(run_path / LAST, map_location="cpu")
        load_state_dict(bare, ckpt["model"])
    else:
        torch.manual_seed(config.seed + ctx.rank)  # dropout streams (the weights are the caller's)
    net: nn.Module = bare
    if ctx.active:
        if device.type == "cuda":  # batch statistics over the global batch (SyncBatchNorm is CUDA-only)
            bare = nn.SyncBatchNorm.convert_sync_batchnorm(bare)
        device_ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(bare, device_ids=device_ids)

    # DistributedSampler even for one process: the same global batches for any world size.
    sampler: DistributedSampler = DistributedSampler(train_set, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=config.seed)
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size // ctx.world,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
    )
    steps_per_epoch = len(train_loader)
    optimizer = _make_optimizer(bare, config)
    scheduler = _make_scheduler(optimizer, config, steps_per_epoch)
    amp = _amp_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    eval_bs = config.eval_batch_size or 2 * config.batch_size

    record: dict[str, Any] = {
        "history": [],
        "best": {"epoch": 0, "valid_acc": -1.0, "valid_loss": math.inf},
        "test": None,
        "finished": False,
        "num_parameters": sum(p.numel() for p in bare.parameters() if p.requires_grad),
        "train_config": asdict(config),
        "model_config": _model_config(bare),
        "world_size": ctx.world,
    }
    best_state = _model_state(bare)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        record["history"] = list(ckpt["history"])
        record["best"] = dict(ckpt["best"])
        if run_path is not None and (run_path / BEST).exists():
            best_state = load_checkpoint(run_path / BEST)["model"]
        states = ckpt["rng"]
        if len(states) == ctx.world:
            _set_rng_state(states[ctx.rank])
    start_epoch = len(record["history"])

    epochs_run = 0
    call_start = time.perf_counter()
    epoch_seconds: list[float] = []  # wall time of each epoch of this call (train, validation, files)
    stop_reason = "epochs"
    for epoch in range(start_epoch, config.epochs):
        if config.max_epochs_this_run is not None and epochs_run >= config.max_epochs_this_run:
            stop_reason = "max_epochs_this_run"
            break
        if config.max_minutes is not None and _over_budget(call_start, epoch_seconds, config.max_minutes, device, ctx):
            stop_reason = "max_minutes"
            _log(f"stopping before epoch {epoch + 1}: {time.perf_counter() - call_start:.0f} s elapsed, the longest epoch "
                 f"took {max(epoch_seconds):.0f} s, the budget is {60 * config.max_minutes:.0f} s; resume to continue", say)
            break
        t0 = time.time()
        t_epoch = time.perf_counter()
        net.train()
        sampler.set_epoch(epoch)
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
        bar = _progress(train_loader, enabled=show, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}")
        for images, labels in bar:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with _autocast(device, amp):
                logits = net(images)
                loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(bare.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            with torch.no_grad():
                totals[0] += loss.detach().double() * labels.numel()
                totals[1] += (logits.argmax(dim=1) == labels).sum()
                totals[2] += labels.numel()
            if show:
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if ctx.active:
            dist.all_reduce(totals)
        train_loss, train_correct, n = totals.tolist()
        valid = evaluate(bare, valid_set, batch_size=eval_bs, device=device, amp=config.amp, num_workers=config.num_workers)
        row = {
            "epoch": epoch + 1,
            "lr": float(scheduler.get_last_lr()[0]),
            "train_loss": train_loss / max(n, 1),
            "train_acc": train_correct / max(n, 1),
            "valid_loss": valid["loss"],
            "valid_acc": valid["acc"],
            "time_s": time.time() - t0,
        }
        record["history"].append(row)
        best = record["best"]
        if row["valid_acc"] > best["valid_acc"] or (row["valid_acc"] == best["valid_acc"] and row["valid_loss"] < best["valid_loss"]):
            record["best"] = {"epoch": epoch + 1, "valid_acc": row["valid_acc"], "valid_loss": row["valid_loss"]}
            best_state = _model_state(bare)
            if writer and run_path is not None:
                save_checkpoint(
                    {"model": best_state, "epoch": epoch + 1, "model_config": record["model_config"], "train_config": asdict(config)},
                    run_path / BEST,
                )
        _log(
            f"epoch {epoch + 1}/{config.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
            f"valid loss {row['valid_loss']:.4f} acc {row['valid_acc']:.4f}  ({row['time_s']:.1f}s)",
            say,
        )
        rng = [_rng_state()]
        if ctx.active:
            gathered: list[Any] = [None] * ctx.world
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        if writer and run_path is not None:
            save_checkpoint(
                {
                    "model": _model_state(bare),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "epoch": epoch + 1,
                    "history": record["history"],
                    "best": record["best"],
                    "train_config": asdict(config),
                    "model_config": record["model_config"],
                    "rng": rng,
                },
                run_path / LAST,
            )
            _write_metrics(run_path, record)
        if ctx.active:
            dist.barrier()
        epochs_run += 1
        epoch_seconds.append(time.perf_counter() - t_epoch)

    record["stop"] = {
        "reason": stop_reason,  # "epochs" (all done), "max_epochs_this_run" or "max_minutes"
        "epochs_this_run": epochs_run,
        "elapsed_s": time.perf_counter() - call_start,
        "max_minutes": config.max_minutes,
        "longest_epoch_s": max(epoch_seconds, default=None),
    }
    finished = len(record["history"]) >= config.epochs
    # A run stopped by its time budget is reported like a finished one (best weights, test
    # split once), but stays resumable: last.pt is untouched and "finished" stays False.
    if finished or (stop_reason == "max_minutes" and record["history"]):
        record["finished"] = finished
        load_state_dict(bare, best_state)
        if test_set is not None:
            record["test"] = evaluate(bare, test_set, batch_size=eval_bs, device=device, amp=config.amp, num_workers=config.num_workers)
            _log(f"test (best epoch {record['best']['epoch']}): loss {record['test']['loss']:.4f} acc {record['test']['acc']:.4f}", say)
    if writer and run_path is not None:
        _write_metrics(run_path, record)
    return record


def train_or_load(
    model: nn.Module,
    train_set: Dataset,
    valid_set: Dataset,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    test_set: Dataset | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load the finished run in ``run_dir`` if there is one, else train (resuming if possible).

    Lets a notebook re-run instantly once its model is trained, and pick up a run that was
    interrupted. The model's weights become the run's best weights.

    Returns:
        ``(model, record)`` with ``record`` as returned by :func:`fit`.
    """
    run_path = Path(run_dir)
    metrics = run_path / METRICS_JSON
    if metrics.exists() and (run_path / BEST).exists():
        record = json.loads(metrics.read_text())
        if record.get("finished"):
            load_state_dict(model, load_checkpoint(run_path / BEST)["model"])
            if record.get("test") is None and test_set is not None:
                record["test"] = evaluate(model, test_set, batch_size=config.eval_batch_size or 2 * config.batch_size)
            return model, record
    record = fit(model, train_set, valid_set, config, run_path, test_set=test_set, resume=True)
    return model, record


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------

_DEFAULT_DATASET = {"rotmnist": "rotmnist", "cifar10": "cifar10", "pcam": "pcam", "small": "mnist-mini-rotated"}


def _parse_value(text: str) -> Any:
    """``--model KEY=VALUE`` values: JSON (numbers, lists, null, true) or a bare string."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def _key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def _limit(dataset: Dataset, n: int | None) -> Dataset:
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))  # type: ignore[arg-type]  # map-style datasets have __len__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gsa_tutorial.train",
        description="Train a GSA-Net (Romero & Cordonnier, 2021). Works the same under torchrun.",
    )
    p.add_argument("--preset", default="small", help="model preset: rotmnist, cifar10, pcam or small (default)")
    p.add_argument("--group", default="r4", help="z2, r4, r8, r12, r16, m4 (any rN / mN)")
    p.add_argument("--dataset", default=None, help="data set name (default: the preset's; small -> mnist-mini-rotated, the shipped real digits; synthetic-rotated: font-rendered)")
    p.add_argument("--data-dir", default=None, help="data folder (default $GSA_DATA_DIR or ~/.cache/gsa_tutorial)")
    p.add_argument("--download", action="store_true", help="download missing data files")
    p.add_argument("--out", default=None, help="run folder (default runs/<preset>-<group>-seed<seed>)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="global batch size")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default=None)
    p.add_argument("--schedule", choices=("warmup_cosine", "constant"), default=None)
    p.add_argument("--warmup-epochs", type=float, default=None)
    p.add_argument("--grad-clip", type=float, default=None)
    p.add_argument("--amp", action="store_true", help="mixed precision (off by default)")
    p.add_argument("--amp-dtype", choices=("auto", "bf16", "fp16"), default="auto")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--max-epochs-this-run", type=int, default=None, help="stop after this many epochs (resumable)")
    p.add_argument(
        "--max-minutes", type=float, default=None,
        help="time budget of this call: stop at the last epoch boundary that fits (checkpointed, resumable; the best model is still tested)",
    )
    p.add_argument("--train-size", type=int, default=None, help="use only the first N training images")
    p.add_argument("--valid-size", type=int, default=None, help="use only the first N validation images")
    p.add_argument("--test-size", type=int, default=None, help="use only the first N test images")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE", help="override a GSANetConfig field, e.g. --model channels=8")
    p.add_argument(
        "--data-option", action="append", default=[], metavar="KEY=VALUE", help="extra argument of get_dataset, e.g. --data-option size=14 (synthetic)"
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m gsa_tutorial.train``; returns the run record."""
    from .data import get_dataset
    from .model import GSANet, preset

    args = build_parser().parse_args(argv)
    ctx = _init_distributed_from_env(args.device)
    try:
        overrides = _key_values(args.model, "--model")
        data_options = _key_values(args.data_option, "--data-option")
        model_config = preset(args.preset, args.group, **overrides)
        train_overrides = {
            k: v
            for k, v in dict(
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                weight_decay=args.weight_decay,
                optimizer=args.optimizer,
                schedule=args.schedule,
                warmup_epochs=args.warmup_epochs,
                grad_clip=args.grad_clip,
                max_epochs_this_run=args.max_epochs_this_run,
                max_minutes=args.max_minutes,
            ).items()
            if v is not None
        }
        config = train_preset(
            args.preset,
            amp=args.amp,
            amp_dtype=args.amp_dtype,
            device=args.device,
            seed=args.seed,
            num_workers=args.num_workers,
            progress=not args.no_progress,
            **train_overrides,
        )
        name = args.dataset or _DEFAULT_DATASET[args.preset.strip().lower()]

        def load_data() -> dict[str, Dataset]:
            return {
                split: _limit(get_dataset(name, split, root=args.data_dir, download=args.download, **data_options), n)
                for split, n in (("train", args.train_size), ("valid", args.valid_size), ("test", args.test_size))
            }

        # Rank 0 first (it may download), then the others read the cached files.
        data = load_data() if ctx.main else None
        if ctx.active:
            dist.barrier()
        if data is None:
            data = load_data()
        out = Path(args.out or f"runs/{args.preset}-{args.group}-seed{args.seed}")
        set_seed(args.seed)  # the same initial weights on every process
        model = GSANet(model_config)
        if ctx.main:
            print(f"{args.preset} / {args.group}: {model.num_parameters():,} parameters; data {name} "
                  f"(train {len(data['train'])}, valid {len(data['valid'])}, test {len(data['test'])}); run folder {out}")  # type: ignore[arg-type]  # map-style datasets have __len__
        record = fit(model, data["train"], data["valid"], config, out, test_set=data["test"], resume=args.resume)
        if ctx.main and record["test"] is not None:
            test = record["test"]
            print(f"best epoch {record['best']['epoch']}: valid acc {record['best']['valid_acc']:.4f}; "
                  f"test acc {test['acc']:.4f}" if test else "")
        return record
    finally:
        if ctx.active and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
