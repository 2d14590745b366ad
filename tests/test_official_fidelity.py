"""benchmarks/official_fidelity.py without the official code: it refuses a bad --official clearly,
and its stored results say what the book relies on (round-off agreement only in the labelling)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not part of the package
    sys.path.insert(0, str(ROOT))

from benchmarks.official_fidelity import OFFICIAL_FILES, RESULTS, OfficialCodeNotFound, load_official, main  # noqa: E402


def test_a_missing_path_is_refused_with_its_name(tmp_path):
    missing = tmp_path / "no-such-checkout"
    with pytest.raises(SystemExit, match=r"no-such-checkout: no such directory.*dwromero/g_selfatt"):
        main(["--official", str(missing), "--quick", "--tables-out", ""])


def test_a_directory_that_is_not_the_official_repository_names_the_missing_files(tmp_path):
    with pytest.raises(OfficialCodeNotFound, match=r"not a checkout of github.com/dwromero/g_selfatt: missing g_selfatt/nn/group_local_self_attention.py"):
        load_official(tmp_path)


def test_missing_einops_is_named(tmp_path, monkeypatch):
    for name in OFFICIAL_FILES:  # a checkout-shaped folder: the files exist, einops does not import
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    monkeypatch.setitem(sys.modules, "einops", None)  # makes `import einops` raise ImportError
    with pytest.raises(OfficialCodeNotFound, match=r"imports einops, which is not importable.*--pythonpath"):
        load_official(tmp_path)


@pytest.mark.skipif(not RESULTS.is_file(), reason="no stored official_fidelity.json")
def test_stored_results_agree_to_round_off_in_the_labelling_and_not_without_it():
    result = json.loads(RESULTS.read_text())
    assert result["official_commit"] == "14204b3eb2a9d70329ee8f33a04ac5965c11e8c6"
    cases = result["lifting_fidelity"] + result["group_fidelity"]
    assert {(c["kind"], c["group"], c["window"]) for c in cases} >= {(k, g, w) for k in ("lift", "group") for g in ("r4", "r8", "m4") for w in ("5x5", "global")}
    for case in cases:
        for name, entry in case.items():
            if isinstance(entry, dict):
                where = f"{case['kind']} {name} {case['group']} {case['window']}"
                assert entry["max_diff_labelled_exact_positions"] < 1e-13, where  # round-off
                assert entry["max_diff_labelled"] < 1e-7, where  # float32 positions of the official code
                assert entry["max_diff_unlabelled"] > 1e-3, where  # without the labelling: no agreement
    assert all(all(v for k, v in entry.items() if k.endswith(("equal_official_table", "equal_official_labels", "relabelled"))) for entry in result["official_tables"].values())
