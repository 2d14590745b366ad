"""The file formats of the data sets, parsed without torchvision: MNIST's IDX files,
Larochelle's ``.amat`` text tables (rotated MNIST) and the CIFAR-10 python pickles.

Each reader checks what it reads and says what was expected; none of them writes anything.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "read_idx", "load_mnist_idx", "parse_amat"]

# ---- IDX (MNIST) -----------------------------------------------------------------------

_IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: Magic number of an IDX file of images (2051: unsigned bytes, 3 dimensions).
IDX_IMAGES_MAGIC = 0x00000803
#: Magic number of an IDX file of labels (2049: unsigned bytes, 1 dimension).
IDX_LABELS_MAGIC = 0x00000801


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


# ---- .amat (rotated MNIST, Larochelle et al. 2007) -------------------------------------


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


# ---- CIFAR-10 python pickles -------------------------------------------------------------


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


def load_cifar_batch(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch (the bytes of a pickle): images ``(N, 3, 32, 32)`` uint8, labels ``(N,)`` int64."""
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
