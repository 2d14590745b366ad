"""Tests of gsa_tutorial.plotting: each function draws the data it is given (checked against values
computed here, independently) and leaves pyplot alone."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from gsa_tutorial import plotting
from gsa_tutorial.images import sample_image


@pytest.fixture(autouse=True)
def _pyplot_untouched():
    rc_before = dict(matplotlib.rcParams)
    open_before = plt.get_fignums()
    yield
    assert plt.get_fignums() == open_before, "a plotting function left a figure open in pyplot"
    assert dict(matplotlib.rcParams) == rc_before, "a plotting function changed rcParams"


def _axes_with_images(fig: Figure) -> int:
    return sum(bool(ax.images) for ax in fig.axes)


def _shown(fig: Figure) -> list:
    """The arrays drawn by imshow, panel by panel (as numpy arrays)."""
    import numpy as np

    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]


def test_plot_images() -> None:
    import numpy as np

    images = [sample_image(12), torch.zeros(12, 12), torch.rand(3, 12, 12)]
    fig = plotting.plot_images(images, ["F", "zeros", "rgb"])
    assert [ax.get_title() for ax in fig.axes] == ["F", "zeros", "rgb"]
    shown = _shown(fig)
    assert np.array_equal(shown[0], images[0][0, 0].double().numpy())  # (1, 1, H, W) -> (H, W)
    assert np.array_equal(shown[1], np.zeros((12, 12)))
    assert np.array_equal(shown[2], images[2].permute(1, 2, 0).double().numpy())  # RGB channels last


def test_plot_images_grid_hides_spare_panels() -> None:
    fig = plotting.plot_images([sample_image(10)] * 5, ncols=3)
    assert len(fig.axes) == 6 and _axes_with_images(fig) == 5


def test_plot_images_rejects_mismatched_titles() -> None:
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        plotting.plot_images([sample_image(10)] * 2, ["one"])


def test_plot_images_rejects_a_batch() -> None:
    with pytest.raises(ValueError, match="expected an image"):
        plotting.plot_images([torch.zeros(2, 2, 8, 8)])


@pytest.mark.parametrize("points", [(3.0, 1.0), [[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [0.5, 2.0]]])
@pytest.mark.parametrize("group", ["r4", "m4", "r8"])
def test_plot_orbit(group: str, points) -> None:
    fig = plotting.plot_orbit(group, points)
    assert isinstance(fig, Figure)
    labels = [t.get_text() for t in fig.axes[0].texts]
    from gsa_tutorial.groups import get_group

    assert labels == get_group(group).element_names  # one label per element


def test_plot_orbit_rejects_bad_points() -> None:
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plotting.plot_orbit("r4", [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize(("group", "cells"), [("m4", 64), ("r16", 0)])
def test_plot_cayley_table(group: str, cells: int) -> None:
    import numpy as np

    from gsa_tutorial.groups import get_group

    g = get_group(group)
    fig = plotting.plot_cayley_table(group)
    expected = np.array([[g.compose(a, b) for b in g.elements] for a in g.elements])
    assert np.array_equal(_shown(fig)[0], expected)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == cells  # annotated for small groups only
    if cells:
        assert texts == [g.element_name(int(v)) for v in expected.flatten()]


@pytest.mark.parametrize("group", ["r4", "m4"])
def test_plot_group_action_on_image(group: str) -> None:
    import numpy as np

    from gsa_tutorial.groups import get_group

    g = get_group(group)
    x = sample_image(12, dtype=torch.float64)
    fig = plotting.plot_group_action_on_image(group, x)
    assert fig.axes[1].get_title().startswith(g.element_name(1))
    # r^1 is the 90° rotation: torch.rot90 of the image (chapter 2's convention, tested in test_actions)
    assert np.array_equal(_shown(fig)[1], torch.rot90(x[0, 0], 1, dims=(-2, -1)).numpy())
    assert np.array_equal(_shown(fig)[0], x[0, 0].numpy())


@pytest.mark.parametrize("shape", [(1, 3, 4, 6, 6), (3, 4, 6, 6), (4, 6, 6)])
def test_plot_lifted(shape) -> None:
    import numpy as np

    f = torch.rand(shape, dtype=torch.float64)
    fig = plotting.plot_lifted(f, "r4", max_channels=2)
    maps = f.reshape(-1, 4, 6, 6)[:2]  # (C', G, H, W)
    assert len(_shown(fig)) == maps.shape[0] * 4
    for panel, expected in zip(_shown(fig), maps.reshape(-1, 6, 6)):  # row = channel, column = element
        assert np.array_equal(panel, expected.numpy())


def test_plot_lifted_rejects_wrong_group_axis() -> None:
    with pytest.raises(ValueError, match=r"\|H\| = 8 for m4"):
        plotting.plot_lifted(torch.rand(1, 2, 4, 6, 6), "m4")


def test_plot_regular_representation() -> None:
    fig = plotting.plot_regular_representation("m4", 5)
    image = fig.axes[0].images[0].get_array()
    assert image.sum() == 8 and (image.sum(0) == 1).all() and (image.sum(1) == 1).all()  # a permutation


# ---- chapters 3 and 4 --------------------------------------------------------------------------


def test_window_to_image_places_the_window_around_the_query() -> None:
    weights = torch.arange(9, dtype=torch.float64)  # a 3x3 window, entry 4 is the query itself
    amap = plotting.window_to_image(weights, (0, 2), 4, 5)
    assert amap[0, 2] == 4 and amap[1, 3] == 8  # centre, and one row down / one column right
    assert amap.sum() == 3 + 4 + 5 + 6 + 7 + 8  # the top row of the window lies outside the image


def test_window_to_image_rejects_a_query_outside_the_image() -> None:
    with pytest.raises(ValueError, match="outside the 4x4 image"):
        plotting.window_to_image(torch.ones(9), (4, 0), 4, 4)


@pytest.mark.parametrize("window", [3, None])
def test_plot_attention_map(window) -> None:
    from gsa_tutorial import RelativeSelfAttention

    x = sample_image(9, dtype=torch.float64)
    layer = RelativeSelfAttention(1, 4, heads=2, window=window).double()
    weights = layer.attention_weights(x)[0, 1]  # (N, K)
    fig = plotting.plot_attention_map(x, weights, (4, 5))
    assert isinstance(fig, Figure)
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (9, 9) and abs(float(shown.sum()) - 1.0) < 1e-12  # the softmax sums to 1
    if window == 3:  # the 3x3 window around (4, 5), row-major, placed by hand
        expected = torch.zeros(9, 9, dtype=torch.float64)
        expected[3:6, 4:7] = weights[4 * 9 + 5].view(3, 3)
        assert (torch.as_tensor(shown) == expected).all()


def test_plot_errors_labels_zero_bars() -> None:
    errors = {"translation": [0.0, 1e-3], "rotation": [2e-16, 0.05]}
    fig = plotting.plot_errors(errors, ["none", "relative"], floor=1e-17)
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    assert heights == [1e-17, 1e-3, 2e-16, 0.05]  # series by series; a zero stops at the floor
    assert [t.get_text() for t in fig.axes[0].texts] == ["0", "1e-03", "2e-16", "5e-02"]


def test_plot_errors_rejects_a_short_series() -> None:
    with pytest.raises(ValueError, match="1 values for 2 labels"):
        plotting.plot_errors({"translation": [0.0]}, ["none", "relative"])


@pytest.mark.parametrize(("group", "on_grid"), [("r4", "25/25"), ("r8", "1/25")])
def test_plot_offsets_counts_grid_points(group: str, on_grid: str) -> None:
    fig = plotting.plot_offsets(group, 5)
    assert isinstance(fig, Figure)
    assert fig.axes[1].get_title().endswith(f"{on_grid} on grid")  # element 1: 90° or 45°


@pytest.mark.parametrize("group", ["r4", "m4"])
def test_plot_position_encoding(group: str) -> None:
    import numpy as np

    from gsa_tutorial.groups import get_group

    order = get_group(group).order
    maps = torch.randn(order, 5, 5, dtype=torch.float64)
    fig = plotting.plot_position_encoding(maps, group)
    shown = _shown(fig)
    assert len(shown) == order and all(np.array_equal(a, m.numpy()) for a, m in zip(shown, maps))
    vmax = float(maps.abs().max())
    assert fig.axes[0].images[0].get_clim() == (-vmax, vmax)  # centred colour scale


def test_plot_group_tables() -> None:
    from gsa_tutorial.positional import relative_group_index

    fig = plotting.plot_group_tables({"ours": relative_group_index("r4")[0], "official": relative_group_index("r4", "official")[1]}, "r4")
    assert isinstance(fig, Figure) and _axes_with_images(fig) == 2
    assert len(fig.axes[0].texts) == 16


def test_plot_group_tables_rejects_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(4, 4\)"):
        plotting.plot_group_tables({"bad": torch.zeros(3, 3, dtype=torch.long)}, "r4")


# ---- chapters 5 and 6: lifted maps of a rotated input, attention per element, errors, cost ----------


@pytest.mark.parametrize(("group", "r", "layout"), [("r4", 1, "rows"), ("m4", 4, "columns"), ("r8", 3, "rows")])
def test_plot_lifted_rotation_frames_follow_the_group_axis(group: str, r: int, layout: str) -> None:
    import numpy as np

    from gsa_tutorial.groups import get_group

    g = get_group(group)
    lifted = torch.rand(1, 2, g.order, 6, 6)
    fig = plotting.plot_lifted_rotation(lifted, lifted.flip(-1), g, r, image=torch.rand(1, 1, 6, 6), image_moved=torch.rand(1, 1, 6, 6), layout=layout)
    assert isinstance(fig, Figure) and _axes_with_images(fig) == 2 * (g.order + 1)
    grid = np.array(fig.axes, dtype=object).reshape((g.order + 1, 2) if layout == "rows" else (2, g.order + 1))
    panels = grid if layout == "rows" else grid.T  # (element + 1, side)
    import numpy as np

    for h in g.elements:  # the maps drawn: channel 0 of f (left) and of the moved map (right) at h
        assert np.array_equal(np.asarray(panels[h + 1, 0].images[0].get_array()), lifted[0, 0, h].double().numpy())
        assert np.array_equal(np.asarray(panels[h + 1, 1].images[0].get_array()), lifted.flip(-1)[0, 0, h].double().numpy())
    for h in g.elements:  # the right panel of h is framed like the left panel of r⁻¹h
        source = g.compose(g.inverse(r), h)
        right = panels[h + 1, 1].spines["left"].get_edgecolor()
        assert right == panels[source + 1, 0].spines["left"].get_edgecolor()
        assert (source == h) == (right == panels[h + 1, 0].spines["left"].get_edgecolor())


def test_plot_lifted_rotation_rejects_wrong_group_axis() -> None:
    with pytest.raises(ValueError, match=r"\|H\| = 8 for m4"):
        plotting.plot_lifted_rotation(torch.rand(1, 2, 4, 6, 6), torch.rand(1, 2, 4, 6, 6), "m4", 1)


def test_plot_query_attention_places_the_window_on_the_image() -> None:
    weights = torch.zeros(1, 2, 4, 49, 9)  # (B, heads, |H|, N = 7*7, K = 3*3)
    weights[0, 0, 2, 3 * 7 + 3, 5] = 1.0  # element r^2, query (3, 3): the key one column to the right
    fig = plotting.plot_query_attention([weights, weights], "r4", (3, 3), images=[torch.rand(1, 1, 7, 7)] * 2)
    assert isinstance(fig, Figure) and _axes_with_images(fig) == 8  # 2 rows x 4 elements
    shown = fig.axes[2].images[0].get_array()
    assert shown[3, 4] == 1.0 and shown.sum() == 1.0


def test_plot_query_attention_rejects_mismatched_queries() -> None:
    with pytest.raises(ValueError, match="2 weight tensors but 3 queries"):
        plotting.plot_query_attention([torch.rand(1, 1, 4, 25, 9)] * 2, "r4", [(1, 1)] * 3)


def test_plot_element_errors_draws_one_bar_per_series_and_element() -> None:
    errors = {
        "official": {"r4": {0: 0.0, 1: 0.3, 2: 0.2, 3: 0.3}, "m4": {h: 0.1 for h in range(8)}},
        "relative": {"r4": {0: 0.0, 1: 3e-16, 2: 2e-16, 3: 3e-16}, "m4": {h: 1e-16 for h in range(8)}},
    }
    fig = plotting.plot_element_errors(errors)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [len(ax.patches) for ax in fig.axes] == [2 * 4, 2 * 8]
    assert sum(bool(p.get_hatch()) for p in fig.axes[0].patches) == 2  # the two exact zeros at e
    heights = [bar.get_height() for bar in fig.axes[0].patches]  # series by series, elements in order
    assert heights == [1e-18, 0.3, 0.2, 0.3, 1e-18, 3e-16, 2e-16, 3e-16]  # a zero is drawn at the floor


def test_plot_element_errors_rejects_mismatched_groups() -> None:
    with pytest.raises(ValueError, match="expected"):
        plotting.plot_element_errors({"a": {"r4": {0: 0.1}}, "b": {"m4": {0: 0.1}}})


def test_plot_attention_cost() -> None:
    fig = plotting.plot_attention_cost(["z2", "r4", "r8"], [25, 1600, 12800], [25, 400, 1600])
    assert [bar.get_height() for bar in fig.axes[0].patches] == [25, 1600, 12800, 25, 400, 1600]
    with pytest.raises(ValueError, match="same length"):
        plotting.plot_attention_cost(["z2"], [1, 2], [1])


# ---- chapters 7 and 8 -------------------------------------------------------------------------------


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_plot_block_diagram_shows_both_sub_blocks_and_two_residual_sums() -> None:
    fig = plotting.plot_block_diagram(norm="GN", activation="Swish")
    texts = _texts(fig)
    assert isinstance(fig, Figure)
    assert texts.count("+") == 2, "one residual sum per sub-block"
    assert texts.count("GN") == 4 and texts.count("Swish") == 3
    assert any("self-attention" in t for t in texts) and "crop" in texts


@pytest.mark.parametrize("group", ["z2", "r4", "m4"])
def test_plot_network_diagram_lists_every_block_with_its_shape(group: str) -> None:
    from gsa_tutorial.groups import get_group
    from gsa_tutorial.model import preset

    config = preset("rotmnist", group)
    texts = _texts(plotting.plot_network_diagram(config, 28))
    G = get_group(group).order
    # rotMNIST by hand: lift 28, crop 2 -> 24, 24 -> pool 12, crop 2 -> 8, crop 1 -> 6, crop 1 -> 4
    shapes = [f"{w}×{G}×{side}²" for w, side in zip([22] * 7, [28, 24, 24, 12, 8, 6, 4])]
    assert [t for t in texts if "×" in t and "²" in t and t.count("×") == 2] == shapes
    assert [t for t in texts if t.startswith("block ")] == ["block 1\ncrop 2", "block 2", "block 3\ncrop 2", "block 4\ncrop 1", "block 5\ncrop 1"]
    assert "10 logits" in texts and "22" in texts  # the head: 22 pooled features, 10 logits


def test_plot_network_diagram_refuses_sizes_that_break_symmetry() -> None:
    from gsa_tutorial.model import preset

    with pytest.raises(ValueError, match="odd"):
        plotting.plot_network_diagram(preset("rotmnist", "r4"), 29)  # 29 -> crop 2 -> 25x25 at the 2x2 pooling


def test_plot_parameter_counts_one_panel_per_preset_and_a_paper_line() -> None:
    counts = {"rotmnist": {"z2": 41_000, "r4": 42_000}, "small": {"z2": 1_300, "r4": 1_350, "m4": 1_400}}
    fig = plotting.plot_parameter_counts(counts, {"rotmnist": 44_400})
    assert [[bar.get_height() for bar in ax.patches] for ax in fig.axes] == [[41_000, 42_000], [1_300, 1_350, 1_400]]
    assert [[t.get_text() for t in ax.texts] for ax in fig.axes] == [["41.0k", "42.0k"], ["1.3k", "1.4k", "1.4k"]]
    lines = [ax.get_lines() for ax in fig.axes]
    assert [len(ls) for ls in lines] == [1, 0], "only presets with a paper number get a line"
    assert list(lines[0][0].get_ydata()) == [44_400, 44_400]


def test_plot_parameter_counts_rejects_an_empty_preset() -> None:
    with pytest.raises(ValueError, match="at least one group"):
        plotting.plot_parameter_counts({"rotmnist": {}})


def test_plot_accuracy_vs_angle_draws_degrees() -> None:
    import math

    angles = [math.radians(a) for a in range(0, 361, 45)]
    fig = plotting.plot_accuracy_vs_angle({"R4": {"angles": angles, "accuracy": [0.9] * len(angles)}}, chance=None)
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == pytest.approx(list(range(0, 361, 45)))
    assert fig.axes[0].get_legend_handles_labels()[1] == ["R4"]


def test_plot_accuracy_vs_angle_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="3 angles but 2 accuracies"):
        plotting.plot_accuracy_vs_angle({"Z2": {"angles": [0.0, 1.0, 2.0], "accuracy": [0.5, 0.4]}})


def test_plot_training_curves_accepts_records_and_histories() -> None:
    history = [{"epoch": e, "train_loss": 1 / e, "valid_loss": 1.1 / e, "train_acc": 0.5, "valid_acc": 0.4} for e in (1, 2, 3)]
    fig = plotting.plot_training_curves({"Z2": {"history": history}, "R4": history})
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.get_lines()) == 4 and len(acc_ax.get_lines()) == 4  # train + valid per run
    assert list(acc_ax.get_lines()[1].get_ydata()) == [0.4, 0.4, 0.4]


def test_plot_training_curves_rejects_an_empty_run() -> None:
    with pytest.raises(ValueError, match="no epochs"):
        plotting.plot_training_curves({"Z2": []})


# ---- chapter 6: pair tables, the orientation probe, the encoding study ------------------------------


def test_plot_group_tables_labels_pair_entries_by_their_pairs() -> None:
    from gsa_tutorial.positional import relative_group_index

    pair = relative_group_index("r4", "pair")  # entry 4 a + b for the pair (a, b)
    fig = plotting.plot_group_tables({"pair, h = e": pair[0], "pair, h = r": pair[1]}, "r4")
    names = ["e", "r^1", "r^2", "r^3"]
    for ax, table in zip(fig.axes, (pair[0], pair[1])):
        texts = [t.get_text() for t in ax.texts]
        expected = [f"$({names[int(v) // 4]},{names[int(v) % 4]})$" for v in table.flatten()]
        assert texts == expected
        assert (ax.get_images()[0].get_array() == table.numpy()).all()
    assert fig.axes[0].texts[0].get_text() == "$(e,e)$" and fig.axes[1].texts[0].get_text() == "$(r^3,r^3)$"  # h⁻¹h̃ = h⁻¹ĥ = r⁻¹


def test_plot_group_tables_keeps_element_names_and_checks_entries() -> None:
    from gsa_tutorial.positional import relative_group_index

    fig = plotting.plot_group_tables({"gevit": relative_group_index("r4", "gevit")[1]}, "r4")
    assert all(not t.get_text().startswith("$(") for t in fig.axes[0].texts)
    with pytest.raises(ValueError, match="entries must be"):
        plotting.plot_group_tables({"x": torch.zeros(4, 4, dtype=torch.long)}, "r4", entries=5)
    with pytest.raises(ValueError, match=r"expected 0\.\.3"):
        plotting.plot_group_tables({"x": torch.full((4, 4), 7)}, "r4", entries=4)


def test_plot_orientation_probe_draws_the_normalised_outputs() -> None:
    import numpy as np

    flat = torch.tensor([[2.0, 2.0, 2.0, 2.0], [-1.0, -1.0, -1.0, -1.0]])
    varying = torch.tensor([[1.0, -3.0, 0.5, 2.0], [0.0, 1.0, 1.0, 0.0]])
    profile = torch.tensor([[0.3, -0.2, 0.1, 0.9]])
    fig = plotting.plot_orientation_probe({"blind": flat, "sees": varying}, "r4", profile=profile)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    for ax, data in zip(fig.axes, (profile, flat, varying)):
        lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 4]
        assert len(lines) == data.shape[0]
        for line, row in zip(lines, data.numpy() / float(data.abs().max())):
            assert np.allclose(line.get_ydata(), row)
    assert "spread 0.0e+00" in fig.axes[1].get_title()
    assert plotting.orientation_spread(flat) == 0.0
    assert plotting.orientation_spread(varying) == pytest.approx((3.0 + 0.125) / 3.0)
    assert f"spread {plotting.orientation_spread(varying):.1e}" in fig.axes[2].get_title()
    with pytest.raises(ValueError, match=r"shape \(C, 4\)"):
        plotting.plot_orientation_probe({"bad": torch.zeros(2, 3)}, "r4")


def test_plot_encoding_study_places_each_variant_with_its_error_bars() -> None:
    summary = {
        "z2": {"group": "z2", "seeds": 3, "test_acc_mean": 0.5, "test_acc_std": 0.02, "s_per_epoch_mean": 60.0, "s_per_epoch_std": 1.0},
        "r4-pair": {"group": "r4", "seeds": 1, "test_acc_mean": 0.7, "test_acc_std": 0.0, "s_per_epoch_mean": 200.0, "s_per_epoch_std": 0.0},
    }
    fig = plotting.plot_encoding_study(summary)
    ax = fig.axes[0]
    points = [(float(line.get_xdata()[0]), float(line.get_ydata()[0])) for line in ax.get_lines() if line.get_marker() == "o"]
    assert points == [(60.0, 50.0), (200.0, 70.0)]
    assert [t.get_text() for t in ax.texts] == ["z2 (n=3)", "r4-pair (n=1)"]
    with pytest.raises(ValueError, match="lacks seeds"):
        plotting.plot_encoding_study({"x": {k: v for k, v in summary["z2"].items() if k != "seeds"}})
