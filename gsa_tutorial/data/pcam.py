"""PatchCamelyon (Veeling et al., 2018): lymph-node patches read lazily from HDF5 files (needs h5py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import check_split
from .files import data_root, ensure_file, gunzip

__all__ = ["PCam"]


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
        self.split = check_split(split)
        h5py = _import_h5py()
        self.folder = data_root(root) / self.SUBDIR
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
        gz = ensure_file(
            self.folder / gz_name, url=self.URL.format(name=gz_name), md5=self.MD5.get(gz_name),
            download=download, what="PCam",
        )
        gunzip(gz, h5)
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
