"""Reusable checkers of the group laws for :class:`gsa_tutorial.groups.Group` (test helpers).

Each ``check_*`` function raises ``AssertionError`` naming the offending elements, and
returns ``None`` when the law holds. ``tests/test_groups.py`` runs them over many groups
and checks each one against a deliberately broken group (negative controls).
"""

from __future__ import annotations

import itertools

import numpy as np

from gsa_tutorial.groups import DihedralGroup, Group

#: Groups the laws are checked on: trivial, cyclic odd/even, dihedral odd/even (D_1, D_2 are abelian).
LAW_GROUPS = ("z2", "r1", "r3", "r4", "r5", "r8", "r12", "r16", "m1", "m2", "m3", "m4", "m6")


def check_closure(group: Group) -> None:
    """Every product ``a b`` is an element ``0 .. order-1``."""
    table = np.asarray(group.cayley_table)
    assert table.shape == (group.order, group.order), f"{group}: Cayley table has shape {table.shape}"
    bad = np.argwhere((table < 0) | (table >= group.order))
    assert bad.size == 0, f"{group}: products outside the group, e.g. {tuple(bad[0])} -> {table[tuple(bad[0])]}"


def check_identity(group: Group) -> None:
    """``e h = h e = h`` for every ``h``, with ``e = group.identity = 0``."""
    e = group.identity
    assert e == 0, f"{group}: identity should be element 0, got {e}"
    for h in group.elements:
        assert group.compose(e, h) == h, f"{group}: e·{h} = {group.compose(e, h)}, expected {h}"
        assert group.compose(h, e) == h, f"{group}: {h}·e = {group.compose(h, e)}, expected {h}"


def check_inverse(group: Group) -> None:
    """``h h⁻¹ = h⁻¹ h = e`` for every ``h``."""
    for h in group.elements:
        try:
            inv = group.inverse(h)
        except Exception as err:  # e.g. a row of the Cayley table without the identity
            raise AssertionError(f"{group}: element {h} has no inverse ({err})") from err
        assert group.compose(h, inv) == group.identity, f"{group}: {h}·{inv} = {group.compose(h, inv)} != e"
        assert group.compose(inv, h) == group.identity, f"{group}: {inv}·{h} = {group.compose(inv, h)} != e"


def check_associativity(group: Group) -> None:
    """``(a b) c = a (b c)`` for all triples (vectorised over the Cayley table)."""
    t = np.asarray(group.cayley_table)
    if np.any((t < 0) | (t >= group.order)):
        raise AssertionError(f"{group}: not closed, associativity cannot be checked")
    left = t[t, :]  # left[a, b, c] = (a b) c                       (n, n, n)
    right = t[:, t]  # right[a, b, c] = a (b c)                      (n, n, n)
    bad = np.argwhere(left != right)
    if bad.size:
        a, b, c = (int(i) for i in bad[0])
        raise AssertionError(f"{group}: ({a}·{b})·{c} = {left[a, b, c]} but {a}·({b}·{c}) = {right[a, b, c]}")


def check_latin_square(group: Group) -> None:
    """Every row and every column of the Cayley table is a permutation of the elements."""
    t = np.asarray(group.cayley_table)
    want = np.arange(group.order)
    for i in range(group.order):
        assert np.array_equal(np.sort(t[i]), want), f"{group}: row {i} of the Cayley table is not a permutation"
        assert np.array_equal(np.sort(t[:, i]), want), f"{group}: column {i} of the Cayley table is not a permutation"


def check_homomorphism(group: Group, atol: float = 1e-12) -> None:
    """``matrix(a b) == matrix(a) @ matrix(b)`` (to ``atol``) for all pairs."""
    for a, b in itertools.product(group.elements, repeat=2):
        lhs = group.matrix(group.compose(a, b))
        rhs = group.matrix(a) @ group.matrix(b)
        err = float(np.abs(lhs - rhs).max())
        assert err <= atol, f"{group}: matrix({a}·{b}) differs from matrix({a}) @ matrix({b}) by {err:.2e}"


def check_orthogonal(group: Group, atol: float = 1e-12) -> None:
    """Every ``matrix(h)`` is a 2x2 orthogonal matrix: ``M Mᵀ = I``."""
    for h in group.elements:
        m = group.matrix(h)
        assert m.shape == (2, 2), f"{group}: matrix({h}) has shape {m.shape}, expected (2, 2)"
        err = float(np.abs(m @ m.T - np.eye(2)).max())
        assert err <= atol, f"{group}: matrix({h}) is not orthogonal (|M Mᵀ - I| = {err:.2e})"


def is_mirror(group: Group, h: int) -> bool:
    """True for the mirrors ``r^k s`` of a dihedral group (independent of the matrices)."""
    return isinstance(group, DihedralGroup) and h >= group.n


def check_determinants(group: Group, atol: float = 1e-12) -> None:
    """``det matrix(h)`` is ``-1`` for mirrors and ``+1`` for everything else."""
    for h in group.elements:
        det = float(np.linalg.det(group.matrix(h)))
        want = -1.0 if is_mirror(group, h) else 1.0
        assert abs(det - want) <= atol, f"{group}: det matrix({h}) = {det}, expected {want}"


def check_unique_names(group: Group) -> None:
    """Element names are non-empty, distinct, and the identity is called ``e``."""
    names = [group.element_name(h) for h in group.elements]
    assert all(isinstance(n, str) and n for n in names), f"{group}: empty element name in {names}"
    assert len(set(names)) == len(names), f"{group}: element names are not unique: {names}"
    assert names[0] == "e", f"{group}: the identity should be called 'e', got {names[0]!r}"


#: Every law, in the order a reader would check them.
ALL_LAWS = (
    check_closure,
    check_identity,
    check_inverse,
    check_associativity,
    check_latin_square,
    check_homomorphism,
    check_orthogonal,
    check_determinants,
    check_unique_names,
)


def check_group_laws(group: Group) -> None:
    """Run every checker in :data:`ALL_LAWS` on ``group``."""
    for law in ALL_LAWS:
        law(group)
