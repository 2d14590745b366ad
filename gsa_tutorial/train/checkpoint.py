"""What a checkpoint holds and how it is read: weights without wrapper prefixes, loaded
strictly; random states; ``torch.load(..., weights_only=True)`` with errors that name the file.

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with
``torch.load(path, weights_only=True)``; state dicts are saved without the ``module.``
(DDP) / ``_orig_mod.`` (``torch.compile``) prefixes and loaded with ``strict=True`` (the
official code saves with the prefix and loads with ``strict=False``, which silently loads
nothing). Files are written with the package's one atomic-write helper
(:func:`gsa_tutorial._io.atomic_write`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from .._io import atomic_torch_save
from ..model import GSANet, GSANetConfig

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "clean_state_dict", "load_state_dict", "load_model", "set_seed"]

#: File names in a run folder: the resumable checkpoint, the best weights, the metrics.
LAST, BEST, METRICS_JSON, METRICS_CSV = "last.pt", "best.pt", "metrics.json", "metrics.csv"
RUN_FILES = (LAST, BEST, METRICS_JSON, METRICS_CSV)


class CheckpointError(ValueError):
    """A checkpoint file is missing, empty, truncated, not a checkpoint, or lacks an entry."""


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
    atomic_torch_save(obj, path)


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


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a :class:`~gsa_tutorial.model.GSANet` from a checkpoint (``best.pt`` or ``last.pt``)."""
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
