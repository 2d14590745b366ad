"""The attention layers: match the loop references, exact equivariance, errors on bad input."""

from __future__ import annotations

import pytest
import torch
from attention_reference import group_reference, lifting_reference

from gsa_tutorial import (
    GroupSelfAttention,
    LiftingSelfAttention,
    RelativeSelfAttention,
    act_on_image,
    act_on_lifted,
    assert_equivariant,
    get_group,
)
from gsa_tutorial.testing import translation_error

F64 = torch.float64


def lifted_input(group: str, size: int, channels: int = 3, batch: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, get_group(group).order, size, size, generator=gen, dtype=F64)


def image_input(size: int, channels: int = 3, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed), dtype=F64)


def make(cls, group, window, heads=2, cin=3, cout=4, seed=0, **kw):
    torch.manual_seed(seed)
    if cls is RelativeSelfAttention:
        return cls(cin, cout, heads=heads, window=window, **kw).double()
    return cls(cin, cout, group=group, heads=heads, window=window, **kw).double()


# ---- the fast layers compute the formulas ------------------------------------------------


@pytest.mark.parametrize("group", ["z2", "r4", "m4", "r8"])
@pytest.mark.parametrize("window,size", [(3, 5), (3, 6), (None, 4)])
def test_lifting_matches_loop_reference(group, window, size):
    layer = make(LiftingSelfAttention, group, window)
    x = image_input(size)
    torch.testing.assert_close(layer(x), lifting_reference(layer, x), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "group,window,size,implementation",
    [
        ("z2", 3, 5, "factorized"),
        ("r4", 3, 5, "factorized"),
        ("r4", 3, 6, "dense"),
        ("r4", None, 4, "factorized"),
        ("m4", 3, 5, "factorized"),
        ("m4", None, 4, "dense"),
    ],
)
def test_group_layer_matches_loop_reference(group, window, size, implementation):
    layer = make(GroupSelfAttention, group, window, implementation=implementation)
    x = lifted_input(group, size)
    torch.testing.assert_close(layer(x), group_reference(layer, x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("group", ["r4", "m4"])
def test_official_encoding_matches_its_loop_reference(group):
    layer = make(GroupSelfAttention, group, 3, group_encoding="official")
    x = lifted_input(group, 5)
    torch.testing.assert_close(layer(x), group_reference(layer, x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("group", ["r4", "m4", "r12"])
def test_factorized_equals_dense_with_large_logits(group):
    """The factorised softmax stays exact when logits are large (no overflow / underflow)."""
    layer = make(GroupSelfAttention, group, 3)
    dense = make(GroupSelfAttention, group, 3, implementation="dense")
    dense.load_state_dict(layer.state_dict())
    x = 30 * lifted_input(group, 6)
    a, b = layer(x), dense(x)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_lifting_over_trivial_group_is_relative_self_attention():
    lifting = make(LiftingSelfAttention, "z2", 3)
    relative = make(RelativeSelfAttention, None, 3, seed=1)
    relative.load_state_dict(lifting.state_dict())
    x = image_input(6)
    torch.testing.assert_close(relative(x), lifting(x).squeeze(2), rtol=0, atol=0)


# ---- exact equivariance --------------------------------------------------------------------

EXACT_GROUPS = ["r4", "m4", "r8", "r12", "r16"]


@pytest.mark.parametrize("group", EXACT_GROUPS)
@pytest.mark.parametrize("window", [3, 5, None])
@pytest.mark.parametrize("size", [7, 8])
def test_lifting_layer_is_exactly_equivariant(group, window, size):
    layer = make(LiftingSelfAttention, group, window, heads=3, cin=2, cout=5)
    errors = assert_equivariant(layer, group, image_input(size, channels=2))
    assert set(errors) == set(get_group(group).grid_exact_elements)


@pytest.mark.parametrize("group", EXACT_GROUPS)
@pytest.mark.parametrize("window", [3, None])
@pytest.mark.parametrize("size", [7, 8])
def test_group_layer_is_exactly_equivariant(group, window, size):
    layer = make(GroupSelfAttention, group, window, heads=2, cin=3, cout=4)
    assert_equivariant(layer, group, lifted_input(group, size, batch=1))


@pytest.mark.parametrize("heads,cin,cout,dim_head", [(1, 1, 1, None), (4, 6, 8, 3), (9, 20, 20, 2)])
def test_group_layer_equivariant_for_several_widths(heads, cin, cout, dim_head):
    layer = make(GroupSelfAttention, "m4", 5, heads=heads, cin=cin, cout=cout, dim_head=dim_head)
    assert_equivariant(layer, "m4", lifted_input("m4", 9, channels=cin, batch=1))


def test_equivariance_holds_in_float32_with_float32_tolerance():
    layer = make(GroupSelfAttention, "r4", 3).float()
    errors = assert_equivariant(layer, "r4", lifted_input("r4", 8).float())
    assert max(errors.values()) < 1e-5


def test_non_grid_rotations_are_approximate_and_bounded():
    """45° (r8), 30° (r12), 22.5° (r16) rotations resample the image: equivariance is approximate.

    Measured on a smooth blob (21x21, 5x5 window), on the central disk of radius 6 where no
    pixel is lost at the corners: relative error 3.7e-3 (r8), 3.9e-3 (r12), 5.3e-3 (r16) with
    seed 0. Outside the disk the rotated output map is zero-filled while the layer outputs its
    bias, so the error there is O(1) and says nothing about the layer.
    """
    size = 21
    yy, xx = torch.meshgrid(torch.arange(size, dtype=F64) - 10, torch.arange(size, dtype=F64) - 10, indexing="ij")
    blob = torch.exp(-((xx - 2) ** 2 + (yy + 1) ** 2) / 18).expand(1, 2, size, size).clone()
    disk = xx**2 + yy**2 <= 36
    for group in ("r8", "r12", "r16"):
        layer = make(LiftingSelfAttention, group, 5, cin=2)
        with torch.no_grad():
            y = layer(blob)
            diff = layer(act_on_image(group, 1, blob)) - act_on_lifted(group, 1, y)
        error = float(diff[..., disk].abs().max() / y.abs().max())
        assert 1e-5 < error < 2e-2, (group, error)


# ---- translations --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RelativeSelfAttention, LiftingSelfAttention])
def test_translation_equivariant_on_interior(cls):
    """Exact away from the border; at the border the window loses the keys outside the image."""
    layer = make(cls, "r4", 3)
    x = image_input(12)
    assert translation_error(layer, x, (2, -1), margin=1) < 1e-12


def test_group_layer_translation_equivariant_on_interior():
    layer = make(GroupSelfAttention, "r4", 3)
    f = lifted_input("r4", 12)
    shifted = lambda t: torch.roll(t, shifts=(1, 2), dims=(-2, -1))  # noqa: E731
    with torch.no_grad():
        diff = (layer(shifted(f)) - shifted(layer(f)))[..., 3:-3, 3:-3]
        border = (layer(shifted(f)) - shifted(layer(f)))[..., 0, :]
    assert diff.abs().max() < 1e-12
    assert border.abs().max() > 1e-3  # the border does differ: the claim is only for the interior


def test_absolute_encoding_breaks_translation_equivariance():
    layer = make(RelativeSelfAttention, None, 3, positional="absolute")
    assert translation_error(layer, image_input(12), (2, -1), margin=1) > 1e-3


# ---- attention weights ---------------------------------------------------------------------


def test_lifting_weights_sum_to_one_and_vanish_outside():
    layer = make(LiftingSelfAttention, "r4", 3)
    w = layer.attention_weights(image_input(5))  # (B, m, G, N, K)
    assert w.shape == (2, 2, 4, 25, 9)
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
    assert torch.all(w[..., 0, 0] == 0)  # top-left query: its top-left key lies outside


def test_group_weights_sum_to_one_and_reproduce_the_output():
    layer = make(GroupSelfAttention, "r4", 3)
    x = lifted_input("r4", 5)
    w = layer.attention_weights(x)  # (B, m, h, t, N, K, s)
    assert w.shape == (2, 2, 4, 4, 25, 9, 4)
    torch.testing.assert_close(w.sum((-1, -2)), torch.ones(2, 2, 4, 4, 25, dtype=F64))
    dense = make(GroupSelfAttention, "r4", 3, implementation="dense")
    dense.load_state_dict(layer.state_dict())
    torch.testing.assert_close(dense(x), layer(x), rtol=1e-12, atol=1e-12)


def test_gradients_are_finite_at_the_border():
    layer = make(GroupSelfAttention, "m4", 3)
    x = lifted_input("m4", 5).requires_grad_()
    layer(x).square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("window", [2, 0, -3, 4.0])
def test_even_or_invalid_window_is_rejected(window):
    with pytest.raises(ValueError, match="odd"):
        LiftingSelfAttention(3, 4, group="r4", window=window)


def test_window_larger_than_image_is_rejected():
    layer = make(LiftingSelfAttention, "r4", 7)
    with pytest.raises(ValueError, match="larger than the 5x5 input"):
        layer(image_input(5))


def test_wrong_rank_and_channels_are_rejected():
    lifting = make(LiftingSelfAttention, "r4", 3)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        lifting(lifted_input("r4", 5))
    with pytest.raises(ValueError, match="3 input channels"):
        lifting(image_input(5, channels=2))
    group_layer = make(GroupSelfAttention, "r4", 3)
    with pytest.raises(ValueError, match=r"\(B, C, \|H\|, H, W\)"):
        group_layer(image_input(5))


def test_group_axis_must_match_the_group():
    layer = make(GroupSelfAttention, "r4", 3)
    with pytest.raises(ValueError, match="group axis of size 4"):
        layer(lifted_input("m4", 5))


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="group_encoding"):
        GroupSelfAttention(3, 4, group="r4", group_encoding="nope")
    with pytest.raises(ValueError, match="positional"):
        RelativeSelfAttention(3, 4, positional="sinusoidal")
    with pytest.raises(ValueError, match="unknown group"):
        LiftingSelfAttention(3, 4, group="so2")


# ---- the fused softmax ---------------------------------------------------------------------


@pytest.mark.parametrize("dim", [-1, -2, 0])
def test_softmax_lse_matches_torch_and_passes_gradcheck(dim):
    from gsa_tutorial.attention import softmax_lse

    x = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    x[0, 0, 1] = float("-inf")  # a masked entry
    p, lse = softmax_lse(x, dim=dim)
    torch.testing.assert_close(p, x.softmax(dim), rtol=0, atol=1e-15)
    torch.testing.assert_close(lse, torch.logsumexp(x, dim), rtol=0, atol=1e-14)
    y = torch.randn(3, 5, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: softmax_lse(t, dim=dim), (y,))
    assert torch.autograd.gradcheck(lambda t: softmax_lse(t, dim=dim)[0], (y,))
    assert torch.autograd.gradcheck(lambda t: softmax_lse(t, dim=dim)[1], (y,))


@pytest.mark.parametrize("group,window", [("r4", 3), ("m4", None), ("r12", 3)])
def test_factorized_gradients_equal_dense_gradients(group, window):
    """The fast path's backward (gathered windows, fused softmax, per-head loop) is the dense one's."""
    fast = make(GroupSelfAttention, group, window)
    dense = make(GroupSelfAttention, group, window, implementation="dense")
    dense.load_state_dict(fast.state_dict())
    x = 10 * lifted_input(group, 5)
    grads = []
    for layer in (fast, dense):
        xi = x.clone().requires_grad_()
        layer(xi).square().sum().backward()
        grads.append([xi.grad] + [p.grad for p in layer.parameters()])
    scale = max(float(b.abs().max()) for b in grads[1])  # some gradients are 0 in exact arithmetic
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12 * scale)


def test_neighbour_index_gathers_the_unfolded_windows():
    from gsa_tutorial.attention import neighbour_index, unfold_neighbourhood

    x = torch.randn(2, 3, 5, 6, dtype=F64)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1)).flatten(-2)  # (B, C, 7*8)
    gathered = padded[..., neighbour_index(5, 6, 3).view(-1)].view(2, 3, 30, 9)  # (B, C, N, K)
    torch.testing.assert_close(gathered, unfold_neighbourhood(x, 3), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_softmax_lse_computes_half_precision_in_float32(dtype):
    from gsa_tutorial.attention import softmax_lse

    x = (8 * torch.randn(4, 6, 12, generator=torch.Generator().manual_seed(0))).to(dtype).requires_grad_()
    p, lse = softmax_lse(x)
    assert p.dtype == dtype and lse.dtype == dtype
    reference = x.detach().float()
    torch.testing.assert_close(p.float(), reference.softmax(-1), rtol=0, atol=1e-2)
    torch.testing.assert_close(lse.float(), torch.logsumexp(reference, -1), rtol=1e-2, atol=1e-2)
    (p.float().square().sum() + lse.float().sum()).backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()


def _window_problem(gen: torch.Generator, *, rows=2, height=4, width=5, elements=3, dim=2, window=3, dtype=torch.float64):
    """Random inputs of the fused window attentions: queries, padded keys and values, index, outside."""
    from gsa_tutorial.windows import inside_mask, neighbour_index, pad_for_windows

    q = torch.randn(rows, height * width, elements, dim, generator=gen, dtype=dtype)
    k_pad, v_pad = (pad_for_windows(torch.randn(rows, height, width, elements, dim, generator=gen, dtype=dtype), window, dim=1) for _ in "kv")
    return q, k_pad, v_pad, neighbour_index(height, width, window), ~inside_mask(height, width, window)


def _windows(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``(R, P, s, d)`` padded map -> ``(R, N, K, s, d)`` windows (the explicit reference)."""
    return t[:, index.reshape(-1)].view(t.shape[0], *index.shape, *t.shape[2:])


@pytest.mark.parametrize("block", [2**19, 40])
def test_window_attention_matches_the_explicit_softmax_and_passes_gradcheck(block, monkeypatch):
    """query="own"'s fused attention: equal to an explicit joint softmax over (k, s), in one pixel
    block or in many (a tiny block size), gradients included; its hand-written backward passes gradcheck."""
    from gsa_tutorial import _fused

    monkeypatch.setattr(_fused._WindowAttention, "block_numbers", block)
    gen = torch.Generator().manual_seed(0)
    q, k_pad, v_pad, index, outside = _window_problem(gen)
    R, N, G, _ = q.shape
    K = index.shape[1]
    b = torch.randn(R, N, G, K, generator=gen, dtype=q.dtype).masked_fill(outside[None, :, None], float("-inf"))
    c = torch.randn(R, N, G, G, generator=gen, dtype=q.dtype)
    inputs = [t.requires_grad_() for t in (q, k_pad, v_pad, b, c)]

    def explicit(q, k_pad, v_pad, b, c):
        logits = torch.einsum("rnhd,rnksd->rnhks", q, _windows(k_pad, index)) + b[..., None] + c[:, :, :, None]
        return logits.flatten(-2).softmax(-1) @ _windows(v_pad, index).flatten(2, 3)

    ours, ref = _fused.window_attention(*inputs, index), explicit(*inputs)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    weights = torch.randn(ours.shape, generator=gen, dtype=q.dtype)
    for g_ours, g_ref in zip(torch.autograd.grad((ours * weights).sum(), inputs), torch.autograd.grad((ref * weights).sum(), inputs)):
        torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-12)
    b_fixed = b.detach()  # gradcheck perturbs its inputs; the -inf entries of b must stay -inf
    assert torch.autograd.gradcheck(lambda q, k, v, c: _fused.window_attention(q, k, v, b_fixed, c, index), (q, k_pad, v_pad, c))


@pytest.mark.parametrize("block", [2**20, 300])
def test_group_window_attention_matches_the_explicit_softmax_and_passes_gradcheck(block, monkeypatch):
    """The h-dependent tables' fused attention: one joint softmax over (k, s) per (h, h̃), summed over
    h̃, equal to the explicit |H|³·k² computation in one pixel block or many, gradients included."""
    from gsa_tutorial import _fused

    monkeypatch.setattr(_fused._GroupWindowAttention, "block_numbers", block)
    gen = torch.Generator().manual_seed(1)
    q, k_pad, v_pad, index, outside = _window_problem(gen)
    R, N, G, d = q.shape
    K = index.shape[1]
    rho = torch.randn(R, G * K, d, generator=gen, dtype=q.dtype)
    c = torch.randn(R, N, G, G, G, generator=gen, dtype=q.dtype)
    inputs = [t.requires_grad_() for t in (q, k_pad, v_pad, rho, c)]

    def explicit(q, k_pad, v_pad, rho, c):
        content = torch.einsum("rntd,rnksd->rntks", q, _windows(k_pad, index))  # (R, N, t, K, s)
        spatial = torch.einsum("rntd,rjd->rntj", q, rho).view(R, N, G, G, K).transpose(2, 3)  # (R, N, h, t, K)
        spatial = spatial.masked_fill(outside[None, :, None, None], float("-inf"))
        logits = content[:, :, None] + spatial[..., None] + c[:, :, :, :, None]  # (R, N, h, t, K, s)
        return logits.flatten(-2).softmax(-1).sum(3) @ _windows(v_pad, index).flatten(2, 3)

    ours, ref = _fused.group_window_attention(*inputs, index, outside), explicit(*inputs)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    weights = torch.randn(ours.shape, generator=gen, dtype=q.dtype)
    for g_ours, g_ref in zip(torch.autograd.grad((ours * weights).sum(), inputs), torch.autograd.grad((ref * weights).sum(), inputs)):
        torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *args: _fused.group_window_attention(*args, index, outside), tuple(inputs))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_window_attentions_compute_half_precision_in_float32(dtype):
    from gsa_tutorial import _fused

    gen = torch.Generator().manual_seed(2)
    q, k_pad, v_pad, index, outside = _window_problem(gen, dtype=torch.float32)
    R, N, G, d = q.shape
    K = index.shape[1]
    b = torch.randn(R, N, G, K, generator=gen).masked_fill(outside[None, :, None], float("-inf"))
    rho, c3, c2 = torch.randn(R, G * K, d, generator=gen), torch.randn(R, N, G, G, G, generator=gen), torch.randn(R, N, G, G, generator=gen)
    cases = [
        (_fused.window_attention, (q, k_pad, v_pad, b, c2), (index,)),
        (_fused.group_window_attention, (q, k_pad, v_pad, rho, c3), (index, outside)),
    ]
    for function, tensors, rest in cases:
        half = [t.to(dtype).requires_grad_() for t in tensors]
        out = function(*half, *rest)
        assert out.dtype == dtype
        reference = function(*(t.detach().float() for t in half), *rest)
        torch.testing.assert_close(out.float(), reference, rtol=2e-2, atol=2e-2)
        out.float().square().sum().backward()
        assert all(t.grad.dtype == dtype and torch.isfinite(t.grad.float()).all() for t in half)


def test_fused_window_attentions_stay_in_float32_inside_autocast():
    """Inside torch.autocast (bfloat16 on the CPU) the fused attentions keep float32 arithmetic: the
    result equals the one without autocast to float32 round-off, not to bfloat16's 1e-2."""
    from gsa_tutorial import _fused

    gen = torch.Generator().manual_seed(3)
    q, k_pad, v_pad, index, outside = _window_problem(gen, dtype=torch.float32, dim=8)
    R, N, G, d = q.shape
    K = index.shape[1]
    b = torch.randn(R, N, G, K, generator=gen).masked_fill(outside[None, :, None], float("-inf"))
    rho, c3, c2 = torch.randn(R, G * K, d, generator=gen), torch.randn(R, N, G, G, G, generator=gen), torch.randn(R, N, G, G, generator=gen)
    for function, args in [(_fused.window_attention, (q, k_pad, v_pad, b, c2, index)),
                           (_fused.group_window_attention, (q, k_pad, v_pad, rho, c3, index, outside))]:  # fmt: skip
        plain = function(*args)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside = function(*args)
        assert inside.dtype == torch.float32
        torch.testing.assert_close(inside, plain, rtol=1e-5, atol=1e-5)
