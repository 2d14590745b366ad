"""gsa_tutorial.windows: the one window mechanism, checked against F.unfold and loops over pixels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gsa_tutorial.windows import (
    gather_windows,
    inside_mask,
    neighbour_index,
    unfold_neighbourhood,
    window_offsets,
    window_to_image,
)

F64 = torch.float64


def loop_windows(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, N, K) by a loop over queries and window entries (zero outside)."""
    B, C, H, W = x.shape
    p = k // 2
    out = torch.zeros(B, C, H * W, k * k, dtype=x.dtype)
    for r in range(H):
        for c in range(W):
            for a in range(k):
                for b in range(k):
                    rr, cc = r + a - p, c + b - p
                    if 0 <= rr < H and 0 <= cc < W:
                        out[:, :, r * W + c, a * k + b] = x[:, :, rr, cc]
    return out


@pytest.mark.parametrize(("H", "W", "k"), [(5, 6, 3), (4, 4, 5), (3, 7, 1), (2, 3, 5)])
def test_gather_matches_a_loop_and_unfold(H, W, k):
    x = torch.randn(2, 3, H, W, dtype=F64)
    windows = gather_windows(x, k)
    assert torch.equal(windows, loop_windows(x, k))
    unfolded = F.unfold(x, kernel_size=k, padding=k // 2).view(2, 3, k * k, H * W).transpose(-1, -2)
    assert torch.equal(windows, unfolded)
    assert torch.equal(unfold_neighbourhood(x, k), unfolded)


def test_gather_on_any_axis_with_channels_after():
    x = torch.randn(2, 5, 6, 4, 3, dtype=F64)  # (B, H, W, m, d): the layers' channels-last layout
    windows = gather_windows(x, 3, dim=1)  # (B, N, K, m, d)
    reference = loop_windows(x.flatten(-2).permute(0, 3, 1, 2), 3)  # (B, m*d, N, K)
    assert windows.shape == (2, 30, 9, 4, 3)
    assert torch.equal(windows.flatten(-2).permute(0, 3, 1, 2), reference)


def test_gradients_equal_those_of_unfold_bit_for_bit():
    """Key-major gathering: the backward scatter sums each pixel's contributions in unfold's order."""
    x = torch.randn(2, 3, 7, 6, dtype=F64, requires_grad=True)
    g = torch.randn(2, 3, 42, 25, dtype=F64)
    (grad_ours,) = torch.autograd.grad(gather_windows(x, 5), x, g)
    unfolded = F.unfold(x, kernel_size=5, padding=2).view(2, 3, 25, 42).transpose(-1, -2)
    (grad_unfold,) = torch.autograd.grad(unfolded, x, g)
    assert torch.equal(grad_ours, grad_unfold)


@pytest.mark.parametrize(("H", "W", "k"), [(5, 6, 3), (3, 3, 5)])
def test_inside_mask_and_index(H, W, k):
    p = k // 2
    ones = loop_windows(torch.ones(1, 1, H, W), k)[0, 0]  # 1 where the key is inside
    assert torch.equal(inside_mask(H, W, k), ones > 0.5)
    index = neighbour_index(H, W, k)
    r, c = index // (W + 2 * p), index % (W + 2 * p)  # padded row and column of each key
    assert torch.equal(((r >= p) & (r < H + p) & (c >= p) & (c < W + p)), inside_mask(H, W, k))
    assert index[0, 0] == 0 and index[-1, -1] == (H + 2 * p) * (W + 2 * p) - 1  # corners of the padded map


def test_window_offsets_are_row_major_with_y_up():
    offsets = window_offsets(3)
    assert offsets[0].tolist() == [-1.0, 1.0]  # top left: one left, one up
    assert offsets[4].tolist() == [0.0, 0.0] and offsets[5].tolist() == [1.0, 0.0]  # centre, one right
    assert offsets[7].tolist() == [0.0, -1.0]  # one row down
    with pytest.raises(ValueError, match="odd"):
        window_offsets(4)


@pytest.mark.parametrize("query", [(0, 0), (2, 3), (4, 5)])
def test_window_to_image_inverts_the_gather(query):
    H, W, k = 5, 6, 3
    x = torch.randn(1, 1, H, W, dtype=F64)
    windows = gather_windows(x, k)[0, 0]  # (N, K)
    picture = window_to_image(windows, query, H, W)
    r, c = query
    expected = torch.zeros(H, W, dtype=F64)
    expected[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = x[0, 0, max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
    assert torch.equal(picture, expected)


def test_window_to_image_rejects_bad_weights():
    with pytest.raises(ValueError, match="square of an odd window size"):
        window_to_image(torch.ones(4), (0, 0), 3, 3)
    with pytest.raises(ValueError, match=r"must be \(N, K\)"):
        window_to_image(torch.ones(5, 9), (0, 0), 3, 3)
