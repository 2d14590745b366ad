"""Tests of gsa_tutorial.data: real parsers on tiny files in the real formats, downloads through
a fake urlopen (no network), offline synthetic digits, and the real MNIST t10k files if present."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from gsa_tutorial import data
from gsa_tutorial.actions import act_on_image

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


# ---------------------------------------------------------------------------------------
# helpers: tiny files in the real formats
# ---------------------------------------------------------------------------------------


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def amat_rows(n: int, seed: int) -> np.ndarray:
    """``n`` rows of 784 pixels in [0, 1] (with exact 0.0 and 1.0) and an integer label."""
    rng = np.random.default_rng(seed)
    pixels = rng.random((n, 784))
    pixels[:, :100] = 0.0
    pixels[:, 100:150] = 1.0
    labels = (np.arange(n) + seed) % 10
    return np.concatenate([pixels, labels[:, None]], axis=1)


def amat_text(rows: np.ndarray) -> str:
    buf = io.StringIO()
    np.savetxt(buf, rows, fmt="%.10g")
    return buf.getvalue()


def write_rotmnist_zip(folder: Path, train_valid: np.ndarray, test: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mnist_rotation_new.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist_all_rotation_normalized_float_train_valid.amat", amat_text(train_valid))
        zf.writestr("mnist_all_rotation_normalized_float_test.amat", amat_text(test))
    return path


@pytest.fixture
def rotmnist_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root with a tiny rotated-MNIST zip: 5 train/valid rows (3 train, 2 valid), 4 test rows."""
    zpath = write_rotmnist_zip(tmp_path / "rotmnist", amat_rows(5, 0), amat_rows(4, 1))
    monkeypatch.setattr(data.RotatedMNIST, "MD5", md5_of(zpath))
    monkeypatch.setattr(data.RotatedMNIST, "N_TRAIN", 3)
    return tmp_path


def cifar_batch(n: int, offset: int) -> bytes:
    images = ((np.arange(n * 3072).reshape(n, 3072) + offset) % 251).astype(np.uint8)
    batch = {
        b"batch_label": b"tiny batch",
        b"labels": [int((i + offset) % 10) for i in range(n)],
        b"data": images,
        b"filenames": [f"img_{offset + i}.png".encode() for i in range(n)],
    }
    return pickle.dumps(batch, protocol=2)


def write_cifar_tarball(folder: Path, n_per_batch: int = 10) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        members = [(f"data_batch_{i}", cifar_batch(n_per_batch, (i - 1) * n_per_batch)) for i in range(1, 6)]
        members.append(("test_batch", cifar_batch(n_per_batch, 1000)))
        for name, payload in members:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def cifar_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tpath = write_cifar_tarball(tmp_path / "cifar10")
    monkeypatch.setattr(data.CIFAR10, "MD5", md5_of(tpath))
    return tmp_path


def write_pcam(folder: Path, split: str, n: int, *, x_shape: tuple[int, ...] = (96, 96, 3)) -> None:
    h5py = pytest.importorskip("h5py")
    folder.mkdir(parents=True, exist_ok=True)
    x = (np.arange(n * int(np.prod(x_shape))) % 256).astype(np.uint8).reshape(n, *x_shape)
    y = (np.arange(n) % 2).astype(np.uint8).reshape(n, 1, 1, 1)
    with h5py.File(folder / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
        f.create_dataset("x", data=x)
    with h5py.File(folder / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
        f.create_dataset("y", data=y)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.astype(np.uint8).tobytes()


def tiny_mnist(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    images[:, 8:20, 12:16] = 200  # a vertical bar
    images[:, 0, 5] = 255  # an asymmetric marker: row 0, column 5
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def write_idx_pair(folder: Path, prefix: str, n: int = 20, *, gz: bool = True) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = tiny_mnist(n)
    paths = []
    for kind, array, magic in (("images-idx3-ubyte", images, 0x803), ("labels-idx1-ubyte", labels, 0x801)):
        payload = idx_bytes(array, magic)
        path = folder / f"{prefix}-{kind}" if not gz else folder / f"{prefix}-{kind}.gz"
        path.write_bytes(gzip.compress(payload) if gz else payload)
        paths.append(path)
    return paths[0], paths[1]


class FakeResponse:
    """What urlopen returns: a context manager with ``read(n)`` and ``headers``."""

    def __init__(self, payload: bytes, fail_after: int | None = None) -> None:
        self.stream = io.BytesIO(payload)
        self.headers = {"Content-Length": str(len(payload))}
        self.fail_after = fail_after

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.stream.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        size = n if self.fail_after is None else min(n, self.fail_after - self.stream.tell())
        return self.stream.read(size)

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def serve(monkeypatch: pytest.MonkeyPatch, payload: bytes, **kw: object) -> list[str]:
    """Make data.files.urlopen serve ``payload``; returns the list of requested URLs."""
    calls: list[str] = []

    def fake_urlopen(request, timeout=None):
        calls.append(request.full_url)
        return FakeResponse(payload, **kw)

    monkeypatch.setattr(data.files, "urlopen", fake_urlopen)
    return calls


def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_urlopen(request, timeout=None):
        raise URLError("no network in tests")

    monkeypatch.setattr(data.files, "urlopen", fake_urlopen)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------------
# data folder, downloads, error messages
# ---------------------------------------------------------------------------------------


def test_default_data_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GSA_DATA_DIR", str(tmp_path / "somewhere"))
    assert data.default_data_dir() == tmp_path / "somewhere"


def test_default_data_dir_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GSA_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.default_data_dir() == tmp_path / ".cache" / "gsa_tutorial"


def test_datasets_use_env_data_dir(monkeypatch: pytest.MonkeyPatch, rotmnist_root: Path) -> None:
    monkeypatch.setenv("GSA_DATA_DIR", str(rotmnist_root))
    assert len(data.RotatedMNIST(split="test")) == 4


def test_download_url_writes_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    payload = os.urandom(3 * (1 << 20) + 17)  # several chunks
    calls = serve(monkeypatch, payload)
    target = tmp_path / "sub" / "file.bin"
    out = data.download_url("https://example.org/file.bin", target, hashlib.md5(payload).hexdigest(), progress=False)
    assert out == target and target.read_bytes() == payload
    assert calls == ["https://example.org/file.bin"]
    assert files_in(target.parent) == ["file.bin"]  # no temporary file left


def test_download_url_md5_mismatch_raises_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    payload = b"not the real file"
    serve(monkeypatch, payload)
    expected = "0" * 32
    with pytest.raises(data.ChecksumError) as info:
        data.download_url("https://example.org/f.zip", tmp_path / "f.zip", expected, progress=False)
    message = str(info.value)
    assert expected in message and hashlib.md5(payload).hexdigest() in message
    assert files_in(tmp_path) == []


def test_download_url_interrupted_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    serve(monkeypatch, os.urandom(5000), fail_after=1000)
    with pytest.raises(data.DatasetNotFoundError, match="ConnectionResetError"):
        data.download_url("https://example.org/f.zip", tmp_path / "f.zip", None, progress=False)
    assert files_in(tmp_path) == []


def test_download_url_no_network_says_where_to_put_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_network(monkeypatch)
    target = tmp_path / "f.zip"
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.download_url("https://example.org/f.zip", target, "a" * 32, what="Thing", progress=False)
    message = str(info.value)
    assert "https://example.org/f.zip" in message and str(target) in message and "a" * 32 in message
    assert files_in(tmp_path) == []


def test_download_url_keeps_a_good_existing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"cached")
    calls = serve(monkeypatch, b"fresh")
    data.download_url("https://example.org/f.bin", target, hashlib.md5(b"cached").hexdigest(), progress=False)
    assert calls == [] and target.read_bytes() == b"cached"


def test_missing_file_without_download_gives_url_and_full_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_network(monkeypatch)
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.RotatedMNIST(tmp_path, split="train")
    message = str(info.value)
    assert data.RotatedMNIST.URL in message
    assert str(tmp_path / "rotmnist" / "mnist_rotation_new.zip") in message
    assert "download=True" in message


def test_missing_file_with_failed_download_gives_url_and_full_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_network(monkeypatch)
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.CIFAR10(tmp_path, split="test", download=True)
    message = str(info.value)
    assert data.CIFAR10.URL in message and str(tmp_path / "cifar10" / "cifar-10-python.tar.gz") in message
    assert files_in(tmp_path / "cifar10") == []


def test_rotmnist_download_through_fake_urlopen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    built = write_rotmnist_zip(tmp_path / "build", amat_rows(5, 0), amat_rows(4, 1))
    payload = built.read_bytes()
    monkeypatch.setattr(data.RotatedMNIST, "MD5", hashlib.md5(payload).hexdigest())
    calls = serve(monkeypatch, payload)
    ds = data.RotatedMNIST(tmp_path / "root", split="test", download=True)
    assert calls == [data.RotatedMNIST.URL]
    assert len(ds) == 4 and (tmp_path / "root" / "rotmnist" / "mnist_rotation_new.zip").read_bytes() == payload


def test_hand_placed_file_with_wrong_md5_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_rotmnist_zip(tmp_path / "rotmnist", amat_rows(5, 0), amat_rows(4, 1))
    monkeypatch.setattr(data.RotatedMNIST, "MD5", "f" * 32)
    with pytest.raises(data.ChecksumError, match="f" * 32):
        data.RotatedMNIST(tmp_path, split="test")


def test_import_is_light_and_downloads_nothing(tmp_path: Path) -> None:
    target = tmp_path / "never-created"
    code = (
        "import sys, gsa_tutorial, gsa_tutorial.data; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; "
        "assert 'h5py' not in sys.modules, 'h5py imported'"
    )
    env = {**os.environ, "GSA_DATA_DIR": str(target)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).resolve().parents[1])
    assert not target.exists()


NO_MATPLOTLIB = """
import sys
sys.modules["matplotlib"] = None  # `import matplotlib` now raises ImportError
import gsa_tutorial.data, gsa_tutorial.train
from gsa_tutorial.train.cli import build_parser, _settings
from gsa_tutorial.data import get_dataset
args = build_parser().parse_args([])  # the default CLI run: preset small, its default data set
_, config, options, name = _settings(args)
train = get_dataset(name, "train", **options)
digits = get_dataset("synthetic-rotated", "train", n=20)  # the synthetic digits need no matplotlib either
print(name, len(train), tuple(digits[0][0].shape))
"""


def test_data_and_the_default_cli_run_need_no_matplotlib() -> None:
    run = subprocess.run([sys.executable, "-c", NO_MATPLOTLIB], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["mnist-mini-rotated", "2500", "(1,", "28,", "28)"]


def test_shipped_glyphs_are_what_the_tool_renders() -> None:
    pytest.importorskip("matplotlib")
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / "build_glyphs.py"
    spec = importlib.util.spec_from_file_location("build_glyphs", path)
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from gsa_tutorial.data import synthetic

    rendered = torch.from_numpy(tool.render_glyphs().astype(np.float32) / 4)
    assert torch.equal(synthetic._glyph_templates(), rendered)


def test_damaged_glyph_file_raises_a_checksum_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from gsa_tutorial.data import synthetic

    synthetic._glyph_templates.cache_clear()
    synthetic._stroke_templates.cache_clear()
    monkeypatch.setattr(synthetic, "GLYPHS_SHA256", "0" * 64)
    try:
        with pytest.raises(data.ChecksumError, match="synthetic_glyphs.npz has sha256"):
            data.SyntheticDigits(10)
    finally:
        monkeypatch.undo()
        synthetic._glyph_templates.cache_clear()
        synthetic._stroke_templates.cache_clear()


def test_one_registry_knows_every_data_set_and_preset() -> None:
    from gsa_tutorial.model import PRESETS, preset

    assert set(data.PRESET_DATASETS) == set(PRESETS)
    for name in data.DATASET_NAMES:
        info = data.dataset_info(name)
        if data.dataset_folder(name) is None:  # made or shipped in the package: build it and look
            image, label = data.get_dataset(name, "valid")[0]
            assert tuple(image.shape) == (info.in_channels, info.image_size, info.image_size) and 0 <= label < info.num_classes
    for model_preset, name in data.PRESET_DATASETS.items():
        config, info = preset(model_preset), data.dataset_info(name)
        assert (config.in_channels, config.num_classes) == (info.in_channels, info.num_classes), model_preset


def test_cifar10_statistics_are_one_constant_used_by_the_preset() -> None:
    from gsa_tutorial.model import preset

    assert data.CIFAR10.std == data.CIFAR10_STD == (0.2470, 0.2435, 0.2616)  # not the often copied (0.2023, 0.1994, 0.2010)
    assert data.CIFAR10.mean == data.CIFAR10_MEAN
    config = preset("cifar10")
    assert (config.input_mean, config.input_std) == (data.CIFAR10_MEAN, data.CIFAR10_STD)


# ---------------------------------------------------------------------------------------
# rotated MNIST (.amat in a zip)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "n"), [("train", 3), ("valid", 2), ("test", 4)])
def test_rotmnist_splits_shapes_and_labels(rotmnist_root: Path, split: str, n: int) -> None:
    ds = data.RotatedMNIST(rotmnist_root, split=split)
    assert len(ds) == n
    image, label = ds[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert isinstance(label, int)
    images, labels = ds.tensors()
    assert images.min() >= 0 and images.max() <= 1
    seed, first = {"train": (0, 0), "valid": (0, 3), "test": (1, 0)}[split]
    assert labels.tolist() == [(first + i + seed) % 10 for i in range(n)]


def test_rotmnist_valid_is_the_tail_of_the_train_valid_file(rotmnist_root: Path) -> None:
    rows = amat_rows(5, 0)
    valid = data.RotatedMNIST(rotmnist_root, split="valid", transpose=False)
    expected = np.rint(np.clip(rows[3:, :784], 0, 1) * 255).reshape(2, 1, 28, 28)
    assert torch.equal(valid.images, torch.from_numpy(expected.astype(np.uint8)))


def test_rotmnist_white_pixel_is_255_not_0(rotmnist_root: Path) -> None:
    ds = data.RotatedMNIST(rotmnist_root, split="train", transpose=False)
    flat = ds.images.reshape(len(ds), 784)
    assert torch.all(flat[:, 100:150] == 255)  # 1.0 in the file; x*256 cast to uint8 would give 0
    assert torch.all(flat[:, :100] == 0)
    assert torch.all(ds.tensors()[0].reshape(len(ds), 784)[:, 100:150] == 1.0)


def test_to_uint8_rounds_and_clips() -> None:
    values = np.array([0.0, 1.0, 0.5, 0.2, 1.3, -0.2, 254.6 / 255])
    assert data.base.to_uint8(values).tolist() == [0, 255, 128, 51, 255, 0, 255]


@pytest.mark.parametrize(("transpose", "where"), [(True, (5, 0)), (False, (0, 5))])
def test_rotmnist_orientation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transpose: bool, where: tuple) -> None:
    rows = np.zeros((2, 785))
    rows[:, 5] = 1.0  # the 6th number of the row: column-major (row 5, col 0); row-major (row 0, col 5)
    zpath = write_rotmnist_zip(tmp_path / "rotmnist", rows, rows)
    monkeypatch.setattr(data.RotatedMNIST, "MD5", md5_of(zpath))
    image = data.RotatedMNIST(tmp_path, split="test", transpose=transpose)[0][0][0]  # (28, 28)
    assert image[where] == 1.0 and image.sum() == 1.0


def test_rotmnist_cache_is_used_without_the_zip(rotmnist_root: Path) -> None:
    first = data.RotatedMNIST(rotmnist_root, split="test")
    cache = first.cache_path("test")
    assert cache.exists() and not [p for p in cache.parent.iterdir() if p.name.endswith(".part")]
    (rotmnist_root / "rotmnist" / "mnist_rotation_new.zip").unlink()
    again = data.RotatedMNIST(rotmnist_root, split="test")
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)


def test_amat_with_wrong_row_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="785"):
        data.parse_amat(io.StringIO("0.1 0.2 0.3 1\n0.1 0.2 0.3 2\n"))


def test_amat_with_bad_labels_is_rejected() -> None:
    rows = amat_rows(2, 0)
    rows[0, -1] = 12
    with pytest.raises(ValueError, match="0..9"):
        data.parse_amat(io.StringIO(amat_text(rows)))


def test_unknown_split_is_rejected(rotmnist_root: Path) -> None:
    with pytest.raises(ValueError, match="'train', 'valid', 'test'"):
        data.RotatedMNIST(rotmnist_root, split="val")


# ---------------------------------------------------------------------------------------
# CIFAR-10 (python tarball)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "n"), [("train", 45), ("valid", 5), ("test", 10)])
def test_cifar_splits_shapes_and_range(cifar_root: Path, split: str, n: int) -> None:
    ds = data.CIFAR10(cifar_root, split=split, valid_size=5)
    assert len(ds) == n
    image, label = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1 and 0 <= label <= 9


def test_cifar_valid_is_the_last_training_images(cifar_root: Path) -> None:
    valid = data.CIFAR10(cifar_root, split="valid", valid_size=5)
    # image 45 is the 6th image of data_batch_5 (offset 40): labels (i + offset) % 10
    assert valid.labels.tolist() == [(45 + i) % 10 for i in range(5)]
    expected = ((np.arange(10 * 3072).reshape(10, 3072) + 40) % 251).astype(np.uint8)[5:]
    assert torch.equal(valid.images.reshape(5, 3072), torch.from_numpy(expected))


def test_cifar_channel_and_pixel_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cifar10"
    folder.mkdir()
    row = np.zeros((1, 3072), dtype=np.uint8)
    row[0, 5] = 255  # red, row 0, column 5
    row[0, 1024 + 32 * 2 + 7] = 128  # green, row 2, column 7
    batch = pickle.dumps({b"data": row, b"labels": [3]}, protocol=2)
    path = folder / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(batch)
            tar.addfile(info, io.BytesIO(batch))
    monkeypatch.setattr(data.CIFAR10, "MD5", md5_of(path))
    image, label = data.CIFAR10(tmp_path, split="test")[0]
    assert label == 3
    assert image[0, 0, 5] == 1.0 and image[1, 2, 7] == pytest.approx(128 / 255) and image.sum() == pytest.approx(1 + 128 / 255)


def test_cifar_unpickler_refuses_code() -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.formats.load_cifar_batch(pickle.dumps({b"data": Evil(), b"labels": []}))


def test_cifar_constants() -> None:
    assert len(data.CIFAR10.mean) == 3 and len(data.CIFAR10.std) == 3
    assert all(0.4 < m < 0.5 for m in data.CIFAR10.mean) and all(0.2 < s < 0.3 for s in data.CIFAR10.std)


def test_cifar_bad_valid_size(cifar_root: Path) -> None:
    with pytest.raises(ValueError, match="valid_size"):
        data.CIFAR10(cifar_root, split="train", valid_size=50)


# ---------------------------------------------------------------------------------------
# PCam (HDF5)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_pcam_items(tmp_path: Path, split: str) -> None:
    write_pcam(tmp_path / "pcam", split, 6)
    ds = data.PCam(tmp_path, split=split)
    assert len(ds) == 6 and ds._handles is None  # lazy: nothing open before the first item
    image, label = ds[3]
    assert image.shape == (3, 96, 96) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1 and label == 1
    ds.close()


def test_pcam_channels_last_to_channels_first(tmp_path: Path) -> None:
    write_pcam(tmp_path / "pcam", "test", 2)
    ds = data.PCam(tmp_path, split="test")
    x = (np.arange(2 * 96 * 96 * 3) % 256).astype(np.uint8).reshape(2, 96, 96, 3)
    assert torch.equal(ds[1][0], torch.from_numpy(x[1]).permute(2, 0, 1).float() / 255)
    ds.close()


def test_pcam_pickles_without_open_files(tmp_path: Path) -> None:
    write_pcam(tmp_path / "pcam", "valid", 4)
    ds = data.PCam(tmp_path, split="valid")
    first = ds[0][0]
    clone = pickle.loads(pickle.dumps(ds))  # what a DataLoader worker receives
    assert clone._handles is None and torch.equal(clone[0][0], first)
    ds.close()
    clone.close()


def test_pcam_decompresses_a_hand_placed_gz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "pcam"
    write_pcam(folder, "test", 3)
    md5s = {}
    for kind in ("x", "y"):
        h5 = folder / f"camelyonpatch_level_2_split_test_{kind}.h5"
        gz = h5.with_name(h5.name + ".gz")
        gz.write_bytes(gzip.compress(h5.read_bytes()))
        h5.unlink()
        md5s[gz.name] = md5_of(gz)
    monkeypatch.setattr(data.PCam, "MD5", md5s)
    ds = data.PCam(tmp_path, split="test")
    assert len(ds) == 3 and ds[2][1] == 0
    assert sorted(files_in(folder)) == ["camelyonpatch_level_2_split_test_x.h5", "camelyonpatch_level_2_split_test_y.h5"]
    ds.close()


def test_pcam_wrong_structure_is_rejected(tmp_path: Path) -> None:
    write_pcam(tmp_path / "pcam", "test", 2, x_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"\(N, 96, 96, 3\)"):
        data.PCam(tmp_path, split="test")


def test_pcam_missing_files_name_zenodo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    no_network(monkeypatch)
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.PCam(tmp_path, split="valid")
    message = str(info.value)
    assert "https://zenodo.org/record/2546921/files/camelyonpatch_level_2_split_valid_x.h5.gz" in message
    assert str(tmp_path / "pcam" / "camelyonpatch_level_2_split_valid_x.h5.gz") in message


def test_pcam_without_h5py_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail
    with pytest.raises(ImportError, match=r"pip install gsa_tutorial\[pcam\]"):
        data.PCam(tmp_path, split="test")


# ---------------------------------------------------------------------------------------
# MNIST IDX
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_idx(tmp_path: Path, gz: bool) -> None:
    images_path, labels_path = write_idx_pair(tmp_path, "t10k", 20, gz=gz)
    images, labels = data.load_mnist_idx(images_path, labels_path)
    assert images.shape == (20, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist() == [i % 10 for i in range(20)]
    assert images[0, 0, 5] == 255 and images[0, 5, 0] == 0  # rows stay rows


def test_idx_wrong_magic_is_rejected(tmp_path: Path) -> None:
    images_path, labels_path = write_idx_pair(tmp_path, "t10k", 4)
    with pytest.raises(ValueError, match="magic number"):
        data.load_mnist_idx(labels_path, images_path)  # swapped


def test_idx_not_an_idx_file(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"PK\x03\x04 not idx at all")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(path)


def test_idx_truncated_file_is_rejected(tmp_path: Path) -> None:
    images, _ = tiny_mnist(3)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(idx_bytes(images, 0x803)[:-10])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(path)


def test_idx_count_mismatch_is_rejected(tmp_path: Path) -> None:
    images_path, _ = write_idx_pair(tmp_path / "a", "t10k", 5)
    _, labels_path = write_idx_pair(tmp_path / "b", "t10k", 4)
    with pytest.raises(ValueError, match="5 images but"):
        data.load_mnist_idx(images_path, labels_path)


def test_mnistidx_dataset_from_raw_files(tmp_path: Path) -> None:
    write_idx_pair(tmp_path, "t10k", 20, gz=False)
    ds = data.MNISTIDX(tmp_path, split="test")
    image, label = ds[7]
    assert len(ds) == 20 and image.shape == (1, 28, 28) and label == 7
    assert image[0, 0, 5] == 1.0


def test_mnistidx_checks_published_md5_of_gz(tmp_path: Path) -> None:
    write_idx_pair(tmp_path, "t10k", 4)  # gzipped, but not the real files
    with pytest.raises(data.ChecksumError, match="9fb629c4189551a2d022fa330f9573f3"):
        data.MNISTIDX(tmp_path, split="test")


@pytest.fixture
def idx_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_idx_pair(tmp_path, "t10k", 50)
    monkeypatch.setattr(data.MNISTIDX, "MD5", {})  # tiny files have no published checksum
    return tmp_path


def test_rotated_from_idx_splits_are_disjoint(idx_root: Path) -> None:
    parts = {s: data.RotatedMNISTFromIDX(idx_root, split=s, seed=3) for s in ("train", "valid", "test")}
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [25, 5, 20]  # 50% / 10% / 40%
    indices = torch.cat([parts[s].source_indices for s in parts])
    assert sorted(indices.tolist()) == list(range(50))


def test_rotated_from_idx_is_deterministic_and_rotated(idx_root: Path) -> None:
    a = data.RotatedMNISTFromIDX(idx_root, split="train", seed=1)
    b = data.RotatedMNISTFromIDX(idx_root, split="train", seed=1)
    c = data.RotatedMNISTFromIDX(idx_root, split="train", seed=2)
    assert torch.equal(a.images, b.images) and not torch.equal(a.angles, c.angles)
    assert torch.all((a.angles >= 0) & (a.angles < 2 * math.pi))
    upright = torch.from_numpy(tiny_mnist(1)[0]).float()[None] / 255  # (1, 28, 28): all tiny digits are equal
    expected = data.rotate_images(upright.expand(len(a), 1, 28, 28).contiguous(), a.angles)
    assert (a.tensors()[0] - expected).abs().max() <= 0.5 / 255 + 1e-6  # only uint8 rounding


def test_rotated_from_idx_custom_sizes(idx_root: Path) -> None:
    ds = data.RotatedMNISTFromIDX(idx_root, split="valid", sizes=(10, 7, 3))
    assert len(ds) == 7
    with pytest.raises(ValueError, match="sizes"):
        data.RotatedMNISTFromIDX(idx_root, split="train", sizes=(40, 20, 0))


@pytest.mark.skipif(not SHARED_MNIST.exists(), reason="real MNIST t10k files (../shared/data/mnist) not present")
def test_real_mnist_t10k_files() -> None:
    assert md5_of(SHARED_MNIST / "t10k-images-idx3-ubyte.gz") == "9fb629c4189551a2d022fa330f9573f3"
    assert md5_of(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz") == "ec29112dd5afa0611ce80d1b7f02629c"
    ds = data.MNISTIDX(SHARED_MNIST, split="test")  # also checks the published md5s
    assert len(ds) == 10000 and ds.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert ds.labels[:3].tolist() == [7, 2, 1]
    # MNIST digits are centred in a 20x20 box: the 4-pixel border is (nearly) empty
    mean = ds.images.float().mean(0)[0]  # (28, 28)
    assert mean[:2].max() < 1 and mean[:, :2].max() < 1 and mean[10:18, 10:18].mean() > 50


@pytest.mark.skipif(not SHARED_MNIST.exists(), reason="real MNIST t10k files (../shared/data/mnist) not present")
def test_real_rotated_mnist_from_t10k() -> None:
    ds = data.RotatedMNISTFromIDX(SHARED_MNIST, split="test", seed=0)
    upright = data.MNISTIDX(SHARED_MNIST, split="test")
    assert ds.sizes == (5000, 1000, 4000) and len(ds) == 4000
    assert torch.equal(ds.labels, upright.labels[ds.source_indices])
    ink_rotated = ds.tensors()[0].sum((1, 2, 3))
    ink_upright = upright.tensors()[0][ds.source_indices].sum((1, 2, 3))
    assert torch.allclose(ink_rotated, ink_upright, rtol=0.15)  # rotation keeps the digit in the frame


# ---------------------------------------------------------------------------------------
# synthetic digits
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic() -> data.SyntheticDigits:
    return data.SyntheticDigits(200, seed=5)


def test_synthetic_shapes_and_range(synthetic: data.SyntheticDigits) -> None:
    image, label = synthetic[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and isinstance(label, int)
    images, labels = synthetic.tensors()
    assert images.min() >= 0 and images.max() <= 1 and images.max() > 0.99
    assert labels.min() >= 0 and labels.max() <= 9


def test_synthetic_labels_balanced(synthetic: data.SyntheticDigits) -> None:
    assert torch.bincount(synthetic.labels, minlength=10).tolist() == [20] * 10


def test_synthetic_digits_are_drawn_and_fit(synthetic: data.SyntheticDigits) -> None:
    ink = (synthetic.images > 0.5).float().mean((1, 2, 3))  # fraction of bright pixels per image
    assert ink.min() > 0.03 and ink.max() < 0.45
    border = torch.cat([synthetic.images[..., 0, :], synthetic.images[..., -1, :]], -1)  # (N, 1, 56)
    assert border.max() < 0.5  # upright digits stay inside the frame


def test_synthetic_classes_differ(synthetic: data.SyntheticDigits) -> None:
    means = torch.stack([synthetic.images[synthetic.labels == k].mean(0) for k in range(10)])  # (10, 1, 28, 28)
    distances = torch.cdist(means.flatten(1), means.flatten(1))
    assert distances[~torch.eye(10, dtype=torch.bool)].min() > 0.5


def test_synthetic_is_deterministic() -> None:
    a, b, c = (data.SyntheticDigits(30, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_synthetic_rotated_is_the_upright_set_rotated() -> None:
    upright = data.SyntheticDigits(40, seed=4)
    rotated = data.SyntheticDigits(40, seed=4, rotated=True)
    assert torch.equal(upright.labels, rotated.labels) and torch.all(upright.angles == 0)
    assert torch.all((rotated.angles >= 0) & (rotated.angles < 2 * math.pi))
    expected = data.rotate_images(upright.images, rotated.angles)
    wrong_way = data.rotate_images(upright.images, -rotated.angles)
    error = (rotated.images - expected).abs().mean()
    assert error < 0.05 and error < 0.5 * (rotated.images - wrong_way).abs().mean()


def test_synthetic_angles_cover_the_circle() -> None:
    angles = data.SyntheticDigits(200, seed=0, rotated=True).angles
    counts = torch.histc(angles, bins=4, min=0, max=2 * math.pi)
    assert counts.min() > 25


def test_synthetic_other_size() -> None:
    ds = data.SyntheticDigits(10, size=32, seed=0)
    assert ds.images.shape == (10, 1, 32, 32)


# ---------------------------------------------------------------------------------------
# rotate_images
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_rotate_images_quarter_turns_match_rot90(k: int) -> None:
    x = torch.rand(2, 3, 7, 7, dtype=torch.float64)
    out = data.rotate_images(x, k * math.pi / 2)
    assert torch.allclose(out, torch.rot90(x, k, dims=(-2, -1)), atol=1e-12)


@pytest.mark.parametrize(("group", "h"), [("r8", 1), ("r12", 5), ("r16", 3)])
def test_rotate_images_matches_the_group_action(group: str, h: int) -> None:
    from gsa_tutorial.groups import get_group

    x = torch.rand(2, 1, 9, 9, dtype=torch.float64)
    angle = get_group(group).angle(h)
    assert torch.allclose(data.rotate_images(x, angle), act_on_image(group, h, x), atol=1e-12)


def test_rotate_images_per_sample_angles() -> None:
    x = torch.rand(3, 1, 8, 8)
    angles = torch.tensor([0.3, 1.0, 4.0])
    batch = data.rotate_images(x, angles)
    single = torch.cat([data.rotate_images(x[i : i + 1], angles[i]) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-6)


def test_rotate_images_rejects_uint8() -> None:
    with pytest.raises(TypeError, match="floating point"):
        data.rotate_images(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 0.5)


# ---------------------------------------------------------------------------------------
# get_dataset
# ---------------------------------------------------------------------------------------


def test_get_dataset_unknown_name_lists_names() -> None:
    with pytest.raises(ValueError) as info:
        data.get_dataset("imagenet", "train")
    assert all(name in str(info.value) for name in data.DATASET_NAMES)


def test_get_dataset_synthetic_splits_differ() -> None:
    train = data.get_dataset("synthetic", "train", n=20)
    test = data.get_dataset("synthetic", "test", n=20)
    rotated = data.get_dataset("synthetic-rotated", "test", n=20)
    assert isinstance(train, data.SyntheticDigits) and not train.rotated and rotated.rotated
    assert not torch.equal(train.images, test.images)
    assert len(data.get_dataset("synthetic", "valid")) == data.SYNTHETIC_SIZES["valid"]


def test_get_dataset_real_sets(rotmnist_root: Path, cifar_root: Path) -> None:
    assert len(data.get_dataset("rotmnist", "valid", root=rotmnist_root)) == 2
    assert len(data.get_dataset("cifar10", "train", root=cifar_root, valid_size=10)) == 40


def test_get_dataset_mnist_idx_rotated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx_pair(tmp_path / "mnist", "t10k", 20)
    monkeypatch.setattr(data.MNISTIDX, "MD5", {})
    ds = data.get_dataset("mnist-idx-rotated", "test", root=tmp_path)
    assert isinstance(ds, data.RotatedMNISTFromIDX) and len(ds) == 8


@pytest.mark.parametrize("name", data.DATASET_NAMES)
def test_dataset_info(name: str) -> None:
    info = data.dataset_info(name)
    assert info.in_channels in (1, 3) and info.num_classes in (2, 10) and info.image_size in (28, 32, 96)


# ---------------------------------------------------------------------------------------
# kills, stale temporary files, damaged caches
# ---------------------------------------------------------------------------------------

KILL_DURING_DOWNLOAD = r"""
import sys, time
from gsa_tutorial import data
target, marker = sys.argv[1], sys.argv[2]
class Stalling:
    headers = {"Content-Length": "2000"}
    def __init__(self): self.sent = False
    def read(self, n=-1):
        if not self.sent:
            self.sent = True
            return b"x" * 1000
        open(marker, "w").close()
        time.sleep(60)
    def __enter__(self): return self
    def __exit__(self, *exc): return None
data.files.urlopen = lambda request, timeout=None: Stalling()
data.download_url("https://example.org/f.bin", target, None, progress=False)
"""


def test_sigkill_during_a_download_then_a_rerun_leaves_no_part_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import time

    target, marker = tmp_path / "f.bin", tmp_path / "downloading"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILL_DURING_DOWNLOAD, str(target), str(marker)], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup is possible in the killed process
    proc.wait(timeout=30)
    parts = [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert parts and all(p.startswith(".f.bin.") for p in parts)
    payload = os.urandom(3000)
    serve(monkeypatch, payload)
    data.download_url("https://example.org/f.bin", target, hashlib.md5(payload).hexdigest(), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloading", "f.bin"]
    assert target.read_bytes() == payload


def test_a_live_writers_temporary_file_is_not_removed(tmp_path: Path) -> None:
    from gsa_tutorial._io import atomic_write, temporaries_of

    target = tmp_path / "x.bin"
    with atomic_write(target) as outer:
        outer.write(b"outer")
        with atomic_write(target) as inner:  # a second write of the same file in this process
            inner.write(b"inner")
        assert len(temporaries_of(target)) == 1  # the outer one is still there
    assert target.read_bytes() == b"outer" and temporaries_of(target) == []


@pytest.mark.parametrize("writer", ["atomic_write", "download_url", "cache", "checkpoint"])
def test_a_failed_rename_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str) -> None:
    """The write itself succeeds, then renaming it onto the target fails (the target is a folder):
    every writer of the package goes through atomic_write, which must remove its temporary file."""
    from gsa_tutorial._io import atomic_write
    from gsa_tutorial.train import save_checkpoint

    target = tmp_path / "target.bin"
    target.mkdir()  # os.replace(file, folder) fails
    (target / "inside").write_text("keeps the folder non-empty")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(OSError):
        if writer == "atomic_write":
            with atomic_write(target) as f:
                f.write(b"complete")
        elif writer == "download_url":
            serve(monkeypatch, b"complete")
            data.download_url("https://example.org/target.bin", target, None, progress=False)  # DatasetNotFoundError
        elif writer == "cache":
            with pytest.warns(UserWarning, match="damaged"):  # a folder is no cache: rebuilt, then written
                data.files.cached(
                    target, lambda: (torch.zeros(1, 28, 28, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64)), image_shape=(28, 28), num_classes=10
                )
        else:
            save_checkpoint({"model": {}}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no .target.bin.*.tmp / .part left


@pytest.mark.parametrize("damage", ["garbage", "wrong-content"])
def test_damaged_cache_is_rebuilt_with_a_warning(rotmnist_root: Path, damage: str) -> None:
    first = data.RotatedMNIST(rotmnist_root, split="test")
    cache = first.cache_path("test")
    if damage == "garbage":
        cache.write_bytes(b"\x00not a torch file")
    else:
        torch.save({"images": torch.zeros(3, 14, 14, dtype=torch.uint8), "labels": torch.tensor([0, 1, 99])}, cache)
    with pytest.warns(UserWarning, match="damaged or out of date"):
        again = data.RotatedMNIST(rotmnist_root, split="test")
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: no warning the second time
        data.RotatedMNIST(rotmnist_root, split="test")
