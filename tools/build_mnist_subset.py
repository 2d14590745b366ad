"""Build ``gsa_tutorial/assets/mnist_mini.npz``: 4,000 real MNIST digits shipped with the package.

The digits come from the MNIST test set (``t10k-*-idx*-ubyte.gz``; LeCun, Cortes & Burges,
CC BY-SA 3.0). The script checks both files against their published md5 first, draws 4,000 of
the 10,000 digits without replacement with a seeded generator (numpy PCG64, seed 0), and writes
them upright as uint8, in the order train (2,500), valid (500), test (1,000). The npz is written
with fixed zip timestamps, so the file is byte-for-byte reproducible (its sha256 is checked by
``tests/test_mini_digits.py`` and by the loader, :class:`gsa_tutorial.data.MNISTMini`).

    python tools/build_mnist_subset.py                       # reads shared/data/mnist beside the repo
    python tools/build_mnist_subset.py --mnist-dir DIR --out FILE
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gsa_tutorial._io import atomic_write  # noqa: E402
from gsa_tutorial.data import MNIST_MINI_SIZES, MNISTIDX, load_mnist_idx, md5sum  # noqa: E402


def default_mnist_dir() -> Path:
    """``shared/data/mnist`` beside the repository or beside one of its parents (a git worktree)."""
    for parent in REPO.parents:
        if (parent / "shared" / "data" / "mnist").is_dir():
            return parent / "shared" / "data" / "mnist"
    return REPO.parent / "shared" / "data" / "mnist"

DEFAULT_OUT = REPO / "gsa_tutorial" / "assets" / "mnist_mini.npz"
FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SEED = 0


def check_md5(mnist_dir: Path) -> None:
    for name in FILES:
        path = mnist_dir / name
        if not path.exists():
            raise SystemExit(f"missing {path}: the MNIST test-set IDX files are needed (see --mnist-dir)")
        got, want = md5sum(path), MNISTIDX.MD5[name]
        if got != want:
            raise SystemExit(f"{path}: md5 {got}, but the published md5 is {want}")


def select(labels: np.ndarray) -> np.ndarray:
    """Indices (into the 10,000 test digits) of the shipped digits, in split order."""
    n = sum(MNIST_MINI_SIZES.values())
    rng = np.random.Generator(np.random.PCG64(SEED))
    return rng.permutation(labels.shape[0])[:n]  # (n,) distinct, so the splits never overlap


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but with fixed timestamps: the same arrays give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(array), allow_pickle=False)
            zf.writestr(info, payload.getvalue(), compresslevel=9)
    with atomic_write(path, "wb") as f:  # the package's one atomic-write helper (nothing left on failure)
        f.write(buffer.getvalue())


def build(mnist_dir: Path, out: Path) -> str:
    check_md5(mnist_dir)
    images, labels = load_mnist_idx(mnist_dir / FILES[0], mnist_dir / FILES[1])
    images, labels = images.numpy(), labels.numpy()
    index = select(labels)
    write_npz(
        out,
        {
            "images": images[index].astype(np.uint8),  # (n, 28, 28), upright, as in the IDX file
            "labels": labels[index].astype(np.uint8),  # (n,)
            "source_index": index.astype(np.uint16),  # (n,) position in t10k-*-ubyte
        },
    )
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mnist-dir", type=Path, default=None, help="folder with the t10k IDX .gz files")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    digest = build(args.mnist_dir or default_mnist_dir(), args.out)
    labels = np.load(args.out)["labels"]
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, sha256 {digest})")
    print("digits per class:", np.bincount(labels, minlength=10).tolist())


if __name__ == "__main__":
    main()
