"""The one registry of data sets: their names, what a model needs to know about each (channels,
image size, classes), where its files live, how to build it, and which data set each model
preset trains on.

The table of names is in the docstring of :mod:`gsa_tutorial.data`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .base import SPLITS, check_split
from .cifar import CIFAR10
from .mnist import MNISTIDX, MNISTMini, RotatedMNIST, RotatedMNISTFromIDX
from .pcam import PCam
from .synthetic import SyntheticDigits

__all__ = ["DATASET_NAMES", "DatasetInfo", "dataset_info", "dataset_folder", "get_dataset", "PRESET_DATASETS", "SYNTHETIC_SIZES"]

#: Default sizes of the synthetic splits (quick mode).
SYNTHETIC_SIZES = {"train": 2000, "valid": 500, "test": 1000}


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set."""

    in_channels: int
    image_size: int
    num_classes: int


Root = str | os.PathLike | None
Builder = Callable[..., Dataset]  # (split, root, download, **options) -> Dataset


def _from_files(cls: Callable[..., Dataset]) -> Builder:
    def build(split: str, root: Root, download: bool, **kw: Any) -> Dataset:
        return cls(root, split=split, download=download, **kw)

    return build


def _synthetic(rotated: bool) -> Builder:
    def build(split: str, root: Root, download: bool, **kw: Any) -> Dataset:
        seed = int(kw.pop("seed", 0)) * 1_000_003 + SPLITS.index(split)  # a distinct stream per split
        n = kw.pop("n", SYNTHETIC_SIZES[split])
        dataset = SyntheticDigits(n, rotated=rotated, seed=seed, **kw)
        dataset.split = split
        return dataset

    return build


def _mnist_idx_rotated(split: str, root: Root, download: bool, **kw: Any) -> Dataset:
    folder = Path(root).expanduser() / MNISTIDX.SUBDIR if root is not None else None  # root holds mnist/
    return RotatedMNISTFromIDX(folder, split=split, download=download, **kw)


def _mnist_mini(rotated: bool) -> Builder:
    def build(split: str, root: Root, download: bool, **kw: Any) -> Dataset:
        return MNISTMini(split, rotated=rotated, **kw)  # shipped digits: root and download are not needed

    return build


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    build: Builder
    folder: str | None  # the folder under the data root that holds its files (None: nothing on disk)


_MNIST_LIKE = DatasetInfo(1, 28, 10)
_REGISTRY: dict[str, _Entry] = {
    "rotmnist": _Entry(_MNIST_LIKE, _from_files(RotatedMNIST), RotatedMNIST.SUBDIR),
    "cifar10": _Entry(DatasetInfo(3, 32, 10), _from_files(CIFAR10), CIFAR10.SUBDIR),
    "pcam": _Entry(DatasetInfo(3, 96, 2), _from_files(PCam), PCam.SUBDIR),
    "synthetic": _Entry(_MNIST_LIKE, _synthetic(rotated=False), None),
    "synthetic-rotated": _Entry(_MNIST_LIKE, _synthetic(rotated=True), None),
    "mnist-idx-rotated": _Entry(_MNIST_LIKE, _mnist_idx_rotated, MNISTIDX.SUBDIR),
    "mnist-mini": _Entry(_MNIST_LIKE, _mnist_mini(rotated=False), None),
    "mnist-mini-rotated": _Entry(_MNIST_LIKE, _mnist_mini(rotated=True), None),
}

#: The names :func:`get_dataset` accepts (the table at the top of this module).
DATASET_NAMES = tuple(_REGISTRY)

#: The data set each model preset of :func:`gsa_tutorial.model.preset` trains on by default
#: (``small``, the CPU quick mode: the real digits shipped with the package, rotated).
PRESET_DATASETS = {"rotmnist": "rotmnist", "cifar10": "cifar10", "pcam": "pcam", "small": "mnist-mini-rotated"}


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown data set {name!r}: expected one of {', '.join(DATASET_NAMES)}")
    return _REGISTRY[name]


def dataset_info(name: str) -> DatasetInfo:
    """Channels, image size and number of classes of a data set known to :func:`get_dataset`."""
    return _entry(name).info


def dataset_folder(name: str) -> str | None:
    """The folder under the data root that holds the files of data set ``name`` (``"rotmnist"``,
    ``"mnist"``, ...), or ``None`` for the data sets made or shipped in the package."""
    return _entry(name).folder


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
    entry = _entry(name)
    check_split(split)
    return entry.build(split, root, download, **kw)
