"""Checkers of chapters 1-4: the book's solution passes, a plausibly wrong answer fails with a report
that names what is wrong, and an unfinished scaffold is "not implemented yet"."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gsa_tutorial import act_on_image
from gsa_tutorial.exercises import (
    STRICT_ENV,
    ExerciseFailed,
    check_act_on_image,
    check_act_on_lifted,
    check_attention_pixel,
    check_dihedral_errors,
    check_lifted_encoding,
    check_mirror_axis,
    check_parameter_count,
    check_radial_count,
    check_relative_element,
    check_rotation_errors,
    check_symmetric_filter,
    check_translation_error,
)
from gsa_tutorial.groups import get_group


def passes(feedback):
    assert feedback.passed, feedback.report()
    assert "✗" not in feedback.report()


def fails(feedback, *phrases):
    text = feedback.report()
    assert feedback.status == "failed", text
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in the report:\n{text}"


def unfinished(*args, **kwargs):
    raise NotImplementedError("Exercise: yours to write")


# ---------------------------------------------------------------- chapter 1


def rot(t, q=1):
    return torch.rot90(t, q, dims=(-2, -1))


def test_symmetric_filter():
    passes(check_symmetric_filter(lambda k: sum(rot(k, q) for q in range(4))))
    fails(check_symmetric_filter(lambda k: k + rot(k)), "changes under a quarter turn", "is not equivariant: element")
    fails(check_symmetric_filter(lambda k: 2 * sum(rot(k, q) for q in range(4))), "differs from the package")
    assert check_symmetric_filter(unfinished).status == "not implemented yet"


def rotation_errors(cnn, x):
    y = cnn(x)
    return {q: float((cnn(rot(x, q)) - rot(y, q)).abs().max() / y.abs().max()) for q in range(4)}


def test_rotation_errors():
    passes(check_rotation_errors(rotation_errors))

    def wrong_direction(cnn, x):
        y = cnn(x)
        return {q: float((cnn(rot(x, q)) - rot(y, -q)).abs().max() / y.abs().max()) for q in range(4)}

    fails(check_rotation_errors(wrong_direction), "the errors of a random CNN differs from the package")

    def invariance(cnn, x):
        y = cnn(x)
        return {q: float((cnn(rot(x, q)) - y).abs().max() / y.abs().max()) for q in range(4)}

    fails(check_rotation_errors(invariance), "differs from the package")
    fails(check_rotation_errors(lambda cnn, x: [0.0] * 4), "should be a dict")


# ---------------------------------------------------------------- chapter 2


def act_d4(h, x):
    k, mirrored = h % 4, h >= 4
    if mirrored:
        x = torch.flip(x, dims=(-1,))  # s first
    return torch.rot90(x, k, dims=(-2, -1))  # then r^k


def act_d4_coordinates(h, x):
    """The same action through coordinates: out(p) = x(h^-1 p), pixel by pixel."""
    m4 = get_group("m4")
    H, W = x.shape[-2:]
    m = torch.as_tensor(m4.matrix(m4.inverse(h)), dtype=torch.float64)
    out = torch.empty_like(x)
    for row in range(H):
        for col in range(W):
            p = torch.tensor([col - (W - 1) / 2, (H - 1) / 2 - row], dtype=torch.float64)
            sx, sy = (m @ p).tolist()
            out[..., row, col] = x[..., round((H - 1) / 2 - sy), round(sx + (W - 1) / 2)]
    return out


def test_act_on_image():
    passes(check_act_on_image(act_d4))
    passes(check_act_on_image(act_d4_coordinates))
    fails(check_act_on_image(lambda h, x: torch.rot90(torch.flip(x, (-1,)) if h >= 4 else x, -(h % 4), dims=(-2, -1))),
          "element 1 (r^1) on a (2, 3, 6, 6) image differs from the package")

    def rotate_then_mirror(h, x):
        x = torch.rot90(x, h % 4, dims=(-2, -1))
        return torch.flip(x, dims=(-1,)) if h >= 4 else x

    fails(check_act_on_image(rotate_then_mirror), "element 5 (r^1 s)", "hint: element k < 4 is r^k")
    assert check_act_on_image(unfinished).status == "not implemented yet"


def mirror_axis(group, h):
    values, vectors = np.linalg.eigh(np.asarray(group.matrix(h), dtype=float))
    axis = vectors[:, np.argmax(values)]
    return math.degrees(math.atan2(axis[1], axis[0])) % 180


def test_mirror_axis():
    passes(check_mirror_axis(mirror_axis))
    passes(check_mirror_axis(lambda group, h: 90 + 180 * (h - group.order // 2) / (group.order // 2)))
    fails(check_mirror_axis(lambda group, h: 180 * (h - group.order // 2) / (group.order // 2)),
          "m4: s fixes the line at 90.0°, you give 0.0°")


def test_strict_mode_raises(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(ExerciseFailed, match="the axis of a mirror"):
        check_mirror_axis(lambda group, h: 0.0)
    assert check_mirror_axis(unfinished).status == "not implemented yet"  # an unfinished scaffold never raises
    passes(check_mirror_axis(mirror_axis))


# ---------------------------------------------------------------- chapter 3


def attend(f, row, col, *, W_Q, W_K, W_V, rho, W_O, b_O, window, y_up=True, mask=True):
    H, W, _ = f.shape
    M, d, _ = W_Q.shape
    r = window // 2
    heads = []
    for m in range(M):
        q = W_Q[m] @ f[row, col]  # (d,)
        logits, values = [], []
        for a in range(-r, r + 1):
            for b in range(-r, r + 1):
                i, j = row + a, col + b
                inside = 0 <= i < H and 0 <= j < W
                if not inside and mask:
                    continue
                feature = f[i, j] if inside else torch.zeros_like(f[row, col])
                offset = torch.tensor([b, -a] if y_up else [b, a], dtype=f.dtype)
                logits.append(q @ (W_K[m] @ feature + rho(offset)[m]) / math.sqrt(d))
                values.append(W_V[m] @ feature)
        weights = torch.softmax(torch.stack(logits), dim=0)
        heads.append(weights @ torch.stack(values))  # (d,)
    return W_O @ torch.cat(heads) + b_O


def test_attention_pixel():
    passes(check_attention_pixel(attend))
    fails(check_attention_pixel(lambda *a, **k: attend(*a, **k, y_up=False)), "pixel (3, 3), 3x3 window, 2 heads differs")
    fails(check_attention_pixel(lambda *a, **k: attend(*a, **k, mask=False)), "pixel (0, 0)", "left out of the softmax")
    assert check_attention_pixel(unfinished).status == "not implemented yet"


def dihedral_errors(layer, x):
    y = layer(x)
    return {h: float((layer(act_on_image("m4", h, x)) - act_on_image("m4", h, y)).abs().max() / y.abs().max()) for h in range(8)}


def test_dihedral_errors():
    passes(check_dihedral_errors(dihedral_errors))
    m4 = get_group("m4")

    def inverse_on_output(layer, x):
        y = layer(x)
        return {h: float((layer(act_on_image(m4, h, x)) - act_on_image(m4, m4.inverse(h), y)).abs().max() / y.abs().max())
                for h in range(8)}

    fails(check_dihedral_errors(inverse_on_output), "the errors of the 3x3 layer with positional='relative' differs")


def translation_error_by_hand(layer, x, shift, margin):
    y = layer(x)
    moved = layer(torch.roll(x, shift, dims=(-2, -1))) - torch.roll(y, shift, dims=(-2, -1))
    cut = margin + max(abs(s) for s in shift)
    H, W = x.shape[-2:]
    return float(moved[..., cut : H - cut, cut : W - cut].abs().max() / y.abs().max())


def test_translation_error():
    passes(check_translation_error(translation_error_by_hand))

    def no_shift_in_margin(layer, x, shift, margin):
        y = layer(x)
        moved = layer(torch.roll(x, shift, dims=(-2, -1))) - torch.roll(y, shift, dims=(-2, -1))
        H, W = x.shape[-2:]
        return float(moved[..., margin : H - margin, margin : W - margin].abs().max() / y.abs().max())

    fails(check_translation_error(no_shift_in_margin), "positional='relative', window=3, shift=(2, 1), margin=1: you give")
    fails(check_translation_error(lambda *a: "small"), "should be one number")


def parameter_count(c_in, c_out, heads, window, pos_hidden):
    inner = heads * max(c_out // heads, 1)
    return 3 * c_in * inner + inner * c_out + c_out + (2 * pos_hidden + pos_hidden) + (pos_hidden * inner + inner)


def test_parameter_count():
    passes(check_parameter_count(parameter_count))
    fails(check_parameter_count(lambda c_in, c_out, heads, window, hidden: c_in * c_out * window**2 + c_out),
          "RelativeSelfAttention(16, 16, heads=4, window=3, pos_hidden=32) has 1664 parameters")


# ---------------------------------------------------------------- chapter 4


def lifted_encoding(rho, group, window, inverse=True):
    offsets = torch.tensor(
        [[b, -a] for a in range(-(window // 2), window // 2 + 1) for b in range(-(window // 2), window // 2 + 1)],
        dtype=torch.float64,
    ) / (window // 2)  # (K, 2): (x, y), y up, row-major over the window
    maps = []
    for h in group.elements:
        m = torch.as_tensor(group.matrix(group.inverse(h) if inverse else h), dtype=torch.float64)
        maps.append(rho(offsets @ m.T))  # rho(h^-1 delta): (K, C)
    return torch.stack(maps).view(group.order, window, window, -1)


def test_lifted_encoding():
    passes(check_lifted_encoding(lifted_encoding))
    fails(check_lifted_encoding(lambda *a: lifted_encoding(*a, inverse=False)), "m4, 5x5 window differs from the package",
          "matrix of its INVERSE")


def test_relative_element():
    passes(check_relative_element(lambda g, t, s: g.compose(g.inverse(t), s)))
    fails(check_relative_element(lambda g, t, s: g.compose(s, g.inverse(t))), "m4: not invariant, it changes in")
    fails(check_relative_element(lambda g, t, s: g.compose(g.inverse(s), t)), "r4: for t = e, s = r^1 you give 3")


def test_radial_count():
    passes(check_radial_count(lambda k: len({a * a + b * b for a in range(-(k // 2), k // 2 + 1) for b in range(-(k // 2), k // 2 + 1)})))
    fails(check_radial_count(lambda k: k // 2 + 1), "a 3x3 window has 3 distinct lengths, you count 2")


def test_act_on_lifted():
    passes(check_act_on_lifted(lambda h, y: torch.roll(torch.rot90(y, h, dims=(-2, -1)), h, dims=2)))
    fails(check_act_on_lifted(lambda h, y: torch.rot90(y, h, dims=(-2, -1))), "element r^1 differs", "torch.roll")
    fails(check_act_on_lifted(lambda h, y: torch.roll(torch.rot90(y, h, dims=(-2, -1)), -h, dims=2)), "element r^1 differs")
