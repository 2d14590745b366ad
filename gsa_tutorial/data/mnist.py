"""MNIST digits in four forms: the IDX files (:class:`MNISTIDX`), a rotated set built from
them (:class:`RotatedMNISTFromIDX`), the rotated-MNIST benchmark of Larochelle et al. 2007
(:class:`RotatedMNIST`), and the 4,000 real digits that ship with the package
(:class:`MNISTMini`, quick mode, offline).

Pitfall of the official GSA-Nets code avoided here (DESIGN §7): rotated-MNIST pixels are
converted with ``round(255 * clip(x, 0, 1))``; the official code uses ``x * 256`` cast to
``uint8``, which wraps a white pixel ``1.0`` to ``0``. Every set has a validation split
(rotated MNIST: the 2,000 digits Larochelle et al. set aside), so model selection never looks
at the test set.
"""

from __future__ import annotations

import functools
import io
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .base import SPLITS, _InMemoryImages, check_images_and_labels, check_split, rotate_images, to_uint8
from .files import cached, data_root, default_data_dir, ensure_file, read_asset
from .formats import load_mnist_idx, parse_amat

__all__ = ["MNISTIDX", "RotatedMNISTFromIDX", "RotatedMNIST", "MNISTMini", "MNIST_MINI_SIZES", "MNIST_MINI_SHA256"]


class MNISTIDX(_InMemoryImages):
    """The original MNIST (LeCun, Cortes & Burges) from its IDX files, upright.

    Looks in ``root`` (default ``<data dir>/mnist``) for ``train-*`` (split ``"train"``,
    60,000 digits) or ``t10k-*`` (split ``"test"``, 10,000 digits) files, gzipped or raw.
    Gzipped files are checked against the published md5s.

    Args:
        root: folder holding the IDX files.
        split: ``"train"`` or ``"test"``.
        download: fetch the gzipped files from :attr:`MIRROR` if missing.

    Shape:
        item: ``(1, 28, 28)`` float32 in [0, 1], label ``int``.
    """

    #: Where ``download=True`` fetches the files from.
    MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    #: Published md5s of the gzipped files.
    MD5 = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    PREFIX = {"train": "train", "test": "t10k"}
    SUBDIR = "mnist"

    def __init__(self, root: str | os.PathLike | None = None, *, split: str = "test", download: bool = False) -> None:
        self.split = check_split(split, ("train", "test"))
        self.root = Path(root).expanduser() if root is not None else default_data_dir() / MNISTIDX.SUBDIR
        images_path = self._locate(f"{self.PREFIX[split]}-images-idx3-ubyte", download)
        labels_path = self._locate(f"{self.PREFIX[split]}-labels-idx1-ubyte", download)
        images, labels = load_mnist_idx(images_path, labels_path)
        check_images_and_labels(images, labels, source=f"{images_path} / {labels_path.name}", image_shape=(28, 28), num_classes=10)
        self.images = images[:, None]  # (N, 1, 28, 28) uint8
        self.labels = labels

    @classmethod
    def available(cls, root: str | os.PathLike, split: str) -> bool:
        """Whether ``root`` holds both IDX files of ``split`` (gzipped or raw)."""
        root = Path(root)
        return all(
            (root / f"{cls.PREFIX[split]}-{kind}").exists() or (root / f"{cls.PREFIX[split]}-{kind}.gz").exists()
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
        )

    def _locate(self, stem: str, download: bool) -> Path:
        gz, raw = self.root / f"{stem}.gz", self.root / stem
        if raw.exists() and not gz.exists():
            return raw  # a raw file placed by hand (no published checksum for it)
        name = gz.name
        return ensure_file(
            gz, url=self.MIRROR + name, md5=self.MD5.get(name), download=download, what="MNIST (IDX)"
        )


class RotatedMNISTFromIDX(_InMemoryImages):
    """A rotated-MNIST-style data set built from MNIST IDX files (Larochelle et al. 2007 protocol).

    Digits are drawn without replacement (a seeded permutation), split into train / valid /
    test, and each is rotated about its centre by an angle uniform in ``[0, 2π)`` (bilinear,
    :func:`rotate_images`), then stored as uint8. This is the fallback when the rotated-MNIST
    server is down, and a source of real digits for CPU experiments (the 10,000 test digits
    of MNIST are enough for the book's quick runs).

    Args:
        root: folder with the IDX files (default ``<data dir>/mnist``).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        source: which MNIST files to draw from: ``"train"``, ``"test"`` (t10k), ``"all"`` (both),
            or ``"auto"`` (both if present, else whichever is present).
        sizes: ``(n_train, n_valid, n_test)``; default ``(10000, 2000, 50000)`` (Larochelle's)
            when at least 62,000 digits are available, otherwise 50% / 10% / 40% of them
            (5,000 / 1,000 / 4,000 from the 10,000 t10k digits).
        seed: fixes the permutation and the angles; all three splits come from the same draw,
            so they never overlap.
        download: fetch missing IDX files (see :class:`MNISTIDX`).

    Attributes:
        angles: ``(N,)`` float64, the rotation of each digit (radians).
        source_indices: ``(N,)`` int64, the index of each digit in the source files.

    Shape:
        item: ``(1, 28, 28)`` float32 in [0, 1], label ``int``.
    """

    LAROCHELLE_SIZES = (10000, 2000, 50000)

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        split: str = "train",
        source: str = "auto",
        sizes: tuple[int, int, int] | None = None,
        seed: int = 0,
        download: bool = False,
    ) -> None:
        self.split = check_split(split)
        self.root = Path(root).expanduser() if root is not None else default_data_dir() / MNISTIDX.SUBDIR
        if source not in ("auto", "train", "test", "all"):
            raise ValueError(f"source must be 'auto', 'train', 'test' or 'all', got {source!r}")
        if source == "auto":
            have = [s for s in ("train", "test") if MNISTIDX.available(self.root, s)]
            source = "all" if len(have) == 2 or (not have and download) else (have[0] if have else "test")
        parts = ("train", "test") if source == "all" else (source,)
        loaded = [MNISTIDX(self.root, split=p, download=download) for p in parts]
        digits = torch.cat([d.images for d in loaded])  # (N_all, 1, 28, 28) uint8
        labels = torch.cat([d.labels for d in loaded])  # (N_all,)
        n_all = digits.shape[0]
        if sizes is None:
            if n_all >= sum(self.LAROCHELLE_SIZES):
                sizes = self.LAROCHELLE_SIZES
            else:
                n_train, n_valid = n_all // 2, n_all // 10
                sizes = (n_train, n_valid, n_all - n_train - n_valid)
        if len(sizes) != 3 or any(int(s) < 0 for s in sizes) or sum(sizes) > n_all:
            raise ValueError(f"sizes must be three non-negative counts summing to at most {n_all}, got {sizes}")
        self.sizes = tuple(int(s) for s in sizes)
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(n_all, generator=g)  # (N_all,)
        angles = torch.rand(n_all, generator=g, dtype=torch.float64) * (2 * math.pi)  # (N_all,) in [0, 2π)
        start = {"train": 0, "valid": self.sizes[0], "test": self.sizes[0] + self.sizes[1]}[split]
        stop = start + self.sizes[SPLITS.index(split)]
        index = perm[start:stop]
        self.angles = angles[start:stop]
        self.source_indices = index
        upright = digits[index].to(torch.float32) / 255.0  # (N, 1, 28, 28)
        rotated = rotate_images(upright, self.angles)  # (N, 1, 28, 28)
        self.images = torch.from_numpy(to_uint8(rotated.numpy()))
        self.labels = labels[index]


class RotatedMNIST(_InMemoryImages):
    """Rotated MNIST of Larochelle et al. (2007): 12,000 train+valid and 50,000 test digits.

    Digits of MNIST rotated by an angle uniform in ``[0, 2π)``; the benchmark of the paper
    (Romero & Cordonnier, 2021, Table 1) and of chapter 8. Splits: ``"train"`` = the first
    10,000 rows of the train/valid file, ``"valid"`` = its last 2,000, ``"test"`` = the 50,000
    rows of the test file.

    The zip (:attr:`URL`, md5 :attr:`MD5`) is parsed once per file into a uint8 cache
    (``rotmnist/*_uint8_v1.pt``); pixels are converted with ``round(255 * clip(x, 0, 1))``, so
    a white ``1.0`` stays 255 (the official code multiplies by 256 and wraps it to 0).

    Orientation: the data were generated by Matlab scripts, and Matlab flattens an image
    column by column, so we read each ``.amat`` row as the 28×28 image stored column-major:
    with ``transpose=True`` (default) we ``reshape(28, 28)`` row-major and then transpose,
    giving ``image[row, col]`` with row 0 at the top, like MNIST. The plain row-major
    reshape that most Python readers (and the official GSA-Nets code) use would show each
    digit mirrored across its diagonal; ``transpose=False`` reproduces them. (We could not
    check a real file offline.) Since the angles are uniform in ``[0, 2π)``, the transpose
    changes only the handedness of the digits (a transpose is a mirror followed by a quarter
    turn), not the distribution of angles; rotation-invariant models score the same either way.

    Args:
        root: data folder (default :func:`default_data_dir`); files go to ``root/rotmnist``.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        download: download the zip if missing.
        transpose: see Orientation.

    Shape:
        item: ``(1, 28, 28)`` float32 in [0, 1], label ``int``.
    """

    #: The archive of Larochelle et al. (2007).
    URL = "http://www.iro.umontreal.ca/~lisa/icml2007data/mnist_rotation_new.zip"
    #: md5 of :attr:`URL`.
    MD5 = "0f9a947ff3d30e95cd685462cbf3b847"
    FILENAME = "mnist_rotation_new.zip"
    MEMBERS = {
        "train_valid": "mnist_all_rotation_normalized_float_train_valid.amat",
        "test": "mnist_all_rotation_normalized_float_test.amat",
    }
    N_TRAIN = 10000  # rows of the train/valid file used for training; the rest (2,000) is valid
    SUBDIR = "rotmnist"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        split: str = "train",
        download: bool = False,
        transpose: bool = True,
    ) -> None:
        self.split = check_split(split)
        self.folder = data_root(root) / self.SUBDIR
        part = "test" if split == "test" else "train_valid"
        images, labels = self._load(part, download)  # (N, 28, 28) uint8 in file order, (N,)
        if split == "train":
            images, labels = images[: self.N_TRAIN], labels[: self.N_TRAIN]
        elif split == "valid":
            images, labels = images[self.N_TRAIN :], labels[self.N_TRAIN :]
        if transpose:
            images = images.transpose(-2, -1)  # (N, 28, 28): column-major rows -> image[row, col]
        self.images = images[:, None].contiguous()  # (N, 1, 28, 28) uint8
        self.labels = labels

    def cache_path(self, part: str) -> Path:
        return self.folder / f"{Path(self.MEMBERS[part]).stem}_uint8_v1.pt"

    def _load(self, part: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
        def parse() -> tuple[torch.Tensor, torch.Tensor]:
            archive = ensure_file(
                self.folder / self.FILENAME, url=self.URL, md5=self.MD5, download=download, what="RotatedMNIST"
            )
            pixels, labels = self._parse_member(archive, self.MEMBERS[part])
            images = torch.from_numpy(to_uint8(pixels).reshape(-1, 28, 28))  # (N, 28, 28), file (row-major) order
            return images, torch.from_numpy(labels)

        return cached(self.cache_path(part), parse, image_shape=(28, 28), num_classes=10)

    @staticmethod
    def _parse_member(archive: Path, member: str) -> tuple[np.ndarray, np.ndarray]:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if Path(n).name == member]
            if not names:
                raise ValueError(f"{archive} has no member {member!r} (it holds {zf.namelist()})")
            with zf.open(names[0]) as raw:
                return parse_amat(io.TextIOWrapper(raw, encoding="ascii"))


#: The split of the shipped digits (the file holds them in this order, train then valid then test).
MNIST_MINI_SIZES = {"train": 2500, "valid": 500, "test": 1000}
#: sha256 of ``gsa_tutorial/assets/mnist_mini.npz`` as built by ``tools/build_mnist_subset.py``.
MNIST_MINI_SHA256 = "3cf9c7dbd65fab271f6f5518f2d01cc8bc005558fc18d0eb646cbf617a67b62e"
_MNIST_MINI_FILE = "mnist_mini.npz"


@functools.lru_cache(maxsize=1)
def _mnist_mini_arrays() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The shipped digits, checked against :data:`MNIST_MINI_SHA256` (read once per process)."""
    raw = read_asset(_MNIST_MINI_FILE, MNIST_MINI_SHA256, constant="MNIST_MINI_SHA256", tool="tools/build_mnist_subset.py")
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        images = torch.from_numpy(z["images"].copy())  # (4000, 28, 28) uint8, upright
        labels = torch.from_numpy(z["labels"].astype(np.int64))  # (4000,)
        source = torch.from_numpy(z["source_index"].astype(np.int64))  # (4000,) index in t10k
    return images, labels, source


class MNISTMini(_InMemoryImages):
    """4,000 real handwritten MNIST digits that ship inside the package: quick mode, offline.

    The digits are 4,000 of the 10,000 digits of the MNIST *test* set (LeCun, Cortes & Burges;
    licence CC BY-SA 3.0, see ``gsa_tutorial/assets/MNIST_MINI_README.md``), drawn without
    replacement by ``tools/build_mnist_subset.py`` (seeded, after checking the IDX files'
    published md5). The split is fixed by the file: the first 2,500 are ``"train"``, the next
    500 ``"valid"``, the last 1,000 ``"test"`` (:data:`MNIST_MINI_SIZES`), so the splits never
    share a digit.

    With ``rotated=True`` each digit is turned about its centre by its own angle, uniform in
    ``[0, 2π)`` and drawn by a generator seeded with ``seed`` (one draw for all 4,000 digits,
    so a digit keeps its angle whatever the split), bilinearly (:func:`rotate_images`), then
    stored as uint8: the protocol of rotated MNIST (Larochelle et al. 2007), on these digits.
    These are *not* the Larochelle benchmark files (:class:`RotatedMNIST`); they are rotated
    MNIST test digits, small enough for a CPU.

    The two protocols of chapter 8: train on ``MNISTMini("train")`` (upright) and test on
    ``MNISTMini("test", rotated=True)``; or train and test on ``rotated=True``.

    Args:
        split: ``"train"``, ``"valid"`` or ``"test"``.
        rotated: rotate the digits (the same ``seed`` gives the same angles).
        seed: seed of the rotation angles (ignored when ``rotated=False``).

    Attributes:
        angles: ``(N,)`` float64, each digit's rotation in radians (zeros when upright).
        source_indices: ``(N,)`` int64, each digit's index in ``t10k-images-idx3-ubyte``.

    Shape:
        item: ``(1, 28, 28)`` float32 in [0, 1], label ``int``.
    """

    def __init__(self, split: str = "train", *, rotated: bool = False, seed: int = 0) -> None:
        self.split = check_split(split)
        self.rotated, self.seed = bool(rotated), int(seed)
        images, labels, source = _mnist_mini_arrays()
        start = sum(MNIST_MINI_SIZES[s] for s in SPLITS[: SPLITS.index(split)])
        stop = start + MNIST_MINI_SIZES[split]
        g = torch.Generator().manual_seed(self.seed)
        angles = torch.rand(images.shape[0], generator=g, dtype=torch.float64) * (2 * math.pi)  # (4000,)
        self.labels = labels[start:stop]
        self.source_indices = source[start:stop]
        upright = images[start:stop, None]  # (N, 1, 28, 28) uint8
        if self.rotated:
            self.angles = angles[start:stop]
            turned = rotate_images(upright.to(torch.float32) / 255.0, self.angles)  # (N, 1, 28, 28)
            self.images = torch.from_numpy(to_uint8(turned.numpy()))
        else:
            self.angles = torch.zeros(stop - start, dtype=torch.float64)
            self.images = upright.clone()

    def __repr__(self) -> str:
        return f"MNISTMini(split={self.split!r}, n={len(self)}, rotated={self.rotated}, seed={self.seed})"
