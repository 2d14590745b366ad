"""gsa_tutorial: the companion package of the GSA-Nets book.

Group Equivariant Stand-Alone Self-Attention for Vision (Romero & Cordonnier, ICLR 2021),
built up chapter by chapter: groups and actions, invariant positional encodings, lifting and
group self-attention, GSA-Nets, data sets and training. Importing it is light: matplotlib is
only imported by :mod:`gsa_tutorial.plotting`.
"""

from .actions import act_on_coordinates, act_on_image, act_on_lifted, pixel_coordinates
from .attention import GroupSelfAttention, LiftingSelfAttention, RelativeSelfAttention
from .groups import GROUP_NAMES, CyclicGroup, DihedralGroup, Group, TrivialGroup, get_group
from .model import GSANet, GSANetConfig, preset
from .testing import assert_equivariant, equivariance_error

__version__ = "0.3.0"  # = pyproject.toml's version (tests/test_environment.py)

__all__ = [
    "GROUP_NAMES",
    "Group",
    "TrivialGroup",
    "CyclicGroup",
    "DihedralGroup",
    "get_group",
    "act_on_coordinates",
    "act_on_image",
    "act_on_lifted",
    "pixel_coordinates",
    "RelativeSelfAttention",
    "LiftingSelfAttention",
    "GroupSelfAttention",
    "equivariance_error",
    "assert_equivariant",
    "GSANet",
    "GSANetConfig",
    "preset",
]
