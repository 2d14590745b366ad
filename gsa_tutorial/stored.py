"""Measured results stored with the package, so the book draws its tables and plots from them.

The benchmarks write their JSON to ``benchmarks/results/`` in the repository; the files the book
uses are copied into ``gsa_tutorial/results/`` (``make results``), so a notebook opened alone (as
Colab opens it, with only the installed package) finds them too. A test checks that the two copies
are identical.

Each file holds a ``meta`` block (machine, torch version, commit or source hashes) next to the
numbers: a chapter shows where its numbers come from.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["STORED_RESULTS", "load_results", "recommend_encoding"]

#: The result files shipped with the package (names without ``.json``) and what measures each.
STORED_RESULTS = {
    "official_fidelity": "python -m benchmarks.official_fidelity --official PATH (ours vs the official code; its real errors)",
    "encodings": "python -m benchmarks.encodings --data MNIST_IDX_DIR (the group-encoding study on rotated MNIST digits)",
    "cpu-variants": "python -m benchmarks.attention --variants-only --official PATH (cost of each group-encoding choice)",
    "cpu": "python -m benchmarks.attention --threads 1 (cost of the layers and training steps on CPU)",
}


def load_results(name: str) -> dict[str, Any]:
    """The stored JSON ``name`` (one of :data:`STORED_RESULTS`), as a dict.

    Raises:
        ValueError: ``name`` is not a stored result.
        FileNotFoundError: the package was installed without its result files.
    """
    if name not in STORED_RESULTS:
        raise ValueError(f"unknown stored result {name!r}: expected one of {', '.join(map(repr, STORED_RESULTS))}")
    path = resources.files("gsa_tutorial") / "results" / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{name}.json is missing from gsa_tutorial/results (measured by: {STORED_RESULTS[name]}); reinstall the package")
    return json.loads(path.read_text())


def recommend_encoding(summary: dict[str, dict[str, Any]]) -> str:
    """The R4 group-encoding choice the presets default to: the best accuracy per cost.

    ``summary`` is the ``"summary"`` of the stored study (``load_results("encodings")``). Among its
    R4 variants take the one with the highest mean test accuracy; every variant whose mean lies
    within one standard deviation (of either) of it is as good as the data can tell, and of those
    the one with the least time per epoch wins. Returns the variant's name (e.g. ``"r4-own"``).

    Raises:
        ValueError: the summary has no R4 variant.
    """
    r4 = {name: row for name, row in summary.items() if row["group"] == "r4"}
    if not r4:
        raise ValueError(f"the summary has no R4 variant (variants: {', '.join(summary) or 'none'})")
    best = max(r4.values(), key=lambda row: row["test_acc_mean"])
    tied = [name for name, row in r4.items()
            if best["test_acc_mean"] - row["test_acc_mean"] <= max(best["test_acc_std"], row["test_acc_std"])]
    return min(tied, key=lambda name: r4[name]["s_per_epoch_mean"])
