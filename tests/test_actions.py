"""Tests of gsa_tutorial.actions: the conventions and the action laws (chapter 2).

Exact actions (grid-exact elements) are compared with ``torch.equal``; interpolated
rotations are compared with the analytic rotation of a smooth image, with the measured
error stated next to each bound.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gsa_tutorial.actions import (
    act_on_coordinates,
    act_on_image,
    act_on_lifted,
    group_permutation,
    pixel_coordinates,
)
from gsa_tutorial.groups import get_group
from gsa_tutorial.images import disk_mask, gaussian_image, sample_image

EXACT_GROUPS = ("z2", "r4", "r8", "r12", "r16", "m2", "m4", "m6")
SIZES = (5, 6, 7, 8)  # odd and even: the centre is a pixel, or a corner between four pixels


def _image(size: int, channels: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, channels, size, size, generator=gen, dtype=torch.float64)  # (B, C, H, W)


def _lifted(order: int, size: int, channels: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, channels, order, size, size, generator=gen, dtype=torch.float64)  # (B, C, G, H, W)


def _pixel_index(points: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) of plane points (x right, y up, centred): the inverse of pixel_coordinates."""
    rows = (height - 1) / 2 - points[..., 1]
    cols = points[..., 0] + (width - 1) / 2
    assert torch.equal(rows, rows.round()) and torch.equal(cols, cols.round()), "points are not pixel centres"
    return rows.round().long(), cols.round().long()


# ---- conventions -------------------------------------------------------------------------------


def test_pixel_coordinates_are_centred_x_right_y_up() -> None:
    p = pixel_coordinates(3, 4)
    assert p.shape == (3, 4, 2)
    assert p[0, 0].tolist() == [-1.5, 1.0]  # top-left
    assert p[2, 3].tolist() == [1.5, -1.0]  # bottom-right
    assert p.sum(dim=(0, 1)).tolist() == [0.0, 0.0]  # centred


@pytest.mark.parametrize(("name", "h"), [("r4", 1), ("r8", 2), ("r12", 3), ("r16", 4), ("m4", 1)])
@pytest.mark.parametrize("size", SIZES)
def test_quarter_turn_is_rot90(name: str, h: int, size: int) -> None:
    x = _image(size)
    assert torch.equal(act_on_image(name, h, x), torch.rot90(x, 1, dims=(-2, -1)))


@pytest.mark.parametrize("name", ["m1", "m2", "m3", "m4", "m6"])
@pytest.mark.parametrize("size", SIZES)
def test_dihedral_mirror_is_flip_of_last_axis(name: str, size: int) -> None:
    group = get_group(name)
    x = _image(size)
    assert torch.equal(act_on_image(group, group.n, x), torch.flip(x, dims=(-1,)))


@pytest.mark.parametrize("name", ["r4", "m4", "r8", "r12"])
@pytest.mark.parametrize("size", [5, 6])
def test_one_hot_pixel_lands_at_matrix_times_p(name: str, size: int) -> None:
    group = get_group(name)
    n = size * size
    x = torch.eye(n, dtype=torch.float64).reshape(n, 1, size, size)  # (N, 1, H, W): image b is 1 at pixel b
    p = pixel_coordinates(size, size).reshape(n, 2)  # (N, 2): where image b's pixel sits
    for h in group.grid_exact_elements:
        y = act_on_image(group, h, x).reshape(n, n)  # (N, H*W)
        assert torch.equal(y.sum(1), torch.ones(n, dtype=torch.float64)), f"h={h}: not a permutation"
        target = p @ torch.as_tensor(group.matrix(h)).T  # (N, 2): matrix(h) @ p
        rows, cols = _pixel_index(target, size, size)
        assert torch.equal(y.argmax(1), rows * size + cols), f"{name}, h={h}: one-hot pixel went elsewhere"


@pytest.mark.parametrize("name", ["r4", "r8", "m4"])
def test_act_on_coordinates_is_matrix_product(name: str) -> None:
    group = get_group(name)
    pts = torch.randn(3, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))  # (3, 5, 2)
    for h in group.elements:
        want = torch.einsum("ij,abj->abi", torch.as_tensor(group.matrix(h)), pts)
        got = act_on_coordinates(group, h, pts)
        assert got.shape == pts.shape and got.dtype == pts.dtype
        torch.testing.assert_close(got, want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["r8", "m4", "m3"])
def test_act_on_coordinates_is_an_action(name: str) -> None:
    group = get_group(name)
    pts = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for a in group.elements:
        for b in group.elements:
            lhs = act_on_coordinates(group, a, act_on_coordinates(group, b, pts))
            torch.testing.assert_close(lhs, act_on_coordinates(group, group.compose(a, b), pts), rtol=0, atol=1e-14)


def test_act_on_coordinates_on_integer_points() -> None:
    # grid-exact elements keep integer points integer; other angles must not truncate silently
    pts = torch.tensor([[2, 0], [1, 3]])
    assert torch.equal(act_on_coordinates("r8", 2, pts), torch.tensor([[0, 2], [-3, 1]]))
    with pytest.raises(TypeError, match="floating-point"):
        act_on_coordinates("r8", 1, pts)


def test_act_on_coordinates_rejects_wrong_last_axis() -> None:
    with pytest.raises(ValueError, match="last axis of size 2"):
        act_on_coordinates("r4", 1, torch.zeros(4, 3))


# ---- action laws on images ------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXACT_GROUPS + ("r3", "m3"))
@pytest.mark.parametrize("size", SIZES)
def test_identity_acts_trivially_on_images(name: str, size: int) -> None:
    x = _image(size)
    assert torch.equal(act_on_image(name, 0, x), x)


@pytest.mark.parametrize("name", EXACT_GROUPS)
@pytest.mark.parametrize("size", SIZES)
def test_image_action_composes_exactly(name: str, size: int) -> None:
    group = get_group(name)
    x = _image(size)
    for a in group.grid_exact_elements:
        for b in group.grid_exact_elements:
            lhs = act_on_image(group, a, act_on_image(group, b, x))
            assert torch.equal(lhs, act_on_image(group, group.compose(a, b), x)), f"{name}: a={a}, b={b}"


@pytest.mark.parametrize("name", ["r4", "m4"])
def test_exact_action_on_non_square_image(name: str) -> None:
    group = get_group(name)
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    assert torch.equal(act_on_image(group, 2, x), torch.rot90(x, 2, dims=(-2, -1)))
    assert act_on_image(group, 1, x).shape == (1, 1, 4, 3)  # a quarter turn swaps height and width


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("h", [1, 2])
def test_image_action_keeps_dtype_and_shape(dtype: torch.dtype, h: int) -> None:
    x = _image(7).to(dtype)
    y = act_on_image("r8", h, x)
    assert y.dtype == dtype and y.shape == x.shape


# ---- action laws on lifted maps -------------------------------------------------------------------


@pytest.mark.parametrize("name", EXACT_GROUPS)
@pytest.mark.parametrize("size", SIZES)
def test_identity_acts_trivially_on_lifted(name: str, size: int) -> None:
    f = _lifted(get_group(name).order, size)
    assert torch.equal(act_on_lifted(name, 0, f), f)


@pytest.mark.parametrize("name", EXACT_GROUPS)
@pytest.mark.parametrize("size", SIZES)
def test_lifted_action_composes_exactly(name: str, size: int) -> None:
    group = get_group(name)
    f = _lifted(group.order, size)
    for a in group.grid_exact_elements:
        for b in group.grid_exact_elements:
            lhs = act_on_lifted(group, a, act_on_lifted(group, b, f))
            assert torch.equal(lhs, act_on_lifted(group, group.compose(a, b), f)), f"{name}: a={a}, b={b}"


@pytest.mark.parametrize("name", ["r8", "r12", "m3"])
def test_lifted_action_composes_on_the_group_axis_for_every_element(name: str) -> None:
    # a spatially constant lifted map is untouched by resampling at the centre pixel, so the
    # group axis of the centre pixel must compose exactly even for non-grid elements
    group = get_group(name)
    f = _lifted(group.order, 1)
    for a in group.elements:
        for b in group.elements:
            lhs = act_on_lifted(group, a, act_on_lifted(group, b, f))
            torch.testing.assert_close(lhs, act_on_lifted(group, group.compose(a, b), f), rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ["r4", "m4", "r8", "m6"])
@pytest.mark.parametrize("size", [5, 6])
def test_lifted_action_is_f_of_h_inverse_x_h_inverse_g(name: str, size: int) -> None:
    group = get_group(name)
    f = _lifted(group.order, size, channels=1)[0, 0]  # (G, H, W)
    p = pixel_coordinates(size, size)  # (H, W, 2)
    for h in group.grid_exact_elements:
        out = act_on_lifted(group, h, f[None, None])[0, 0]  # (G, H, W)
        h_inv = group.inverse(h)
        src_rows, src_cols = _pixel_index(act_on_coordinates(group, h_inv, p), size, size)  # (H, W) each
        for g in group.elements:
            want = f[group.compose(h_inv, g)][src_rows, src_cols]  # f(h⁻¹x, h⁻¹g)
            assert torch.equal(out[g], want), f"{name}: h={h}, g={g}"


@pytest.mark.parametrize("name", ["r4", "m4", "r8"])
def test_one_hot_lifted_map_moves_to_h_g_and_h_p(name: str) -> None:
    group = get_group(name)
    size = 5
    g0, row0, col0 = 1, 0, 3
    f = torch.zeros(1, 1, group.order, size, size, dtype=torch.float64)
    f[0, 0, g0, row0, col0] = 1.0
    p0 = pixel_coordinates(size, size)[row0, col0]
    for h in group.grid_exact_elements:
        out = act_on_lifted(group, h, f)[0, 0]  # (G, H, W)
        row, col = _pixel_index(act_on_coordinates(group, h, p0), size, size)
        assert out.sum() == 1.0
        assert out[group.compose(h, g0), row, col] == 1.0, f"{name}, h={h}"


@pytest.mark.parametrize("name", ["r4", "m4", "r12"])
def test_group_permutation_is_the_regular_representation(name: str) -> None:
    group = get_group(name)
    eye = torch.eye(group.order, dtype=torch.long)
    for h in group.elements:
        perm = group_permutation(group, h)
        assert sorted(perm.tolist()) == group.elements
        assert perm.tolist() == [group.compose(group.inverse(h), g) for g in group.elements]
    for a in group.elements:
        for b in group.elements:
            # L_a L_b = L_{ab} as permutation matrices (rows index the output slot g)
            pa, pb = eye[group_permutation(group, a)], eye[group_permutation(group, b)]
            assert torch.equal(pa @ pb, eye[group_permutation(group, group.compose(a, b))])


# ---- interpolated rotations ----------------------------------------------------------------------


def _analytic_rotation(group, h, size, centre, sigma):
    """The Gaussian bump of gaussian_image rotated by angle(h) in closed form."""
    theta = group.angle(h)
    c, s = math.cos(theta), math.sin(theta)
    moved = (c * centre[0] - s * centre[1], s * centre[0] + c * centre[1])
    return gaussian_image(size, centre=moved, sigma=sigma, angle=theta)


@pytest.mark.parametrize(
    ("name", "centre", "sigma", "bound"),
    [
        # measured max error (peak 1, 33x33): r8 0.019, r12 0.021
        ("r8", (0.0, 0.0), (5.0, 2.5), 0.05),
        ("r12", (0.0, 0.0), (5.0, 2.5), 0.05),
        # smooth bump away from the centre and the corners; measured: r8 0.021, r12 0.023
        ("r8", (5.0, 3.0), (3.0, 3.0), 0.05),
        ("r12", (5.0, 3.0), (3.0, 3.0), 0.05),
    ],
)
def test_interpolated_rotation_is_close_to_analytic(name, centre, sigma, bound) -> None:
    group = get_group(name)
    x = gaussian_image(33, centre=centre, sigma=sigma)
    err = (act_on_image(group, 1, x) - _analytic_rotation(group, 1, 33, centre, sigma)).abs().max().item()
    assert err < bound


def test_interpolated_rotation_is_not_exact() -> None:
    # negative control for the bound above: the interpolation error is real, and the wrong
    # direction of rotation is far off
    group = get_group("r8")
    centre, sigma = (5.0, 3.0), (3.0, 3.0)
    x = gaussian_image(33, centre=centre, sigma=sigma)
    y = act_on_image(group, 1, x)
    assert (y - _analytic_rotation(group, 1, 33, centre, sigma)).abs().max().item() > 1e-3
    assert (y - _analytic_rotation(group, 7, 33, centre, sigma)).abs().max().item() > 0.5


def test_two_45_degree_rotations_approximate_the_exact_quarter_turn() -> None:
    group = get_group("r8")
    x = gaussian_image(33, centre=(4.0, 2.0), sigma=(4.0, 2.0)) * disk_mask(33, dtype=torch.float64)
    twice = act_on_image(group, 1, act_on_image(group, 1, x))
    exact = act_on_image(group, 2, x)
    assert torch.equal(exact, torch.rot90(x, 1, dims=(-2, -1)))
    # measured max error 0.055 (peak 1): bilinear interpolation applied twice
    assert (twice - exact).abs().max().item() < 0.08


def test_two_45_degree_rotations_of_a_letter_blur_it() -> None:
    group = get_group("r8")
    x = sample_image(33, "F", dtype=torch.float64) * disk_mask(33, dtype=torch.float64)
    twice = act_on_image(group, 1, act_on_image(group, 1, x))
    exact = act_on_image(group, 2, x)
    rel = ((twice - exact).norm() / exact.norm()).item()
    # measured relative L2 error 0.152: sharp edges are blurred, but the letter stays put
    assert 0.05 < rel < 0.25


# ---- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 5), (1, 5, 5), (1, 1, 1, 5, 5)])
def test_image_of_wrong_rank_is_rejected(shape) -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        act_on_image("r4", 1, torch.zeros(shape))


@pytest.mark.parametrize("shape", [(1, 4, 5, 5), (4, 5, 5)])
def test_lifted_of_wrong_rank_is_rejected(shape) -> None:
    with pytest.raises(ValueError, match=r"\(B, C, \|H\|, H, W\)"):
        act_on_lifted("r4", 1, torch.zeros(shape))


def test_lifted_with_wrong_group_axis_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"group axis of size 4.*m4 has 8 elements"):
        act_on_lifted("m4", 1, torch.zeros(1, 1, 4, 5, 5))


def test_non_tensor_is_rejected() -> None:
    with pytest.raises(TypeError, match="torch.Tensor"):
        act_on_image("r4", 1, np.zeros((1, 1, 5, 5)))


@pytest.mark.parametrize("bad", [-1, 4, 1.5, True])
def test_bad_element_is_rejected_by_actions(bad) -> None:
    with pytest.raises((ValueError, TypeError), match=r"0\.\.3"):
        act_on_image("r4", bad, torch.zeros(1, 1, 5, 5))
    with pytest.raises((ValueError, TypeError), match=r"0\.\.3"):
        act_on_lifted("r4", bad, torch.zeros(1, 1, 4, 5, 5))
