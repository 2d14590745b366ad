"""The official GSA-Nets group-embedding tables, as measured, against our rebuilt ones.

``tests/data/official_group_tables.json`` holds, for each group, the ``g_indices`` buffer of the
official ``GroupLocalSelfAttention`` (indexed ``[v, t, m]`` in the official labels) and the
measured labelling ``labels[h]`` (the official element whose acted position table equals our
``h⁻¹·offset``), both written by ``python -m benchmarks.official_fidelity --official PATH``
from a checkout of github.com/dwromero/g_selfatt. These tests check our reconstruction
(:func:`gsa_tutorial.positional._official_table`, ``_official_labels`` and
``relative_group_index(..., "official")``) against those facts without the official code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gsa_tutorial import get_group
from gsa_tutorial.positional import _official_labels, _official_table, relative_group_index

DATA = Path(__file__).resolve().parent / "data" / "official_group_tables.json"
STORED = json.loads(DATA.read_text())
GROUPS = sorted(STORED["groups"])


def test_the_stored_tables_name_the_official_commit_and_the_groups_of_the_paper():
    assert STORED["official_commit"] == "14204b3eb2a9d70329ee8f33a04ac5965c11e8c6"
    assert {"r4", "r8", "r12", "r16", "m4"} <= set(GROUPS)


@pytest.mark.parametrize("name", GROUPS)
def test_official_labels_are_the_measured_labelling(name):
    assert _official_labels(get_group(name)).tolist() == STORED["groups"][name]["labels"]


@pytest.mark.parametrize("name", GROUPS)
def test_official_table_reproduces_the_official_g_indices(name):
    stored = np.asarray(STORED["groups"][name]["g_indices"])
    group = get_group(name)
    assert stored.shape == (group.order,) * 3
    np.testing.assert_array_equal(_official_table(group), stored)


@pytest.mark.parametrize("name", GROUPS)
def test_relative_group_index_official_is_the_official_table_in_our_labels(name):
    group = get_group(name)
    stored = np.asarray(STORED["groups"][name]["g_indices"])
    phi = np.asarray(STORED["groups"][name]["labels"])
    ours = relative_group_index(group, "official").numpy()  # [h, t, s], our labels
    np.testing.assert_array_equal(ours, stored[np.ix_(phi, phi, phi)])


@pytest.mark.parametrize("name", ["r4", "m4"])
def test_the_relabelling_matters(name):
    """Read without the labelling, the official table is not ours: the check above is not vacuous."""
    stored = np.asarray(STORED["groups"][name]["g_indices"])
    assert not np.array_equal(relative_group_index(get_group(name), "official").numpy(), stored)
