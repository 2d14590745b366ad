"""Build ``gsa_tutorial/assets/synthetic_glyphs.npz``: the digit glyphs of the synthetic data set.

:class:`gsa_tutorial.data.SyntheticDigits` draws printed digits from 64×64 glyph templates of
the ten digits in eight DejaVu fonts (the fonts bundled with matplotlib). Rendering them needs
matplotlib and takes seconds, so they are rendered once, here, and shipped with the package: the
data module then needs neither matplotlib nor the time.

Each glyph outline (matplotlib ``TextPath``) is rasterised by an even-odd point-in-polygon test
at 128×128 pixel centres, then box-filtered to 64×64; glyphs are centred on their bounding box
and scaled so that the longer side is 75 % of the template. A box filter of 2×2 binary samples
takes the values 0, 1/4, 1/2, 3/4 and 1 only, so the file stores four times the coverage as
uint8 (0..4): exact, and small. The npz has fixed zip timestamps, so the same glyphs give the
same bytes (the loader checks the file's sha256, :data:`gsa_tutorial.data.synthetic.GLYPHS_SHA256`).

    python tools/build_glyphs.py            # write the file, print its sha256
    python tools/build_glyphs.py --check    # render again and compare with the shipped file
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from build_mnist_subset import write_npz  # noqa: E402

from gsa_tutorial.data.synthetic import GLYPH_FRACTION, GLYPHS_FILE, SYNTHETIC_FONTS, TEMPLATE_SIZE  # noqa: E402

DEFAULT_OUT = REPO / "gsa_tutorial" / "assets" / GLYPHS_FILE


def render_glyphs() -> np.ndarray:
    """The ten digits in each font as coverage quarters, ``(fonts, 10, 64, 64)`` uint8 in 0..4."""
    import matplotlib
    from matplotlib.font_manager import FontProperties
    from matplotlib.path import Path as MplPath
    from matplotlib.textpath import TextPath

    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    hi = 2 * TEMPLATE_SIZE
    u = (np.arange(hi) + 0.5) / hi * 2.0 - 1.0  # (hi,) pixel centres in template units [-1, 1]
    out = np.zeros((len(SYNTHETIC_FONTS), 10, TEMPLATE_SIZE, TEMPLATE_SIZE), dtype=np.uint8)
    for f, font in enumerate(SYNTHETIC_FONTS):
        prop = FontProperties(fname=str(font_dir / font))
        for digit in range(10):
            polygons = TextPath((0.0, 0.0), str(digit), size=1.0, prop=prop).to_polygons()
            vertices = np.concatenate(polygons)  # (V, 2) glyph units, y up
            lo, hi_corner = vertices.min(0), vertices.max(0)
            centre, extent = (lo + hi_corner) / 2, (hi_corner - lo).max()
            per_unit = extent / (2 * GLYPH_FRACTION)  # glyph units per template unit
            gx, gy = np.meshgrid(centre[0] + u * per_unit, centre[1] - u * per_unit)  # (hi, hi); row 0 = top
            points = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (hi*hi, 2)
            inside = np.zeros(points.shape[0], dtype=bool)
            for polygon in polygons:  # even-odd rule: holes (0, 4, 6, 8, 9) cancel out
                inside ^= MplPath(polygon).contains_points(points)
            mask = inside.reshape(TEMPLATE_SIZE, 2, TEMPLATE_SIZE, 2)  # (64, 2, 64, 2)
            out[f, digit] = mask.sum(axis=(1, 3))  # (64, 64): 2x2 box filter, in quarters
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--check", action="store_true", help="render and compare with --out; write nothing")
    args = p.parse_args(argv)
    glyphs = render_glyphs()
    if args.check:
        with np.load(args.out, allow_pickle=False) as z:
            same = np.array_equal(z["glyphs"], glyphs) and list(z["fonts"]) == list(SYNTHETIC_FONTS)
        print(f"{args.out}: {'the same glyphs' if same else 'DIFFERENT glyphs: rebuild with python tools/build_glyphs.py'}")
        raise SystemExit(0 if same else 1)
    write_npz(args.out, {"glyphs": glyphs, "fonts": np.array(SYNTHETIC_FONTS)})
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()})")


if __name__ == "__main__":
    main()
