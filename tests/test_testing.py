"""The equivariance checker itself: it passes equivariant maps and FAILS the negative controls."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gsa_tutorial import GroupSelfAttention, RelativeSelfAttention, assert_equivariant, equivariance_error, get_group
from gsa_tutorial.testing import default_rtol, translation_error


def image(size=7, channels=2, seed=0, dtype=torch.float64):
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def lifted(group, size=7, channels=2, seed=0):
    g = get_group(group)
    return torch.randn(2, channels, g.order, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---- things that must pass -----------------------------------------------------------------


@pytest.mark.parametrize("group", ["r4", "m4", "r8"])
def test_identity_passes_on_images_and_lifted_maps(group):
    errors = assert_equivariant(lambda x: x, group, image())
    assert all(e == 0.0 for e in errors.values())
    assert_equivariant(lambda x: x, group, lifted(group))


def test_pointwise_maps_pass():
    conv1x1 = nn.Conv2d(2, 3, kernel_size=1)
    assert_equivariant(conv1x1, "m4", shape=(2, 2, 8, 8))
    assert_equivariant(torch.tanh, "r4", lifted("r4"))


def test_invariant_output_is_checked_as_invariant():
    pool = lambda x: x.mean(dim=(-1, -2))  # noqa: E731  (B, C): invariant
    errors = assert_equivariant(pool, "m4", image())
    assert max(errors.values()) < 1e-15


def test_module_is_checked_on_a_float64_copy_and_left_untouched():
    conv = nn.Conv2d(2, 2, 1)
    assert_equivariant(conv, "r4", shape=(1, 2, 6, 6))
    assert conv.weight.dtype == torch.float32 and conv.training


def test_symmetric_convolution_passes():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]))  # D4-symmetric stencil
    assert_equivariant(conv, "m4", image(channels=1))


# ---- negative controls: these must FAIL ----------------------------------------------------


def test_asymmetric_convolution_fails():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 2, 3, padding=1)
    with pytest.raises(AssertionError, match=r"not r4-equivariant"):
        assert_equivariant(conv, "r4", image())


def test_absolute_position_attention_fails():
    torch.manual_seed(0)
    layer = RelativeSelfAttention(2, 4, heads=2, window=3, positional="absolute")
    with pytest.raises(AssertionError):
        assert_equivariant(layer, "r4", image())
    assert translation_error(layer, image(12), (1, 2), margin=1) > 1e-3


@pytest.mark.parametrize("group", ["r4", "m4"])
def test_official_group_encoding_fails(group):
    torch.manual_seed(0)
    layer = GroupSelfAttention(2, 4, group=group, heads=2, window=3, group_encoding="official")
    with pytest.raises(AssertionError, match=r"element \d+ \("):
        assert_equivariant(layer, group, lifted(group))
    errors = equivariance_error(layer, group, lifted(group))
    assert errors[0] == 0.0  # the identity is always fine
    assert max(errors.values()) > 1e-3


def test_weighting_the_group_axis_fails():
    """A different weight per group element does not commute with the regular permutation."""
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).view(1, 1, 4, 1, 1)
    with pytest.raises(AssertionError):
        assert_equivariant(lambda f: f * weights, "r4", lifted("r4"))
    assert_equivariant(lambda f: f * 2.5, "r4", lifted("r4"))  # the same weight everywhere is fine


def test_message_names_the_element_and_the_error():
    shift = lambda x: torch.roll(x, 1, dims=-1)  # noqa: E731
    with pytest.raises(AssertionError) as info:
        assert_equivariant(shift, "r4", image())
    message = str(info.value)
    assert "r^1 (element 1)" in message and "relative error" in message and "rtol=1e-10" in message


def test_nan_output_fails():
    with pytest.raises(AssertionError):
        assert_equivariant(lambda x: x * float("nan"), "r4", image())


# ---- tolerances and arguments --------------------------------------------------------------


def test_tolerance_depends_on_dtype():
    assert default_rtol(torch.float64) == 1e-10
    assert default_rtol(torch.float32) == 1e-4
    assert default_rtol(torch.float16) == 1e-2


def test_default_elements_are_the_grid_exact_ones():
    errors = equivariance_error(lambda x: x, "r8", image())
    assert sorted(errors) == [0, 2, 4, 6]


def test_missing_input_and_shape_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        assert_equivariant(lambda x: x, "r4")


def test_bad_input_rank_is_an_error():
    with pytest.raises(ValueError, match="image"):
        equivariance_error(lambda x: x, "r4", torch.zeros(3, 3))


# ---- the checker never passes without checking: refusals, each with a map that is NOT equivariant


def _not_equivariant(x):
    return torch.roll(x, 1, dims=-1)  # a one-pixel shift: no rotation commutes with it


def test_the_control_map_really_fails_when_checked():
    with pytest.raises(AssertionError, match="not r4-equivariant"):
        assert_equivariant(_not_equivariant, "r4", image())


@pytest.mark.parametrize(
    "group,kw,match",
    [
        ("r4", dict(elements=[]), "no group element"),
        ("r4", dict(elements=[0]), "only the identity"),
        ("r3", {}, "no grid-exact element besides the identity"),  # only e is grid-exact in C3
        ("m3", dict(elements=[0]), "only the identity"),
        ("z2", {}, "translation_error"),
    ],
)
def test_a_check_of_nothing_is_refused(group, kw, match):
    """Before issue 9 each of these returned without an error for the non-equivariant map."""
    with pytest.raises(ValueError, match=match):
        assert_equivariant(_not_equivariant, group, image(), **kw)


@pytest.mark.parametrize("rtol", [-1.0, float("nan"), float("inf")])
def test_a_meaningless_tolerance_is_refused(rtol):
    with pytest.raises(ValueError, match="rtol must be a finite number >= 0"):
        assert_equivariant(_not_equivariant, "r4", image(), rtol=rtol)


def test_a_constant_input_or_a_zero_output_is_refused():
    with pytest.raises(ValueError, match="leaves x unchanged"):
        assert_equivariant(_not_equivariant, "r4", torch.ones(1, 1, 6, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="zero everywhere"):
        assert_equivariant(lambda x: 0 * _not_equivariant(x), "r4", image())


def test_an_integer_input_is_refused_with_the_conversion():
    with pytest.raises(TypeError, match=r"floating-point.*torch.int64.*x.double\(\)"):
        assert_equivariant(_not_equivariant, "r4", torch.ones(1, 1, 6, 6, dtype=torch.int64))


def test_explicit_non_grid_elements_are_checked_and_can_fail():
    """r3's rotations by 120° are interpolated: checkable on request, and a shift still fails."""
    with pytest.raises(AssertionError, match="not r3-equivariant"):
        assert_equivariant(_not_equivariant, "r3", image(), elements=[1, 2], rtol=1e-2)
