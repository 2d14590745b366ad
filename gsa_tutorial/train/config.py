"""How to train (not what: the model has its own config): :class:`TrainConfig`, its checks, and
the settings that go with each model preset.

Every field carries its command-line help in its metadata, so the CLI's flags are derived from
this dataclass (:mod:`gsa_tutorial.train.cli`) and no field is stated a second time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .._checks import check_float, check_int

__all__ = ["TrainConfig", "validate_train_config", "train_preset", "RESUMABLE_CHANGES"]


def _option(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field with its command-line help and bounds (``minimum`` for counts,
    ``positive`` for numbers, ``choices``, ``flag`` for another flag name, ``cli=False`` to
    keep it off the command line)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class TrainConfig:
    """How to train (not what: the model has its own config)."""

    epochs: int = _option(10, "number of epochs (the schedule's length)", minimum=1)
    # The *global* batch: under torchrun each of the N processes takes batch_size / N.
    batch_size: int = _option(32, "global batch size", minimum=1)
    lr: float = _option(1e-3, "peak learning rate", positive=True)
    # Applied to weights only: norms, biases and embeddings are never decayed (loop.py).
    weight_decay: float = _option(1e-4, "weight decay of the weights (never of norms, biases, embeddings)", positive=False)
    optimizer: str = _option("adam", "adam (as the official code), adamw or sgd", choices=("adam", "adamw", "sgd"))
    momentum: float = _option(0.9, "SGD momentum (sgd only)", positive=False)
    # "warmup_cosine": linear warm-up from 0 for warmup_epochs, then a cosine decay to 0 at
    # the last step (the official trainer's linear_warmup_cosine); "constant": no schedule.
    schedule: str = _option("warmup_cosine", "learning-rate schedule", choices=("warmup_cosine", "constant"))
    warmup_epochs: float = _option(1.0, "epochs of linear warm-up (may be fractional)", positive=False)
    grad_clip: float | None = _option(None, "max gradient norm (> 0); default: no clipping", positive=True)
    # Mixed precision is off by default: the official code forces fp16 autocast on every CUDA
    # forward and reports divergence with learning-rate schedules.
    amp: bool = _option(False, "mixed precision (off by default)")
    amp_dtype: str = _option("auto", "auto: bf16 where supported, else fp16", choices=("auto", "bf16", "fp16"))
    device: str | None = _option(None, "cpu, cuda, cuda:1 (default: cuda if available)")
    seed: int = _option(0, "seed of the weights, the batch order and dropout", minimum=0)
    num_workers: int = _option(0, "DataLoader worker processes", minimum=0)
    eval_batch_size: int | None = _option(None, "evaluation batch size (default: 2 x batch size)", minimum=1)
    # Stop after this many epochs in this call (the run stays resumable): for time-limited
    # jobs, and to test that an interrupted and resumed run equals an uninterrupted one.
    max_epochs_this_run: int | None = _option(None, "stop after this many epochs (resumable)", minimum=1)
    # Time budget of this call, in minutes (the run stays resumable): before each epoch after
    # the first, stop if the elapsed time plus the longest epoch of this call would exceed it.
    # The best model is still evaluated on the test split. For Colab sessions and GPU leases.
    max_minutes: float | None = _option(
        None,
        "time budget of this call: stop at the last epoch boundary that fits (checkpointed, resumable; "
        "the best model is still tested)",
        positive=True,
    )
    progress: bool = _option(True, "no tqdm bars", flag="--no-progress")  # tqdm bars (rank 0 only)
    verbose: bool = _option(True, "one summary line per epoch", cli=False)  # (rank 0 only)

    def __post_init__(self) -> None:
        validate_train_config(self)


#: TrainConfig fields that may differ between a checkpoint and a resumed run; they change how
#: long this call runs, what it prints or where, not what is learned. ``epochs`` may change too
#: (extend or shorten a run that has not passed the new end): the schedule is then recomputed
#: for the new length, which :func:`fit` states when it resumes.
RESUMABLE_CHANGES = ("epochs", "max_epochs_this_run", "max_minutes", "progress", "verbose", "num_workers", "eval_batch_size", "device")


def flag_of(name: str) -> str | None:
    """The command-line flag of a :class:`TrainConfig` field (``"lr"`` -> ``"--lr"``,
    ``"progress"`` -> ``"--no-progress"``), or ``None`` for a field the CLI does not offer."""
    metadata = TrainConfig.__dataclass_fields__[name].metadata
    if not metadata.get("cli", True):
        return None
    return metadata.get("flag", "--" + name.replace("_", "-"))


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
    for name in ("optimizer", "schedule", "amp_dtype"):  # the choices stated once, in the field
        choices = TrainConfig.__dataclass_fields__[name].metadata["choices"]
        if getattr(c, name) not in choices:
            raise ValueError(f"{name} must be {', '.join(repr(x) for x in choices[:-1])} or {choices[-1]!r}, got {getattr(c, name)!r}")
    for name in ("amp", "progress", "verbose"):
        if not isinstance(getattr(c, name), bool):
            raise ValueError(f"{who}.{name} must be True or False, got {getattr(c, name)!r}")
    if c.device is not None:
        try:
            torch.device(c.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"{who}.device must be a device name such as 'cpu', 'cuda' or 'cuda:1', got {c.device!r}") from err


#: The settings of each preset (the other fields keep the defaults of :class:`TrainConfig`).
_PRESET_SETTINGS: dict[str, dict[str, Any]] = {
    "rotmnist": dict(epochs=300, batch_size=8, lr=1e-3, weight_decay=1e-4, warmup_epochs=5),
    "cifar10": dict(epochs=350, batch_size=24, lr=1e-3, weight_decay=1e-4, warmup_epochs=10),
    "pcam": dict(epochs=100, batch_size=16, lr=1e-3, weight_decay=1e-4, warmup_epochs=5),
    "small": dict(epochs=8, batch_size=32, lr=2e-2, weight_decay=0.0, warmup_epochs=0.5),
}


def train_preset(name: str, **overrides: Any) -> TrainConfig:
    """The training settings that go with a model preset of :func:`gsa_tutorial.model.preset`.

    Adam with learning rate 1e-3 and weight decay 1e-4 (the official trainer builds
    ``Adam(lr, weight_decay)`` from its command line), linear warm-up + cosine decay. The
    official repository does not record its command lines; the epochs and batch sizes of the table
    above are our reading of the paper's appendix. ``"small"`` is the CPU quick mode.
    """
    key = name.strip().lower()
    if key not in _PRESET_SETTINGS:
        raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(_PRESET_SETTINGS)}")
    return TrainConfig(**{**_PRESET_SETTINGS[key], **overrides})
