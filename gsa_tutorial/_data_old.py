"""Data sets for the GSA-Nets book: rotated MNIST, CIFAR-10, PCam, and offline digits (chapters 8, 9).

Every data set returns ``(image, label)`` with ``image`` a float32 tensor ``(C, H, W)`` in
``[0, 1]`` and ``label`` a Python ``int``. Normalisation (mean/std) is the model's or the
trainer's business; :attr:`CIFAR10.mean` and :attr:`CIFAR10.std` are offered as constants.

Data sets
---------
==========================  ===========================================  ===============
name (:func:`get_dataset`)  class                                        image
==========================  ===========================================  ===============
``"rotmnist"``              :class:`RotatedMNIST` (Larochelle et al.)    ``(1, 28, 28)``
``"cifar10"``               :class:`CIFAR10`                             ``(3, 32, 32)``
``"pcam"``                  :class:`PCam` (Veeling et al., needs h5py)   ``(3, 96, 96)``
``"synthetic"``             :class:`SyntheticDigits` (offline, upright)  ``(1, 28, 28)``
``"synthetic-rotated"``     :class:`SyntheticDigits` ``rotated=True``    ``(1, 28, 28)``
``"mnist-idx-rotated"``     :class:`RotatedMNISTFromIDX` (MNIST IDX)     ``(1, 28, 28)``
``"mnist-mini"``            :class:`MNISTMini` (shipped, offline)        ``(1, 28, 28)``
``"mnist-mini-rotated"``    :class:`MNISTMini` ``rotated=True``          ``(1, 28, 28)``
==========================  ===========================================  ===============

Files, downloads, caches
------------------------
* Files live under ``root`` (default :func:`default_data_dir`: ``$GSA_DATA_DIR`` or
  ``~/.cache/gsa_tutorial``), one folder per data set (``rotmnist/``, ``cifar10/``, ``pcam/``,
  ``mnist/``).
* Nothing downloads at import, and nothing downloads unless ``download=True``. Downloads
  stream to a temporary file beside the target, are checked against the published md5 and
  only then renamed into place (:func:`download_url`), so an interrupted or corrupt
  download never leaves a file that looks complete.
* A missing file raises :class:`DatasetNotFoundError` that names the file, its URL and the
  full path where to put it by hand.
* Text and pickle formats are parsed once and cached as ``uint8`` tensors (``*.pt``,
  written atomically).

Pitfalls of the official GSA-Nets code that this module avoids (DESIGN §7)
--------------------------------------------------------------------------
* Rotated-MNIST pixels are converted with ``round(255 * clip(x, 0, 1))``; the official code
  uses ``x * 256`` cast to ``uint8``, which wraps a white pixel ``1.0`` to ``0``.
* Every data set has a validation split (rotated MNIST: the 2,000 digits Larochelle et al.
  set aside; CIFAR-10: the last ``valid_size`` training images), so model selection never
  looks at the test set.

Shapes: ``B`` batch, ``C`` channels, ``H, W`` height and width.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import io
import math
import os
import pickle
import struct
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.request import Request, urlopen

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ._io import atomic_write
from .actions import pixel_coordinates

__all__ = [
    "DATASET_NAMES",
    "DatasetInfo",
    "DatasetNotFoundError",
    "check_images_and_labels",
    "ChecksumError",
    "default_data_dir",
    "download_url",
    "md5sum",
    "rotate_images",
    "rotated_copy",
    "read_idx",
    "load_mnist_idx",
    "parse_amat",
    "MNISTIDX",
    "RotatedMNISTFromIDX",
    "RotatedMNIST",
    "CIFAR10",
    "PCam",
    "SyntheticDigits",
    "MNISTMini",
    "MNIST_MINI_SIZES",
    "get_dataset",
    "dataset_info",
    "SYNTHETIC_FONTS",
    "SYNTHETIC_SIZES",
]

SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------------------------------
# Errors and paths
# ---------------------------------------------------------------------------------------


class DatasetNotFoundError(FileNotFoundError):
    """A data file is missing (and ``download=False``) or could not be downloaded.

    The message says which file, its URL, and the full path where to place it by hand.
    """


class ChecksumError(ValueError):
    """A file's md5 differs from the published one; the message gives both sums."""


def default_data_dir() -> Path:
    """The folder where data sets are stored: ``$GSA_DATA_DIR`` if set, else ``~/.cache/gsa_tutorial``.

    Nothing is created here; folders are made when a file is written.
    """
    env = os.environ.get("GSA_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "gsa_tutorial"


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root is not None else default_data_dir()


def _check_split(split: str, allowed: Iterable[str] = SPLITS) -> str:
    allowed = tuple(allowed)
    if split not in allowed:
        raise ValueError(f"split must be one of {', '.join(repr(s) for s in allowed)}, got {split!r}")
    return split


def md5sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _manual_hint(what: str, url: str, path: Path, md5: str | None) -> str:
    checksum = f" (md5 {md5})" if md5 else ""
    return (
        f"{what}: the file {path.name} is missing.\n"
        f"Download it by hand from\n    {url}{checksum}\n"
        f"and place it at exactly\n    {path}\n"
        "or pass download=True. Data live under $GSA_DATA_DIR (default ~/.cache/gsa_tutorial) "
        "unless you pass root=...; this one was looked for in "
        f"{path.parent}."
    )


def download_url(
    url: str,
    path: str | os.PathLike,
    md5: str | None = None,
    *,
    what: str = "download",
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``path`` atomically, checking its md5.

    The bytes stream into a temporary file in the same folder (with a tqdm progress bar),
    the md5 is computed on the way, and only a file with the right checksum is renamed to
    ``path`` (``os.replace``, atomic on one file system). On any failure the temporary file
    is removed. An existing ``path`` with the right md5 is kept and nothing is downloaded.

    Args:
        url: where to download from.
        path: the final file.
        md5: the published hex md5, or ``None`` to skip the check.
        what: a name for error messages (e.g. ``"RotatedMNIST"``).
        progress: show a tqdm progress bar.
        timeout: socket timeout in seconds.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ChecksumError: the downloaded bytes have another md5 (both sums in the message;
            no file is left behind).
        DatasetNotFoundError: the download failed (no network, HTTP error, ...); the
            message says where to place the file by hand.
    """
    path = Path(path)
    if path.exists() and md5 is not None and md5sum(path) == md5.lower():
        return path
    digest = hashlib.md5()
    try:
        from tqdm.auto import tqdm  # imported here: nothing heavy at import of the package

        # atomic_write: a hidden .part file, renamed only when complete and checked; removed on
        # any error or Ctrl-C/SIGTERM, and (after a SIGKILL) by the next download of this file.
        with atomic_write(path, "wb", suffix=".part") as out:
            request = Request(url, headers={"User-Agent": "gsa_tutorial (python urllib)"})
            with urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length") if response.headers else None
                total = int(length) if length and str(length).isdigit() else None
                received = 0
                with tqdm(
                    total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=path.name,
                    disable=not progress, leave=False,
                ) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                        received += len(chunk)
            if total is not None and received != total:  # a cut connection, even without an md5 to check
                raise OSError(f"the server announced {total} bytes but the connection ended after {received}")
            got = digest.hexdigest()
            if md5 is not None and got != md5.lower():
                raise ChecksumError(
                    f"{what}: md5 mismatch for {url}: expected {md5.lower()}, got {got}. "
                    f"The download was discarded; nothing was written to {path}. Try again, or "
                    "download the file by hand and check it with `md5sum`."
                )
    except ChecksumError:
        raise
    except (URLError, OSError, http.client.HTTPException, ValueError) as err:
        raise DatasetNotFoundError(
            f"{what}: downloading {url} failed ({type(err).__name__}: {err}); nothing was written to {path}.\n"
            + _manual_hint(what, url, path, md5)
        ) from err
    return path


def _ensure_file(
    path: Path, *, url: str, md5: str | None, download: bool, what: str, verify: bool = True
) -> Path:
    """Return ``path`` if it exists (md5-checked when ``verify``), download it, or raise a helpful error."""
    if path.exists():
        if verify and md5 is not None:
            got = md5sum(path)
            if got != md5.lower():
                raise ChecksumError(
                    f"{what}: {path} has md5 {got}, expected {md5.lower()} (the published "
                    f"checksum). The file is corrupt or a different version: delete it and "
                    f"download it again from {url}."
                )
        return path
    if not download:
        raise DatasetNotFoundError(_manual_hint(what, url, path, md5))
    return download_url(url, path, md5, what=what)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`gsa_tutorial._io.atomic_write` (no half-written caches)."""
    with atomic_write(path, "wb", suffix=".part") as f:
        torch.save(obj, f)


def check_images_and_labels(
    images: Any,
    labels: Any,
    *,
    source: str,
    image_shape: tuple[int, ...],
    num_classes: int,
) -> None:
    """Refuse data that would crash or mislead training later: images ``(N, *image_shape)`` uint8
    and labels ``(N,)`` integers in ``[0, num_classes)``.

    Args:
        images, labels: the loaded tensors.
        source: the file(s) they came from, for the message.
        image_shape: e.g. ``(28, 28)`` or ``(3, 32, 32)``.
        num_classes: labels must lie in ``0 .. num_classes - 1``.

    Raises:
        ValueError: naming the file, what was expected and what was found.
    """
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError(f"{source}: expected image and label tensors, got {type(images).__name__} and {type(labels).__name__}")
    expected = "(N, " + ", ".join(map(str, image_shape)) + ")"
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{source}: expected {images.shape[0] if images.dim() else 'N'} images of shape {expected} uint8, got shape {tuple(images.shape)} {images.dtype}")
    if labels.dim() != 1 or labels.shape[0] != images.shape[0] or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{source}: expected {images.shape[0]} integer labels (N,), got shape {tuple(labels.shape)} {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{source}: labels must lie in 0..{num_classes - 1} ({num_classes} classes), got labels from "
            f"{int(labels.min())} to {int(labels.max())}"
        )


def _cached(
    cache: Path,
    parse: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    check: Callable[[torch.Tensor, torch.Tensor, str], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels from the uint8 cache file, or parsed once and cached atomically.

    A cache that cannot be read or whose content fails ``check`` (a damaged file, another
    version) is rebuilt from the source with a warning; data parsed from the source that fail
    ``check`` raise a :class:`ValueError` naming the source.
    """
    if cache.exists():
        try:
            blob = torch.load(cache, weights_only=True)
            images, labels = blob["images"], blob["labels"]
            if check is not None:
                check(images, labels, f"cache {cache}")
            return images, labels
        except Exception as err:
            warnings.warn(f"the cache {cache} is damaged or out of date ({type(err).__name__}: {err}); rebuilding it from the source", stacklevel=3)
    images, labels = parse()
    if check is not None:
        check(images, labels, f"data parsed for {cache.name} (from the files in {cache.parent})")
    _atomic_torch_save({"images": images, "labels": labels}, cache)
    return images, labels


def _gunzip(src: Path, dst: Path) -> Path:
    """Decompress ``src`` (.gz) to ``dst`` through a temporary file (atomic)."""
    with gzip.open(src, "rb") as fin, atomic_write(dst, "wb", suffix=".part") as fout:
        while chunk := fin.read(1 << 22):
            fout.write(chunk)
    return dst


# ---------------------------------------------------------------------------------------
# Rotating images (accuracy-vs-angle plots, building rotated data sets)
# ---------------------------------------------------------------------------------------


def rotate_images(images: torch.Tensor, angles: torch.Tensor | float) -> torch.Tensor:
    """Rotate each image about its centre by its own angle (radians, counter-clockwise on screen).

    Uses the conventions of :mod:`gsa_tutorial.actions`: ``out(p) = x(R(-θ) p)`` with
    centred coordinates (x right, y up) and bilinear interpolation, zeros outside the
    image. For an angle ``2πk/n`` this equals ``act_on_image("r<n>", k, x)``, and for
    ``π/2`` it equals ``torch.rot90(x, 1, dims=(-2, -1))`` up to float round-off.
    Used for accuracy-against-angle curves (chapter 8) and to build rotated data sets.

    Args:
        images: float tensor ``(B, C, H, W)``.
        angles: one angle for all images, or a tensor ``(B,)`` of angles in radians.

    Returns:
        The rotated images, ``(B, C, H, W)``, same dtype and device.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor of shape (B, C, H, W), got {shape}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point (convert uint8 with .float() / 255), got {images.dtype}")
    B, C, H, W = images.shape
    theta = torch.as_tensor(angles, dtype=torch.float64).reshape(-1)  # (B,) or (1,)
    if theta.numel() == 1:
        theta = theta.expand(B)
    if theta.numel() != B:
        raise ValueError(f"got {theta.numel()} angles for a batch of {B} images")
    if not bool(torch.isfinite(theta).all()):
        raise ValueError(f"rotation angles must be finite numbers (radians), got {theta[~torch.isfinite(theta)][:3].tolist()}")
    coords = pixel_coordinates(H, W, dtype=torch.float64)  # (H, W, 2) plane points p
    x, y = coords[..., 0], coords[..., 1]  # (H, W)
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]  # (B, 1, 1)
    src_x = cos * x + sin * y  # R(-θ) p, (B, H, W)
    src_y = -sin * x + cos * y
    # grid_sample: (x, y) in [-1, 1], y pointing down, align_corners=True (as in actions.py)
    grid = torch.stack([src_x / max((W - 1) / 2, 0.5), -src_y / max((H - 1) / 2, 0.5)], dim=-1)  # (B, H, W, 2)
    grid = grid.to(dtype=images.dtype, device=images.device)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def rotated_copy(images: torch.Tensor, angles: torch.Tensor | float) -> torch.Tensor:
    """Alias of :func:`rotate_images` (a rotated copy of a batch; the input is not modified)."""
    return rotate_images(images, angles)


# ---------------------------------------------------------------------------------------
# In-memory data sets
# ---------------------------------------------------------------------------------------


class _InMemoryImages(Dataset):
    """Images held as a tensor ``(N, C, H, W)`` (uint8 or float in [0, 1]) and labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _as_float(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._as_float(self.images[index]), int(self.labels[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float32 ``(N, C, H, W)`` in [0, 1] and labels ``(N,)`` int64 (fast batching)."""
        return self._as_float(self.images), self.labels.to(torch.int64)

    def __repr__(self) -> str:
        shape = tuple(self.images.shape[1:])
        return f"{type(self).__name__}(split={getattr(self, 'split', None)!r}, n={len(self)}, image={shape})"


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8 by ``round(255 * clip(x, 0, 1))`` (1.0 -> 255, never wrapped to 0)."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# MNIST IDX files (the real MNIST; fallback for rotated MNIST)
# ---------------------------------------------------------------------------------------

_IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_IMAGES_MAGIC = 0x00000803  # 2051: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # 2049: unsigned bytes, 1 dimension


def _read_bytes_maybe_gzip(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":  # gzip magic, whatever the file name says
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def read_idx(path: str | os.PathLike, *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format; gzipped or raw) into a numpy array.

    The header is ``0x00 0x00 <type> <ndim>`` followed by ``ndim`` big-endian uint32 sizes.

    Args:
        path: the file (``.gz`` is detected from the content, not the name).
        expected_magic: e.g. ``0x803`` for MNIST images, ``0x801`` for labels.

    Returns:
        An array of the declared shape and type (native byte order).

    Raises:
        ValueError: not an IDX file, an unexpected magic number, or a truncated file.
    """
    path = Path(path)
    raw = _read_bytes_maybe_gzip(path)
    if len(raw) < 4:
        raise ValueError(f"{path} is not an IDX file: only {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{path} is not an IDX file: magic number 0x{magic:08x} (MNIST images have "
            f"0x{IDX_IMAGES_MAGIC:08x}, labels 0x{IDX_LABELS_MAGIC:08x})"
        )
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"{path} has magic number 0x{magic:08x} ({magic}), expected 0x{expected_magic:08x} "
            f"({expected_magic}); images and labels swapped?"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: IDX header declares shape {dims} ({expected} bytes in all) but the file "
            f"has {len(raw)} bytes (truncated or corrupt)"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)  # (d0, d1, ...)
    return data.astype(dtype.newbyteorder("="), copy=True)


def load_mnist_idx(
    images_path: str | os.PathLike, labels_path: str | os.PathLike
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an MNIST pair of IDX files (``*-images-idx3-ubyte[.gz]``, ``*-labels-idx1-ubyte[.gz]``).

    Returns:
        ``images`` uint8 ``(N, H, W)`` (rows top to bottom, as stored; MNIST is upright) and
        ``labels`` int64 ``(N,)``.

    Raises:
        ValueError: wrong magic numbers, shapes, or different image and label counts.
    """
    images = read_idx(images_path, expected_magic=IDX_IMAGES_MAGIC)  # (N, H, W)
    labels = read_idx(labels_path, expected_magic=IDX_LABELS_MAGIC)  # (N,)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels"
        )
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


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

    def __init__(self, root: str | os.PathLike | None = None, *, split: str = "test", download: bool = False) -> None:
        self.split = _check_split(split, ("train", "test"))
        self.root = Path(root).expanduser() if root is not None else default_data_dir() / "mnist"
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
        return _ensure_file(
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
        self.split = _check_split(split)
        self.root = Path(root).expanduser() if root is not None else default_data_dir() / "mnist"
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
        self.images = torch.from_numpy(_to_uint8(rotated.numpy()))
        self.labels = labels[index]


# ---------------------------------------------------------------------------------------
# Rotated MNIST (Larochelle et al. 2007)
# ---------------------------------------------------------------------------------------


def parse_amat(stream: io.TextIOBase | Iterable[str] | str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parse a Larochelle ``.amat`` text file: one row per digit, 784 floats in [0, 1], then the label.

    Returns:
        ``pixels`` float64 ``(N, 784)`` in file order and ``labels`` int64 ``(N,)``.

    Raises:
        ValueError: a row without 785 numbers, or labels that are not integers 0..9.
    """
    try:
        table = np.loadtxt(stream, dtype=np.float64, ndmin=2, comments="#")  # (N, 785)
    except ValueError as err:
        raise ValueError(f"not a rotated-MNIST .amat file (rows of 784 pixels + 1 label): {err}") from err
    if table.shape[1] != 785:
        raise ValueError(f"rotated-MNIST .amat rows must hold 785 numbers (784 pixels + label), got {table.shape[1]}")
    raw_labels = table[:, -1]
    labels = np.rint(raw_labels).astype(np.int64)
    if not np.allclose(raw_labels, labels) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ValueError("rotated-MNIST labels (the last column) must be integers 0..9")
    return table[:, :-1], labels


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
        self.split = _check_split(split)
        self.folder = _root(root) / self.SUBDIR
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
            archive = _ensure_file(
                self.folder / self.FILENAME, url=self.URL, md5=self.MD5, download=download, what="RotatedMNIST"
            )
            pixels, labels = self._parse_member(archive, self.MEMBERS[part])
            images = torch.from_numpy(_to_uint8(pixels).reshape(-1, 28, 28))  # (N, 28, 28), file (row-major) order
            return images, torch.from_numpy(labels)

        def check(images: torch.Tensor, labels: torch.Tensor, source: str) -> None:
            check_images_and_labels(images, labels, source=source, image_shape=(28, 28), num_classes=10)

        return _cached(self.cache_path(part), parse, check)

    @staticmethod
    def _parse_member(archive: Path, member: str) -> tuple[np.ndarray, np.ndarray]:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if Path(n).name == member]
            if not names:
                raise ValueError(f"{archive} has no member {member!r} (it holds {zf.namelist()})")
            with zf.open(names[0]) as raw:
                return parse_amat(io.TextIOWrapper(raw, encoding="ascii"))


# ---------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts, lists, bytes, numpy arrays) and refuses anything else.

    ``pickle`` can run arbitrary code; the CIFAR files only need numpy's array reconstruction.
    """

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            core = getattr(np, "_core", None) or np.core
            return core.multiarray._reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles written by Python 3 store bytes
            import _codecs

            return _codecs.encode
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            core = getattr(np, "_core", None) or np.core
            return core.multiarray.scalar
        raise pickle.UnpicklingError(f"CIFAR-10 batches hold only numpy arrays; refusing to load {module}.{name}")


def _load_cifar_batch(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError("a CIFAR-10 batch must be a dict with keys b'data' and b'labels'")
    images = np.asarray(batch[b"data"], dtype=np.uint8)
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise ValueError(f"CIFAR-10 b'data' must have shape (N, 3072), got {images.shape}")
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"CIFAR-10 batch has {images.shape[0]} images but {labels.shape} labels")
    # each row: 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 image
    return images.reshape(-1, 3, 32, 32), labels  # (N, 3, 32, 32)


class CIFAR10(_InMemoryImages):
    """CIFAR-10 (Krizhevsky, 2009) from the python tarball, parsed here (no torchvision).

    ``"train"`` is the first ``50000 - valid_size`` training images, ``"valid"`` the last
    ``valid_size`` (deterministic), ``"test"`` the 10,000 test images. The tarball is parsed
    once into a uint8 cache (``cifar10/cifar10_{train,test}_uint8_v1.pt``); the pickles are
    read with an unpickler that only accepts numpy arrays.

    Args:
        root: data folder; files go to ``root/cifar10``.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        download: download the tarball if missing (163 MB).
        valid_size: number of training images held out for validation.

    Shape:
        item: ``(3, 32, 32)`` float32 in [0, 1] (RGB), label ``int``.
    """

    URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    MD5 = "c58f30108f718f92721af3b95e74349a"
    FILENAME = "cifar-10-python.tar.gz"
    SUBDIR = "cifar10"
    TRAIN_MEMBERS = tuple(f"data_batch_{i}" for i in range(1, 6))
    TEST_MEMBERS = ("test_batch",)
    CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    #: Per-channel mean and standard deviation of the 50,000 training images (values in [0, 1]).
    mean = (0.4914, 0.4822, 0.4465)
    #: (see :attr:`mean`)
    std = (0.2470, 0.2435, 0.2616)

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        split: str = "train",
        download: bool = False,
        valid_size: int = 5000,
    ) -> None:
        self.split = _check_split(split)
        self.folder = _root(root) / self.SUBDIR
        images, labels = self._load("test" if split == "test" else "train", download)
        if split != "test":
            n = images.shape[0]
            if not 0 <= valid_size < n:
                raise ValueError(f"valid_size must be in [0, {n}), got {valid_size}")
            cut = n - valid_size
            images, labels = (images[:cut], labels[:cut]) if split == "train" else (images[cut:], labels[cut:])
        self.images = images  # (N, 3, 32, 32) uint8
        self.labels = labels

    def cache_path(self, part: str) -> Path:
        return self.folder / f"cifar10_{part}_uint8_v1.pt"

    def _load(self, part: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
        def parse() -> tuple[torch.Tensor, torch.Tensor]:
            archive = _ensure_file(
                self.folder / self.FILENAME, url=self.URL, md5=self.MD5, download=download, what="CIFAR10"
            )
            members = self.TEST_MEMBERS if part == "test" else self.TRAIN_MEMBERS
            images, labels = self._parse(archive, members)
            return torch.from_numpy(images), torch.from_numpy(labels)

        def check(images: torch.Tensor, labels: torch.Tensor, source: str) -> None:
            check_images_and_labels(images, labels, source=source, image_shape=(3, 32, 32), num_classes=10)

        return _cached(self.cache_path(part), parse, check)

    @staticmethod
    def _parse(archive: Path, members: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        with tarfile.open(archive, "r:*") as tar:
            by_name = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            parts = []
            for name in members:
                if name not in by_name:
                    raise ValueError(f"{archive} has no member {name!r}; is it the CIFAR-10 *python* tarball?")
                member = tar.extractfile(by_name[name])
                if member is None:
                    raise ValueError(f"{archive}: member {name!r} is not a regular file")
                parts.append(_load_cifar_batch(member.read()))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ---------------------------------------------------------------------------------------
# PatchCamelyon
# ---------------------------------------------------------------------------------------


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as err:
        raise ImportError(
            "PCam is stored in HDF5 files and needs h5py: pip install gsa_tutorial[pcam] (or pip install h5py)"
        ) from err
    return h5py


class PCam(Dataset):
    """PatchCamelyon (Veeling et al., 2018): 96×96 RGB lymph-node patches, label 1 = tumour in the centre.

    Reads ``camelyonpatch_level_2_split_<split>_{x,y}.h5`` lazily: each worker process opens
    the files on its first item (h5py handles do not survive ``fork``/pickling), so the
    6 GB training set is never loaded into memory. Needs ``h5py`` (``pip install
    gsa_tutorial[pcam]``).

    Files come from Zenodo record 2546921 as ``.h5.gz``; a downloaded or hand-placed ``.gz``
    is checked against :attr:`MD5` and decompressed next to it. The md5s are those of the
    ``.gz`` files as torchvision checks them; the table in the PCam README lists the valid and
    test sums swapped. A hand-placed ``.h5`` has no published checksum; its HDF5 structure
    is checked instead (``x``: ``(N, 96, 96, 3)`` uint8, ``y``: ``(N, 1, 1, 1)``). The real
    splits hold :attr:`SIZES` patches.

    Args:
        root: data folder; files go to ``root/pcam``.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        download: download the missing ``.h5.gz`` files (train: 6.1 GB).

    Shape:
        item: ``(3, 96, 96)`` float32 in [0, 1], label ``int`` (0 or 1).
    """

    URL = "https://zenodo.org/record/2546921/files/{name}"
    SUBDIR = "pcam"
    #: Number of images per split.
    SIZES = {"train": 262144, "valid": 32768, "test": 32768}
    #: md5 of the gzipped files (as verified by torchvision's PCAM).
    MD5 = {
        "camelyonpatch_level_2_split_train_x.h5.gz": "1571f514728f59376b705fc836ff4b63",
        "camelyonpatch_level_2_split_train_y.h5.gz": "35c2d7259d906cfc8143347bb8e05be7",
        "camelyonpatch_level_2_split_valid_x.h5.gz": "d5b63470df7cfa627aeec8b9dc0c066e",
        "camelyonpatch_level_2_split_valid_y.h5.gz": "2b85f58b927af9964a4c15b8f7e8f179",
        "camelyonpatch_level_2_split_test_x.h5.gz": "d8c2d60d490dbd479f8199bdfa0cf6ec",
        "camelyonpatch_level_2_split_test_y.h5.gz": "60a7035772fbdb7f34eb86d4420cf66a",
    }
    IMAGE_SHAPE = (96, 96, 3)

    def __init__(self, root: str | os.PathLike | None = None, *, split: str = "train", download: bool = False) -> None:
        self.split = _check_split(split)
        h5py = _import_h5py()
        self.folder = _root(root) / self.SUBDIR
        self.x_path = self._ensure(f"camelyonpatch_level_2_split_{split}_x.h5", download)
        self.y_path = self._ensure(f"camelyonpatch_level_2_split_{split}_y.h5", download)
        with h5py.File(self.x_path, "r") as fx, h5py.File(self.y_path, "r") as fy:
            self._length = self._check_structure(fx, fy)
        self._handles: tuple[Any, Any] | None = None
        self._pid: int | None = None

    def _ensure(self, name: str, download: bool) -> Path:
        h5 = self.folder / name
        if h5.exists():
            return h5
        gz_name = name + ".gz"
        gz = _ensure_file(
            self.folder / gz_name, url=self.URL.format(name=gz_name), md5=self.MD5.get(gz_name),
            download=download, what="PCam",
        )
        _gunzip(gz, h5)
        gz.unlink()  # the decompressed file is what we read; keep only one copy
        return h5

    def _check_structure(self, fx: Any, fy: Any) -> int:
        if "x" not in fx or "y" not in fy:
            raise ValueError(
                f"PCam files must hold a dataset 'x' ({self.x_path.name}) and 'y' ({self.y_path.name}); "
                f"found {list(fx.keys())} and {list(fy.keys())}"
            )
        x, y = fx["x"], fy["y"]
        if tuple(x.shape[1:]) != self.IMAGE_SHAPE or x.dtype != np.uint8:
            raise ValueError(f"PCam 'x' must be (N, 96, 96, 3) uint8, got {tuple(x.shape)} {x.dtype}")
        if tuple(y.shape[1:]) != (1, 1, 1) or y.shape[0] != x.shape[0]:
            raise ValueError(f"PCam 'y' must be (N, 1, 1, 1) with N = {x.shape[0]}, got {tuple(y.shape)}")
        return int(x.shape[0])

    def _open(self) -> tuple[Any, Any]:
        if self._handles is None or self._pid != os.getpid():
            h5py = _import_h5py()
            self._handles = (h5py.File(self.x_path, "r")["x"], h5py.File(self.y_path, "r")["y"])
            self._pid = os.getpid()
        return self._handles

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for PCam {self.split} of size {self._length}")
        x, y = self._open()
        image = torch.from_numpy(np.asarray(x[index]))  # (96, 96, 3) uint8
        return image.permute(2, 0, 1).to(torch.float32) / 255.0, int(y[index, 0, 0, 0])  # (3, 96, 96)

    def close(self) -> None:
        """Close the open HDF5 files of this process (they reopen on the next item)."""
        if self._handles is not None:
            for dataset in self._handles:
                dataset.file.close()
        self._handles, self._pid = None, None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"], state["_pid"] = None, None  # each worker opens its own files
        return state

    def __repr__(self) -> str:
        return f"PCam(split={self.split!r}, n={self._length}, folder={str(self.folder)!r})"


# ---------------------------------------------------------------------------------------
# Synthetic digits (offline, made in the package)
# ---------------------------------------------------------------------------------------

#: The DejaVu fonts bundled with matplotlib used for :class:`SyntheticDigits` (8 styles).
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
_TEMPLATE_SIZE = 64  # glyph templates are 64x64 (rendered at 128x128, 2x2 box-filtered)
_GLYPH_FRACTION = 0.75  # the glyph's longer side spans 75% of the template side


@functools.lru_cache(maxsize=1)
def _glyph_templates() -> torch.Tensor:
    """The ten digits in each font as anti-aliased masks, ``(fonts, 10, 64, 64)`` float32 in [0, 1].

    Each glyph outline (matplotlib ``TextPath``) is rasterised by an even-odd point-in-polygon
    test at 128×128 pixel centres, then box-filtered to 64×64. Glyphs are centred on their
    bounding box and scaled so that the longer side is 75% of the template.
    """
    import matplotlib  # imported here: keep `import gsa_tutorial` light
    from matplotlib.font_manager import FontProperties
    from matplotlib.path import Path as MplPath
    from matplotlib.textpath import TextPath

    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    hi = 2 * _TEMPLATE_SIZE
    u = (np.arange(hi) + 0.5) / hi * 2.0 - 1.0  # (hi,) pixel centres in template units [-1, 1]
    out = torch.zeros(len(SYNTHETIC_FONTS), 10, _TEMPLATE_SIZE, _TEMPLATE_SIZE)
    for f, font in enumerate(SYNTHETIC_FONTS):
        prop = FontProperties(fname=str(font_dir / font))
        for digit in range(10):
            polygons = TextPath((0.0, 0.0), str(digit), size=1.0, prop=prop).to_polygons()
            vertices = np.concatenate(polygons)  # (V, 2) glyph units, y up
            lo, hi_corner = vertices.min(0), vertices.max(0)
            centre, extent = (lo + hi_corner) / 2, (hi_corner - lo).max()
            per_unit = extent / (2 * _GLYPH_FRACTION)  # glyph units per template unit
            gx, gy = np.meshgrid(centre[0] + u * per_unit, centre[1] - u * per_unit)  # (hi, hi); row 0 = top
            points = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (hi*hi, 2)
            inside = np.zeros(points.shape[0], dtype=bool)
            for polygon in polygons:  # even-odd rule: holes (0, 4, 6, 8, 9) cancel out
                inside ^= MplPath(polygon).contains_points(points)
            mask = inside.reshape(_TEMPLATE_SIZE, 2, _TEMPLATE_SIZE, 2).astype(np.float32)  # (64, 2, 64, 2)
            out[f, digit] = torch.from_numpy(mask.mean(axis=(1, 3)))  # (64, 64): 2x2 box filter
    return out


@functools.lru_cache(maxsize=1)
def _stroke_templates() -> torch.Tensor:
    """Glyphs with three stroke widths (as drawn, thicker, thickest): ``(fonts*3, 10, 64, 64)``.

    Printed strokes are thinner than MNIST's pen strokes, so the variants only thicken
    (grey-level dilation by a 3x3 and a 5x5 maximum).
    """
    base = _glyph_templates()  # (Fo, 10, 64, 64)
    flat = base.reshape(-1, 1, _TEMPLATE_SIZE, _TEMPLATE_SIZE)  # (Fo*10, 1, 64, 64)
    thicker = F.max_pool2d(flat, 3, stride=1, padding=1)  # grey-level dilation
    thickest = F.max_pool2d(flat, 5, stride=1, padding=2)
    bold = torch.tensor(["Bold" in font for font in SYNTHETIC_FONTS]).repeat_interleave(10)  # (Fo*10,)
    thickest = torch.where(bold[:, None, None, None], thicker, thickest)  # bold + 5x5 would fill the holes
    styles = torch.stack([flat, thicker, thickest], dim=1)  # (Fo*10, 3, 1, 64, 64)
    styles = styles.reshape(base.shape[0], 10, 3, _TEMPLATE_SIZE, _TEMPLATE_SIZE)  # (Fo, 10, 3, 64, 64)
    return styles.permute(0, 2, 1, 3, 4).reshape(-1, 10, _TEMPLATE_SIZE, _TEMPLATE_SIZE).contiguous()  # (Fo*3, 10, 64, 64)


class SyntheticDigits(_InMemoryImages):
    """Printed digits 0–9 made offline in the package: quick-mode data for the book and tests.

    Each digit is a glyph of one of 8 DejaVu fonts bundled with matplotlib
    (:data:`SYNTHETIC_FONTS`), with one of 3 stroke widths, a random scale, aspect ratio,
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
        k = (20.0 / 28.0) * scale / _GLYPH_FRACTION  # (n,)
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


# ---------------------------------------------------------------------------------------
# Real digits shipped with the package (MNIST subset, offline)
# ---------------------------------------------------------------------------------------

#: The split of the shipped digits (the file holds them in this order, train then valid then test).
MNIST_MINI_SIZES = {"train": 2500, "valid": 500, "test": 1000}
#: sha256 of ``gsa_tutorial/assets/mnist_mini.npz`` as built by ``tools/build_mnist_subset.py``.
MNIST_MINI_SHA256 = "3cf9c7dbd65fab271f6f5518f2d01cc8bc005558fc18d0eb646cbf617a67b62e"
_MNIST_MINI_FILE = "mnist_mini.npz"


@functools.lru_cache(maxsize=1)
def _mnist_mini_arrays() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The shipped digits, checked against :data:`MNIST_MINI_SHA256` (read once per process)."""
    from importlib.resources import files

    raw = (files("gsa_tutorial") / "assets" / _MNIST_MINI_FILE).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST_MINI_SHA256:
        raise ChecksumError(
            f"gsa_tutorial/assets/{_MNIST_MINI_FILE} has sha256 {digest}, expected {MNIST_MINI_SHA256}: "
            "the installed package is damaged, or the file was rebuilt without updating MNIST_MINI_SHA256 "
            "(python tools/build_mnist_subset.py prints the new sum)"
        )
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
        self.split = _check_split(split)
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
            self.images = torch.from_numpy(_to_uint8(turned.numpy()))
        else:
            self.angles = torch.zeros(stop - start, dtype=torch.float64)
            self.images = upright.clone()

    def __repr__(self) -> str:
        return f"MNISTMini(split={self.split!r}, n={len(self)}, rotated={self.rotated}, seed={self.seed})"


# ---------------------------------------------------------------------------------------
# One entry point
# ---------------------------------------------------------------------------------------

#: The names :func:`get_dataset` accepts (the table at the top of this module).
DATASET_NAMES = (
    "rotmnist", "cifar10", "pcam", "synthetic", "synthetic-rotated", "mnist-idx-rotated", "mnist-mini",
    "mnist-mini-rotated",
)

#: Default sizes of the synthetic splits (quick mode).
SYNTHETIC_SIZES = {"train": 2000, "valid": 500, "test": 1000}


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set."""

    in_channels: int
    image_size: int
    num_classes: int


_INFO = {
    "rotmnist": DatasetInfo(1, 28, 10),
    "cifar10": DatasetInfo(3, 32, 10),
    "pcam": DatasetInfo(3, 96, 2),
    "synthetic": DatasetInfo(1, 28, 10),
    "synthetic-rotated": DatasetInfo(1, 28, 10),
    "mnist-idx-rotated": DatasetInfo(1, 28, 10),
    "mnist-mini": DatasetInfo(1, 28, 10),
    "mnist-mini-rotated": DatasetInfo(1, 28, 10),
}


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown data set {name!r}: expected one of {', '.join(DATASET_NAMES)}")


def dataset_info(name: str) -> DatasetInfo:
    """Channels, image size and number of classes of a data set known to :func:`get_dataset`."""
    if name not in _INFO:
        raise _unknown(name)
    return _INFO[name]


def get_dataset(
    name: str, split: str = "train", root: str | os.PathLike | None = None, download: bool = False, **kw: Any
) -> Dataset:
    """Build a data set by name (see the table at the top of :mod:`gsa_tutorial.data`).

    Args:
        name: one of :data:`DATASET_NAMES`.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        root: data folder (default :func:`default_data_dir`); ignored by the synthetic sets.
        download: allow downloading missing files (real data sets only).
        **kw: passed to the class, e.g. ``valid_size`` (CIFAR-10), ``transpose`` (rotmnist),
            ``n``/``seed``/``size`` (synthetic: the seed is mixed with the split, so the
            splits never share digits; ``n`` defaults to :data:`SYNTHETIC_SIZES`),
            ``source``/``sizes``/``seed`` (mnist-idx-rotated), ``seed`` (mnist-mini-rotated: the
            angles).

    Raises:
        ValueError: an unknown name (the message lists the names) or split.
    """
    if name not in DATASET_NAMES:
        raise _unknown(name)
    _check_split(split)
    if name == "rotmnist":
        return RotatedMNIST(root, split=split, download=download, **kw)
    if name == "cifar10":
        return CIFAR10(root, split=split, download=download, **kw)
    if name == "pcam":
        return PCam(root, split=split, download=download, **kw)
    if name == "mnist-idx-rotated":
        folder = Path(root).expanduser() / "mnist" if root is not None else None
        return RotatedMNISTFromIDX(folder, split=split, download=download, **kw)
    if name in ("mnist-mini", "mnist-mini-rotated"):  # shipped real digits: root and download are not needed
        return MNISTMini(split, rotated=(name == "mnist-mini-rotated"), **kw)
    # synthetic digits: a distinct stream per split
    seed = int(kw.pop("seed", 0)) * 1_000_003 + SPLITS.index(split)
    n = kw.pop("n", SYNTHETIC_SIZES[split])
    dataset = SyntheticDigits(n, rotated=(name == "synthetic-rotated"), seed=seed, **kw)
    dataset.split = split
    return dataset
