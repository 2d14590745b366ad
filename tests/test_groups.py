"""Tests of gsa_tutorial.groups: group laws, lookup by name, matrices, grid exactness (chapter 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from group_laws import (
    ALL_LAWS,
    LAW_GROUPS,
    check_associativity,
    check_closure,
    check_determinants,
    check_homomorphism,
    check_identity,
    check_inverse,
    check_latin_square,
    check_orthogonal,
    check_unique_names,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gsa_tutorial.groups import GROUP_NAMES, CyclicGroup, DihedralGroup, Group, TrivialGroup, get_group

# ---- the laws hold on every group ------------------------------------------------------------


@pytest.mark.parametrize("law", ALL_LAWS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", LAW_GROUPS)
def test_group_law(name: str, law) -> None:
    law(get_group(name))


# ---- negative controls: each checker rejects a group that breaks its law ----------------------


class _Subtracting(CyclicGroup):
    """a·b = a - b: closed, but no two-sided identity and not associative."""

    def _compose(self, a: int, b: int) -> int:
        return (a - b) % self.n


class _Max(CyclicGroup):
    """a·b = max(a, b): associative with identity 0, but no inverses (not a Latin square)."""

    def _compose(self, a: int, b: int) -> int:
        return max(a, b)


class _Unclosed(CyclicGroup):
    """a·b = a + b without the modulo."""

    def _compose(self, a: int, b: int) -> int:
        return a + b


class _WrongAngle(CyclicGroup):
    """Matrices rotate by 2πk/(n+1): not a homomorphism."""

    def _matrix_of(self, h: int) -> np.ndarray:
        t = 2 * math.pi * h / (self.n + 1)
        return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


class _Scaled(CyclicGroup):
    """Matrices scaled by 2: not orthogonal."""

    def _matrix_of(self, h: int) -> np.ndarray:
        return 2 * super()._matrix_of(h)


class _NoMirror(DihedralGroup):
    """Forgets the mirror in the matrices: determinant +1 for the mirror elements."""

    def _matrix_of(self, h: int) -> np.ndarray:
        return super()._matrix_of(h % self.n)


class _SameNames(CyclicGroup):
    def element_name(self, h: int) -> str:
        return "e" if h == 0 else "r"


@pytest.mark.parametrize(
    ("checker", "broken"),
    [
        (check_identity, _Subtracting(4)),
        (check_associativity, _Subtracting(4)),
        (check_inverse, _Max(4)),
        (check_latin_square, _Max(4)),
        (check_closure, _Unclosed(4)),
        (check_homomorphism, _WrongAngle(4)),
        (check_orthogonal, _Scaled(4)),
        (check_determinants, _NoMirror(4)),
        (check_unique_names, _SameNames(4)),
    ],
    ids=lambda v: v.__name__ if callable(v) and hasattr(v, "__name__") else type(v).__name__,
)
def test_law_checker_rejects_broken_group(checker, broken: Group) -> None:
    with pytest.raises(AssertionError):
        checker(broken)


# ---- property tests ---------------------------------------------------------------------------


@st.composite
def group_and_elements(draw, k: int):
    group = get_group(draw(st.sampled_from(LAW_GROUPS + ("r7", "m5", "m8"))))
    return (group, *[draw(st.integers(0, group.order - 1)) for _ in range(k)])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(group_and_elements(3))
@example((get_group("m4"), 1, 4, 5))  # rotation, mirror, mirror
@example((get_group("m3"), 5, 1, 4))  # odd dihedral: s r = r^{-1} s matters
@example((get_group("r12"), 11, 7, 5))  # wrap-around modulo 12
def test_associativity_random_triples(args) -> None:
    group, a, b, c = args
    assert group.compose(group.compose(a, b), c) == group.compose(a, group.compose(b, c))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(group_and_elements(2))
@example((get_group("m4"), 1, 4))
@example((get_group("m6"), 7, 2))
def test_inverse_of_product_random_pairs(args) -> None:
    group, a, b = args
    assert group.inverse(group.compose(a, b)) == group.compose(group.inverse(b), group.inverse(a))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(group_and_elements(2))
@example((get_group("m4"), 5, 6))
@example((get_group("r16"), 3, 15))
def test_matrix_homomorphism_random_pairs(args) -> None:
    group, a, b = args
    np.testing.assert_allclose(
        group.matrix(group.compose(a, b)), group.matrix(a) @ group.matrix(b), rtol=0, atol=1e-12
    )


# ---- lookup by name ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls", "order"),
    [
        ("z2", TrivialGroup, 1),
        ("r4", CyclicGroup, 4),
        ("r8", CyclicGroup, 8),
        ("r12", CyclicGroup, 12),
        ("r16", CyclicGroup, 16),
        ("m4", DihedralGroup, 8),
    ],
)
def test_get_group_paper_names(name: str, cls: type, order: int) -> None:
    group = get_group(name)
    assert type(group) is cls
    assert (group.name, group.order) == (name, order)


@pytest.mark.parametrize(("alias", "name"), [("R4", "r4"), ("M4", "m4"), ("  r8 ", "r8"), ("Z2", "z2")])
def test_get_group_is_case_and_space_insensitive(alias: str, name: str) -> None:
    assert get_group(alias) == get_group(name)


def test_get_group_passes_a_group_through() -> None:
    group = DihedralGroup(6)
    assert get_group(group) is group


def test_paper_names_are_all_known() -> None:
    assert [get_group(n).name for n in GROUP_NAMES] == list(GROUP_NAMES)


@pytest.mark.parametrize("bad", ["q4", "r0", "m0", "", "so2", "r-4", "r4.5", "c4"])
def test_get_group_unknown_name_lists_valid_names(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown group") as info:
        get_group(bad)
    for valid in GROUP_NAMES:
        assert valid in str(info.value)


@pytest.mark.parametrize("bad", [4, None, 4.0])
def test_get_group_non_string_is_a_type_error(bad) -> None:
    with pytest.raises(TypeError, match="group name"):
        get_group(bad)


@pytest.mark.parametrize("cls", [CyclicGroup, DihedralGroup])
@pytest.mark.parametrize("n", [0, -2, 2.0])
def test_constructor_rejects_bad_n(cls: type, n) -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        cls(n)


# ---- bad elements ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["inverse", "matrix", "element_name", "is_grid_exact", "compose"])
@pytest.mark.parametrize("name", ["z2", "r4", "m4"])
def test_out_of_range_element_is_a_value_error(name: str, method: str) -> None:
    group = get_group(name)
    for bad in (-1, group.order):
        args = (bad, 0) if method == "compose" else (bad,)
        with pytest.raises(ValueError, match=rf"0\.\.{group.order - 1}"):
            getattr(group, method)(*args)


@pytest.mark.parametrize("method", ["inverse", "matrix", "element_name", "compose"])
@pytest.mark.parametrize("bad", [1.5, True, "1", None])
def test_non_integer_element_is_a_type_error(method: str, bad) -> None:
    group = get_group("r4")
    args = (0, bad) if method == "compose" else (bad,)
    with pytest.raises(TypeError, match="integers 0..3"):
        getattr(group, method)(*args)


def test_numpy_integers_are_accepted() -> None:
    group = get_group("m4")
    assert group.compose(np.int64(1), np.int32(4)) == group.compose(1, 4)


# ---- concrete structure ------------------------------------------------------------------------


def test_c4_generator_is_counter_clockwise_quarter_turn() -> None:
    m = get_group("r4").matrix(1)
    assert np.array_equal(m, np.array([[0.0, -1.0], [1.0, 0.0]]))  # (1, 0) -> (0, 1): x-axis to y-axis


@pytest.mark.parametrize("name", ["m1", "m2", "m3", "m4", "m6"])
def test_dihedral_mirror_flips_x(name: str) -> None:
    group = get_group(name)
    assert np.array_equal(group.matrix(group.n), np.diag([-1.0, 1.0]))
    assert group.element_name(group.n) == "s"


@pytest.mark.parametrize("name", ["m3", "m4", "m6"])
def test_dihedral_relation_s_r_s_is_r_inverse(name: str) -> None:
    group = get_group(name)
    r, s = 1, group.n
    assert group.compose(s, group.compose(r, s)) == group.inverse(r)


@pytest.mark.parametrize("name", ["r3", "r8", "r12"])
def test_cyclic_angles(name: str) -> None:
    group = get_group(name)
    for h in group.elements:
        assert group.angle(h) == pytest.approx(2 * math.pi * h / group.n)
        np.testing.assert_allclose(group.matrix(h)[:, 0], [math.cos(group.angle(h)), math.sin(group.angle(h))], atol=1e-15)


def test_element_names_of_m4() -> None:
    assert get_group("m4").element_names == ["e", "r^1", "r^2", "r^3", "s", "r^1 s", "r^2 s", "r^3 s"]


def test_mirrors_are_involutions() -> None:
    group = get_group("m4")
    for h in range(group.n, group.order):
        assert group.inverse(h) == h


@pytest.mark.parametrize(
    ("name", "exact"),
    [
        ("z2", [0]),
        ("r1", [0]),
        ("r3", [0]),
        ("r4", [0, 1, 2, 3]),
        ("r5", [0]),
        ("r8", [0, 2, 4, 6]),
        ("r12", [0, 3, 6, 9]),
        ("r16", [0, 4, 8, 12]),
        ("m1", [0, 1]),
        ("m2", [0, 1, 2, 3]),
        ("m3", [0, 3]),
        ("m4", list(range(8))),
        ("m6", [0, 3, 6, 9]),
        ("m8", [0, 2, 4, 6, 8, 10, 12, 14]),
    ],
)
def test_grid_exact_elements_are_the_multiples_of_90_degrees(name: str, exact: list[int]) -> None:
    group = get_group(name)
    assert group.grid_exact_elements == exact
    for h in group.elements:
        assert group.is_grid_exact(h) == (h in exact)


@pytest.mark.parametrize("name", ["r4", "r8", "r12", "r16", "m4", "m6"])
def test_grid_exact_matrices_are_integer_and_the_rest_not(name: str) -> None:
    group = get_group(name)
    for h in group.elements:
        m = group.matrix(h)
        if group.is_grid_exact(h):
            assert set(np.unique(m)) <= {-1.0, 0.0, 1.0}
            assert np.all(m == np.round(m))
        else:
            assert not np.all(m == np.round(m))
