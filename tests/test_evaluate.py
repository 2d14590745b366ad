"""`python -m gsa_tutorial.evaluate`: the numbers of a trained run, read back without writing code.

One tiny run (8x8 synthetic digits, a few hundred parameters, two epochs) is trained once by
the training CLI; every test evaluates it.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest
import torch
from torch import nn

import gsa_tutorial.evaluate as ev
from gsa_tutorial.train import load_model
from gsa_tutorial.train import main as train_main

SIZE = 8
TINY = dict(channels=6, num_blocks=1, heads=2, dim_head=3, window=3, pos_hidden=4, input_pool=1, pool_after=[], norm="layer")
DATA = ["--dataset=synthetic-rotated", f"--data-option=size={SIZE}"]
N_TEST = 24


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    train_main(
        [
            "--preset=small", "--group=r4", *DATA, "--train-size=32", "--valid-size=16", f"--test-size={N_TEST}",
            "--epochs=2", "--batch-size=8", "--lr=0.01", "--device=cpu", "--no-progress", f"--out={out}",
            *[f"--model={k}={json.dumps(v)}" for k, v in TINY.items()],
        ]
    )  # fmt: skip
    return out


def evaluate_args(run: Path, *extra: str) -> list[str]:
    return [str(run), *DATA, f"--size={N_TEST}", f"--angle-images={N_TEST}", "--device=cpu", *extra]


def test_report_matches_the_runs_own_test_evaluation(run: Path) -> None:
    report = ev.evaluate_run(run, dataset="synthetic-rotated", size=N_TEST, angle_images=N_TEST, device="cpu",
                             data_options={"size": SIZE})  # fmt: skip
    record = json.loads((run / "metrics.json").read_text())
    assert report["checkpoint"] == str(run / "best.pt")
    assert report["test"]["n"] == N_TEST == record["test"]["n"]
    assert report["test"]["acc"] == pytest.approx(record["test"]["acc"], abs=1e-12)
    assert report["test"]["loss"] == pytest.approx(record["test"]["loss"], rel=1e-6)
    assert report["best_epoch"] == record["best"]["epoch"]
    assert report["num_parameters"] == record["num_parameters"]


def test_angle_curve_is_flat_at_multiples_of_90_degrees_and_starts_at_the_test_accuracy(run: Path) -> None:
    report = ev.evaluate_run(run, dataset="synthetic-rotated", size=N_TEST, angle_images=N_TEST, device="cpu",
                             angles_deg=[0, 45, 90, 180, 270], data_options={"size": SIZE})  # fmt: skip
    acc = dict(zip(report["angles"]["angles_deg"], report["angles"]["accuracy"]))
    assert acc[0.0] == pytest.approx(report["test"]["acc"], abs=1e-12)
    assert acc[90.0] == acc[180.0] == acc[270.0] == acc[0.0]  # an R4-invariant network
    assert len(acc) == 5


def test_invariance_check_of_the_loaded_model_is_exact(run: Path) -> None:
    report = ev.evaluate_run(run, dataset="synthetic-rotated", size=N_TEST, angle_images=4, device="cpu",
                             angles_deg=[0], data_options={"size": SIZE})  # fmt: skip
    inv = report["invariance"]
    assert inv["passed"] and inv["group"] == "r4"
    assert set(inv["errors"]) == {"e", "r^1", "r^2", "r^3"}
    assert inv["max_error"] <= 1e-12


def test_invariance_check_fails_for_a_network_that_is_not_invariant() -> None:
    torch.manual_seed(0)
    images = torch.rand(3, 1, SIZE, SIZE)
    broken = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 10))  # sees where pixels are
    inv = ev.invariance_check(broken, "r4", images)
    assert not inv["passed"]
    assert inv["errors"]["e"] == 0.0 and inv["max_error"] > 1e-3


def test_cli_prints_every_section_writes_json_and_a_two_panel_plot(run: Path, tmp_path: Path, capsys) -> None:
    status = ev.main(evaluate_args(run, "--angles=0,90", f"--plot={tmp_path / 'eval.png'}", f"--json={tmp_path / 'eval.json'}"))
    out = capsys.readouterr().out
    assert status == 0
    record = json.loads((run / "metrics.json").read_text())
    assert f"accuracy {record['test']['acc']:.4f}" in out
    assert "    90.0°" in out and "invariance   invariant under the grid-exact elements of r4" in out
    numbers = json.loads((tmp_path / "eval.json").read_text())
    assert numbers["angles"]["angles_deg"] == [0.0, 90.0] and numbers["invariance"]["passed"] is True
    picture = matplotlib.image.imread(tmp_path / "eval.png")
    assert picture.shape[0] > 500 and picture.shape[1] >= 800  # training curves above the angle curve


def test_cli_exit_status_is_1_when_the_loaded_network_is_not_invariant(run: Path, monkeypatch, capsys) -> None:
    class Broken(nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model, self.config = model, model.config

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x) + x[:, :, 0, :].sum(dim=(1, 2))[:, None]  # depends on the top row

    monkeypatch.setattr(ev, "load_model", lambda path: Broken(load_model(path)))
    assert ev.main(evaluate_args(run, "--angles=0")) == 1
    assert "NOT invariant" in capsys.readouterr().out


def test_a_checkpoint_file_works_like_its_run_folder(run: Path) -> None:
    checkpoint, record = ev.resolve_checkpoint(run / "last.pt")
    assert checkpoint == run / "last.pt" and record is not None and record["finished"]
    assert ev.resolve_checkpoint(run)[0] == run / "best.pt"


def test_clear_errors_for_a_wrong_path_and_an_unknown_data_set(run: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="folder without best.pt or last.pt"):
        ev.main([str(tmp_path)])
    with pytest.raises(SystemExit, match="does not exist"):
        ev.main([str(tmp_path / "missing.pt")])
    with pytest.raises(SystemExit, match="pass --dataset NAME .*synthetic-rotated"):
        ev.main([str(run)])
    with pytest.raises(SystemExit, match="unknown data set 'mnist'"):
        ev.main([str(run), "--dataset=mnist"])
