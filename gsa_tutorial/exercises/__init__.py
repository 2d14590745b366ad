"""Checked exercises: one checker per coding exercise of the book.

Each checker takes the reader's answer (usually a function), compares it with the package in
float64 and checks its equivariance with :mod:`gsa_tutorial.testing`, and returns a
:class:`Feedback` that says what is right, what is wrong (with the numbers: which group element
breaks equivariance and by how much, where an output differs) and a hint. It never answers
just "False". An answer that still raises ``NotImplementedError`` (every scaffold does) is
reported as "not implemented yet" and the notebook goes on.

Chapter modules (``ch02`` …) hold the checkers of one chapter each; every checker is
re-exported here, so a notebook writes ``from gsa_tutorial.exercises import check_...``.
"""

from __future__ import annotations

from ._core import STRICT_ENV, Check, ExerciseFailed, Feedback, checker, strict
from .ch01 import check_rotation_errors, check_symmetric_filter
from .ch02 import check_act_on_image, check_mirror_axis
from .ch03 import (
    check_attention_pixel,
    check_dihedral_errors,
    check_parameter_count,
    check_translation_error,
    pixel_attention_inputs,
)
from .ch04 import check_act_on_lifted, check_lifted_encoding, check_radial_count, check_relative_element
from .ch05 import check_constant_lifting, check_lifting_attention, lifting_parts, reference_lifting_attention
from .ch06 import check_constant_group, check_group_attention, check_pair_table, group_parts, reference_group_attention
from .ch07 import check_attention_parameters, check_invariant_head
from .ch08 import check_accuracy_vs_angle, check_selection_bias, expected_selection_bias
from .ch09 import check_factorized_softmax, check_score_counts

__all__ = [
    "STRICT_ENV",
    "Check",
    "ExerciseFailed",
    "Feedback",
    "checker",
    "strict",
    # chapters 1-4
    "check_symmetric_filter",
    "check_rotation_errors",
    "check_act_on_image",
    "check_mirror_axis",
    "pixel_attention_inputs",
    "check_attention_pixel",
    "check_dihedral_errors",
    "check_translation_error",
    "check_parameter_count",
    "check_lifted_encoding",
    "check_relative_element",
    "check_radial_count",
    "check_act_on_lifted",
    # chapter 5
    "lifting_parts",
    "reference_lifting_attention",
    "check_lifting_attention",
    "check_constant_lifting",
    # chapter 6
    "group_parts",
    "reference_group_attention",
    "check_pair_table",
    "check_group_attention",
    "check_constant_group",
    # chapter 7
    "check_attention_parameters",
    "check_invariant_head",
    # chapter 8
    "check_accuracy_vs_angle",
    "check_selection_bias",
    "expected_selection_bias",
    # chapter 9
    "check_score_counts",
    "check_factorized_softmax",
]
