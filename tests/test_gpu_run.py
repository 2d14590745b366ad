"""The prepared GPU run, rehearsed on the CPU (``--device cpu --smoke``), and ``max_minutes``.

The smoke run reads small MNIST-format IDX files that this file writes (never ../shared/data),
runs every phase of ``benchmarks.gpu_run`` at tiny sizes, and the JSON, the checkpoints and the
README table it writes are checked here, so that a GPU call can fail only for GPU reasons.
"""

from __future__ import annotations

import json
import math
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import gpu_run
from gsa_tutorial.data import get_dataset
from gsa_tutorial.model import GSANet, GSANetConfig
from gsa_tutorial.train import TrainConfig, fit, load_checkpoint, load_model, main
from gsa_tutorial.train.distributed import _Dist
from gsa_tutorial.train.loop import _over_budget

N_DIGITS = 100  # -> 50 train / 10 valid / 40 test


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """An uncompressed IDX file (the MNIST format: magic, big-endian sizes, unsigned bytes)."""
    path.write_bytes(struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, n: int = N_DIGITS) -> Path:
    """t10k-* IDX files of n synthetic digits, in ``root/mnist`` (raw files carry no checksum)."""
    folder = root / "mnist"
    folder.mkdir(parents=True)
    images, labels = get_dataset("synthetic", "train", n=n, size=28).tensors()
    write_idx(folder / "t10k-images-idx3-ubyte", (images[:, 0].numpy() * 255).round(), 0x803)
    write_idx(folder / "t10k-labels-idx1-ubyte", labels.numpy(), 0x801)
    return root


def finite_numbers(obj, path: str = ""):
    """Every number inside a JSON value, with where it is (None is allowed, NaN is not)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, (int, float)):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from finite_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from finite_numbers(v, f"{path}[{i}]")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run for the whole module: (output folder, gpu.json, wall seconds)."""
    base = tmp_path_factory.mktemp("gpu_run")
    data = write_mnist_like(base / "data")
    out = base / "out"
    t0 = time.perf_counter()
    code = gpu_run.main(["--device", "cpu", "--smoke", "--out", str(out), "--work", str(base / "work"), "--data-dir", str(data),
                         "--groups", "z2,r4"])
    seconds = time.perf_counter() - t0
    print(f"smoke run: {seconds:.1f} s")
    return out, json.loads((out / "gpu.json").read_text()), code, seconds


def test_smoke_run_succeeds_and_writes_at_most_eight_files(smoke):
    out, result, code, seconds = smoke
    assert code == 0, result["meta"]["failures"]
    assert result["meta"]["status"] == "complete" and result["meta"]["failures"] == []
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([*gpu_run.RESULT_FILES, "attention-cpu.json"]), files
    assert len(files) <= 8  # what the device tool brings back
    assert result["meta"]["wall_s"] < 60 * result["meta"]["budget_minutes"]


def test_smoke_json_has_every_phase_and_only_finite_numbers(smoke):
    _, result, _, _ = smoke
    assert set(result) == {"meta", "tests", "attention", "sweep", "training"}
    numbers = list(finite_numbers(result))
    assert numbers and all(math.isfinite(v) for _, v in numbers), [p for p, v in numbers if not math.isfinite(v)]
    tests = result["tests"]
    assert tests["ok"] and tests["failed"] == 0 and tests["errors"] == 0 and tests["passed"] >= 2  # the profiling fakes
    attention = result["attention"]
    assert attention["ok"] and attention["layers"][0]["config"] == "rotmnist-z2"
    assert attention["layers"][0]["group_fast"]["time_s"] > 0
    sweep = result["sweep"]["rows"]
    assert [(r["group"], r["batch"]) for r in sweep] == [("z2", 4), ("r4", 4)]
    assert all(r["step_s"] > 0 and r["images_per_s"] > 0 and r["peak_bytes"] > 0 for r in sweep)


def test_smoke_training_records_what_the_table_needs(smoke):
    _, result, _, _ = smoke
    training = result["training"]
    data = training["data"]
    assert data["sizes"] == {"train": 50, "valid": 10, "test": 40} and data["disjoint"]
    assert data["source"] == "test" and data["seed"] == 0 and set(data["files"]) == {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}
    runs = {r["group"]: r for r in training["runs"]}
    assert set(runs) == {"z2", "r4"}
    for r in runs.values():
        assert r["epochs_done"] == 2 and r["finished"] and r["stop"]["reason"] == "epochs"
        assert len(r["epoch_s"]) == 2 and r["epoch_s_mean"] > 0 and r["epoch_images_per_s"] > 0
        assert 0 <= r["test_acc"] <= 1 and r["test_n"] == 40
        assert r["process_max_rss_bytes"] > 0 and r["peak_allocated_bytes"] is None  # CPU: no GPU peak
        assert r["invariance_error"]["float64"] < 1e-10 and r["invariance_error"]["float32"] < 1e-4
        assert r["train_config"]["max_minutes"] == pytest.approx(r["budget_s"] / 60)


def test_smoke_checkpoints_load_and_match_their_sha256(smoke, tmp_path):
    out, result, _, _ = smoke
    with tarfile.open(out / "checkpoints.tar") as tar:
        tar.extractall(tmp_path, filter="data")
    for r in result["training"]["runs"]:
        folder = tmp_path / f"small-{r['group']}"
        for name, info in r["checkpoints"].items():
            assert gpu_run._sha256(folder / name) == info["sha256"]
        model = load_model(folder / "best.pt").eval()
        assert model.config.group == r["group"]
        with torch.no_grad():
            assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
        last = load_checkpoint(folder / "last.pt")
        assert last["epoch"] == 2 and {"optimizer", "scheduler", "rng"} <= set(last)
        assert json.loads((folder / "metrics.json").read_text())["test"]["n"] == 40


def test_table_renders_from_the_smoke_json(smoke, tmp_path, capsys):
    out, result, _, _ = smoke
    table = gpu_run.render_tables(result)
    assert "| group | parameters | epochs | s/epoch | images/s | peak GPU memory | valid acc | test acc | stopped by |" in table
    assert "| z2 |" in table and "| r4 |" in table and "smoke run" in table
    assert gpu_run.main(["--table", str(out / "gpu.json")]) == 0
    assert capsys.readouterr().out.strip() == table
    assert gpu_run.main(["--table", str(tmp_path / "missing.json")]) == 1
    assert "no GPU run has been made yet" in capsys.readouterr().out


def test_missing_data_is_recorded_and_fails_the_run(tmp_path):
    code = gpu_run.main(["--device", "cpu", "--smoke", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--data-dir", str(tmp_path / "none"),
                         "--skip", "tests,attention,sweep"])
    result = json.loads((tmp_path / "out" / "gpu.json").read_text())
    assert code == 1 and result["meta"]["failures"] == ["training"]
    assert "DatasetNotFoundError" in result["training"]["error"] and result["tests"] == {"skipped": "--skip"}


def test_cuda_without_a_gpu_is_refused(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_run.main(["--device", "cuda"]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err


# ---- max_minutes: a time budget that stops at an epoch boundary ----------------------------


def tiny() -> GSANet:
    torch.manual_seed(0)
    return GSANet(GSANetConfig(group="r4", channels=6, num_blocks=1, heads=2, dim_head=3, window=3, pos_hidden=4))


def digits(split: str, n: int):
    return get_dataset("synthetic", split, n=n, size=8)


def quiet(**kw) -> TrainConfig:
    return TrainConfig(**{"progress": False, "verbose": False, "device": "cpu", "epochs": 3, "batch_size": 8, "lr": 1e-2, **kw})


def test_over_budget_judges_from_the_longest_epoch_so_far():
    now = time.perf_counter()
    assert not _over_budget(now - 50, [], 1.0, torch.device("cpu"), _Dist())  # the first epoch always runs
    assert not _over_budget(now - 50, [5.0, 8.0], 1.0, torch.device("cpu"), _Dist())  # 50 + 8 < 60
    assert _over_budget(now - 50, [12.0, 8.0], 1.0, torch.device("cpu"), _Dist())  # 50 + 12 > 60


def test_tiny_budget_stops_after_one_epoch_tests_the_best_model_and_resumes(tmp_path):
    train, valid, test = digits("train", 16), digits("valid", 8), digits("test", 8)
    stopped = fit(tiny(), train, valid, quiet(max_minutes=1e-6), tmp_path / "run", test_set=test)
    assert len(stopped["history"]) == 1 and not stopped["finished"]
    assert stopped["stop"]["reason"] == "max_minutes" and stopped["stop"]["epochs_this_run"] == 1
    assert stopped["test"]["n"] == 8  # the best model is evaluated all the same
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["stop"]["reason"] == "max_minutes"

    resumed = fit(tiny(), train, valid, quiet(), tmp_path / "run", test_set=test, resume=True)
    whole = fit(tiny(), train, valid, quiet(), tmp_path / "whole", test_set=test)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3] and resumed["finished"]
    assert resumed["stop"]["reason"] == "epochs"
    for a, b in zip(resumed["history"], whole["history"]):  # stopping on the budget changes nothing
        assert {k: v for k, v in a.items() if k != "time_s"} == {k: v for k, v in b.items() if k != "time_s"}


def test_generous_budget_finishes_every_epoch(tmp_path):
    record = fit(tiny(), digits("train", 16), digits("valid", 8), quiet(epochs=2, max_minutes=60.0), tmp_path)
    assert record["finished"] and record["stop"]["reason"] == "epochs" and len(record["history"]) == 2


def test_cli_max_minutes_stops_and_resume_continues(tmp_path):
    args = ["--preset=small", "--group=r4", "--dataset=synthetic", "--data-option=size=8", "--train-size=16",
            "--valid-size=8", "--test-size=8", "--epochs=2", "--batch-size=8", "--device=cpu", "--no-progress",
            "--model=channels=6", "--model=num_blocks=1", "--model=heads=2", "--model=dim_head=3", "--model=window=3",
            "--model=input_pool=1", "--model=pool_after=[]", f"--out={tmp_path}"]
    first = main([*args, "--max-minutes=1e-6"])
    assert len(first["history"]) == 1 and first["stop"]["reason"] == "max_minutes" and first["test"]["n"] == 8
    second = main([*args, "--resume"])
    assert [r["epoch"] for r in second["history"]] == [1, 2] and second["finished"]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "5"])
def test_bad_max_minutes_is_refused(bad):
    with pytest.raises(ValueError, match="max_minutes must be a positive number"):
        TrainConfig(max_minutes=bad)
