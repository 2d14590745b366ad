"""GSA-Net: a lifting self-attention layer, group self-attention blocks and an invariant head (chapter 7).

Legend: ``B`` batch, ``C`` channels, ``G = |H|`` group size, ``H, W`` height and width.

::

    image (B, C_in, H, W)
      │ standardise (fixed mean/std of the data set); optional k x k average pooling
      │ LiftingSelfAttention → norm → act                      (B, C, G, H, W)
      │ TransformerBlock × num_blocks  (crop, 2x2 pool on even maps between them)
      │ InvariantPooling: mean over space, max over the group  (B, C_last)  (exactly invariant)
      └ Linear → logits                                        (B, num_classes)

The architecture and the presets' hyper-parameters follow the official code of Romero &
Cordonnier (2021) (``models/group_transformer.py`` and ``model.py`` of ``dwromero/g_selfatt``),
with two deliberate differences:

* the head pools first and classifies after (the official code applies a 1x1 layer, sums over
  space and takes the max over the group; both are invariant, ours has ``num_classes`` more
  biases);
* max-pooling is only allowed on even maps (:class:`~gsa_tutorial.layers.SpatialPool2x2`). The
  official PCam model max-pools a 7x7 map to 3x3 just before the head, which breaks exact
  invariance; our PCam preset drops that last pooling (the head pools over all of space anyway).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (
    check_choice,
    check_dropout,
    check_float,
    check_group_encoding,
    check_input,
    check_int,
    check_window,
    mlp_hidden,
)
from .attention import LiftingSelfAttention
from .data.cifar import CIFAR10_MEAN, CIFAR10_STD  # the one copy of the data set's statistics
from .groups import get_group
from .layers import (
    ACTIVATIONS,
    GROUP_POOLS,
    NORMS,
    SPACE_POOLS,
    InvariantPooling,
    SpatialPool2x2,
    TransformerBlock,
    make_activation,
    make_norm,
)
from .positional import GROUP_ENCODINGS
from .stages import STAGE_KINDS, Stage, network_stages  # noqa: F401  (Stage and STAGE_KINDS: old import paths)

__all__ = ["GSANetConfig", "GSANet", "PRESETS", "PAPER_PARAMETERS", "preset", "count_parameters"]

@dataclass(frozen=True)
class GSANetConfig:
    """Everything that defines a GSA-Net (frozen: a config is a value, safe to share and hash).

    Lists given for tuple fields (from JSON or a checkpoint) are turned into tuples.
    """

    group: str = "r4"  # the group H: "z2", "r4", "r8", "r12", "r16", "m4" (any "rN" / "mN")
    in_channels: int = 1
    num_classes: int = 10
    # Width of the lifting layer, and of every block unless ``block_channels`` says otherwise.
    channels: int = 20
    num_blocks: int = 5
    # Output width of each block (length ``num_blocks``); None: ``channels`` everywhere.
    block_channels: tuple[int, ...] | None = None
    # 9 heads in every official preset (a 9-head attention layer can express a 3x3
    # convolution, Cordonnier et al., 2020).
    heads: int = 9
    # Width of each head; None: round(dim_head_ratio * the layer's output width).
    dim_head: int | None = None
    # The official code uses half the output width per head (mid_channels = C_out // 2).
    dim_head_ratio: float = 0.5
    # Hidden width of the positional MLP ρ. Ours outputs one vector per head (heads * dim_head
    # numbers); the official one outputs dim_head // 3 numbers per axis shared by all heads
    # (with 16 hidden units). 8 hidden units keep the parameter counts at the paper's.
    pos_hidden: int = 8
    # Odd k: attention over a k x k neighbourhood (official rotMNIST: 5); None: global attention.
    window: int | None = 5
    # Average-pool the image by this factor before lifting (1: no pooling). Exactly equivariant
    # when it divides H and W (the k x k tiles map onto tiles under rotations and mirrors);
    # the CPU preset uses 2 so that the lifting layer attends over 14x14, not 28x28 maps.
    input_pool: int = 1
    # Pixels cropped from each side after each block (int: the same for all blocks). The
    # official rotMNIST model crops (2, 0, 2, 1, 1): 28 -> 24 -> 24 -> pool 12 -> 8 -> 6 -> 4.
    crops: tuple[int, ...] | int = 0
    # 2x2 max pooling after this many blocks (0 = right after the lifting layer).
    pool_after: tuple[int, ...] = ()
    norm: str = "layer"
    activation: str = "relu"
    # An extra norm + activation after each block (official ``normalize_between_layers``; on
    # for CIFAR-10 and PCam).
    norm_between_blocks: bool = False
    # Hidden width of the pointwise MLP relative to the block width (official: C / 2).
    mlp_ratio: float = 0.5
    dropout: float = 0.0  # on each block's attention branch (official value dropout)
    input_dropout: float = 0.0  # on the input pixels (official CIFAR-10: 0.2)
    pool_dropout: float = 0.0  # after each 2x2 pooling (official CIFAR-10: 0.3)
    space_pool: str = "mean"  # reduction over space in the head (official: sum, i.e. mean up to a scale)
    group_pool: str = "max"  # reduction over the group axis in the head (official: max)
    # The group part of the group layers' positional encoding (chapter 6): "relative", "gevit",
    # "pair" (exactly equivariant) or "official" (the official code's table; NOT equivariant),
    # and which query elements feed each output element: "all" (the paper's sum over h̃) or
    # "own" (h̃ = h, with e(h⁻¹ĥ)). Default "relative" + "own", by measurement
    # (benchmarks/results/encodings.json, rule gsa_tutorial.stored.recommend_encoding): on rotated MNIST
    # digits (small preset, 3 seeds) the four exact R4 choices were within one standard deviation
    # of the best (own 50.6 ± 5.5 %, gevit 49.8 ± 5.9 %, pair 48.4 ± 2.0 %, relative + all
    # 48.2 ± 1.3 %), and "own" is the cheapest of them (6.4 s per epoch against 10.7-12.4 s) and
    # sees orientation: 0.062x the time and 0.047x the memory of the official layer at the rotMNIST
    # R8 size (cpu-variants.json), where gevit / pair need |H| times more scores (0.24x / 0.31x
    # the official time) and "relative" + "all" is blind to orientation.
    group_encoding: str = "relative"
    query: str = "own"
    # Fixed per-channel standardisation inside the model, so it takes images in [0, 1] and
    # rotating an image (zeros outside) means the same thing as for the raw data.
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for f in ("block_channels", "crops", "pool_after", "input_mean", "input_std"):
            value = getattr(self, f)
            if isinstance(value, list):
                object.__setattr__(self, f, tuple(value))
        if isinstance(self.crops, int):
            object.__setattr__(self, "crops", (self.crops,) * self.num_blocks)
        self._validate()

    def _validate(self) -> None:
        owner = "GSANetConfig"
        get_group(self.group)  # raises with the list of valid names
        for name in ("in_channels", "num_classes", "channels", "heads", "pos_hidden", "input_pool"):
            check_int(name, getattr(self, name), owner=owner)
        check_int("num_blocks", self.num_blocks, minimum=0, owner=owner)
        if self.block_channels is not None:
            if len(self.block_channels) != self.num_blocks:
                raise ValueError(
                    f"block_channels has {len(self.block_channels)} entries but num_blocks={self.num_blocks}; "
                    "give one width per block (or None for `channels` everywhere)"
                )
            for c in self.block_channels:
                check_int("block_channels[...]", c, owner=owner)
        if self.dim_head is not None:
            check_int("dim_head", self.dim_head, owner=owner)
        check_float("dim_head_ratio", self.dim_head_ratio, low=0.0, low_open=True, high=1.0, owner=owner)
        check_window(self.window, owner=owner)
        assert isinstance(self.crops, tuple)  # an int was expanded above
        if len(self.crops) != self.num_blocks or any((not isinstance(c, int)) or isinstance(c, bool) or c < 0 for c in self.crops):
            raise ValueError(
                f"crops must be one integer >= 0 per block ({self.num_blocks} blocks), got {self.crops!r}"
            )
        if list(self.pool_after) != sorted(set(self.pool_after)) or any(
            (not isinstance(p, int)) or isinstance(p, bool) or not 0 <= p <= self.num_blocks for p in self.pool_after
        ):
            raise ValueError(
                f"pool_after must be increasing, distinct block counts in 0..{self.num_blocks}, got {self.pool_after!r}"
            )
        check_choice("norm", self.norm, NORMS, owner=owner)
        check_choice("activation", self.activation, ACTIVATIONS, owner=owner)
        check_choice("space_pool", self.space_pool, SPACE_POOLS, owner=owner)
        check_choice("group_pool", self.group_pool, GROUP_POOLS, owner=owner)
        check_group_encoding(self.group_encoding, self.query, GROUP_ENCODINGS, owner=owner)
        for name in ("dropout", "input_dropout", "pool_dropout"):
            check_dropout(name, getattr(self, name), owner=owner)
        mlp_hidden(min(self.widths, default=self.channels), self.mlp_ratio, owner=owner)  # at least one hidden channel
        if not isinstance(self.norm_between_blocks, bool):
            raise ValueError(f"GSANetConfig.norm_between_blocks must be True or False, got {self.norm_between_blocks!r}")
        for name in ("input_mean", "input_std"):
            stats = getattr(self, name)
            if stats is not None and len(stats) != self.in_channels:
                raise ValueError(f"{name} needs one value per input channel ({self.in_channels}), got {stats!r}")
        if (self.input_mean is None) != (self.input_std is None):
            raise ValueError("give both input_mean and input_std, or neither")
        for name in ("input_mean", "input_std"):
            stats = getattr(self, name)
            if stats is not None and not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in stats
            ):
                raise ValueError(f"{name} must hold finite numbers (one per input channel), got {stats!r}")
        if self.input_std is not None and any(s <= 0 for s in self.input_std):
            raise ValueError(f"input_std must be positive, got {self.input_std!r}")

    # ---- derived ---------------------------------------------------------------------
    @property
    def widths(self) -> tuple[int, ...]:
        """Output width of each block."""
        return tuple(self.block_channels) if self.block_channels is not None else (self.channels,) * self.num_blocks

    def dim_head_for(self, width: int) -> int:
        """Width of each head of a layer with ``width`` output channels: ``dim_head`` if set, else
        ``round(dim_head_ratio * width)`` (at least 1)."""
        return self.dim_head if self.dim_head is not None else max(int(round(width * self.dim_head_ratio)), 1)

    def stages(self, height: int | None = None, width: int | None = None) -> tuple[Stage, ...]:
        """The network's layout, input to head: the one list that :class:`GSANet` is built from.

        Args:
            height, width: an input size (``width`` defaults to ``height``); each stage then
                carries the size of its output map. None: sizes are not computed.

        Raises:
            ValueError: for an input size where ``input_pool`` does not divide the image, a crop
                eats the whole map or a 2x2 pooling would see an odd size (which would break exact
                equivariance).
        """
        if height is None:
            return network_stages(self, None, None)
        return network_stages(self, height, height if width is None else width)

    def feature_sizes(self, height: int, width: int | None = None) -> list[tuple[int, int]]:
        """Spatial size after the lifting layer and after each block (pools and crops applied).

        Read from :meth:`stages` (a pooling right after a stage is counted in that stage's size).

        Raises:
            ValueError: as :meth:`stages`.
        """
        sizes: list[tuple[int, int]] = []
        for stage in self.stages(height, width):
            if stage.kind in ("lifting", "block") and stage.size is not None:  # not None: a size was given
                sizes.append(stage.size)
            elif stage.kind == "pool" and stage.size is not None:
                sizes[-1] = stage.size
        return sizes

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists and primitives only; safe for JSON and ``torch.load(weights_only=True)``)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GSANetConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise a clear error."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown GSANetConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of any module (the one count the package uses, e.g.
    :meth:`GSANet.num_parameters` and the tables of chapter 7)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class GSANet(nn.Module):
    """A group equivariant stand-alone self-attention network, invariant to ``H`` (chapter 7).

    Exactly invariant (to float round-off) to every grid-exact element of ``config.group``
    (rotations by multiples of 90° and mirrors) and to translations up to border effects;
    approximately invariant to other rotations of the group.

    Args:
        config: a :class:`GSANetConfig` (e.g. from :func:`preset`).

    Shape:
        ``(B, C_in, H, W)`` -> ``(B, num_classes)`` logits.
    """

    input_mean: torch.Tensor  # buffers (1, C, 1, 1), registered in __init__
    input_std: torch.Tensor

    def __init__(self, config: GSANetConfig) -> None:
        super().__init__()
        self.config = c = config
        self.group = get_group(c.group)

        if c.input_mean is not None:
            mean = torch.tensor(c.input_mean).view(1, -1, 1, 1)
            std = torch.tensor(c.input_std).view(1, -1, 1, 1)
        else:
            mean, std = torch.zeros(1, c.in_channels, 1, 1), torch.ones(1, c.in_channels, 1, 1)
        # Not in the state dict: they are part of the config, not learned.
        self.register_buffer("input_mean", mean, persistent=False)
        self.register_buffer("input_std", std, persistent=False)
        self.input_dropout = nn.Dropout(c.input_dropout)

        body: list[nn.Module] = []
        for stage in c.stages():  # the one layout (GSANetConfig.stages); module order = creation order
            if stage.kind == "lifting":
                self.lift = LiftingSelfAttention(
                    stage.in_channels,
                    stage.out_channels,
                    group=self.group,
                    heads=stage.heads,
                    dim_head=stage.dim_head,
                    window=c.window,
                    pos_hidden=c.pos_hidden,
                )
                self.lift_norm = make_norm(c.norm, stage.out_channels)
                self.lift_act = make_activation(c.activation)
            elif stage.kind == "pool":
                body.append(SpatialPool2x2("max"))
                if c.pool_dropout > 0:
                    body.append(nn.Dropout(c.pool_dropout))
            elif stage.kind == "block":
                body.append(
                    TransformerBlock(
                        stage.in_channels,
                        stage.out_channels,
                        group=self.group,
                        heads=stage.heads,
                        dim_head=stage.dim_head,
                        window=c.window,
                        pos_hidden=c.pos_hidden,
                        group_encoding=c.group_encoding,
                        query=c.query,
                        norm=c.norm,
                        activation=c.activation,
                        dropout=c.dropout,
                        crop=stage.crop,
                        mlp_ratio=c.mlp_ratio,
                    )
                )
                if c.norm_between_blocks:
                    body += [make_norm(c.norm, stage.out_channels), make_activation(c.activation)]
            elif stage.kind == "head":
                self.body = nn.Sequential(*body)
                self.pool = InvariantPooling(space=c.space_pool, group=c.group_pool)
                self.classifier = nn.Linear(stage.in_channels, stage.out_channels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The lifted feature map just before the invariant head.

        Shape:
            ``(B, C_in, H, W)`` -> ``(B, C_last, G, H', W')``.
        """
        c = self.config
        check_input(
            self,
            x,
            layout=f"(B, {c.in_channels}, H, W)",
            ranks=(4,),
            who="GSANet",
            channels=c.in_channels,
            integer_hint=(
                "; GSANet takes float images in [0, 1] (it standardises them itself): convert uint8 images "
                "explicitly with x.float() / 255"
            ),
        )
        c.stages(x.shape[-2], x.shape[-1])  # a clear error for sizes that break symmetry (cached per size)
        x = (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)
        x = self.input_dropout(x)
        if c.input_pool > 1:
            x = F.avg_pool2d(x, c.input_pool)  # (B, C_in, H/k, W/k)
        x = self.lift_act(self.lift_norm(self.lift(x)))  # (B, C, G, H, W)
        return self.body(x)  # (B, C_last, G, H', W')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))  # (B, C_last) -> (B, num_classes)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return count_parameters(self)


# ---------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------

#: Names accepted by :func:`preset`.
PRESETS = ("rotmnist", "cifar10", "pcam", "small")

#: Parameter counts reported in the paper (Tables 1-3) for its GSA-Nets, for comparison.
PAPER_PARAMETERS = {"rotmnist": 44_400, "cifar10": 3_000_000, "pcam": 207_000}

_PRESETS: dict[str, dict[str, Any]] = {
    # Official model.py, dataset == "rotMNIST": 20 channels, block_sizes [2, 3], crops
    # [2, 0, 2, 1, 1], max pooling between the two stages, 9 heads, 5x5 patches. Our per-head
    # positional and group encodings cost more parameters than the official shared ones
    # (heads * dim_head numbers per offset and per group element instead of dim_head), so
    # with 20 channels and dim_head 10 the model would have 48k (R4) to 53k (R16)
    # parameters; 22 channels with dim_head 8 match the paper's ~44.4k (R4 to R12 within 4 %).
    "rotmnist": dict(
        in_channels=1,
        num_classes=10,
        channels=22,
        dim_head=8,
        num_blocks=5,
        heads=9,
        window=5,
        crops=(2, 0, 2, 1, 1),
        pool_after=(2,),
        input_mean=(0.1307,),
        input_std=(0.3081,),
    ),
    # Official CIFAR10: 96 channels, block_sizes [2, 2, 2], expansion [1, 2, 1], max pooling
    # (+ dropout 0.3) between stages, norm + act between layers, input dropout 0.2.
    "cifar10": dict(
        in_channels=3,
        num_classes=10,
        channels=96,
        num_blocks=6,
        block_channels=(96, 96, 192, 192, 192, 192),
        heads=9,
        window=5,
        crops=0,
        pool_after=(2, 4),
        norm_between_blocks=True,
        input_dropout=0.2,
        pool_dropout=0.3,
        input_mean=CIFAR10_MEAN,
        input_std=CIFAR10_STD,
    ),
    # Official PCam: 12 channels, block_sizes [0, 1, 2, 1], expansion [1, 2, 2, 2], crops
    # [0, 2, 1, 1], pooling after every stage: 96 -> 48 -> 48 -> 24 -> 20 -> 18 -> 9 -> 7.
    # The official last pooling (7 -> 3, odd) is dropped: it would break exact invariance.
    # dim_head 0.45 C instead of 0.5 C matches the paper's ~207k parameters (see rotmnist).
    "pcam": dict(
        in_channels=3,
        num_classes=2,
        channels=12,
        num_blocks=4,
        block_channels=(24, 48, 48, 96),
        heads=9,
        dim_head_ratio=0.45,
        window=5,
        crops=(0, 2, 1, 1),
        pool_after=(0, 1, 3),
        norm_between_blocks=True,
        input_mean=(0.701, 0.538, 0.692),
        input_std=(0.235, 0.277, 0.213),
    ),
    # CPU-sized: about four thousand parameters (16 channels, 4 heads of width 4: in our
    # 800-digit x 8-epoch runs this reached 77 % (Z2) / 68 % (R4) validation accuracy where 12
    # channels and 2 heads reached 64 % / 54 %, at 1.3-1.6x the time). The image is average-pooled 28 -> 14 and the
    # lifted map max-pooled 14 -> 7 (both exactly equivariant), so the group layers attend over
    # 7x7 maps and an epoch of 2,000 digits takes seconds. BatchNorm: in our quick-mode runs
    # it learned about twice as fast as the per-sample LayerNorm at this size.
    "small": dict(
        in_channels=1,
        num_classes=10,
        channels=16,
        num_blocks=2,
        heads=4,
        dim_head=4,
        window=3,
        crops=0,
        input_pool=2,
        pool_after=(0,),
        norm="batch",
        input_mean=(0.1307,),
        input_std=(0.3081,),
    ),
}


def preset(name: str, group: str = "r4", **overrides: Any) -> GSANetConfig:
    """The config of a named GSA-Net for any group.

    Args:
        name: ``"rotmnist"`` (paper §5, ~44k parameters), ``"cifar10"`` (~3.0M), ``"pcam"``
            (~207k) or ``"small"`` (a few thousand; trains on CPU in a minute).
        group: ``"z2"``, ``"r4"``, ``"r8"``, ``"r12"``, ``"r16"``, ``"m4"`` (any ``rN``/``mN`` works).
        **overrides: any :class:`GSANetConfig` field, e.g. ``channels=8``.

    Returns:
        A validated :class:`GSANetConfig`.
    """
    key = name.strip().lower()
    if key not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(GSANetConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown GSANetConfig fields {sorted(unknown)}; known: {sorted(known)}")
    params = dict(_PRESETS[key], group=group)
    params.update(overrides)
    return GSANetConfig(**params)

