"""CIFAR-10 (Krizhevsky, 2009) from the python tarball, parsed here (no torchvision), and its
per-channel statistics, the one copy the model preset uses too."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import torch

from .base import _InMemoryImages, check_split
from .files import cached, data_root, ensure_file
from .formats import load_cifar_batch

__all__ = ["CIFAR10", "CIFAR10_MEAN", "CIFAR10_STD"]

#: Per-channel mean of the 50,000 CIFAR-10 training images (values in [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
#: Per-channel standard deviation of the 50,000 training images, over all their pixels. The
#: often copied ``(0.2023, 0.1994, 0.2010)`` is a different statistic, not this one.
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


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
    mean = CIFAR10_MEAN
    #: (see :attr:`mean`; :data:`CIFAR10_STD`)
    std = CIFAR10_STD

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        split: str = "train",
        download: bool = False,
        valid_size: int = 5000,
    ) -> None:
        self.split = check_split(split)
        self.folder = data_root(root) / self.SUBDIR
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
            archive = ensure_file(
                self.folder / self.FILENAME, url=self.URL, md5=self.MD5, download=download, what="CIFAR10"
            )
            members = self.TEST_MEMBERS if part == "test" else self.TRAIN_MEMBERS
            images, labels = self._parse(archive, members)
            return torch.from_numpy(images), torch.from_numpy(labels)

        return cached(self.cache_path(part), parse, image_shape=(3, 32, 32), num_classes=10)

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
                parts.append(load_cifar_batch(member.read()))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
