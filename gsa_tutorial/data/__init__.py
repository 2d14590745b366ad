"""Data sets for the GSA-Nets book: rotated MNIST, CIFAR-10, PCam, and offline digits (chapters 8, 9).

Every data set returns ``(image, label)`` with ``image`` a float32 tensor ``(C, H, W)`` in
``[0, 1]`` and ``label`` a Python ``int``. Normalisation (mean/std) is the model's or the
trainer's business; :data:`CIFAR10_MEAN` and :data:`CIFAR10_STD` are offered as constants.

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

The package, one idea per module
--------------------------------
* ``files``: where data live, md5 checks, atomic downloads, uint8 caches, the errors;
* ``formats``: the IDX, ``.amat`` and CIFAR pickle readers;
* ``base``: the splits, the checks of loaded data, in-memory images, :func:`rotate_images`;
* ``mnist``, ``cifar``, ``pcam``, ``synthetic``: the data sets;
* ``registry``: the one table of names, sizes and builders (:func:`get_dataset`).

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
  written atomically). Importing this package needs neither matplotlib nor h5py.

Pitfalls of the official GSA-Nets code that this package avoids (DESIGN §7)
---------------------------------------------------------------------------
* Rotated-MNIST pixels are converted with ``round(255 * clip(x, 0, 1))``; the official code
  uses ``x * 256`` cast to ``uint8``, which wraps a white pixel ``1.0`` to ``0``.
* Every data set has a validation split (rotated MNIST: the 2,000 digits Larochelle et al.
  set aside; CIFAR-10: the last ``valid_size`` training images), so model selection never
  looks at the test set.

Shapes: ``B`` batch, ``C`` channels, ``H, W`` height and width.
"""

from .base import SPLITS, check_images_and_labels, rotate_images
from .cifar import CIFAR10, CIFAR10_MEAN, CIFAR10_STD
from .files import ChecksumError, DatasetNotFoundError, default_data_dir, download_url, md5sum
from .formats import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, load_mnist_idx, parse_amat, read_idx
from .mnist import MNIST_MINI_SHA256, MNIST_MINI_SIZES, MNISTIDX, MNISTMini, RotatedMNIST, RotatedMNISTFromIDX
from .pcam import PCam
from .registry import (
    DATASET_NAMES,
    PRESET_DATASETS,
    SYNTHETIC_SIZES,
    DatasetInfo,
    dataset_folder,
    dataset_info,
    get_dataset,
)
from .synthetic import SYNTHETIC_FONTS, SyntheticDigits

# The constants again, each with its comment here: the API reference documents this package's
# names from this file (the values are the submodules' own objects).
#: The splits every data set offers, in this order.
SPLITS = SPLITS
#: The names :func:`get_dataset` accepts (the table above).
DATASET_NAMES = DATASET_NAMES
#: The data set each model preset of :func:`gsa_tutorial.model.preset` trains on by default.
PRESET_DATASETS = PRESET_DATASETS
#: Default sizes of the synthetic splits (quick mode).
SYNTHETIC_SIZES = SYNTHETIC_SIZES
#: The DejaVu fonts (bundled with matplotlib) whose glyphs :class:`SyntheticDigits` draws.
SYNTHETIC_FONTS = SYNTHETIC_FONTS
#: The split of the shipped digits (:class:`MNISTMini`): train, then valid, then test.
MNIST_MINI_SIZES = MNIST_MINI_SIZES
#: sha256 of ``gsa_tutorial/assets/mnist_mini.npz`` as built by ``tools/build_mnist_subset.py``.
MNIST_MINI_SHA256 = MNIST_MINI_SHA256
#: Per-channel mean of the 50,000 CIFAR-10 training images (values in [0, 1]).
CIFAR10_MEAN = CIFAR10_MEAN
#: Per-channel standard deviation of the CIFAR-10 training images (not the often copied 0.2023, ...).
CIFAR10_STD = CIFAR10_STD
#: Magic number of an IDX file of images (2051).
IDX_IMAGES_MAGIC = IDX_IMAGES_MAGIC
#: Magic number of an IDX file of labels (2049).
IDX_LABELS_MAGIC = IDX_LABELS_MAGIC

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
    "read_idx",
    "load_mnist_idx",
    "parse_amat",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "MNISTIDX",
    "RotatedMNISTFromIDX",
    "RotatedMNIST",
    "CIFAR10",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "PCam",
    "SyntheticDigits",
    "MNISTMini",
    "MNIST_MINI_SIZES",
    "MNIST_MINI_SHA256",
    "get_dataset",
    "dataset_info",
    "dataset_folder",
    "PRESET_DATASETS",
    "SPLITS",
    "SYNTHETIC_FONTS",
    "SYNTHETIC_SIZES",
]
