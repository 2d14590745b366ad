"""The group-encoding study (benchmarks/encodings.py): matched widths, summary, the default rule."""

from __future__ import annotations

import pytest

from benchmarks import encodings
from gsa_tutorial.model import GSANet, GSANetConfig, count_parameters, preset


@pytest.mark.parametrize("group,encoding,query", [("z2", "relative", "all"), ("r4", "pair", "all"), ("m4", "pair", "all"), ("m4", "relative", "own")])
def test_matched_channels_within_five_percent(group, encoding, query):
    target = count_parameters(GSANet(preset("small", "r4")))
    channels, count = encodings.matched_channels(group, encoding, query, target)
    assert abs(count - target) <= 0.05 * target
    assert count == count_parameters(GSANet(preset("small", group, channels=channels, group_encoding=encoding, query=query)))


def test_matched_channels_refuses_an_impossible_target():
    with pytest.raises(ValueError, match="within 5%"):
        encodings.matched_channels("r4", "relative", "all", target=10)


def row(variant, group, acc, sec, seed=0):
    return dict(variant=variant, group=group, encoding="relative", query="all", seed=seed, parameters=4000, test_acc=acc, s_per_epoch=sec)


def test_summary_mean_and_std():
    s = encodings.summarise([row("a", "r4", 0.5, 2.0, 0), row("a", "r4", 0.7, 4.0, 1)])
    assert s["a"]["seeds"] == 2 and s["a"]["test_acc_mean"] == pytest.approx(0.6) and s["a"]["test_acc_std"] == pytest.approx(0.1414, abs=1e-4)
    assert s["a"]["s_per_epoch_mean"] == pytest.approx(3.0)


def test_recommend_prefers_the_cheaper_of_two_within_noise():
    rows = [row("r4-slow", "r4", a, 10.0, i) for i, a in enumerate((0.70, 0.72, 0.74))]
    rows += [row("r4-fast", "r4", a, 2.0, i) for i, a in enumerate((0.69, 0.71, 0.72))]
    rows += [row("r4-bad", "r4", a, 1.0, i) for i, a in enumerate((0.50, 0.51, 0.52))]
    rows += [row("z2", "z2", a, 0.5, i) for i, a in enumerate((0.9, 0.9, 0.9))]  # not an R4 choice
    assert encodings.recommend(encodings.summarise(rows)) == "r4-fast"


def test_recommend_keeps_a_clear_winner():
    rows = [row("r4-slow", "r4", a, 10.0, i) for i, a in enumerate((0.80, 0.81, 0.82))]
    rows += [row("r4-fast", "r4", a, 2.0, i) for i, a in enumerate((0.69, 0.70, 0.71))]
    assert encodings.recommend(encodings.summarise(rows)) == "r4-slow"


def test_cli_refuses_a_missing_data_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        encodings.main(["--data", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "not a folder" in capsys.readouterr().err


def test_presets_default_is_the_studys_recommendation():
    """The default group encoding of every GSA-Net is the one the stored study recommends."""
    from gsa_tutorial.stored import load_results

    summary = load_results("encodings")["summary"]
    name = encodings.recommend(summary)
    config = GSANetConfig()
    assert (config.group_encoding, config.query) == (summary[name]["encoding"], summary[name]["query"]), (
        f"the stored study recommends {name}; set GSANetConfig's defaults to it (gsa_tutorial/model.py)"
    )
