"""Files and downloads of the data sets: where they live, md5 checks, atomic downloads, caches.

* Files live under ``root`` (default :func:`default_data_dir`: ``$GSA_DATA_DIR`` or
  ``~/.cache/gsa_tutorial``), one folder per data set (``rotmnist/``, ``cifar10/``, ``pcam/``,
  ``mnist/``).
* Nothing downloads unless ``download=True``. Downloads stream to a temporary file beside the
  target, are checked against the published md5 and only then renamed into place
  (:func:`download_url`), so an interrupted or corrupt download never leaves a file that
  looks complete.
* A missing file raises :class:`DatasetNotFoundError` that names the file, its URL and the
  full path where to put it by hand.
* Text and pickle formats are parsed once and cached as ``uint8`` tensors (``*.pt``).

Every file written here goes through the package's one atomic-write helper,
:func:`gsa_tutorial._io.atomic_write`.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.error import URLError
from urllib.request import Request, urlopen

import torch

from .._io import atomic_torch_save, atomic_write
from .base import check_images_and_labels

__all__ = ["DatasetNotFoundError", "ChecksumError", "default_data_dir", "md5sum", "download_url"]


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


def data_root(root: str | os.PathLike | None) -> Path:
    """``root`` as a path (``~`` expanded), or :func:`default_data_dir` when it is ``None``."""
    return Path(root).expanduser() if root is not None else default_data_dir()


def read_asset(name: str, sha256: str, *, constant: str, tool: str) -> bytes:
    """The bytes of ``gsa_tutorial/assets/<name>``, a file shipped with the package, checked
    against its recorded ``sha256`` (the message names the module ``constant`` that records
    it and the ``tool`` that rebuilds the file).

    Raises:
        ChecksumError: the file's sha256 is not the recorded one.
    """
    from importlib.resources import files

    raw = (files("gsa_tutorial") / "assets" / name).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise ChecksumError(
            f"gsa_tutorial/assets/{name} has sha256 {digest}, expected {sha256}: the installed package is damaged, "
            f"or the file was rebuilt without updating {constant} (python {tool} prints the new sum)"
        )
    return raw


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


def ensure_file(
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


def cached(
    cache: Path,
    parse: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    *,
    image_shape: tuple[int, ...],
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels from the uint8 cache file, or parsed once and cached atomically.

    A cache that cannot be read or whose content fails :func:`check_images_and_labels` (a
    damaged file, another version) is rebuilt from the source with a warning; data parsed from
    the source that fail it raise a :class:`ValueError` naming the source.
    """

    def check(images: torch.Tensor, labels: torch.Tensor, source: str) -> None:
        check_images_and_labels(images, labels, source=source, image_shape=image_shape, num_classes=num_classes)

    if cache.exists():
        try:
            blob = torch.load(cache, weights_only=True)
            images, labels = blob["images"], blob["labels"]
            check(images, labels, f"cache {cache}")
            return images, labels
        except Exception as err:
            warnings.warn(f"the cache {cache} is damaged or out of date ({type(err).__name__}: {err}); rebuilding it from the source", stacklevel=3)
    images, labels = parse()
    check(images, labels, f"data parsed for {cache.name} (from the files in {cache.parent})")
    atomic_torch_save({"images": images, "labels": labels}, cache, suffix=".part")
    return images, labels


def gunzip(src: Path, dst: Path) -> Path:
    """Decompress ``src`` (.gz) to ``dst`` through a temporary file (atomic)."""
    with gzip.open(src, "rb") as fin, atomic_write(dst, "wb", suffix=".part") as fout:
        while chunk := fin.read(1 << 22):
            fout.write(chunk)
    return dst
