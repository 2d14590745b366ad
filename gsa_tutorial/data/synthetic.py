"""Printed digits made offline in the package: the quick mode's option and the unit tests' data.

The glyphs (the ten digits in eight DejaVu fonts, 64×64 coverage masks) ship as a small data
file, ``gsa_tutorial/assets/synthetic_glyphs.npz``, rendered once by ``tools/build_glyphs.py``
(which needs matplotlib); this module reads it and needs only torch and numpy.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import _InMemoryImages
from .files import read_asset

__all__ = ["SyntheticDigits", "SYNTHETIC_FONTS"]

#: The DejaVu fonts (bundled with matplotlib) whose glyphs :class:`SyntheticDigits` draws (8 styles).
SYNTHETIC_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
)
TEMPLATE_SIZE = 64  # glyph templates are 64x64 (rendered at 128x128, 2x2 box-filtered)
GLYPH_FRACTION = 0.75  # the glyph's longer side spans 75% of the template side
GLYPHS_FILE = "synthetic_glyphs.npz"
#: sha256 of ``gsa_tutorial/assets/synthetic_glyphs.npz`` as written by ``tools/build_glyphs.py``.
GLYPHS_SHA256 = "e23fce6afa0fd0474a6a159547d4ae7c6c16262ae4ab3c6e10e4f91b6fb40555"


@functools.lru_cache(maxsize=1)
def _glyph_templates() -> torch.Tensor:
    """The ten digits in each font as anti-aliased masks, ``(fonts, 10, 64, 64)`` float32 in [0, 1].

    Read from the shipped file (checked against :data:`GLYPHS_SHA256`), which holds the coverage
    of each template pixel in quarters (``tools/build_glyphs.py`` says how it is rendered).
    """
    raw = read_asset(GLYPHS_FILE, GLYPHS_SHA256, constant="GLYPHS_SHA256", tool="tools/build_glyphs.py")
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        quarters, fonts = z["glyphs"], tuple(str(f) for f in z["fonts"])  # (fonts, 10, 64, 64) uint8 in 0..4
    if fonts != SYNTHETIC_FONTS or quarters.shape != (len(SYNTHETIC_FONTS), 10, TEMPLATE_SIZE, TEMPLATE_SIZE):
        raise ValueError(f"{GLYPHS_FILE} holds glyphs {quarters.shape} of fonts {fonts}, expected {SYNTHETIC_FONTS}")
    return torch.from_numpy(quarters.astype(np.float32) / 4.0)  # exact: k / 4


@functools.lru_cache(maxsize=1)
def _stroke_templates() -> torch.Tensor:
    """Glyphs with three stroke widths (as drawn, thicker, thickest): ``(fonts*3, 10, 64, 64)``.

    Printed strokes are thinner than MNIST's pen strokes, so the variants only thicken
    (grey-level dilation by a 3x3 and a 5x5 maximum).
    """
    base = _glyph_templates()  # (Fo, 10, 64, 64)
    flat = base.reshape(-1, 1, TEMPLATE_SIZE, TEMPLATE_SIZE)  # (Fo*10, 1, 64, 64)
    thicker = F.max_pool2d(flat, 3, stride=1, padding=1)  # grey-level dilation
    thickest = F.max_pool2d(flat, 5, stride=1, padding=2)
    bold = torch.tensor(["Bold" in font for font in SYNTHETIC_FONTS]).repeat_interleave(10)  # (Fo*10,)
    thickest = torch.where(bold[:, None, None, None], thicker, thickest)  # bold + 5x5 would fill the holes
    styles = torch.stack([flat, thicker, thickest], dim=1)  # (Fo*10, 3, 1, 64, 64)
    styles = styles.reshape(base.shape[0], 10, 3, TEMPLATE_SIZE, TEMPLATE_SIZE)  # (Fo, 10, 3, 64, 64)
    return styles.permute(0, 2, 1, 3, 4).reshape(-1, 10, TEMPLATE_SIZE, TEMPLATE_SIZE).contiguous()  # (Fo*3, 10, 64, 64)


class SyntheticDigits(_InMemoryImages):
    """Printed digits 0–9 made offline in the package: quick-mode data for the book and tests.

    Each digit is a glyph of one of 8 DejaVu fonts (:data:`SYNTHETIC_FONTS`, shipped as
    rendered templates), with one of 3 stroke widths, a random scale, aspect ratio,
    shear (slant) and translation, and, when ``rotated``, a rotation by an angle uniform in
    ``[0, 2π)`` about the image centre (the rotated-MNIST protocol). All these maps are
    composed into one affine warp and applied with bilinear ``grid_sample`` from 64×64
    templates, at twice the output resolution followed by 2×2 averaging (anti-aliasing).
    Generating 2,000 digits takes well under a second on one core.

    Deterministic given ``seed``; labels are balanced (``n // 10`` or one more of each).
    ``rotated=True`` with the same seed gives the *same* digits as ``rotated=False``,
    rotated by :attr:`angles` (counter-clockwise, as :func:`rotate_images`).

    Args:
        n: number of digits.
        size: side of the square images (the glyph is scaled with it: about ``20/28`` of it).
        rotated: rotate every digit by a uniform random angle.
        seed: random seed.

    Attributes:
        images: ``(n, 1, size, size)`` float32 in [0, 1].
        labels: ``(n,)`` int64.
        angles: ``(n,)`` float64 rotation angles (zeros when ``rotated=False``).

    Shape:
        item: ``(1, size, size)`` float32 in [0, 1], label ``int``.
    """

    def __init__(self, n: int = 2000, *, size: int = 28, rotated: bool = False, seed: int = 0) -> None:
        if int(n) < 0 or int(size) < 4:
            raise ValueError(f"need n >= 0 and size >= 4, got n={n}, size={size}")
        self.n, self.size, self.rotated, self.seed = int(n), int(size), bool(rotated), int(seed)
        self.split: str | None = None
        templates = _stroke_templates()  # (S, 10, 64, 64)
        g = torch.Generator().manual_seed(self.seed)
        n = self.n
        labels = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]  # balanced, shuffled
        style = torch.randint(0, templates.shape[0], (n,), generator=g)

        def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)

        scale = uniform(0.8, 1.05, n)  # glyph height ≈ 20/28 of the image at scale 1 (as MNIST's 20x20 box)
        aspect = uniform(0.85, 1.15, n)  # horizontal stretch
        shear = uniform(-0.3, 0.3, n)  # slant: x += shear * y
        shift = uniform(-2.0, 2.0, n, 2) * (2.0 / self.size)  # ±2 px, in normalised units
        angles = uniform(0.0, 2 * math.pi, n)  # drawn always, so upright and rotated share the digits
        self.angles = angles if self.rotated else torch.zeros(n, dtype=torch.float64)
        self.labels = labels.to(torch.int64)
        self.images = self._render(templates, style, labels, scale, aspect, shear, shift, self.angles)

    def _render(
        self,
        templates: torch.Tensor,
        style: torch.Tensor,
        labels: torch.Tensor,
        scale: torch.Tensor,
        aspect: torch.Tensor,
        shear: torch.Tensor,
        shift: torch.Tensor,
        angles: torch.Tensor,
    ) -> torch.Tensor:
        n, size = labels.shape[0], self.size
        # forward map from template units to image units (both y up, centred, half side = 1):
        # p = R(θ) @ (k * [[aspect, shear], [0, 1]] @ v + shift): the upright digit, rotated about the centre
        k = (20.0 / 28.0) * scale / GLYPH_FRACTION  # (n,)
        cos, sin = angles.cos(), angles.sin()
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (n, 2, 2)
        slant = torch.zeros(n, 2, 2, dtype=torch.float64)
        slant[:, 0, 0], slant[:, 0, 1], slant[:, 1, 1] = aspect, shear, 1.0
        forward = k[:, None, None] * rot @ slant  # (n, 2, 2), y up
        flip = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))  # y up <-> grid_sample's y down
        forward = flip @ forward @ flip
        t = (rot @ shift[:, :, None])[..., 0] @ flip  # (n, 2): the rotated shift, y down
        inverse = torch.linalg.inv(forward)  # (n, 2, 2)
        theta = torch.cat([inverse, -(inverse @ t[:, :, None])], dim=2).to(torch.float32)  # (n, 2, 3)
        fine_size = 2 * size  # render at twice the resolution, then average 2x2 blocks
        c = (torch.arange(fine_size, dtype=torch.float32) + 0.5) / fine_size * 2 - 1  # pixel centres in [-1, 1]
        gy, gx = torch.meshgrid(c, c, indexing="ij")  # (2S, 2S) each
        base = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(1, -1, 3)  # (1, 4S², 3) homogeneous
        out = torch.empty(n, 1, size, size)
        for lo in range(0, n, 2048):  # chunks bound the memory of the gathered templates
            hi = min(lo + 2048, n)
            src = templates[style[lo:hi], labels[lo:hi]][:, None]  # (b, 1, 64, 64)
            grid = (base @ theta[lo:hi].transpose(1, 2)).reshape(hi - lo, fine_size, fine_size, 2)  # (b, 2S, 2S, 2)
            fine = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out[lo:hi] = F.avg_pool2d(fine, 2)  # (b, 1, size, size): 2x2 supersampling
        return out.clamp_(0.0, 1.0)

    def __repr__(self) -> str:
        return f"SyntheticDigits(n={self.n}, size={self.size}, rotated={self.rotated}, seed={self.seed})"
