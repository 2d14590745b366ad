"""Tests of gsa_tutorial.images: deterministic, offline test images (chapters 1 and 2)."""

from __future__ import annotations

import math

import pytest
import torch

from gsa_tutorial.actions import act_on_image, pixel_coordinates
from gsa_tutorial.groups import get_group
from gsa_tutorial.images import SAMPLE_KINDS, disk_mask, gaussian_image, sample_image


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
@pytest.mark.parametrize("size", [8, 16, 28, 33])
def test_sample_image_shape_dtype_range(kind: str, size: int) -> None:
    x = sample_image(size, kind)
    assert x.shape == (1, 1, size, size) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert 0.1 < x.mean() < 0.5  # a letter, not an empty or full canvas


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_sample_image_is_deterministic(kind: str) -> None:
    assert torch.equal(sample_image(28, kind), sample_image(28, kind))


def test_sample_image_kinds_differ_and_kind_is_case_insensitive() -> None:
    assert not torch.equal(sample_image(28, "F"), sample_image(28, "R"))
    assert torch.equal(sample_image(28, "f"), sample_image(28, "F"))


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
@pytest.mark.parametrize("size", [16, 28, 33])
def test_sample_image_has_no_d4_symmetry(kind: str, size: int) -> None:
    # every rotation and mirror of D4 must be visible in the picture
    x = sample_image(size, kind, dtype=torch.float64)
    for h in range(1, 8):
        diff = (act_on_image("m4", h, x) - x).abs().max().item()
        assert diff > 0.5, f"{kind}: element {get_group('m4').element_name(h)} barely changes the image"


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_sample_image_lies_inside_the_inscribed_disk(kind: str) -> None:
    # so that rotating by any angle keeps the letter whole
    x = sample_image(28, kind)
    assert torch.equal(x * disk_mask(28), x)


def test_sample_image_float64() -> None:
    assert sample_image(12, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("bad", [{"size": 4}, {"size": 20.0}, {"kind": "Q"}])
def test_sample_image_rejects_bad_arguments(bad) -> None:
    with pytest.raises(ValueError, match="size|kind"):
        sample_image(**{"size": 20, "kind": "F", **bad})


def test_sample_image_rejects_integer_dtype() -> None:
    with pytest.raises(TypeError, match="floating"):
        sample_image(12, dtype=torch.int64)


def test_unknown_kind_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="F, R"):
        sample_image(28, "Z")


def test_gaussian_image_peak_and_position() -> None:
    x = gaussian_image(9, centre=(2.0, 1.0), sigma=(1.0, 1.0))[0, 0]
    assert x.shape == (9, 9) and x.dtype == torch.float64
    row, col = divmod(int(x.argmax()), 9)
    assert pixel_coordinates(9, 9)[row, col].tolist() == [2.0, 1.0]  # x right, y up
    assert x.max().item() == 1.0


def test_gaussian_image_angle_turns_the_long_axis() -> None:
    long_x = gaussian_image(15, sigma=(4.0, 1.0))
    long_y = gaussian_image(15, sigma=(4.0, 1.0), angle=math.pi / 2)
    torch.testing.assert_close(long_y, torch.rot90(long_x, 1, dims=(-2, -1)), rtol=0, atol=1e-12)
    assert (long_x - long_y).abs().max() > 0.5


def test_disk_mask() -> None:
    m = disk_mask(5)[0, 0]
    assert m[2, 2] == 1 and m[0, 0] == 0 and m[0, 2] == 1
    assert torch.equal(disk_mask(6), torch.rot90(disk_mask(6), 1, dims=(-2, -1)))
    assert disk_mask(7, radius=1.0).sum() == 5  # the centre and its 4 neighbours
