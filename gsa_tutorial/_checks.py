"""Argument and input checks shared by the layers and the model: one rule, one message.

**The dtype rule.** A module takes floating-point tensors of *its own* dtype (the dtype of its
parameters: float32 unless you called ``.double()`` / ``.to(dtype)``). Anything else is refused
with a :class:`TypeError` that names both dtypes and the conversion to make; nothing is cast
silently, because a silent cast hides a float64 check that really ran in float32, or
integer images that were never scaled to [0, 1]. The one exception is mixed precision: inside
``torch.autocast`` a layer may receive the autocast dtype (that is what autocast is for).
Integer images (``uint8`` in [0, 255]) are refused by :class:`~gsa_tutorial.model.GSANet` with
the conversion to write, ``x.float() / 255``.

Other checks: the input is a tensor of the documented rank, with no axis of size 0, on the
module's device (:class:`ValueError`, naming the expected layout and the shape given).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["check_input", "check_int", "check_float"]


def _reference(module: nn.Module) -> torch.Tensor | None:
    for t in module.parameters():
        return t
    for b in module.buffers():
        if b.is_floating_point():
            return b
    return None


def _autocast_on(device: torch.device) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device.type))
    except (RuntimeError, TypeError):  # a device type autocast does not know (meta, ...)
        return False


def check_input(
    module: nn.Module,
    x: Any,
    *,
    layout: str,
    ranks: tuple[int, ...],
    who: str | None = None,
    integer_hint: str = "",
) -> None:
    """Check a module's input: a tensor of rank in ``ranks``, no empty axis, the module's dtype and device.

    Args:
        module: the module whose parameters give the dtype and device (none: not checked).
        x: the input.
        layout: the documented shape, e.g. ``"(B, C, H, W)"``, for the message.
        ranks: accepted ``x.dim()`` values.
        who: the name in messages (default: the class name).
        integer_hint: added to the message for integer inputs (how to convert them).

    Raises:
        TypeError: not a tensor, or a dtype other than the module's (see the module docstring).
        ValueError: a wrong rank, an axis of size 0 or another device.
    """
    who = who or type(module).__name__
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} expects a tensor of shape {layout}, got {type(x).__name__}")
    if x.dim() not in ranks:
        raise ValueError(f"{who} expects input of shape {layout}, got shape {tuple(x.shape)} (rank {x.dim()})")
    if x.numel() == 0:
        raise ValueError(
            f"{who} expects a non-empty input of shape {layout}, got shape {tuple(x.shape)} "
            "(a batch or an axis of size 0)"
        )
    ref = _reference(module)
    if ref is None:
        if not x.is_floating_point():
            raise TypeError(f"{who} expects a floating-point tensor, got dtype {x.dtype}")
        return
    if x.device != ref.device:
        raise ValueError(
            f"{who} expects a tensor on {ref.device} (where its parameters are), got one on {x.device}; "
            f"move it with x.to({str(ref.device)!r}) or the module with .to({str(x.device)!r})"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{who} expects a floating-point tensor of dtype {ref.dtype} (the module's dtype), got dtype "
            f"{x.dtype}{integer_hint}"
        )
    if x.dtype != ref.dtype and not _autocast_on(x.device):
        raise TypeError(
            f"{who} expects dtype {ref.dtype} (the dtype of its parameters), got dtype {x.dtype}; convert the "
            f"input with x.to({ref.dtype}) or the module with module.to({x.dtype}) (inside torch.autocast "
            "lower-precision inputs are accepted)"
        )


def check_int(name: str, value: Any, *, minimum: int = 1, owner: str = "") -> int:
    """``value`` as an int ``>= minimum``; refuses bools, floats and strings (:class:`ValueError`, as for
    every bad option value in this package: the option is wrong, whatever its type)."""
    where = f"{owner}." if owner else ""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{where}{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_float(
    name: str, value: Any, *, low: float | None = None, high: float | None = None, low_open: bool = False, owner: str = ""
) -> float:
    """``value`` as a finite float in the given range; refuses bools, strings, NaN and infinities."""
    where = f"{owner}." if owner else ""
    lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
    hi = "" if high is None else f"<= {high}"
    want = " and ".join(s for s in (lo, hi) if s) or "finite"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}{name} must be a finite number {want}, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v) or (low is not None and (v <= low if low_open else v < low)) or (high is not None and v > high):
        raise ValueError(f"{where}{name} must be a finite number {want}, got {value!r}")
    return v
