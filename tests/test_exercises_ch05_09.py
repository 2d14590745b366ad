"""The checkers of chapters 5-9: the right answer passes, plausible wrong answers fail with a report
that names what is wrong (and strict mode raises on them)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from gsa_tutorial import get_group
from gsa_tutorial.data import rotate_images
from gsa_tutorial.exercises import (
    STRICT_ENV,
    ExerciseFailed,
    check_accuracy_vs_angle,
    check_attention_parameters,
    check_constant_group,
    check_constant_lifting,
    check_factorized_softmax,
    check_group_attention,
    check_invariant_head,
    check_lifting_attention,
    check_pair_table,
    check_score_counts,
    check_selection_bias,
    expected_selection_bias,
    reference_group_attention,
    reference_lifting_attention,
)
from gsa_tutorial.positional import relative_group_index


def failed(feedback, *needles: str) -> str:
    text = feedback.report()
    assert feedback.status == "failed", text
    for needle in needles:
        assert needle in text, f"{needle!r} not in the report:\n{text}"
    return text


def unfinished(*args, **kwargs):
    raise NotImplementedError("Exercise: yours to write")


# ---- chapter 5 ------------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["r4", "m4"])
def test_lifting_reference_passes(group):
    result = check_lifting_attention(reference_lifting_attention, group=group)
    assert result.passed, result.report()
    assert "matches the package" in result.report() and "equivariant for all" in result.report()


@pytest.mark.parametrize(
    "switches, named",
    [
        ({"scale": False}, "not divided by √d"),
        ({"mask": False}, "zero padding instead of masking"),
        ({"rho_index": lambda h: 0}, "positional encoding of the identity"),
    ],
)
def test_lifting_mistakes_are_named(switches, named):
    failed(check_lifting_attention(functools.partial(reference_lifting_attention, **switches)), "differs from the package", named)


def test_lifting_without_the_group_is_not_equivariant():
    text = failed(check_lifting_attention(functools.partial(reference_lifting_attention, rho_index=lambda h: 0)))
    assert "is not equivariant: element" in text and "of r4 gives a relative error" in text


def test_lifting_unfinished_and_strict(monkeypatch):
    assert check_lifting_attention(unfinished).status == "not implemented yet"
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(ExerciseFailed, match="not divided by √d"):
        check_lifting_attention(functools.partial(reference_lifting_attention, scale=False))


def test_constant_lifting():
    assert check_constant_lifting(lambda layer, c: layer.to_out(layer.to_v(c))).passed
    failed(check_constant_lifting(lambda layer, c: layer.to_out.weight @ layer.to_v(c)), "without the bias of to_out", "at channel")
    failed(check_constant_lifting(lambda layer, c: layer.to_out(layer.to_v(c))[:3]), "shape (4,)")


# ---- chapter 6 ------------------------------------------------------------------------------


def _pair(group):
    G, inv, mul = group.order, group.inverse, group.compose
    return torch.tensor([[[G * mul(inv(h), t) + mul(inv(h), s) for s in group.elements] for t in group.elements] for h in group.elements])


def test_pair_table():
    assert check_pair_table(_pair).passed
    assert check_pair_table(lambda g: relative_group_index(g, "pair")).passed


def test_a_non_invariant_table_names_the_triple():
    text = failed(check_pair_table(lambda g: relative_group_index(g, "official") if g.order != 3 else _pair(g)), "is not invariant: for r =")
    assert "T[rh, rh̃, rĥ] = T[" in text


def test_a_transposed_pair_table_is_invariant_but_wrong():
    def transposed(g):  # (h̃⁻¹h, h̃⁻¹ĥ): invariant, but not the package's table
        return _pair(g).new_tensor([[[g.order * g.compose(g.inverse(t), h) + g.compose(g.inverse(t), s) for s in g.elements]
                                     for t in g.elements] for h in g.elements])

    text = failed(check_pair_table(transposed), "differs from the package's pair table at [h, h̃, ĥ]")
    assert "is invariant" in text
    failed(check_pair_table(lambda g: _pair(g).double()), "integer indices")
    failed(check_pair_table(lambda g: _pair(g)[0]), "expected (4, 4, 4)")


@pytest.mark.parametrize("group, encoding", [("r4", "pair"), ("m4", "gevit")])
def test_group_reference_passes(group, encoding):
    result = check_group_attention(reference_group_attention, group=group, group_encoding=encoding)
    assert result.passed, result.report()


@pytest.mark.parametrize(
    "switches, named",
    [({"scale": False}, "not divided by √d"), ({"joint": False}, "not jointly over (j, ĥ)"), ({"rho_index": lambda h: 0}, "rho[0]")],
)
def test_group_mistakes_are_named(switches, named):
    failed(check_group_attention(functools.partial(reference_group_attention, **switches)), named)


def test_group_attention_with_a_non_invariant_table_fails_equivariance():
    def official(x, **parts):  # reads the official table instead of the invariant one it was given
        parts["table"] = relative_group_index("r4", "official")
        parts["embedding"] = parts["embedding"][:4]
        return reference_group_attention(x, **parts)

    failed(check_group_attention(official, group_encoding="gevit"), "differs from the package", "is not equivariant: element")
    failed(check_group_attention(reference_group_attention, group_encoding="official"), "the official table is not invariant")


def test_constant_group():
    def right(layer, c):
        return layer.to_out((layer.group.order if layer.query == "all" else 1) * layer.to_v(c))

    assert check_constant_group(right).passed
    failed(check_constant_group(lambda layer, c: layer.to_out(layer.to_v(c))), "counts 1 query copy", "the layer sums over all |H| = 4")


# ---- chapter 7 ------------------------------------------------------------------------------


def _count(c_in, c_out, m, d, hidden, entries):
    return 3 * c_in * m * d + m * d * c_out + c_out + 3 * hidden + hidden * m * d + m * d + entries * m * d


def test_attention_parameters():
    assert check_attention_parameters(_count).passed
    failed(check_attention_parameters(lambda *a: _count(*a) - a[1]), "exactly the bias of to_out")
    failed(check_attention_parameters(lambda *a: _count(*a[:5], 0)), "exactly the group embedding", "group layer over r4")
    failed(check_attention_parameters(lambda *a: float(_count(*a))), "should be an integer")


def test_invariant_head():
    def head(features):
        return features.mean(dim=(-2, -1)).amax(dim=2)

    assert check_invariant_head(head).passed

    def pooled_first(features):  # 2x2 max pooling before the head: drops a row and a column of the odd map
        B, C, G, H, W = features.shape
        return head(F.max_pool2d(features.reshape(B, C * G, H, W), 2).reshape(B, C, G, H // 2, W // 2))

    failed(check_invariant_head(pooled_first), "7x7 map over r4 is not equivariant: element", "differs from the package")
    text = failed(check_invariant_head(lambda f: f.amax(dim=2).mean(dim=(-2, -1))), "differs from the package")
    assert "not equivariant" not in text  # max then mean is invariant too, only a different function


# ---- chapter 8 ------------------------------------------------------------------------------


def _accuracies(model, images, labels, angles):
    with torch.no_grad():
        return [float((model(rotate_images(images, a)).argmax(1) == labels).float().mean()) for a in angles]


def test_accuracy_vs_angle():
    assert check_accuracy_vs_angle(_accuracies).passed
    failed(check_accuracy_vs_angle(lambda m, x, y, a: _accuracies(m, x, y, [-t for t in a])), "at 30°", "rotated by −30°")
    failed(check_accuracy_vs_angle(lambda m, x, y, a: [100 * v for v in _accuracies(m, x, y, a)]), "percentages")
    failed(check_accuracy_vs_angle(lambda m, x, y, a: _accuracies(m, x, y, a)[:2]), "one accuracy per angle")


def test_selection_bias():
    assert expected_selection_bias(0.98, 50_000, 50) == pytest.approx(0.139, abs=0.002)
    assert expected_selection_bias(0.5, 10, 1) == pytest.approx(0.0, abs=1e-12)  # one epoch: no selection

    def simulated(p, n, epochs, trials=4000):
        draws = torch.distributions.Binomial(n, torch.full((trials, epochs), p)).sample() / n
        return 100 * float(draws.max(dim=1).values.mean() - p)

    assert check_selection_bias(simulated).passed
    failed(check_selection_bias(lambda p, n, e: simulated(p, n, e) / 100), "multiply by 100")
    failed(check_selection_bias(lambda p, n, e: 100 * math.sqrt(p * (1 - p) / n)), "standard deviation of one estimate")


# ---- chapter 9 ------------------------------------------------------------------------------


def _counts(group, side, window, heads, batch):
    G = get_group(group).order
    base = batch * heads * side**2 * window**2
    return {"lifting": base * G, "factorized": base * G**2, "dense": base * G**3}


def test_score_counts():
    assert check_score_counts(_counts).passed

    def dense_squared(*args):
        return {**_counts(*args), "dense": _counts(*args)["factorized"]}

    failed(check_score_counts(dense_squared), "'dense' for", "= |H|^-1")
    failed(check_score_counts(lambda *a: [1, 2, 3]), "a dict with the keys")


def test_factorized_softmax():
    def right(A, B, C):
        L = torch.logsumexp(A + C, dim=1)
        return torch.softmax(B + L, 0)[:, None] * torch.softmax(A + C, 1)

    assert check_factorized_softmax(right).passed
    failed(check_factorized_softmax(lambda A, B, C: B.softmax(0)[:, None] * (A + C).softmax(1)), "the outer softmax needs B + L")

    def naive(A, B, C):
        e = torch.exp(A + B[:, None] + C)
        return e / e.sum()

    failed(check_factorized_softmax(naive), "NaN or infinite")
