"""Finite groups H that act on the plane (chapter 2 of the book).

GSA-Nets are equivariant to the roto-translation group ``G = R^2 ⋊ H``: translations
are handled by *relative* positions, and ``H`` is a finite group of rotations (and
possibly mirrorings) that fix the origin. This module holds ``H``.

Elements are plain integers ``0 .. order-1`` with ``0`` the identity, and the group law
is a Cayley table, so composing and inverting is exact integer arithmetic (never a
comparison of float angles).

Names follow the paper (Romero & Cordonnier, 2021):

=========  ==========================  =================================================
name       group                       elements
=========  ==========================  =================================================
``z2``     trivial group {e}           translations only (the paper calls this Z2)
``rN``     cyclic group C_N            ``k`` = rotation by ``2πk/N``  (R4, R8, R12, R16)
``mN``     dihedral group D_N          ``k`` = rotation ``r^k``; ``N + k`` = ``r^k s``
=========  ==========================  =================================================

For the dihedral group, ``s`` is the mirror ``(x, y) -> (-x, y)`` (a left-right flip of an
image) and ``r^k s`` means "first mirror, then rotate". ``m4`` is the paper's M4 (p4m).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

__all__ = ["Group", "TrivialGroup", "CyclicGroup", "DihedralGroup", "get_group", "GROUP_NAMES"]

#: The names that :func:`get_group` knows by heart (any ``rN`` / ``mN`` with N >= 1 also works).
GROUP_NAMES = ("z2", "r4", "r8", "r12", "r16", "m4")


@dataclass(frozen=True)
class Group:
    """A finite group acting linearly on the plane.

    Subclasses define :meth:`_matrix_of` (the 2x2 matrix of element ``h``) and
    :meth:`_compose` (the group law on indices); everything else (the Cayley table,
    inverses, grid exactness) is derived here once and cached.

    Coordinates are ``(x, y)`` with ``x`` to the right and ``y`` *up*; the rotation by a
    positive angle is counter-clockwise as seen on screen (see :mod:`gsa_tutorial.actions`).
    """

    name: str
    order: int

    # ---- to implement in subclasses ---------------------------------------------------
    def _compose(self, a: int, b: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _matrix_of(self, h: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def element_name(self, h: int) -> str:  # pragma: no cover - abstract
        """A readable name of element ``h`` (``"e"``, ``"r^3"``, ``"r^1 s"``, ...)."""
        raise NotImplementedError

    # ---- derived structure -------------------------------------------------------------
    @property
    def elements(self) -> list[int]:
        """All elements, ``[0, 1, ..., order-1]``; ``0`` is the identity."""
        return list(range(self.order))

    @property
    def identity(self) -> int:
        return 0

    @cached_property
    def cayley_table(self) -> np.ndarray:
        """``table[a, b] = compose(a, b)``, an ``(order, order)`` integer array."""
        n = self.order
        return np.array([[self._compose(a, b) for b in range(n)] for a in range(n)], dtype=np.int64)

    @cached_property
    def inverse_table(self) -> np.ndarray:
        """``inverse_table[h]`` is the inverse of ``h``."""
        table = self.cayley_table
        return np.array([int(np.flatnonzero(table[h] == 0)[0]) for h in range(self.order)], dtype=np.int64)

    def _check(self, h: int) -> int:
        if not isinstance(h, (int, np.integer)) or isinstance(h, bool):
            raise TypeError(f"group elements are integers 0..{self.order - 1}, got {h!r} ({type(h).__name__})")
        if not 0 <= int(h) < self.order:
            raise ValueError(f"{self.name} has elements 0..{self.order - 1}, got {h}")
        return int(h)

    def compose(self, a: int, b: int) -> int:
        """The product ``a b`` (first apply ``b``, then ``a``, when acting on the plane)."""
        return int(self.cayley_table[self._check(a), self._check(b)])

    def inverse(self, h: int) -> int:
        """The inverse ``h⁻¹``."""
        return int(self.inverse_table[self._check(h)])

    def matrix(self, h: int) -> np.ndarray:
        """The 2x2 float64 matrix of ``h`` acting on ``(x, y)`` (y up).

        Entries that are integers up to round-off (for rotations by multiples of 90°) are
        snapped to exact integers, so grid-exact elements act exactly.
        """
        m = np.asarray(self._matrix_of(self._check(h)), dtype=np.float64)
        snapped = np.round(m)
        return np.where(np.abs(m - snapped) < 1e-12, snapped, m)

    def is_grid_exact(self, h: int) -> bool:
        """True when ``h`` maps the integer pixel grid onto itself (a multiple of 90°, mirrors included)."""
        m = self.matrix(h)
        return bool(np.all(m == np.round(m)))

    @property
    def grid_exact_elements(self) -> list[int]:
        """The elements for which actions on pixel images are exact (no interpolation)."""
        return [h for h in self.elements if self.is_grid_exact(h)]

    @property
    def element_names(self) -> list[str]:
        return [self.element_name(h) for h in self.elements]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, order={self.order})"


@dataclass(frozen=True, repr=False)
class TrivialGroup(Group):
    """The trivial group ``{e}``: a GSA-Net over it is only translation equivariant (the paper's Z2)."""

    name: str = "z2"
    order: int = 1

    def _compose(self, a: int, b: int) -> int:
        return 0

    def _matrix_of(self, h: int) -> np.ndarray:
        return np.eye(2)

    def element_name(self, h: int) -> str:
        self._check(h)
        return "e"


def _rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


@dataclass(frozen=True, repr=False)
class CyclicGroup(Group):
    """The cyclic group ``C_n`` of rotations by multiples of ``2π/n`` (the paper's R_n).

    Element ``k`` is the rotation by ``2πk/n`` counter-clockwise; ``compose(a, b) = a + b mod n``.
    """

    n: int = 4
    name: str = field(default="", init=False)
    order: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.n, (int, np.integer)) or isinstance(self.n, bool) or self.n < 1:
            raise ValueError(f"C_n needs an integer n >= 1, got {self.n!r} ({type(self.n).__name__})")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "name", f"r{self.n}")
        object.__setattr__(self, "order", self.n)

    def _compose(self, a: int, b: int) -> int:
        return (a + b) % self.n

    def _matrix_of(self, h: int) -> np.ndarray:
        return _rotation(2 * math.pi * h / self.n)

    def angle(self, h: int) -> float:
        """Rotation angle of ``h`` in radians."""
        return 2 * math.pi * self._check(h) / self.n

    def element_name(self, h: int) -> str:
        h = self._check(h)
        return "e" if h == 0 else f"r^{h}"


@dataclass(frozen=True, repr=False)
class DihedralGroup(Group):
    """The dihedral group ``D_n`` (rotations by ``2π/n`` and mirrors; the paper's M_n, ``m4`` = p4m).

    Element ``m*n + k`` is ``r^k s^m``: mirror ``s: (x, y) -> (-x, y)`` if ``m = 1``, then rotate
    by ``2πk/n``. Since ``s r = r^{-1} s``:
    ``(r^a s^p)(r^b s^q) = r^(a + (-1)^p b) s^(p xor q)``.
    """

    n: int = 4
    name: str = field(default="", init=False)
    order: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.n, (int, np.integer)) or isinstance(self.n, bool) or self.n < 1:
            raise ValueError(f"D_n needs an integer n >= 1, got {self.n!r} ({type(self.n).__name__})")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "name", f"m{self.n}")
        object.__setattr__(self, "order", 2 * self.n)

    def split(self, h: int) -> tuple[int, int]:
        """``h -> (k, m)`` with ``h = r^k s^m``."""
        h = self._check(h)
        return h % self.n, h // self.n

    def _compose(self, a: int, b: int) -> int:
        (ka, ma), (kb, mb) = (a % self.n, a // self.n), (b % self.n, b // self.n)
        k = (ka + (kb if ma == 0 else -kb)) % self.n
        return (ma ^ mb) * self.n + k

    def _matrix_of(self, h: int) -> np.ndarray:
        k, m = h % self.n, h // self.n
        mirror = np.diag([-1.0, 1.0]) if m else np.eye(2)
        return _rotation(2 * math.pi * k / self.n) @ mirror

    def angle(self, h: int) -> float:
        """Rotation angle (radians) of the rotation part of ``h``."""
        return 2 * math.pi * self.split(h)[0] / self.n

    def element_name(self, h: int) -> str:
        k, m = self.split(h)
        rot = "" if k == 0 else f"r^{k}"
        if m == 0:
            return rot or "e"
        return f"{rot} s".strip()


_NAME = re.compile(r"^([rm])(\d+)$")


def get_group(name: str | Group) -> Group:
    """Look a group up by the paper's name: ``"z2"``, ``"r4"``, ``"r8"``, ``"r12"``, ``"r16"``, ``"m4"``.

    Any ``"rN"`` (cyclic C_N) or ``"mN"`` (dihedral D_N) with ``N >= 1`` works too. A
    :class:`Group` passes through unchanged.

    Raises:
        ValueError: for an unknown name; the message lists the valid ones.
    """
    if isinstance(name, Group):
        return name
    if not isinstance(name, str):
        raise TypeError(f"group name must be a string such as 'r4', got {name!r}")
    key = name.strip().lower()
    if key in ("z2", "e", "trivial"):
        return TrivialGroup()
    match = _NAME.match(key)
    if match and int(match.group(2)) >= 1:
        n = int(match.group(2))
        return CyclicGroup(n) if match.group(1) == "r" else DihedralGroup(n)
    raise ValueError(
        f"unknown group {name!r}: expected one of {', '.join(GROUP_NAMES)} "
        "(or 'rN' for the cyclic group C_N, 'mN' for the dihedral group D_N, N >= 1)"
    )
