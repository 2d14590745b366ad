"""Where a run happens: the device, the ``torchrun`` processes, and the precision.

Under ``torchrun`` (``WORLD_SIZE > 1``) every process trains on its shard of each global batch,
gradients are averaged by ``DistributedDataParallel``, metrics are summed over processes, and
only rank 0 prints and writes files. Backend: NCCL on CUDA, Gloo on CPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__: list[str] = []  # the package's own machinery; the public names are in gsa_tutorial.train


@dataclass(frozen=True)
class _Dist:
    """This process's place in a ``torchrun`` job (one process: rank 0 of 1)."""

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


def _amp_dtype(amp: bool, amp_dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``TrainConfig.amp`` / ``amp_dtype`` on ``device`` (None: full precision)."""
    if not amp:
        return None
    if amp_dtype == "bf16":
        return torch.bfloat16
    if amp_dtype == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
