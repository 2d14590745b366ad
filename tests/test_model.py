"""GSA-Net: exact invariance of the whole network, its layers, presets and config errors."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from gsa_tutorial import assert_equivariant, get_group
from gsa_tutorial.layers import (
    NORMS,
    Crop,
    InvariantPooling,
    PointwiseMLP,
    SpatialPool2x2,
    TransformerBlock,
    make_norm,
)
from gsa_tutorial.model import PAPER_PARAMETERS, PRESETS, GSANet, GSANetConfig, count_parameters, preset
from gsa_tutorial.testing import equivariance_error

# The paper's parameter counts are for these groups' GSA-Nets (all groups are listed in the
# book's table; ours depend a little more on |H| than the official ones, see model.py).
PAPER_GROUP = {"rotmnist": "r12", "cifar10": "m4", "pcam": "m4"}


def tiny_config(group: str, size: int, **kw) -> GSANetConfig:
    """Two blocks, a crop, and (for even inputs) a 2x2 pooling in between: every kind of layer."""
    base = dict(
        group=group,
        in_channels=2,
        num_classes=3,
        channels=4,
        num_blocks=2,
        block_channels=(4, 6),
        heads=2,
        dim_head=2,
        window=3,
        crops=(0, 1),
        pool_after=(1,) if size % 2 == 0 else (),
        input_mean=(0.5, 0.4),
        input_std=(0.2, 0.3),
    )
    base.update(kw)
    return GSANetConfig(**base)


def tiny_net(group: str, size: int, seed: int = 0, **kw) -> GSANet:
    torch.manual_seed(seed)
    return GSANet(tiny_config(group, size, **kw)).double()


def images(size: int, channels: int = 2, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def lifted(group: str, size: int, channels: int = 4, batch: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, get_group(group).order, size, size, generator=gen, dtype=torch.float64)


# ---- the whole network -------------------------------------------------------------------


@pytest.mark.parametrize("group,size", [("r4", 8), ("r4", 9), ("m4", 8), ("m4", 9), ("r8", 8)])
def test_gsanet_logits_are_invariant(group, size):
    assert_equivariant(tiny_net(group, size), group, images(size), rtol=1e-10)


@pytest.mark.slow
def test_rotmnist_preset_is_invariant_at_full_size():
    """The paper's rotMNIST wiring (crops 2, 0, 2, 1, 1 and a pooling at 24x24) keeps exact invariance."""
    torch.manual_seed(0)
    net = GSANet(preset("rotmnist", "r4")).double()
    assert_equivariant(net, "r4", images(28, channels=1), rtol=1e-10)


@pytest.mark.parametrize("group", ["r4", "m4"])
def test_gsanet_features_are_equivariant(group):
    net = tiny_net(group, 8)
    assert_equivariant(net.features, group, images(8), rtol=1e-10)


def test_gsanet_with_official_group_encoding_is_not_invariant():
    """Negative control: the official code's group index breaks invariance (chapter 6)."""
    net = tiny_net("r4", 8, group_encoding="official", query="all")
    errors = equivariance_error(net.eval(), "r4", images(8))
    assert max(errors.values()) > 1e-6, errors


def test_gsanet_output_shape_and_dtype():
    net = tiny_net("m4", 9)
    out = net(images(9, batch=3))
    assert out.shape == (3, 3) and out.dtype == torch.float64


# ---- layers ------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("group", ["r4", "m4"])
def test_norms_are_equivariant(norm, group):
    layer = make_norm(norm, 4).double()
    if norm == "batch":
        layer.train()(lifted(group, 6, seed=1))  # non-trivial running statistics
    assert_equivariant(layer, group, lifted(group, 6), rtol=1e-10)


@pytest.mark.parametrize("group", ["r4", "m4"])
def test_pointwise_mlp_is_equivariant(group):
    assert_equivariant(PointwiseMLP(4, hidden=2), group, lifted(group, 5), rtol=1e-10)


@pytest.mark.parametrize("size", [6, 7])
@pytest.mark.parametrize("group", ["r4", "m4"])
def test_crop_is_equivariant(group, size):
    assert_equivariant(Crop(1), group, lifted(group, size), rtol=1e-10)


@pytest.mark.parametrize("mode", ["max", "mean"])
@pytest.mark.parametrize("group", ["r4", "m4"])
def test_pool2x2_is_equivariant_on_even_maps(group, mode):
    assert_equivariant(SpatialPool2x2(mode), group, lifted(group, 6), rtol=1e-10)


def test_pool2x2_refuses_odd_maps():
    with pytest.raises(ValueError, match="odd"):
        SpatialPool2x2()(lifted("r4", 7))


def test_pytorch_maxpool_of_an_odd_map_is_not_equivariant():
    """Why SpatialPool2x2 refuses odd sizes: the official code's MaxPool3d on 7x7 maps breaks symmetry."""
    pool = torch.nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
    errors = equivariance_error(pool, "r4", lifted("r4", 7))
    assert max(errors.values()) > 1e-3, errors


@pytest.mark.parametrize("space", ["mean", "max", "sum"])
@pytest.mark.parametrize("group_reduce", ["max", "mean"])
@pytest.mark.parametrize("group", ["r4", "m4"])
def test_invariant_pooling_is_invariant(group, space, group_reduce):
    pool = InvariantPooling(space=space, group=group_reduce)
    assert_equivariant(pool, group, lifted(group, 5), rtol=1e-10)


@pytest.mark.parametrize("group", ["r4", "m4"])
def test_transformer_block_is_equivariant(group):
    torch.manual_seed(0)
    block = TransformerBlock(4, 6, group=group, heads=2, dim_head=3, window=3, crop=1, pos_hidden=4)
    assert_equivariant(block, group, lifted(group, 7), rtol=1e-10)


def test_transformer_block_shapes():
    block = TransformerBlock(4, 6, group="r4", heads=2, window=3, crop=1).double()
    assert block(lifted("r4", 7)).shape == (2, 6, 4, 5, 5)


# ---- presets -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))
def test_preset_parameter_count_matches_paper(name):
    n = count_parameters(GSANet(preset(name, PAPER_GROUP[name])))
    assert abs(n / PAPER_PARAMETERS[name] - 1) < 0.05, (name, n, PAPER_PARAMETERS[name])


@pytest.mark.parametrize("group", ["z2", "r4", "r8", "r12", "r16", "m4"])
def test_small_preset_has_a_few_thousand_parameters(group):
    assert 1_000 <= count_parameters(GSANet(preset("small", group))) <= 10_000


# The forward/backward smoke test runs at the smallest inputs the presets accept (rotmnist
# needs 28: its last block attends over a 6x6 map with 5x5 windows) and, for the two big
# presets, over Z2 (same code path with |H| = 1), so each case takes a second or two on a
# laptop CPU. Full sizes and groups are timed in benchmarks/ and on GPU.
SMOKE = {"rotmnist": (28, "r4"), "cifar10": (20, "z2"), "pcam": (64, "z2"), "small": (28, "r4")}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_forward_backward_batch_of_one(name):
    size, group = SMOKE[name]
    torch.manual_seed(0)
    net = GSANet(preset(name, group))
    x = torch.rand(1, net.config.in_channels, size, size)
    logits = net(x)
    logits.logsumexp(dim=1).sum().backward()
    assert logits.shape == (1, net.config.num_classes)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


# The spatial sizes of the official models, worked out by hand from their crops and poolings
# (model.py of dwromero/g_selfatt): rotMNIST 28 (lifting), crop 2 -> 24, 24 -> pool 12, crop 2 -> 8,
# crop 1 -> 6, crop 1 -> 4; CIFAR-10 32 (no crops), pools after blocks 2 and 4; PCam 96 -> pool 48, 48 -> pool 24,
# crop 2 -> 20, crop 1 -> 18 -> pool 9, crop 1 -> 7 (its last, odd pooling dropped): one size
# after the lifting layer (and its pooling) and one after each block (and its pooling).
FULL_SIZES = {
    "rotmnist": (28, [28, 24, 12, 8, 6, 4]),
    "cifar10": (32, [32, 32, 16, 16, 8, 8, 8]),
    "pcam": (96, [48, 24, 20, 9, 7]),
}


@pytest.mark.parametrize("name", sorted(FULL_SIZES))
def test_preset_feature_sizes_at_full_input_size(name):
    size, sides = FULL_SIZES[name]
    assert preset(name, "m4").feature_sizes(size) == [(s, s) for s in sides]


def _traced_sides(net: GSANet, x: torch.Tensor) -> list[int]:
    """The side of the map after the lifting layer (+ norm, act) and after each module of the body."""
    sides = []
    y = net.lift_act(net.lift_norm(net.lift(x)))
    sides.append(y.shape[-1])
    for module in net.body:
        y = module(y)
        sides.append(y.shape[-1])
    return sides


@pytest.mark.parametrize("size", [12, 16])
def test_stages_match_the_built_network(size):
    """The stage list is what GSANet builds: the same kinds, widths, heads and sizes as a forward pass."""
    config = tiny_config("r4", size, pool_after=(0, 2), crops=(1, 0), block_channels=(6, 5), dim_head=None, dim_head_ratio=0.5)
    torch.manual_seed(0)
    net = GSANet(config).double()
    stages = config.stages(size)
    assert [s.kind for s in stages] == ["input", "lifting", "pool", "block", "block", "pool", "head"]
    blocks = [m for m in net.body if isinstance(m, TransformerBlock)]
    attention = [net.lift] + [b.attention[2] for b in blocks]
    for stage, layer in zip([s for s in stages if s.kind in ("lifting", "block")], attention):
        assert (stage.in_channels, stage.out_channels) == (layer.in_channels, layer.out_channels)
        assert (stage.heads, stage.dim_head) == (layer.heads, layer.dim_head)
    assert [s.dim_head for s in stages if s.heads] == [2, 3, 2]  # round(0.5 * 4), round(0.5 * 6), round(0.5 * 5)
    assert stages[-1].in_channels == net.classifier.in_features == 5 and stages[-1].out_channels == 3
    traced = _traced_sides(net, images(size))  # lifting, pool, block 1, block 2, pool
    assert traced == [s.size[0] for s in stages[1:-1]]
    assert config.feature_sizes(size) == [(s, s) for s in (traced[1], traced[2], traced[4])]


def test_stages_without_a_size_have_no_sizes_and_are_computed_once():
    config = preset("rotmnist", "r4")
    assert all(s.size is None for s in config.stages())
    assert config.stages(28) is config.stages(28, 28)  # cached: the forward pass checks sizes by a look-up


def test_dim_head_for_follows_the_config():
    assert preset("pcam", "r4").dim_head_for(48) == round(0.45 * 48)
    assert preset("rotmnist", "r4").dim_head_for(48) == 8  # a fixed dim_head wins
    assert GSANetConfig(channels=1, dim_head_ratio=0.1, num_blocks=0).dim_head_for(1) == 1  # at least 1


def test_count_parameters_counts_only_trainable_parameters():
    layer = torch.nn.Linear(3, 2)  # 3*2 weights + 2 biases
    assert count_parameters(layer) == 8
    layer.bias.requires_grad_(False)
    assert count_parameters(layer) == 6


def test_preset_accepts_overrides_and_every_group():
    config = preset("small", "m4", channels=6)
    assert (config.group, config.channels) == ("m4", 6)
    for group in ["z2", "r4", "r8", "r12", "r16", "m4"]:
        assert preset("rotmnist", group).group == group


def test_config_round_trips_through_a_dict():
    config = preset("pcam", "r8")
    assert GSANetConfig.from_dict(config.to_dict()) == config
    assert hash(config) == hash(GSANetConfig.from_dict(config.to_dict()))


# ---- clear errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(group="q7"), "unknown group"),
        (dict(window=4), "odd"),
        (dict(channels=0), "positive integer"),
        (dict(block_channels=(8, 8)), "block_channels has 2 entries"),
        (dict(crops=(1, 2)), "one integer >= 0 per block"),
        (dict(pool_after=(2, 1)), "increasing"),
        (dict(pool_after=(9,)), "increasing"),
        (dict(norm="group"), "norm must be one of 'layer', 'channel', 'batch', 'none', got 'group'"),
        (dict(activation="tanh"), "activation must be one of 'relu', 'swish', 'gelu', got 'tanh'"),
        (dict(space_pool="median"), "space_pool must be one of 'mean', 'max', 'sum'"),
        (dict(query="own", group_encoding="pair"), "only group_encoding='relative'"),
        (dict(dim_head_ratio=0.0), "dim_head_ratio must be a finite number > 0"),
        (dict(dropout=1.0), r"\[0, 1\)"),
        (dict(input_mean=(0.1, 0.2)), "one value per input channel"),
        (dict(group_encoding="naive"), "group_encoding"),
    ],
)
def test_bad_config_raises_a_clear_error(overrides, match):
    with pytest.raises(ValueError, match=match):
        replace(preset("rotmnist", "r4"), **overrides)


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="rotmnist, cifar10, pcam, small"):
        preset("imagenet")


def test_unknown_override_is_rejected():
    with pytest.raises(ValueError, match="unknown GSANetConfig fields"):
        preset("small", widht=3)


def test_odd_map_before_a_pooling_is_rejected_with_the_place():
    net = tiny_net("r4", 8)  # pools after block 1
    with pytest.raises(ValueError, match="after block 1"):
        net(images(9))


def test_wrong_number_of_input_channels_is_rejected():
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        tiny_net("r4", 8)(images(8, channels=3))


def test_crop_that_eats_the_map_is_rejected():
    with pytest.raises(ValueError, match="crops the map to nothing"):
        preset("rotmnist", "r4").feature_sizes(8)
