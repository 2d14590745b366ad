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

__all__ = ["STORED_RESULTS", "load_results"]

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
