"""The shipped real digits (``mnist-mini``), their build script, and chapter 8's pretrained weights."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import gsa_tutorial
from gsa_tutorial import pretrained as pretrained_module
from gsa_tutorial.data import (
    DATASET_NAMES,
    MNIST_MINI_SHA256,
    MNIST_MINI_SIZES,
    ChecksumError,
    MNISTMini,
    dataset_info,
    get_dataset,
    load_mnist_idx,
    rotate_images,
)
from gsa_tutorial.data import mnist as data_module
from gsa_tutorial.pretrained import (
    PRETRAINED_SPECS,
    PretrainedChecksumError,
    build_record,
    list_pretrained,
    load_pretrained,
    pretrained_info,
    state_dict_sha256,
)

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(gsa_tutorial.__file__).parent / "assets"
SHIPPED = ASSETS / "mnist_mini.npz"


def _shared_mnist() -> Path | None:
    for parent in REPO.parents:
        folder = parent / "shared" / "data" / "mnist"
        if (folder / "t10k-images-idx3-ubyte.gz").exists() and (folder / "t10k-labels-idx1-ubyte.gz").exists():
            return folder
    return None


def _build_script():
    spec = importlib.util.spec_from_file_location("build_mnist_subset", REPO / "tools" / "build_mnist_subset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------
# The shipped file
# ---------------------------------------------------------------------------------------


def test_shipped_file_has_the_recorded_sha256_and_is_small():
    raw = SHIPPED.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == MNIST_MINI_SHA256
    assert len(raw) < 700_000, f"{SHIPPED} is {len(raw):,} bytes; it should stay well under 1 MB"


def test_shipped_arrays_have_the_documented_shapes_and_labels():
    with np.load(SHIPPED, allow_pickle=False) as z:
        assert sorted(z.files) == ["images", "labels", "source_index"]
        images, labels, source = z["images"], z["labels"], z["source_index"]
    n = sum(MNIST_MINI_SIZES.values())
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.uint8 and set(labels.tolist()) == set(range(10))
    assert source.shape == (n,) and len(set(source.tolist())) == n, "a digit appears twice: splits would overlap"
    assert int(source.max()) < 10_000
    assert images.max() == 255 and images.min() == 0


def test_attribution_and_licence_are_stated_beside_the_data_and_in_the_readme():
    note = (ASSETS / "MNIST_MINI_README.md").read_text()
    readme = (REPO / "README.md").read_text()
    for text in (note, readme):
        assert "LeCun" in text and "Cortes" in text and "Burges" in text
        assert "CC BY-SA 3.0" in text


def test_package_data_ships_the_assets():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert "assets/*.npz" in pyproject and "assets/pretrained/*.pt" in pyproject and "assets/pretrained/*.json" in pyproject


@pytest.mark.skipif(_shared_mnist() is None, reason="the MNIST IDX files (shared/data/mnist) are not on this machine")
def test_build_script_reproduces_the_shipped_file(tmp_path):
    folder = _shared_mnist()
    out = tmp_path / "mnist_mini.npz"
    digest = _build_script().build(folder, out)
    with np.load(out) as new, np.load(SHIPPED) as old:
        for key in ("images", "labels", "source_index"):
            np.testing.assert_array_equal(new[key], old[key])
        images, labels = load_mnist_idx(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
        index = old["source_index"].astype(np.int64)
        np.testing.assert_array_equal(old["images"], images.numpy()[index])  # pixels unchanged
        np.testing.assert_array_equal(old["labels"], labels.numpy()[index])
    assert digest == MNIST_MINI_SHA256


def test_build_script_refuses_files_with_a_wrong_md5(tmp_path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(b"not the MNIST file")
    with pytest.raises(SystemExit, match="published md5"):
        _build_script().build(tmp_path, tmp_path / "out.npz")


# ---------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------


def test_names_are_registered():
    for name in ("mnist-mini", "mnist-mini-rotated"):
        assert name in DATASET_NAMES
        info = dataset_info(name)
        assert (info.in_channels, info.image_size, info.num_classes) == (1, 28, 10)


@pytest.mark.parametrize("name", ["mnist-mini", "mnist-mini-rotated"])
def test_splits_have_the_documented_sizes_and_are_disjoint(name):
    sets = {split: get_dataset(name, split) for split in ("train", "valid", "test")}
    for split, dataset in sets.items():
        assert len(dataset) == MNIST_MINI_SIZES[split]
        image, label = dataset[0]
        assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and 0 <= label < 10
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    seen = [set(d.source_indices.tolist()) for d in sets.values()]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


def test_upright_digits_are_the_stored_pixels():
    upright = MNISTMini("valid")
    with np.load(SHIPPED) as z:
        start = MNIST_MINI_SIZES["train"]
        np.testing.assert_array_equal(upright.images[:, 0].numpy(), z["images"][start : start + len(upright)])
    assert torch.equal(upright.angles, torch.zeros(len(upright), dtype=torch.float64))


def test_rotated_digits_are_the_upright_ones_turned_by_seeded_angles():
    upright, rotated = MNISTMini("test"), MNISTMini("test", rotated=True, seed=0)
    assert torch.equal(upright.labels, rotated.labels)
    assert float(rotated.angles.min()) >= 0.0 and float(rotated.angles.max()) < 2 * math.pi
    assert float(rotated.angles.std()) > 1.0  # spread over the circle, not constant
    expected = rotate_images(upright.images[:16].float() / 255, rotated.angles[:16])
    assert torch.equal(rotated.images[:16], torch.round(expected.clamp(0, 1) * 255).to(torch.uint8))
    again, other = MNISTMini("test", rotated=True, seed=0), MNISTMini("test", rotated=True, seed=1)
    assert torch.equal(again.images, rotated.images) and torch.equal(again.angles, rotated.angles)
    assert not torch.equal(other.angles, rotated.angles)


def test_get_dataset_passes_the_angle_seed():
    a = get_dataset("mnist-mini-rotated", "train", seed=3)
    assert torch.equal(a.angles, MNISTMini("train", rotated=True, seed=3).angles)


def test_a_damaged_file_raises_a_checksum_error(monkeypatch):
    data_module._mnist_mini_arrays.cache_clear()
    monkeypatch.setattr(data_module, "MNIST_MINI_SHA256", "0" * 64)
    try:
        with pytest.raises(ChecksumError, match="expected 0000"):
            MNISTMini("train")
    finally:
        monkeypatch.undo()
        data_module._mnist_mini_arrays.cache_clear()


def test_cli_small_preset_defaults_to_the_shipped_digits(tmp_path, capsys):
    from gsa_tutorial.train import main

    record = main(["--group", "z2", "--epochs", "1", "--train-size", "32", "--valid-size", "32", "--test-size", "32",
                   "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu"])
    assert "data mnist-mini-rotated (train 32, valid 32, test 32)" in capsys.readouterr().out
    assert record["finished"] and record["test"]["n"] == 32


# ---------------------------------------------------------------------------------------
# Pretrained weights
# ---------------------------------------------------------------------------------------


def test_manifest_holds_every_spec_with_its_full_config():
    assert list_pretrained() == sorted(PRETRAINED_SPECS)
    for name, spec in PRETRAINED_SPECS.items():
        info = pretrained_info(name)
        assert info["spec"]["group"] == spec.group and info["model_config"]["group"] == spec.group
        assert info["spec"]["dataset"] == spec.dataset and info["train_config"]["epochs"] == spec.epochs
        assert {"sha256", "file", "epoch1_sha256", "weights_sha256", "torch", "test", "best"} <= set(info)
        assert info["model_config"]["group_encoding"]  # the encoding the weights were trained with


def test_groups_have_matched_parameter_counts():
    counts = {pretrained_info(n)["spec"]["group"]: pretrained_info(n)["num_parameters"] for n in PRETRAINED_SPECS}
    assert max(counts.values()) / min(counts.values()) < 1.05, counts


@pytest.mark.parametrize("name", sorted(PRETRAINED_SPECS))
def test_load_pretrained_gives_the_recorded_weights(name):
    model = load_pretrained(name)
    assert not model.training
    assert state_dict_sha256(model.state_dict()) == pretrained_info(name)["weights_sha256"]


@pytest.mark.parametrize("name", ["upright-z2-seed0", "upright-r4-seed0"])
def test_load_pretrained_reproduces_the_recorded_validation_accuracy(name):
    from gsa_tutorial.train import evaluate

    info = pretrained_info(name)
    valid = get_dataset(info["spec"]["dataset"], "valid")
    result = evaluate(load_pretrained(name), valid, batch_size=2 * info["train_config"]["batch_size"])
    assert result["acc"] == info["best"]["valid_acc"]


def test_a_tampered_weights_file_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "pretrained"
    shutil.copytree(ASSETS / "pretrained", folder)
    name = "upright-z2-seed0"
    path = folder / pretrained_info(name)["file"]
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF
    path.write_bytes(bytes(raw))
    monkeypatch.setattr(pretrained_module, "_assets", lambda: folder)
    with pytest.raises(PretrainedChecksumError, match="build_pretrained.py --only upright-z2-seed0"):
        load_pretrained(name)


def test_unknown_record_names_are_listed():
    with pytest.raises(ValueError, match="rotated-r4-seed0"):
        load_pretrained("rotated-r5-seed0")


def test_state_dict_hash_sees_one_changed_value():
    state = {"a": torch.zeros(3), "b": torch.tensor(1)}
    before = state_dict_sha256(state)
    state["a"][1] = 1e-30
    assert state_dict_sha256(state) != before


@pytest.mark.slow
def test_retraining_reproduces_the_first_epoch_of_a_shipped_record():
    """One epoch of the cheapest record, from scratch: bitwise the weights the manifest hashed.

    It fails when the model's arithmetic changed since the records were built (e.g. a new
    default encoding): rebuild them with ``python tools/build_pretrained.py``.
    """
    name = "upright-z2-seed0"
    _, entry = build_record(name, epochs_only=1)
    assert entry["epoch1_sha256"] == pretrained_info(name)["epoch1_sha256"]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GSA_RETRAIN") != "1", reason="a full retrain takes a minute or more; set GSA_RETRAIN=1")
def test_retraining_reproduces_a_whole_shipped_record():
    name = "upright-z2-seed0"
    model, entry = build_record(name)
    assert entry["weights_sha256"] == pretrained_info(name)["weights_sha256"]
    assert entry["test"] == pretrained_info(name)["test"]


def test_accuracy_by_angle_groups_the_test_digits_by_their_own_angles():
    from gsa_tutorial.pretrained import accuracy_by_angle

    class AlwaysOne(torch.nn.Module):  # predicts class 1 for every image
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.nn.functional.one_hot(torch.ones(x.shape[0], dtype=torch.long), 10).float() + 0 * self.w

    dataset = MNISTMini("test", rotated=True)
    result = accuracy_by_angle(AlwaysOne(), dataset, bins=4, batch_size=300)
    ones = dataset.labels == 1
    assert result["accuracy"] == pytest.approx(float(ones.double().mean()))
    quarter = (dataset.angles // (math.pi / 2)).long()
    for b in range(4):
        assert result["bin_count"][b] == int((quarter == b).sum())
        assert result["bin_accuracy"][b] == pytest.approx(float(ones[quarter == b].double().mean()))
    assert result["angles"] == pytest.approx([math.pi / 4 + b * math.pi / 2 for b in range(4)])
