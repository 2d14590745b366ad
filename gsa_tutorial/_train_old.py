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

Run safety (nothing silent, no run lost):

* a folder that holds a run is never overwritten unless asked (``overwrite=True``,
  ``--overwrite``); ``resume`` refuses a checkpoint whose model config, training settings or
  data differ and lists the fields (only :data:`RESUMABLE_CHANGES` may change; a new
  ``epochs`` is allowed and stated);
* a NaN/inf loss stops the run with :class:`NonFiniteLossError`; nothing of the failed epoch
  is saved, so ``last.pt`` is the last good epoch;
* checkpoints and metrics are written with ``gsa_tutorial._io.atomic_write`` (normal
  permissions under the umask; temporary files of a killed run removed by the next run);
  a damaged checkpoint gives a :class:`CheckpointError` naming the file and what to do;
* the CLI checks every flag, the run folder and (with ``--resume``) the checkpoint's
  settings before loading any data: a problem is an argparse error, exit code 2.

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
import signal
import sys
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

from ._checks import check_float, check_int
from ._io import atomic_write, remove_stale_temporaries

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
    "validate_train_config",
    "check_run_folder",
    "resume_differences",
    "CheckpointError",
    "RunFolderError",
    "ResumeMismatchError",
    "NonFiniteLossError",
    "RESUMABLE_CHANGES",
]

LAST, BEST, METRICS_JSON, METRICS_CSV = "last.pt", "best.pt", "metrics.json", "metrics.csv"
RUN_FILES = (LAST, BEST, METRICS_JSON, METRICS_CSV)


# ---------------------------------------------------------------------------------------
# Errors (each message says what was expected, what was found and what to do)
# ---------------------------------------------------------------------------------------


class CheckpointError(ValueError):
    """A checkpoint file is missing, empty, truncated, not a checkpoint, or lacks an entry."""


class RunFolderError(FileExistsError):
    """The run folder already holds a run and neither ``resume`` nor ``overwrite`` was asked for,
    or it cannot be written."""


class ResumeMismatchError(ValueError):
    """``resume`` was asked for with settings that differ from the checkpoint's (the fields are listed)."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint was left as it was."""


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
        validate_train_config(self)


#: TrainConfig fields that may differ between a checkpoint and a resumed run; they change how
#: long this call runs, what it prints or where, not what is learned. ``epochs`` may change too
#: (extend or shorten a run that has not passed the new end): the schedule is then recomputed
#: for the new length, which :func:`fit` states when it resumes.
RESUMABLE_CHANGES = ("epochs", "max_epochs_this_run", "max_minutes", "progress", "verbose", "num_workers", "eval_batch_size", "device")


def validate_train_config(config: TrainConfig) -> None:
    """Raise :class:`ValueError` naming the field, what it must be and what it is, for a bad config.

    Refused: non-integer or non-positive counts (bools too), a learning rate that is not a
    finite positive number, negative or non-finite weight decay, warm-up or momentum outside
    [0, 1], a ``grad_clip`` that is not a finite positive number (0 would learn nothing, a
    negative one would climb the loss), unknown optimizer/schedule/AMP names.
    """
    c, who = config, "TrainConfig"
    check_int("epochs", c.epochs, owner=who)
    check_int("batch_size", c.batch_size, owner=who)
    check_float("lr", c.lr, low=0.0, low_open=True, owner=who)
    check_float("weight_decay", c.weight_decay, low=0.0, owner=who)
    check_float("momentum", c.momentum, low=0.0, high=1.0, owner=who)
    check_float("warmup_epochs", c.warmup_epochs, low=0.0, owner=who)
    if c.grad_clip is not None:
        check_float("grad_clip", c.grad_clip, low=0.0, low_open=True, owner=who)
    check_int("seed", c.seed, minimum=0, owner=who)
    check_int("num_workers", c.num_workers, minimum=0, owner=who)
    if c.eval_batch_size is not None:
        check_int("eval_batch_size", c.eval_batch_size, owner=who)
    if c.max_epochs_this_run is not None:
        check_int("max_epochs_this_run", c.max_epochs_this_run, owner=who)
    if c.max_minutes is not None and not (
        isinstance(c.max_minutes, (int, float)) and not isinstance(c.max_minutes, bool) and c.max_minutes > 0 and math.isfinite(c.max_minutes)
    ):
        raise ValueError(f"max_minutes must be a positive number of minutes or None, got {c.max_minutes!r}")
    if c.optimizer not in ("adam", "adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {c.optimizer!r}")
    if c.schedule not in ("warmup_cosine", "constant"):
        raise ValueError(f"schedule must be 'warmup_cosine' or 'constant', got {c.schedule!r}")
    if c.amp_dtype not in ("auto", "bf16", "fp16"):
        raise ValueError(f"amp_dtype must be 'auto', 'bf16' or 'fp16', got {c.amp_dtype!r}")
    for name in ("amp", "progress", "verbose"):
        if not isinstance(getattr(c, name), bool):
            raise ValueError(f"{who}.{name} must be True or False, got {getattr(c, name)!r}")
    if c.device is not None:
        try:
            torch.device(c.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"{who}.device must be a device name such as 'cpu', 'cuda' or 'cuda:1', got {c.device!r}") from err


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
    """``torch.save`` through ``gsa_tutorial._io.atomic_write``: a temporary file in the same
    folder, renamed when complete (never a half-written checkpoint; the temporary files of a
    killed process are removed by the next save; normal file permissions)."""
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", *, require: Sequence[str] = ()
) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``: tensors and plain Python containers only.

    Args:
        path: the checkpoint.
        map_location: where to put its tensors.
        require: entries that must be present (e.g. ``("model", "optimizer")`` to resume).

    Raises:
        CheckpointError: the file is missing, empty, truncated or not a checkpoint saved by
            this package, or lacks a required entry; the message names the file and what to do.
    """
    path = Path(path)
    what_to_do = (
        "It was probably cut off by a crash or a full disk, or it is not a checkpoint saved by gsa_tutorial. "
        f"Delete it and train again (the CLI: --overwrite), or restore it from a copy; {path.parent}/"
        f"{BEST if path.name == LAST else LAST} may still be good."
    )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (expected a file saved by gsa_tutorial.train)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes). {what_to_do}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, random bytes, a pickle of arbitrary objects, ...
        raise CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size} bytes): {type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''}. {what_to_do} "
            "(Do not load it with weights_only=False unless you trust where it came from.)"
        ) from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict with a 'model' entry. {what_to_do}")
    missing = [k for k in require if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks {missing} (it has {sorted(ckpt)}); a resumable last.pt saved by "
            f"gsa_tutorial.train has {sorted(require)}. {what_to_do}"
        )
    return ckpt


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w", newline="") as f:
        f.write(text)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a :class:`~gsa_tutorial.model.GSANet` from a checkpoint (``best.pt`` or ``last.pt``)."""
    from .model import GSANet, GSANetConfig

    ckpt = load_checkpoint(path, map_location, require=("model",))
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
    if len(dataset) == 0:  # type: ignore[arg-type]  # map-style datasets have __len__
        raise ValueError("evaluate: the dataset is empty (0 images), so there is no loss or accuracy to report")
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
    with atomic_write(run_dir / METRICS_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


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


# ---------------------------------------------------------------------------------------
# Run safety: the run folder, resuming, finite losses
# ---------------------------------------------------------------------------------------


def _describe_run(run_path: Path) -> str:
    """``"a finished run of 3 epochs"`` / ``"an unfinished run (2 of 10 epochs)"`` / ``"run files"``."""
    try:
        record = json.loads((run_path / METRICS_JSON).read_text())
        done, planned = len(record["history"]), record["train_config"]["epochs"]
        return f"a finished run of {done} epochs" if record.get("finished") else f"an unfinished run ({done} of {planned} epochs)"
    except (OSError, ValueError, KeyError, TypeError):
        return "run files (" + ", ".join(n for n in RUN_FILES if (run_path / n).exists()) + ")"


def check_run_folder(run_dir: str | os.PathLike, *, resume: bool, overwrite: bool, flags: bool = False) -> None:
    """Refuse to start a new run in a folder that holds one, and a folder that cannot be written.

    A folder with any of ``last.pt``, ``best.pt``, ``metrics.json`` holds a run. Starting a new
    run there needs ``overwrite=True`` (the old files are then replaced epoch by epoch: until the
    first epoch ends the folder still holds the old run); ``resume=True`` continues it instead.

    Args:
        run_dir: the run folder.
        resume, overwrite: as in :func:`fit`.
        flags: word the message with the CLI's flags (``--resume``) instead of the arguments.

    Raises:
        RunFolderError: the folder holds a run (what it holds and the three ways on are in
            the message), or it (or the folder that would hold it) is not a writable folder.
    """
    run_path = Path(run_dir)
    resume_word, overwrite_word, out_word = ("--resume", "--overwrite", "another --out") if flags else ("resume=True", "overwrite=True", "another run_dir")
    if run_path.exists() and not run_path.is_dir():
        raise RunFolderError(f"the run folder {run_path} exists and is not a folder; choose {out_word}")
    existing = next((p for p in (run_path, *run_path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RunFolderError(f"cannot create the run folder {run_path}: {existing} is a file, not a folder; choose {out_word}")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"cannot write to {existing} (read-only or not yours), so the run folder {run_path} cannot be written; choose {out_word}")
    if resume and overwrite:
        raise RunFolderError(f"{resume_word} and {overwrite_word} contradict each other: continue the run in {run_path}, or replace it, not both")
    if overwrite or not run_path.is_dir():
        return
    if resume:
        if not (run_path / LAST).exists() and any((run_path / name).exists() for name in (BEST, METRICS_JSON)):
            raise RunFolderError(
                f"nothing to resume: {run_path} has no {LAST} but holds {_describe_run(run_path)}; starting afresh "
                f"would replace it. Pass {overwrite_word} to train again there, or choose {out_word}."
            )
        return
    if any((run_path / name).exists() for name in (LAST, BEST, METRICS_JSON)):
        raise RunFolderError(
            f"{run_path} already holds {_describe_run(run_path)}; refusing to overwrite it. Pass {resume_word} to "
            f"continue it, {overwrite_word} to replace it, or choose {out_word}."
        )


def _probe_writable(run_path: Path) -> None:
    """Create and remove a file in ``run_path`` (an unwritable folder fails now, not after an epoch)."""
    try:
        with tempfile.TemporaryFile(dir=run_path):
            pass
    except OSError as err:
        raise RunFolderError(f"cannot write to the run folder {run_path} ({err.strerror or err}); choose a writable folder") from err


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (a config read back from JSON or a checkpoint compares equal)."""
    return json.loads(json.dumps(value, default=str))


def resume_differences(
    ckpt: dict[str, Any],
    *,
    model_config: dict[str, Any] | None,
    train_config: TrainConfig,
    data: dict[str, Any] | None = None,
) -> tuple[list[str], list[str]]:
    """Compare a checkpoint with the settings of a resumed run.

    Args:
        ckpt: the checkpoint (``last.pt``).
        model_config: ``GSANetConfig.to_dict()`` of the model (None: not a GSANet, not compared).
        train_config: the requested :class:`TrainConfig`.
        data: what the run trains on (sizes, data set name and options), compared key by key
            with the checkpoint's ``data`` where both have the key.

    Returns:
        ``(differences, notes)``: one line per field that must not change (``model group:
        checkpoint 'r4', requested 'm2'``), and one per allowed change worth stating (the
        extended number of epochs). Fields that the checkpoint does not record are not compared.
    """
    differences, notes = [], []
    saved_model = ckpt.get("model_config")
    if saved_model is not None and model_config is not None:
        saved, wanted = _plain(saved_model), _plain(model_config)
        for key in sorted(set(saved) | set(wanted)):
            if saved.get(key) != wanted.get(key):
                differences.append(f"model {key}: checkpoint {saved.get(key)!r}, requested {wanted.get(key)!r}")
    saved_train, wanted_train = _plain(ckpt.get("train_config") or {}), _plain(asdict(train_config))
    for key in sorted(set(saved_train) & set(wanted_train)):
        if key in RESUMABLE_CHANGES or saved_train[key] == wanted_train[key]:
            continue
        differences.append(f"training {key}: checkpoint {saved_train[key]!r}, requested {wanted_train[key]!r}")
    done = len(ckpt.get("history", []))
    before = saved_train.get("epochs")
    if train_config.epochs < done:
        differences.append(f"training epochs: the checkpoint has trained {done} epochs, requested {train_config.epochs} (fewer)")
    elif before is not None and before != train_config.epochs:
        notes.append(
            f"epochs changed from {before} to {train_config.epochs}: the learning-rate schedule is recomputed for "
            f"{train_config.epochs} epochs from epoch {done + 1} on, so this run differs from one planned for "
            f"{train_config.epochs} epochs from the start"
        )
    saved_data, wanted_data = _plain(ckpt.get("data") or {}), _plain(data or {})
    for key in sorted(set(saved_data) & set(wanted_data)):
        if saved_data[key] != wanted_data[key]:
            differences.append(f"data {key}: checkpoint {saved_data[key]!r}, requested {wanted_data[key]!r}")
    return differences, notes


def _mismatch_error(path: Path, differences: list[str], flags: bool) -> ResumeMismatchError:
    allowed = "--epochs, --max-epochs-this-run, --max-minutes, --num-workers, --device, --no-progress" if flags else ", ".join(RESUMABLE_CHANGES)
    new_run = "another --out, or --overwrite to replace it" if flags else "another run_dir, or overwrite=True to replace it"
    return ResumeMismatchError(
        f"cannot resume {path}: the request differs from the checkpoint in {len(differences)} field(s):\n  "
        + "\n  ".join(differences)
        + f"\nResume with the run's own settings (they are in {path.parent / METRICS_JSON}), or start a new run "
        f"with {new_run}. Only these may change on resume: {allowed}."
    )


_RESUME_KEYS = ("model", "optimizer", "scheduler", "history", "best", "rng")


def fit(
    model: nn.Module,
    train_set: Dataset,
    valid_set: Dataset,
    config: TrainConfig = TrainConfig(),
    run_dir: str | os.PathLike | None = None,
    *,
    test_set: Dataset | None = None,
    resume: bool = False,
    overwrite: bool = False,
    data_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` with model selection on ``valid_set``; evaluate ``test_set`` once at the end.

    Run safety (chapter 8; README "What happens when..."): a folder that holds a run is never
    overwritten unless ``overwrite=True``; ``resume=True`` refuses a checkpoint whose model or
    training settings differ (:class:`ResumeMismatchError` lists the fields; ``epochs`` may
    change, which is stated); a NaN or infinite loss stops the run
    (:class:`NonFiniteLossError`) and leaves the last good checkpoint as it was; an unwritable
    ``run_dir`` fails before the first epoch.

    Args:
        model: any module mapping images ``(B, C, H, W)`` to logits ``(B, classes)``. It is
            moved to the device and, at the end, holds the *best* weights (by validation
            accuracy, ties broken by validation loss).
        train_set, valid_set, test_set: datasets of ``(image, label)``.
        config: a :class:`TrainConfig`.
        run_dir: folder for checkpoints and metrics; None keeps everything in memory.
        resume: continue from ``run_dir/last.pt`` if it exists.
        overwrite: start a new run in a ``run_dir`` that holds one, replacing it.
        data_spec: how the data were made (name, options, ...), recorded in the checkpoint
            and compared on resume, as the sizes of ``train_set`` and ``valid_set`` are.

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
    for split, dataset in (("train_set", train_set), ("valid_set", valid_set), ("test_set", test_set)):
        if dataset is not None and len(dataset) == 0:  # type: ignore[arg-type]  # map-style datasets have __len__
            why = {"train_set": "nothing would be learned", "valid_set": "model selection needs validation images",
                   "test_set": "a test accuracy of 0 images means nothing (pass test_set=None to skip the test)"}[split]
            raise ValueError(f"{split} is empty (0 images): {why}")
    run_path = Path(run_dir) if run_dir is not None else None
    writer = ctx.main and run_path is not None
    if writer and run_path is not None:  # (writer implies a run folder; says so to mypy)
        check_run_folder(run_path, resume=resume, overwrite=overwrite)
        run_path.mkdir(parents=True, exist_ok=True)
        _probe_writable(run_path)
        for name in RUN_FILES:  # temporary files of a killed earlier run
            remove_stale_temporaries(run_path / name)
    show = config.progress and ctx.main
    say = config.verbose and ctx.main
    data_record = {"train_size": len(train_set), "valid_size": len(valid_set), **(data_spec or {})}  # type: ignore[arg-type]  # map-style datasets have __len__

    bare = _unwrap(model).to(device)
    ckpt = None
    if resume and run_path is not None and (run_path / LAST).exists():
        ckpt = load_checkpoint(run_path / LAST, map_location="cpu", require=_RESUME_KEYS)
        differences, notes = resume_differences(ckpt, model_config=_model_config(bare), train_config=config, data=data_record)
        if differences:
            raise _mismatch_error(run_path / LAST, differences, flags=False)
        try:
            load_state_dict(bare, ckpt["model"])
        except RuntimeError as err:
            raise ResumeMismatchError(
                f"cannot resume {run_path / LAST}: its weights do not fit this model ({str(err).splitlines()[0]}); "
                "it was saved from another architecture. Resume with the run's own model, or start a new run."
            ) from err
        _log(f"resuming {run_path / LAST} after epoch {len(ckpt['history'])}" + "".join(f"; {n}" for n in notes), say)
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
        "data": data_record,
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
            best_state = load_checkpoint(run_path / BEST, require=("model",))["model"]
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
        bad = torch.zeros((), dtype=torch.int32, device=device)  # steps with a non-finite loss
        bar = _progress(train_loader, enabled=show, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}")
        for step, (images, labels) in enumerate(bar, start=1):
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
            bad += (~torch.isfinite(loss.detach())).int()
            # On CPU checking is free; on a GPU every few steps (each check waits for the device).
            if device.type == "cpu" or step % _FINITE_CHECK_EVERY == 0 or step == steps_per_epoch:
                _stop_if_not_finite(bad, ctx, epoch + 1, step, steps_per_epoch, loss, scheduler, run_path, record)
            with torch.no_grad():
                totals[0] += loss.detach().double() * labels.numel()
                totals[1] += (logits.argmax(dim=1) == labels).sum()
                totals[2] += labels.numel()
            if show:
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        _stop_if_weights_not_finite(bare, epoch + 1, run_path, record)
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
                    "data": data_record,
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


_FINITE_CHECK_EVERY = 10


def _last_good(run_path: Path | None, record: dict[str, Any]) -> str:
    done = len(record["history"])
    if run_path is None:
        return "nothing was saved (no run folder)"
    if done == 0:
        return f"no epoch had finished, so nothing was saved in {run_path}"
    return f"the last good checkpoint, {run_path / LAST} (after epoch {done}), was left as it was; nothing of this epoch was saved"


def _stop_if_not_finite(
    bad: torch.Tensor, ctx: _Dist, epoch: int, step: int, steps: int, loss: torch.Tensor, scheduler: Any,
    run_path: Path | None, record: dict[str, Any],
) -> None:
    """Raise :class:`NonFiniteLossError` if any process saw a NaN/inf loss (all processes stop together)."""
    flag = bad.clone()
    if ctx.active:
        dist.all_reduce(flag)
    if int(flag.item()) == 0:
        return
    raise NonFiniteLossError(
        f"training stopped: the loss is not finite ({float(loss.detach()):.4g} on this process) at epoch {epoch}, "
        f"step {step} of {steps} (lr {scheduler.get_last_lr()[0]:.3g}); {_last_good(run_path, record)}. "
        "Usual causes: a learning rate too high (lower --lr / TrainConfig.lr, or set grad_clip), or NaN/inf "
        "values in the data. The model in memory holds the broken weights; reload the good ones with load_model."
    )


def _stop_if_weights_not_finite(model: nn.Module, epoch: int, run_path: Path | None, record: dict[str, Any]) -> None:
    """A last step can break the weights without a non-finite loss being seen: never save those."""
    broken = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if broken:
        raise NonFiniteLossError(
            f"training stopped: after epoch {epoch} the weights hold NaN/inf values ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}); {_last_good(run_path, record)}. Lower the learning rate or set grad_clip."
        )


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
    interrupted. The model's weights become the run's best weights. A run made with other
    settings (model, training or data sizes) is never loaded in place of the one asked for:
    :class:`ResumeMismatchError` lists the fields; asking for more epochs continues the run.

    Returns:
        ``(model, record)`` with ``record`` as returned by :func:`fit`.
    """
    run_path = Path(run_dir)
    metrics = run_path / METRICS_JSON
    if metrics.exists() and (run_path / BEST).exists():
        try:
            record = json.loads(metrics.read_text())
        except ValueError as err:
            raise CheckpointError(
                f"cannot read {metrics} ({err}); it is damaged. Delete it to resume from {run_path / LAST}, "
                "or delete the run folder to train again."
            ) from err
        differences, _ = resume_differences(
            record, model_config=_model_config(model), train_config=config,
            data={"train_size": len(train_set), "valid_size": len(valid_set)},  # type: ignore[arg-type]  # map-style datasets have __len__
        )
        if differences:
            raise ResumeMismatchError(
                f"{run_path} holds a run made with other settings than the ones asked for, in {len(differences)} "
                "field(s):\n  " + "\n  ".join(differences) + f"\nUse another run_dir for the new settings, or delete "
                f"{run_path} to train again there."
            )
        if record.get("finished") and len(record.get("history", [])) >= config.epochs:
            load_state_dict(model, load_checkpoint(run_path / BEST, require=("model",))["model"])
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
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; ``ValueError`` for an item without ``=`` or a key."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = _parse_value(value)
    return out


def _limit(dataset: Dataset, n: int | None) -> Dataset:
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))  # type: ignore[arg-type]  # map-style datasets have __len__


# argparse types: a bad value is a usage error ("argument --lr: ..."), exit code 2.


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _finite_float(*, positive: bool) -> Any:
    want = "a finite number > 0" if positive else "a finite number >= 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}")
        return value

    parse.__name__ = want
    return parse


def _group_name(text: str) -> str:
    from .groups import get_group

    try:
        get_group(text)
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The CLI's flags; every value is checked here (a bad one is an argparse error, exit code 2)."""
    from .data import DATASET_NAMES
    from .model import PRESETS

    p = argparse.ArgumentParser(
        prog="python -m gsa_tutorial.train",
        description="Train a GSA-Net (Romero & Cordonnier, 2021). Works the same under torchrun.",
    )
    positive, count = _int_at_least(1), _int_at_least(0)
    p.add_argument("--preset", default="small", choices=PRESETS, help="model preset: %(choices)s (default: %(default)s)")
    p.add_argument("--group", default="r4", type=_group_name, help="z2, r4, r8, r12, r16, m4 (any rN / mN)")
    p.add_argument(
        "--dataset", default=None, choices=DATASET_NAMES, metavar="NAME",
        help=f"data set: {', '.join(DATASET_NAMES)} (default: the preset's; small: mnist-mini-rotated, the real digits shipped with the package)",
    )
    p.add_argument(
        "--data-dir", default=None,
        help="the data folder that holds one folder per data set (rotmnist/, cifar10/, ...), not the data set's "
        "own folder (default $GSA_DATA_DIR or ~/.cache/gsa_tutorial)",
    )
    p.add_argument("--download", action="store_true", help="download missing data files")
    p.add_argument("--out", default=None, help="run folder (default runs/<preset>-<group>-seed<seed>)")
    p.add_argument("--overwrite", action="store_true", help="start a new run in --out even if it holds one, replacing it")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt (same settings; --epochs may grow)")
    p.add_argument("--epochs", type=positive, default=None)
    p.add_argument("--batch-size", type=positive, default=None, help="global batch size")
    p.add_argument("--lr", type=_finite_float(positive=True), default=None)
    p.add_argument("--weight-decay", type=_finite_float(positive=False), default=None)
    p.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default=None)
    p.add_argument("--schedule", choices=("warmup_cosine", "constant"), default=None)
    p.add_argument("--warmup-epochs", type=_finite_float(positive=False), default=None)
    p.add_argument("--grad-clip", type=_finite_float(positive=True), default=None, help="max gradient norm (> 0)")
    p.add_argument("--amp", action="store_true", help="mixed precision (off by default)")
    p.add_argument("--amp-dtype", choices=("auto", "bf16", "fp16"), default="auto")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--seed", type=count, default=0)
    p.add_argument("--num-workers", type=count, default=0)
    p.add_argument("--max-epochs-this-run", type=positive, default=None, help="stop after this many epochs (resumable)")
    p.add_argument(
        "--max-minutes", type=_finite_float(positive=True), default=None,
        help="time budget of this call: stop at the last epoch boundary that fits (checkpointed, resumable; the best model is still tested)",
    )
    p.add_argument("--train-size", type=positive, default=None, help="use only the first N training images")
    p.add_argument("--valid-size", type=positive, default=None, help="use only the first N validation images")
    p.add_argument("--test-size", type=positive, default=None, help="use only the first N test images")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE", help="override a GSANetConfig field, e.g. --model channels=8")
    p.add_argument(
        "--data-option", action="append", default=[], metavar="KEY=VALUE", help="extra argument of get_dataset, e.g. --data-option size=14 (synthetic)"
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p


def _settings(args: argparse.Namespace) -> tuple[Any, TrainConfig, dict[str, Any], str]:
    """Model config, training config, data options and data set name from the flags (ValueError if bad)."""
    from .model import preset

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
    return model_config, config, data_options, name


def _data_error_for_the_cli(err: Exception, args: argparse.Namespace, name: str) -> str:
    """A data error worded with the CLI's flags (the data module speaks of ``download=True``/``root=``)."""
    text = str(err).replace("or pass download=True", "or pass --download").replace("unless you pass root=...", "unless you pass --data-dir")
    hints = []
    if args.data_dir is not None:
        given = Path(args.data_dir).expanduser()
        own = {"rotmnist": "rotmnist", "cifar10": "cifar10", "pcam": "pcam", "mnist-idx-rotated": "mnist"}.get(name, name)
        if given.name == own or given.name in ("rotmnist", "cifar10", "pcam", "mnist"):
            hints.append(
                f"--data-dir {args.data_dir} looks like the data set's own folder; --data-dir is the folder that holds "
                f"it: pass --data-dir {given.parent}"
            )
    if not args.download:
        hints.append("add --download to download missing files")
    return text + ("\nOn the command line: " + "; ".join(hints) + "." if hints else "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m gsa_tutorial.train``; returns the run record.

    Every flag, the run folder (``--resume``/``--overwrite``) and, with ``--resume``, the
    checkpoint's settings are checked before any data is loaded: a problem is an argparse
    error (exit code 2) that says what was expected and what was given. A run that fails
    later (a non-finite loss, a damaged checkpoint) ends with ``error: ...`` and exit code 1.
    """
    from .data import ChecksumError, DatasetNotFoundError, get_dataset
    from .model import GSANet

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        model_config, config, data_options, name = _settings(args)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    out = Path(args.out or f"runs/{args.preset}-{args.group}-seed{args.seed}")
    data_spec = {"dataset": name, "data_options": data_options, "train_limit": args.train_size, "valid_limit": args.valid_size}
    try:
        check_run_folder(out, resume=args.resume, overwrite=args.overwrite, flags=True)
        if args.resume and (out / LAST).exists():
            ckpt = load_checkpoint(out / LAST, require=_RESUME_KEYS)
            differences, _ = resume_differences(ckpt, model_config=model_config.to_dict(), train_config=config, data=data_spec)
            if differences:
                raise _mismatch_error(out / LAST, differences, flags=True)
    except (RunFolderError, ResumeMismatchError, CheckpointError) as err:
        parser.error(str(err))

    ctx = _init_distributed_from_env(args.device)
    previous_sigterm = None
    if not ctx.active and _in_main_thread():
        # SIGTERM (a scheduler's kill, `kill PID`) unwinds like Ctrl-C, so temporary files are removed now.
        previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:

        def load_data() -> dict[str, Dataset]:
            return {
                split: _limit(get_dataset(name, split, root=args.data_dir, download=args.download, **data_options), n)
                for split, n in (("train", args.train_size), ("valid", args.valid_size), ("test", args.test_size))
            }

        # Rank 0 first (it may download), then the others read the cached files.
        try:
            data = load_data() if ctx.main else None
            if ctx.active:
                dist.barrier()
            if data is None:
                data = load_data()
        except TypeError as err:
            if "argument" not in str(err):
                raise
            parser.error(f"--data-option {', '.join(data_options) or '(none)'}: the data set {name!r} does not take it ({err})")
        except (DatasetNotFoundError, ChecksumError) as err:
            parser.error(_data_error_for_the_cli(err, args, name))
        set_seed(args.seed)  # the same initial weights on every process
        model = GSANet(model_config)
        if ctx.main:
            print(f"{args.preset} / {args.group}: {model.num_parameters():,} parameters; data {name} "
                  f"(train {len(data['train'])}, valid {len(data['valid'])}, test {len(data['test'])}); run folder {out}")  # type: ignore[arg-type]  # map-style datasets have __len__
        try:
            record = fit(
                model, data["train"], data["valid"], config, out, test_set=data["test"],
                resume=args.resume, overwrite=args.overwrite, data_spec=data_spec,
            )
        except (NonFiniteLossError, CheckpointError, ResumeMismatchError, RunFolderError) as err:
            print(f"{parser.prog}: error: {err}", file=sys.stderr)
            raise SystemExit(1) from err
        if ctx.main and record["test"] is not None:
            test = record["test"]
            print(f"best epoch {record['best']['epoch']}: valid acc {record['best']['valid_acc']:.4f}; "
                  f"test acc {test['acc']:.4f}" if test else "")
        return record
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        if ctx.active and dist.is_initialized():
            dist.destroy_process_group()


def _in_main_thread() -> bool:
    """True in the main thread (only there can signal handlers be installed)."""
    import threading

    return threading.current_thread() is threading.main_thread()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
