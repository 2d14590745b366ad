"""The result files shipped with the package are the ones the benchmarks wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from gsa_tutorial.stored import STORED_RESULTS, load_results

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(STORED_RESULTS))
def test_package_copy_equals_the_benchmark_output(name):
    source = ROOT / "benchmarks" / "results" / f"{name}.json"
    shipped = ROOT / "gsa_tutorial" / "results" / f"{name}.json"
    assert source.is_file(), f"{source} is missing: run {STORED_RESULTS[name]}"
    assert shipped.read_bytes() == source.read_bytes(), f"{shipped} differs from {source}: run `make results`"
    stored = load_results(name)
    assert "meta" in stored or {"official_commit", "our_git_sha", "torch", "date"} <= set(stored), f"{name}.json says nothing of where it was measured"


def test_unknown_name_is_refused():
    with pytest.raises(ValueError, match="expected one of 'official_fidelity'"):
        load_results("nope")
