"""The layout of a GSA-Net as data: the list of stages its config describes (chapter 7).

:func:`network_stages` is the one place that walks a config from input to head; :class:`~gsa_tutorial.model.GSANet`
is built from it, :meth:`gsa_tutorial.model.GSANetConfig.feature_sizes` reads its sizes and the network diagram
of chapter 7 draws it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import GSANetConfig

__all__ = ["STAGE_KINDS", "Stage", "network_stages"]

#: The kinds of :class:`Stage`, in the order a GSA-Net applies them.
STAGE_KINDS = ("input", "lifting", "block", "pool", "head")


@dataclass(frozen=True)
class Stage:
    """One step of a GSA-Net's layout: what :meth:`gsa_tutorial.model.GSANetConfig.stages` lists, and what
    :class:`~gsa_tutorial.model.GSANet`, :meth:`gsa_tutorial.model.GSANetConfig.feature_sizes` and the network diagram of chapter 7 read.

    Fields:

    * ``kind``: ``"input"`` (standardise, then ``pool x pool`` average pooling if ``pool > 1``),
      ``"lifting"`` (lifting self-attention + norm + act), ``"block"`` (a
      :class:`~gsa_tutorial.layers.TransformerBlock`), ``"pool"`` (2x2 max pooling) or ``"head"``
      (invariant pooling + linear classifier), see :data:`STAGE_KINDS`;
    * ``in_channels``, ``out_channels``: widths before and after the stage (the head's
      ``out_channels`` is the number of classes);
    * ``size``: ``(height, width)`` of the map after the stage, or None where no input size was
      given (and for the head, whose output has no pixels);
    * ``heads``, ``dim_head``: of the attention (lifting and blocks; 0 otherwise);
    * ``crop``: pixels removed from every side after the block's attention (blocks; 0 otherwise);
    * ``pool``: pooling factor (input: ``input_pool``; pool: 2; 1 otherwise);
    * ``block``: blocks: their number (from 1); pools: the number of blocks before them (0: right
      after the lifting layer); 0 otherwise.
    """

    kind: str
    in_channels: int
    out_channels: int
    size: tuple[int, int] | None = None
    heads: int = 0
    dim_head: int = 0
    crop: int = 0
    pool: int = 1
    block: int = 0


def network_stages(config: GSANetConfig, height: int | None, width: int | None) -> tuple[Stage, ...]:
    """The stage list of ``config`` for an input of ``height x width`` (None: sizes not computed).

    Cached: a config is a frozen (hashable) value, so each forward pass of :class:`~gsa_tutorial.model.GSANet` checks
    its input size by a dictionary look-up after the first time.
    """
    return _network_stages(config, height, width)


@functools.lru_cache(maxsize=256)
def _network_stages(config: GSANetConfig, height: int | None, width: int | None) -> tuple[Stage, ...]:
    c = config
    sized = height is not None and width is not None
    where = f"input {height}x{width}"
    h, w = (height or 0, width or 0)  # 0 x 0 stands for "not computed"
    if sized and (h % c.input_pool or w % c.input_pool):
        raise ValueError(
            f"{where}: input_pool={c.input_pool} must divide the height and width "
            "(otherwise the pooling tiles are not symmetric and exact equivariance is lost)"
        )
    h, w = h // c.input_pool, w // c.input_pool

    def size() -> tuple[int, int] | None:
        return (h, w) if sized else None

    stages = [Stage("input", c.in_channels, c.in_channels, size(), pool=c.input_pool)]
    stages.append(Stage("lifting", c.in_channels, c.channels, size(), heads=c.heads, dim_head=c.dim_head_for(c.channels)))

    def pool(blocks: int, channels: int) -> None:
        nonlocal h, w
        if sized and (h % 2 or w % 2):
            place = "after the lifting layer" if blocks == 0 else f"after block {blocks}"
            raise ValueError(f"{where}: the 2x2 pooling {place} sees a {h}x{w} map (odd); use an input size or crops that keep the map even there")
        h, w = h // 2, w // 2
        stages.append(Stage("pool", channels, channels, size(), pool=2, block=blocks))

    if 0 in c.pool_after:
        pool(0, c.channels)
    width_in = c.channels
    assert isinstance(c.crops, tuple)  # __post_init__ made it one
    for i, (out, crop) in enumerate(zip(c.widths, c.crops), start=1):
        h, w = h - 2 * crop, w - 2 * crop
        if sized and (h < 1 or w < 1):
            raise ValueError(f"{where}: block {i} crops the map to nothing")
        stages.append(Stage("block", width_in, out, size(), heads=c.heads, dim_head=c.dim_head_for(out), crop=crop, block=i))
        if i in c.pool_after:
            pool(i, out)
        width_in = out
    stages.append(Stage("head", width_in, c.num_classes))
    return tuple(stages)
