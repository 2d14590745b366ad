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

**Option values** (constructor arguments and config fields) are checked here too, so that the
layers, :class:`~gsa_tutorial.model.GSANetConfig` and the command line refuse a bad value with
the same message: integers (:func:`check_int`), numbers in a range (:func:`check_float`,
:func:`check_dropout`), a window size (:func:`check_window`), a name from a list
(:func:`check_choice`), the group layer's encoding and query (:func:`check_group_encoding`) and
the MLP width (:func:`mlp_hidden`). A bad option value is a :class:`ValueError` whatever its type.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = [
    "check_input",
    "check_int",
    "check_float",
    "check_dropout",
    "check_window",
    "check_choice",
    "check_group_encoding",
    "mlp_hidden",
]


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
    channels: int | None = None,
) -> None:
    """Check a module's input: a tensor of rank in ``ranks``, no empty axis, the module's dtype and device.

    Args:
        module: the module whose parameters give the dtype and device (none: not checked).
        x: the input.
        layout: the documented shape, e.g. ``"(B, C, H, W)"``, for the message.
        ranks: accepted ``x.dim()`` values.
        who: the name in messages (default: the class name).
        integer_hint: added to the message for integer inputs (how to convert them).
        channels: the number of channels (axis 1) the module expects (None: not checked).

    Raises:
        TypeError: not a tensor, or a dtype other than the module's (see the module docstring).
        ValueError: a wrong rank, an axis of size 0 or another device.
    """
    who = who or type(module).__name__
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} expects a tensor of shape {layout}, got {type(x).__name__}")
    if x.dim() not in ranks:
        raise ValueError(f"{who} expects input of shape {layout}, got shape {tuple(x.shape)} (rank {x.dim()})")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{who} expects {channels} input channels: a tensor of shape {layout} with {channels} channels on axis 1, "
            f"got shape {tuple(x.shape)}"
        )
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
    want = "a positive integer (>= 1)" if minimum == 1 else f"an integer >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}{name} must be {want}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{where}{name} must be {want}, got {value!r}")
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


def check_dropout(name: str, value: Any, *, owner: str = "") -> float:
    """A dropout probability: a number in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{owner + '.' if owner else ''}{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_window(value: Any, *, allow_none: bool = True, owner: str = "") -> int | None:
    """A window size: a positive odd integer ``k`` (a ``k x k`` neighbourhood), or ``None`` (global attention)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        where = f"{owner}." if owner else ""
        alternative = " or None (global attention)" if allow_none else ""
        raise ValueError(f"{where}window must be a positive odd integer (k for a k x k neighbourhood){alternative}, got {value!r}")
    return value


def _alternatives(choices: tuple[str, ...]) -> str:
    quoted = [repr(c) for c in choices]
    if len(quoted) <= 2:
        return " or ".join(quoted)
    return "one of " + ", ".join(quoted)


def check_choice(name: str, value: Any, choices: tuple[str, ...], *, owner: str = "", hint: str = "") -> str:
    """``value`` if it is one of ``choices``; else a :class:`ValueError` that lists them (``hint`` appended)."""
    if not isinstance(value, str) or value not in choices:
        where = f"{owner}." if owner else ""
        raise ValueError(f"{where}{name} must be {_alternatives(choices)}, got {value!r}{hint}")
    return value


def check_group_encoding(encoding: Any, query: Any, encodings: tuple[str, ...], *, owner: str = "") -> tuple[str, str]:
    """The group layer's ``group_encoding`` (one of ``encodings``) and ``query`` (``"all"`` or ``"own"``).

    ``query="own"`` keeps only the query's own element ``h̃ = h`` with the group term ``e(h⁻¹ĥ)``,
    which is the ``"relative"`` table read at ``h̃ = h``: it accepts no other encoding.
    """
    hint = " ('equivariant' was renamed 'relative')" if encoding == "equivariant" else ""
    check_choice("group_encoding", encoding, encodings, owner=owner, hint=hint)
    check_choice("query", query, ("all", "own"), owner=owner, hint=" (all: sum over the query's group elements; own: h̃ = h)")
    if query == "own" and encoding != "relative":
        raise ValueError(f"query='own' uses the group term e(h⁻¹ĥ) and accepts only group_encoding='relative', got {encoding!r}")
    return encoding, query


def mlp_hidden(channels: int, mlp_ratio: Any, *, owner: str = "") -> int:
    """Hidden width ``round(channels * mlp_ratio)`` of a block's pointwise MLP; refuses a ratio that gives none."""
    ratio = check_float("mlp_ratio", mlp_ratio, low=0.0, low_open=True, owner=owner)
    if channels * ratio < 0.5:  # would round to no hidden channel at all
        where = f"{owner}." if owner else ""
        raise ValueError(
            f"{where}mlp_ratio={mlp_ratio!r} gives {channels * ratio:.3g} hidden MLP channels for {channels} channels; "
            f"use mlp_ratio >= {1 / (2 * channels):.3g} (at least one hidden channel)"
        )
    return max(int(round(channels * ratio)), 1)
