"""The optimiser and its schedule: weight decay on weights only, linear warm-up, cosine decay."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["decay_parameter_names", "make_optimizer", "make_scheduler"]

# Modules whose ``weight`` is a linear map (decayed). Every other parameter, the biases, the
# scales and shifts of norms, the group and positional embedding tables, is not: decaying
# them pulls a norm's scale or an embedding towards zero, which is not a regulariser of the
# map but a change of what the layer computes.
_DECAYED_MODULES = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)


def decay_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that weight decay applies to: the ``weight`` of linear and
    convolution layers. Biases, norms and embeddings (``nn.Embedding`` or a bare
    ``nn.Parameter`` table such as a group embedding) are left undecayed."""
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, _DECAYED_MODULES) and isinstance(getattr(module, "weight", None), nn.Parameter):
            names.add(f"{module_name}.weight" if module_name else "weight")
    return names


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over the trainable parameters, in two groups: the weights with
    ``config.weight_decay`` and everything else (:func:`decay_parameter_names`) with none."""
    decayed = decay_parameter_names(model)
    groups: list[dict[str, Any]] = [
        {"params": [p for n, p in model.named_parameters() if p.requires_grad and n in decayed], "weight_decay": config.weight_decay},
        {"params": [p for n, p in model.named_parameters() if p.requires_grad and n not in decayed], "weight_decay": 0.0},
    ]
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
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
