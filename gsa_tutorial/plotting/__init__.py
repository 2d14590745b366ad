"""Figures for the book: images, orbits, Cayley tables, feature maps on the group, attention, ...

Every function returns a :class:`matplotlib.figure.Figure`; none calls ``plt.show()`` or
touches ``rcParams``. Figures are detached from pyplot right after they are made, so a notebook
cell that *returns* a figure shows it exactly once, and scripts or tests that make many figures
leak nothing. Display one by making it the last expression of a cell (or
``IPython.display.display(fig)``); save it with ``fig.savefig``.

This package is the only part of :mod:`gsa_tutorial` that imports matplotlib. Its modules, by
topic: ``groups`` (orbits, Cayley tables, offsets, index tables), ``features`` (images and lifted
maps), ``attention`` (attention maps, cost, the orientation probe), ``diagrams`` (a block and a
whole GSA-Net) and ``metrics`` (errors, parameter counts, training curves, cost sweeps), on a
small base (``_base``: the figure helper and the one tensor-to-numpy converter). Every name is
importable from here: ``from gsa_tutorial.plotting import plot_images``.

Shapes: ``B`` batch, ``C`` channels, ``G = |H|`` group size, ``H, W`` height and width.
"""

from __future__ import annotations

from ..windows import window_to_image
from .attention import orientation_spread, plot_attention_cost, plot_attention_map, plot_orientation_probe, plot_query_attention
from .diagrams import plot_block_diagram, plot_network_diagram
from .features import plot_group_action_on_image, plot_images, plot_lifted, plot_lifted_rotation, plot_position_encoding
from .groups import plot_cayley_table, plot_group_tables, plot_offsets, plot_orbit, plot_regular_representation
from .metrics import (
    plot_accuracy_vs_angle,
    plot_angle_errors,
    plot_cost_sweep,
    plot_element_errors,
    plot_encoding_study,
    plot_errors,
    plot_parameter_counts,
    plot_training_curves,
)

__all__ = [
    # groups (chapters 2, 4, 6)
    "plot_orbit",
    "plot_cayley_table",
    "plot_regular_representation",
    "plot_offsets",
    "plot_group_tables",
    # images and feature maps (chapters 1, 2, 4, 5)
    "plot_images",
    "plot_group_action_on_image",
    "plot_lifted",
    "plot_lifted_rotation",
    "plot_position_encoding",
    # attention (chapters 3, 5, 6); window_to_image lives in gsa_tutorial.windows
    "window_to_image",
    "plot_attention_map",
    "plot_query_attention",
    "plot_attention_cost",
    "orientation_spread",
    "plot_orientation_probe",
    # diagrams (chapter 7)
    "plot_block_diagram",
    "plot_network_diagram",
    # measurements (chapters 3 to 9)
    "plot_errors",
    "plot_element_errors",
    "plot_encoding_study",
    "plot_parameter_counts",
    "plot_accuracy_vs_angle",
    "plot_training_curves",
    "plot_cost_sweep",
    "plot_angle_errors",
]
