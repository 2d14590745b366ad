"""The benchmark machinery (gsa_tutorial.profiling, benchmarks/attention.py) on tiny inputs.

Times are never asserted: only that the measurements exist, that the memory counter is right on
known allocations, and that the fast and dense group layers agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from gsa_tutorial import GroupSelfAttention, get_group
from gsa_tutorial.profiling import (
    LayerConfig,
    format_bytes,
    measure_layers,
    nongrid_equivariance_errors,
    paper_configs,
    peak_memory,
    results_table,
    score_tensor_sizes,
    time_step,
)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not part of the package
    sys.path.insert(0, str(ROOT))

from benchmarks.attention import main, run_benchmark, save_json  # noqa: E402

TINY = LayerConfig("tiny-r4", "r4", size=8, channels=4, heads=2, dim_head=2, window=3)
MEASURED = {"time_s", "times_s", "peak_bytes"}


# ---- the measuring functions -----------------------------------------------------------------


def test_peak_memory_counts_the_live_bytes_of_a_known_sequence():
    def allocate() -> None:
        a = torch.empty(1000, 1000)  # 4 MB
        b = torch.empty(2000, 1000)  # 8 MB: 12 MB live
        del a  # 8 MB live
        c = torch.empty(3000, 1000)  # 12 MB: 20 MB live, the peak
        del b, c

    assert peak_memory(allocate) == 20_000_000


def test_peak_memory_ignores_what_was_allocated_before():
    before = torch.empty(5_000_000)  # 20 MB, not part of the step

    def step() -> torch.Tensor:
        return before.clone()  # 20 MB more, returned and dropped inside the measurement

    assert peak_memory(step) == 20_000_000


def test_time_step_reports_the_median_of_the_repeats():
    calls = []
    timing = time_step(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5
    assert len(timing["times_s"]) == 3
    assert timing["median_s"] == sorted(timing["times_s"])[1]


@pytest.mark.parametrize("group", ["z2", "r4", "r12", "m4"])
def test_score_tensor_sizes_follow_the_powers_of_the_group_order(group):
    G = get_group(group).order
    sizes = score_tensor_sizes(group, 28, window=5, heads=9, batch=2)
    per_element = 2 * 9 * 28 * 28 * 25
    assert (sizes["lifting"], sizes["factorized"], sizes["dense"]) == (per_element * G, per_element * G**2, per_element * G**3)
    assert sizes["dense_bytes"] == 4 * sizes["dense"]


def test_format_bytes_uses_powers_of_1000():
    assert [format_bytes(v) for v in (512, 2_500, 3_910_000_000, None)] == ["512 B", "2.5 kB", "3.91 GB", "—"]


def test_paper_configs_are_the_ones_the_stored_benchmark_measured():
    # The README's table and chapter 9 show gsa_tutorial/results/cpu.json: the code must still
    # produce exactly the configurations measured there (names, sizes, widths, heads, windows).
    from dataclasses import asdict

    from gsa_tutorial.stored import load_results

    measured = [layer["config"] for layer in load_results("cpu")["layers"]]
    assert [asdict(c) for c in paper_configs(batch=measured[0]["batch"])] == measured


def test_paper_configs_follow_the_data_registry_and_the_model_presets():
    from gsa_tutorial.data import dataset_info
    from gsa_tutorial.model import GSANet, preset

    for c in paper_configs():
        dataset = c.name.split("-")[0]
        info = dataset_info(dataset)
        assert c.in_channels == info.in_channels, c.name
        # the layer's input size is a size the preset's network really attends at
        net = GSANet(preset(dataset, c.group))
        widths = {m.dim_head for m in net.modules() if isinstance(m, GroupSelfAttention)}
        assert c.size in {h for h, _ in net.config.feature_sizes(info.image_size)} | {info.image_size}, c.name
        assert preset(dataset).dim_head is None or widths == {c.dim_head}, (c.name, widths)


# ---- one tiny configuration, measured -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_result():
    return measure_layers(TINY, repeats=1, warmup=0)


def test_fast_and_dense_group_layers_agree(tiny_result):
    assert tiny_result["max_abs_diff"] < 1e-5 * max(tiny_result["max_abs_output"], 1.0)


def test_every_layer_is_measured(tiny_result):
    for key in ("lifting", "group_fast", "group_dense"):
        assert MEASURED <= set(tiny_result[key]), key
        assert tiny_result[key]["peak_bytes"] > 0, key
    assert tiny_result["speedup"] > 0 and tiny_result["memory_ratio"] > 0


def test_dense_reference_is_skipped_above_the_limit_with_a_reason():
    result = measure_layers(TINY, repeats=1, warmup=0, lifting=False, dense_limit_bytes=1000)
    assert result["group_dense"]["status"].startswith("skipped: the dense score tensor alone would take")
    assert result["speedup"] is None and result["memory_ratio"] is None
    assert "tiny-r4: dense skipped" in results_table([result])


def test_benchmark_json_has_the_expected_keys(tmp_path):
    result = run_benchmark([TINY], repeats=1, warmup=0, log=lambda _: None)
    path = save_json(result, tmp_path / "tiny.json")
    loaded = json.loads(path.read_text())
    assert set(loaded) == {"meta", "layers"}
    assert {"device", "device_name", "torch", "threads", "date", "load_average", "attention_py_sha256", "total_s"} <= set(loaded["meta"])
    (layer,) = loaded["layers"]
    assert {"config", "sizes", "lifting", "group_fast", "group_dense", "max_abs_diff", "speedup", "memory_ratio"} <= set(layer)
    assert layer["config"]["name"] == "tiny-r4"


def test_command_line_rejects_unknown_configurations():
    with pytest.raises(SystemExit, match="unknown configuration"):
        main(["--only", "mnist-r5", "--no-model", "--no-equivariance"])


# ---- approximate equivariance -----------------------------------------------------------------


def test_nongrid_errors_cover_exactly_the_non_grid_angles():
    errors = nongrid_equivariance_errors(("r8",), size=13, radius=3.0, channels=4, heads=2, dim_head=2)
    assert list(errors["r8"]) == ["45", "135", "225", "315"]
    assert all(1e-6 < e < 0.1 for e in errors["r8"].values())  # approximate, but not wild


# ---- figures ---------------------------------------------------------------------------------


def test_plot_cost_sweep_draws_two_panels_and_leaves_gaps():
    from gsa_tutorial.plotting import plot_cost_sweep

    fig = plot_cost_sweep(["r4", "r8"], {"dense": [1.0, None], "fast": [0.5, 0.6]}, {"dense": [2e6, None], "fast": [1e6, 1e6]}, xlabel="group")
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="has 1 values for 2 labels"):
        plot_cost_sweep(["r4", "r8"], {"fast": [1.0]}, {"fast": [1.0, 2.0]}, xlabel="group")


def test_plot_angle_errors_puts_every_angle_on_the_axis():
    from gsa_tutorial.plotting import plot_angle_errors

    fig = plot_angle_errors({"r8": {"45": 1e-2, "135": 2e-2}}, exact={"r8": {"0": 0.0, "90": 1e-16}})
    points = {(float(x), float(y)) for line in fig.axes[0].lines if line.get_marker() in ("o", "x") for x, y in line.get_xydata()}
    assert points == {(45.0, 1e-2), (135.0, 2e-2), (0.0, 1e-17), (90.0, 1e-16)}  # the exact 0 sits on the floor
