"""Fidelity with the official GSA-Nets code, measured against the official layers themselves.

Run from the repository root, with a checkout of the official repository
(github.com/dwromero/g_selfatt, measured at commit ``14204b3eb2a9d70329ee8f33a04ac5965c11e8c6``)
and ``einops`` importable (the official code needs it; ``--pythonpath DIR`` adds a folder that
holds it)::

    .venv/bin/python -m benchmarks.official_fidelity --official ../g_selfatt [--quick]
    .venv/bin/python -m benchmarks.official_fidelity --official ../g_selfatt --pythonpath ../pylib

The official code is never a dependency of this project and none of it is copied here: it is
imported from ``--official`` at run time, and only the numbers it produces are stored.
Everything runs in float64 on one thread (``--quick``: smaller maps and fewer cases, for a
check in about a minute and a half). Results go to ``benchmarks/results/official_fidelity.json`` (with
the official commit, our git sha, the torch version and the date); the official group-embedding
tables go to ``tests/data/official_group_tables.json``, which ``tests/test_official_tables.py``
checks against :func:`gsa_tutorial.positional._official_table` without the official code.

What it measures
----------------
(a) **Lifting layer and labelling.** The official ``LiftLocalSelfAttention`` /
    ``LiftSelfAttention`` and our :class:`~gsa_tutorial.LiftingSelfAttention` with the same
    weights (mapping below). Our output element ``h`` equals the official element
    ``phi[h] = _official_labels(group)[h]``; without that map the two do not agree. The labels
    are also *measured*: ``phi[h]`` is the official element whose acted position table equals
    our ``h⁻¹·offset``. Then the official lifting layer's own equivariance: after
    ``torch.rot90(x, 1)`` its R4 output obeys ``y'[v] = rot90(y[v + 1])`` in its own labels.
(b) **Group layer.** Our ``GroupSelfAttention(group_encoding="official")`` against the official
    ``GroupLocalSelfAttention`` (5x5) and ``GroupSelfAttention`` (global), R4, R8 and M4, with the
    lifted input and output axis-mapped by ``phi``. The official code rounds its positions to
    float32 (``normalize_tensor_one_minone`` and ``left_action_on_Rd`` cast to float32), which
    shows at 45° rotations and in the global layer; the benchmark therefore also reports the
    difference after overwriting the official position buffers with the same positions in
    float64 (``exact positions``), which leaves only round-off. The official ``g_indices`` are
    compared with ``_official_table`` for R4, R8, R12, R16, M4 and M8.
(c) **The official code's real equivariance errors** at its default initialisation, for
    grid-exact rotations and mirrors applied exactly (``torch.rot90`` / ``torch.flip`` on the
    pixels, the regular representation on the group axis, read in the official labelling
    through ``phi``): relative Frobenius ``‖Φ(g·x) − g·Φ(x)‖ / ‖Φ(x)‖`` and relative max
    ``max|Φ(g·x) − g·Φ(x)| / max|Φ(x)|``, worst element. One R4 and one M4 5x5 group layer; the
    official lifting layer followed by a group layer (R4); the whole official rotMNIST model
    (p4 and p4m, built with the arguments of the official ``model.py``, eval mode) on its
    logits; the R4 group layer with the group embedding scaled by 0.1, 10 and 0.

Weight mapping (official -> ours)
---------------------------------
* Official ``query/key/value`` are 1x1 convolutions to ``mid_channels * num_heads`` channels,
  viewed as ``(mid_channels, num_heads)`` (channel ``c * heads + m``); ours are ``nn.Linear``
  without bias to ``heads * dim_head`` (channel ``m * dim_head + c``), ``dim_head =
  mid_channels``. Rows are permuted accordingly; the output projection's columns likewise (its
  bias is copied). **The official query/key/value biases are set to zero** in the official layer
  before comparing (ours have none).
* The official code divides all logits by ``sqrt(in_channels)``; ours multiplies ``q`` by
  ``dim_head**-0.5``. The factor ``sqrt(dim_head / in_channels)`` is absorbed into our ``to_q``.
* Positions: the official layer splits ``q`` into a row part (first ``mid // 3`` channels; ``mid
  // 2`` in the lifting layer), a column part (the next as many) and, in the group layer, a group
  part (the rest), and embeds the acted row / column index each with its own MLP
  (1 -> 16, LayerNorm, Swish, 16 -> ``mid // 3``) and the group element with an ``nn.Embedding``
  shared by all heads. :class:`OfficialPositionEncoding` (defined here, not in the package)
  replaces our layer's ``pos``: from our offset ``(x, y)`` (y up, divided by the window radius)
  the official row index is ``-y`` and the column index ``x``; it returns, for every head, the
  row MLP's output, the column MLP's output and zeros in the group channels. Our group
  embedding ``(E, heads, dim_head)`` holds the official embedding in the group channels (every
  head) and zeros elsewhere.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gsa_tutorial import GroupSelfAttention, LiftingSelfAttention, get_group
from gsa_tutorial.actions import act_on_image, act_on_lifted
from gsa_tutorial.groups import DihedralGroup, Group
from gsa_tutorial.positional import _official_labels, _official_table, relative_group_index, transformed_offsets, window_offsets

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_COMMIT = "14204b3eb2a9d70329ee8f33a04ac5965c11e8c6"
RESULTS = ROOT / "benchmarks" / "results" / "official_fidelity.json"
TABLES = ROOT / "tests" / "data" / "official_group_tables.json"
#: Files of the official repository this benchmark imports (a checkout must have them).
OFFICIAL_FILES = (
    "g_selfatt/nn/group_local_self_attention.py",
    "g_selfatt/nn/group_self_attention.py",
    "g_selfatt/nn/lift_local_self_attention.py",
    "g_selfatt/nn/lift_self_attention.py",
    "g_selfatt/groups/SE2.py",
    "g_selfatt/groups/E2.py",
    "models/group_transformer.py",
)
#: Groups whose official g_indices are compared with ``_official_table`` (official constructor).
TABLE_GROUPS = {"r4": ("SE2", 4), "r8": ("SE2", 8), "r12": ("SE2", 12), "r16": ("SE2", 16), "m4": ("E2", 8), "m8": ("E2", 16)}


class OfficialCodeNotFound(RuntimeError):
    """The official repository (or what it needs to import) is not where the user said."""


# ---- loading the official code -------------------------------------------------------------------


def load_official(path: str | Path, extra_paths: tuple[str, ...] = ()) -> dict[str, Any]:
    """Import the official code from a checkout at ``path``.

    Returns ``{"nn": g_selfatt.nn, "groups": g_selfatt.groups, "GroupTransformer": ..., "commit": ...}``.

    Raises:
        OfficialCodeNotFound: ``path`` is not a directory, lacks one of :data:`OFFICIAL_FILES`,
            or ``einops`` (which the official code imports) cannot be imported.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise OfficialCodeNotFound(
            f"--official {path}: no such directory; expected a checkout of github.com/dwromero/g_selfatt (commit {OFFICIAL_COMMIT[:7]})"
        )
    missing = [name for name in OFFICIAL_FILES if not (root / name).is_file()]
    if missing:
        raise OfficialCodeNotFound(
            f"--official {path} is not a checkout of github.com/dwromero/g_selfatt: missing {', '.join(missing)}"
        )
    for extra in extra_paths:
        if str(extra) not in sys.path:
            sys.path.insert(0, str(extra))
    try:
        importlib.import_module("einops")
    except ImportError as error:
        raise OfficialCodeNotFound(
            "the official code imports einops, which is not importable here "
            f"({error}); install it (pip install einops) or pass --pythonpath DIR with the folder that holds it"
        ) from None
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    with warnings.catch_warnings():  # the official model decorates forward with torch.cuda.amp.autocast
        warnings.simplefilter("ignore")
        official_nn = importlib.import_module("g_selfatt.nn")
        official_groups = importlib.import_module("g_selfatt.groups")
        transformer = importlib.import_module("models.group_transformer")
    loaded = Path(official_nn.__file__).resolve()
    if root not in loaded.parents:
        raise OfficialCodeNotFound(f"imported g_selfatt from {loaded}, not from --official {root}; remove the other copy from sys.path")
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown (not a git checkout)"
    return {"nn": official_nn, "groups": official_groups, "GroupTransformer": transformer.GroupTransformer, "commit": commit}


def official_group(official: dict[str, Any], name: str) -> nn.Module:
    """The official group object for one of our names (``SE2(n)`` for r_n, ``E2(2n)`` for m_n)."""
    group = get_group(name)
    if isinstance(group, DihedralGroup):
        return official["groups"].E2(num_elements=group.order)
    return official["groups"].SE2(num_elements=group.order)


def git_sha() -> str:
    """Our commit, with ``+dirty`` when the working tree has uncommitted changes."""
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


# ---- the mapping official -> ours ----------------------------------------------------------------


class _EmbeddingMLP(nn.Module):
    """The official row/column embedding: 1 -> 16 -> LayerNorm -> Swish -> out (weights copied)."""

    def __init__(self, official: nn.Sequential) -> None:
        super().__init__()
        first, norm, _, last = official  # Conv2d(1, 16, 1), LayerNorm (GroupNorm(1, 16)), Swish, Conv2d(16, out, 1)
        group_norm = norm.layer_norm
        self.first = nn.Linear(1, first.out_channels)
        self.norm = nn.LayerNorm(first.out_channels, eps=group_norm.eps)  # GroupNorm(1, C) on (N, C, 1, 1) = LayerNorm over C
        self.last = nn.Linear(last.in_channels, last.out_channels)
        with torch.no_grad():
            self.first.weight.copy_(first.weight.flatten(1))
            self.first.bias.copy_(first.bias)
            self.norm.weight.copy_(group_norm.weight)
            self.norm.bias.copy_(group_norm.bias)
            self.last.weight.copy_(last.weight.flatten(1))
            self.last.bias.copy_(last.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        hidden = self.norm(self.first(t))
        return self.last(hidden * torch.sigmoid(hidden))  # Swish


class OfficialPositionEncoding(nn.Module):
    """Our layer's ``pos`` rebuilt from an official layer's row and column embeddings.

    Input: offsets ``(x, y)`` (y up) divided by the window radius, as our layers pass them; the
    official row index is ``-y`` and its column index ``x``. Output: for every head
    ``[row_mlp(-y), col_mlp(x), 0 ... 0]`` (``dim_head`` numbers; the zeros are the group part).

    Shape:
        ``(..., 2) -> (..., heads * dim_head)``.
    """

    def __init__(self, official_layer: nn.Module, heads: int, dim_head: int) -> None:
        super().__init__()
        self.row = _EmbeddingMLP(official_layer.row_embedding)
        self.col = _EmbeddingMLP(official_layer.col_embedding)
        self.heads, self.dim_head = heads, dim_head
        self.zeros = dim_head - self.row.last.out_features - self.col.last.out_features
        if self.zeros < 0:
            raise ValueError(f"row + column embeddings ({self.row.last.out_features} + {self.col.last.out_features}) exceed dim_head {dim_head}")

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        row = self.row(-offsets[..., 1:2])  # (..., pd)
        col = self.col(offsets[..., 0:1])  # (..., pd)
        head = torch.cat([row, col, row.new_zeros(*row.shape[:-1], self.zeros)], dim=-1)  # (..., d)
        return head.tile(self.heads)  # (..., m*d): the same vector for every head


def _head_permutation(heads: int, dim_head: int) -> torch.Tensor:
    """``perm[m * dim_head + c] = c * heads + m``: our channel order read from the official one."""
    return torch.tensor([c * heads + m for m in range(heads) for c in range(dim_head)])


def zero_official_qkv_bias(official_layer: nn.Module) -> None:
    """Set the official query/key/value biases to zero (our projections have none)."""
    with torch.no_grad():
        for conv in (official_layer.query, official_layer.key, official_layer.value):
            conv.bias.zero_()


def map_weights(official_layer: nn.Module, ours: nn.Module) -> None:
    """Copy an official (lifting or group) layer's weights into ours (module docstring, "Weight mapping").

    The official layer's query/key/value biases must be zero (:func:`zero_official_qkv_bias`).
    """
    heads, d = ours.heads, ours.dim_head
    if (official_layer.num_heads, official_layer.mid_channels) != (heads, d):
        raise ValueError(f"official (heads, mid_channels) = {(official_layer.num_heads, official_layer.mid_channels)} but ours (heads, dim_head) = {(heads, d)}")
    for conv in (official_layer.query, official_layer.key, official_layer.value):
        if conv.bias is not None and conv.bias.abs().max() > 0:
            raise ValueError("the official query/key/value biases must be zero (ours have none): call zero_official_qkv_bias first")
    perm = _head_permutation(heads, d)
    in_channels = official_layer.in_channels
    scale = (d / in_channels) ** 0.5  # official logits / sqrt(in_channels), ours q * d**-0.5
    with torch.no_grad():
        ours.to_q.weight.copy_(official_layer.query.weight.flatten(1)[perm] * scale)
        ours.to_k.weight.copy_(official_layer.key.weight.flatten(1)[perm])
        ours.to_v.weight.copy_(official_layer.value.weight.flatten(1)[perm])
        ours.to_out.weight.copy_(official_layer.wout.weight.flatten(1)[:, perm])
        ours.to_out.bias.copy_(official_layer.wout.bias)
        if hasattr(official_layer, "group_embedding"):
            table = official_layer.group_embedding.weight  # (G, group part), shared by the heads
            ours.group_embedding.zero_()
            ours.group_embedding[:, :, d - table.shape[1] :] = table[:, None, :]
    ours.pos = OfficialPositionEncoding(official_layer, heads, d).to(dtype=ours.to_q.weight.dtype)


def exact_positions(official_layer: nn.Module, group: Group, labels: np.ndarray, size: int | None) -> None:
    """Overwrite the official layer's position buffers with the same positions computed in float64.

    Local (``size=None``): ``row_indices[phi[h], a, b] = -(h⁻¹ d)_y``, ``col_indices = (h⁻¹ d)_x`` for
    the window offset ``d`` at ``(a, b)``. Global: the same for the offset from query ``(i, j)`` to
    key ``(k, l)`` (buffers ``(G, S, S, S, S)``), normalised by ``S - 1``.
    """
    rows, cols = official_layer.row_indices, official_layer.col_indices
    if size is None:
        k = rows.shape[-1]
        moved = transformed_offsets(group, window_offsets(k) / (k // 2)).view(group.order, k, k, 2)  # (G, k, k, 2)
        new_rows, new_cols = -moved[..., 1], moved[..., 0]
    else:
        i = torch.arange(size, dtype=torch.float64)
        dr = i.view(1, 1, -1, 1) - i.view(-1, 1, 1, 1)  # key row - query row: (S, 1, S, 1)
        dc = i.view(1, 1, 1, -1) - i.view(1, -1, 1, 1)  # key col - query col: (1, S, 1, S)
        offsets = torch.stack(torch.broadcast_tensors(dc, -dr), dim=-1) / (size - 1)  # (x, y): (S, S, S, S, 2)
        moved = transformed_offsets(group, offsets.view(-1, 2)).view(group.order, size, size, size, size, 2)
        new_rows, new_cols = -moved[..., 1], moved[..., 0]
    order = np.argsort(labels)  # official element v is our element order[v]
    with torch.no_grad():
        rows.copy_(new_rows[order].to(rows.dtype))
        cols.copy_(new_cols[order].to(cols.dtype))


def measured_labels(official_layer: nn.Module, group: Group) -> tuple[list[int], float]:
    """``phi[h]``: the official element whose acted position table equals our ``h⁻¹·d`` (local layer).

    Returns the labels and the largest position difference of the matches (float32 round-off).
    """
    k = official_layer.row_indices.shape[-1]
    moved = transformed_offsets(group, window_offsets(k) / (k // 2))  # (G, K, 2)
    official = torch.stack([official_layer.col_indices.flatten(1), -official_layer.row_indices.flatten(1)], dim=-1).double()  # (x, y) = (col, -row): (G, K, 2)
    distance = (moved[:, None] - official[None]).abs().amax(dim=(-1, -2))  # (ours h, official v)
    labels = distance.argmin(dim=1)
    worst = distance.gather(1, labels[:, None]).max().item()
    if sorted(labels.tolist()) != list(range(group.order)) or worst > 1e-6:
        raise AssertionError(f"no one-to-one match of the position tables for {group.name}: {labels.tolist()}, worst {worst:.1e}")
    return labels.tolist(), worst


# ---- measuring -----------------------------------------------------------------------------------


def to_ours(y: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    """Lifted map in the official labels -> ours: ``ours[:, :, h] = official[:, :, phi[h]]``."""
    return y[:, :, torch.as_tensor(labels)]


def to_official(y: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    """Lifted map in our labels -> the official ones (inverse of :func:`to_ours`)."""
    return y[:, :, torch.as_tensor(np.argsort(labels))]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _reset(official_layer: nn.Module) -> None:
    if hasattr(official_layer, "inf_outside"):
        official_layer.inf_outside = None  # the official local layers cache the mask of the first input size


def official_in_our_labels(module: nn.Module, labels: np.ndarray, lifted_input: bool, lifted_output: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The official map read in our labelling (so that our exact actions apply)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        y = module(to_official(x, labels) if lifted_input else x)
        return to_ours(y, labels) if lifted_output and y.dim() == 5 else y

    return fn


def equivariance_errors(fn: Callable[[torch.Tensor], torch.Tensor], group: Group, x: torch.Tensor, elements: list[int] | None = None) -> dict[str, Any]:
    """Relative Frobenius and max errors of ``fn`` over the grid-exact non-identity elements (worst),
    or over ``elements`` when given.

    The output is acted on when it is an image or a lifted map and must be invariant otherwise.
    """
    start = time.perf_counter()
    act_in = act_on_lifted if x.dim() == 5 else act_on_image
    with torch.no_grad():
        y = fn(x)
        per_element = {}
        for g in elements if elements is not None else group.grid_exact_elements:
            if g == group.identity:
                continue
            moved = fn(act_in(group, g, x))
            target = act_on_lifted(group, g, y) if y.dim() == 5 else act_on_image(group, g, y) if y.dim() == 4 else y
            diff = moved - target
            per_element[group.element_name(g)] = {
                "rel_fro": (diff.norm() / y.norm()).item(),
                "rel_max": (diff.abs().max() / y.abs().max()).item(),
            }
    return {
        "rel_fro": max(e["rel_fro"] for e in per_element.values()),
        "rel_max": max(e["rel_max"] for e in per_element.values()),
        "per_element": per_element,
        "seconds": time.perf_counter() - start,
    }


def _official_layer(official: dict[str, Any], kind: str, group_name: str, channels: tuple[int, int, int], heads: int, window: int | None, size: int) -> nn.Module:
    """An official layer: kind "lift" or "group", local (window) or global (size), float64."""
    c_in, mid, c_out = channels
    og = official_group(official, group_name)
    local = window is not None
    cls = {("lift", True): "LiftLocalSelfAttention", ("lift", False): "LiftSelfAttention", ("group", True): "GroupLocalSelfAttention", ("group", False): "GroupSelfAttention"}[kind, local]
    layer = getattr(official["nn"], cls)(og, c_in, mid, c_out, heads, window if local else size, 0.0)
    return layer.double().eval()


def fidelity_case(official: dict[str, Any], kind: str, group_name: str, window: int | None, size: int, *, batch: int = 2, seed: int = 0) -> dict[str, Any]:
    """Ours against the official layer with mapped weights: max |diff| with and without the labelling."""
    group = get_group(group_name)
    labels = _official_labels(group)
    heads, mid = 2, (4 if kind == "lift" else 6)
    channels = (3, mid, 5) if kind == "lift" else (5, mid, 5)
    torch.manual_seed(seed)
    off = _official_layer(official, kind, group_name, channels, heads, window, size)
    zero_official_qkv_bias(off)
    common = {"group": group, "heads": heads, "dim_head": mid, "window": window}
    if kind == "lift":
        variants = {"ours": LiftingSelfAttention(channels[0], channels[2], **common)}
    else:
        variants = {
            f"ours ({impl})": GroupSelfAttention(channels[0], channels[2], group_encoding="official", implementation=impl, **common)
            for impl in ("factorized", "dense")
        }
    for layer in variants.values():
        layer.double().eval()
        map_weights(off, layer)
    if kind == "lift":
        x = torch.randn(batch, channels[0], size, size, dtype=torch.float64)
        x_ours = x
    else:
        x = torch.randn(batch, channels[0], group.order, size, size, dtype=torch.float64)  # official labels
        x_ours = to_ours(x, labels)
    result: dict[str, Any] = {"kind": kind, "group": group_name, "window": "global" if window is None else f"{window}x{window}", "size": size, "batch": batch}
    with torch.no_grad():
        _reset(off)
        y_off = off(x)
        scale = y_off.abs().max().item()
        result["official_max_abs"] = scale
        for name, layer in variants.items():
            y = layer(x_ours)
            result[name] = {
                "max_diff_labelled": max_diff(y, to_ours(y_off, labels)),  # our h <-> official phi[h]
                "max_diff_unlabelled": max_diff(layer(x), y_off),  # both axes read as the same index
            }
        exact_positions(off, group, labels, None if window is not None else size)
        _reset(off)
        y_exact = off(x)
        for name, layer in variants.items():
            result[name]["max_diff_labelled_exact_positions"] = max_diff(layer(x_ours), to_ours(y_exact, labels))
    return result


def lifting_rot90_check(official: dict[str, Any], window: int | None, size: int, seed: int = 0) -> dict[str, Any]:
    """The official R4 lifting layer after ``torch.rot90(x, 1)``: ``y'[v] = rot90(y[v + 1])`` (its own labels)."""
    torch.manual_seed(seed)
    off = _official_layer(official, "lift", "r4", (3, 4, 5), 2, window, size)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        y = off(x)
        _reset(off)
        y_rot = off(torch.rot90(x, 1, dims=(-2, -1)))
    plus = torch.rot90(y.roll(-1, dims=2), 1, dims=(-2, -1))  # [v] = rot90(y[v + 1])
    minus = torch.rot90(y.roll(1, dims=2), 1, dims=(-2, -1))  # [v] = rot90(y[v - 1]), our direction
    scale = y.abs().max().item()
    exact_positions(off, get_group("r4"), _official_labels(get_group("r4")), None if window is not None else size)
    with torch.no_grad():
        _reset(off)
        y_exact = off(x)
        _reset(off)
        y_exact_rot = off(torch.rot90(x, 1, dims=(-2, -1)))
    plus_exact = torch.rot90(y_exact.roll(-1, dims=2), 1, dims=(-2, -1))
    return {
        "window": "global" if window is None else f"{window}x{window}",
        "size": size,
        "rel_max_y_rot[v]_vs_rot90(y[v+1])": max_diff(y_rot, plus) / scale,
        "rel_max_y_rot[v]_vs_rot90(y[v-1])": max_diff(y_rot, minus) / scale,
        "rel_max_y_rot[v]_vs_rot90(y[v+1])_exact_positions": max_diff(y_exact_rot, plus_exact) / scale,
    }


def table_check(official: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The official g_indices and the measured labels against ``_official_table`` / ``_official_labels``."""
    checks, stored = {}, {}
    for name, (cls, order) in TABLE_GROUPS.items():
        group = get_group(name)
        og = getattr(official["groups"], cls)(num_elements=order)
        layer = official["nn"].GroupLocalSelfAttention(og, 3, 3, 3, 1, 3, 0.0)
        g_indices = layer.g_indices.numpy().astype(np.int64)  # (v, t, m), official labels
        labels, worst = measured_labels(layer, group)
        ours_labels = _official_labels(group)
        in_our_labels = relative_group_index(group, "official").numpy()
        phi = np.asarray(labels)
        checks[name] = {
            "official_constructor": f"{cls}(num_elements={order})",
            "g_indices_equal_official_table": bool(np.array_equal(g_indices, _official_table(group))),
            "measured_labels_equal_official_labels": bool(np.array_equal(phi, ours_labels)),
            "relative_group_index_official_equals_g_indices_relabelled": bool(np.array_equal(in_our_labels, g_indices[np.ix_(phi, phi, phi)])),
            "position_match_worst": worst,
        }
        stored[name] = {"official_constructor": f"{cls}(num_elements={order})", "labels": labels, "g_indices": g_indices.tolist()}
    return checks, stored


def _scaled_embedding(layer: nn.Module, factor: float) -> nn.Module:
    with torch.no_grad():
        layer.group_embedding.weight.mul_(factor)
    return layer


def real_errors(official: dict[str, Any], quick: bool) -> dict[str, Any]:
    """The official layers' and models' equivariance errors at their default initialisation."""
    size = 12
    out: dict[str, Any] = {"note": "official default init (biases included); worst grid-exact non-identity element; float64; eval mode"}
    channels = (20, 10, 20)  # rotMNIST widths: 20 channels, mid_channels = 10
    heads = 9

    def group_layer(name: str, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return _official_layer(official, "group", name, channels, heads, 5, size)

    for name in ("r4", "m4"):
        group = get_group(name)
        torch.manual_seed(1)
        x = torch.randn(2, channels[0], group.order, size, size, dtype=torch.float64)
        seeds = [equivariance_errors(official_in_our_labels(group_layer(name, seed), _official_labels(group), True, True), group, x) for seed in range(1 if quick else 3)]
        out[f"group layer {name} 5x5 {size}x{size}"] = seeds[0] | {
            "other_weight_seeds": {seed: {k: e[k] for k in ("rel_fro", "rel_max")} for seed, e in enumerate(seeds) if seed}
        }
    r4 = get_group("r4")
    labels = _official_labels(r4)
    torch.manual_seed(0)
    lift = _official_layer(official, "lift", "r4", (1, 10, 20), heads, 5, size)
    both = nn.Sequential(lift, group_layer("r4", seed=2)).eval()
    torch.manual_seed(1)
    image = torch.randn(2, 1, size, size, dtype=torch.float64)
    out[f"lifting + group layer r4 5x5 {size}x{size}"] = equivariance_errors(official_in_our_labels(both, labels, False, True), r4, image)
    torch.manual_seed(1)
    x = torch.randn(2, channels[0], 4, size, size, dtype=torch.float64)
    for factor in (0.1, 10.0, 0.0):
        layer = _scaled_embedding(group_layer("r4"), factor)
        out[f"group layer r4 5x5, group embedding x{factor:g}"] = equivariance_errors(official_in_our_labels(layer, labels, True, True), r4, x)
    models = [("p4", 1.0)] if quick else [("p4", 1.0), ("p4", 1.41421356), ("p4m", 1.0)]
    for model_group, whitening in models:
        group = get_group({"p4": "r4", "p4m": "m4"}[model_group])
        torch.manual_seed(0)
        model = rotmnist_model(official, model_group, whitening).double().eval()
        torch.manual_seed(1)
        digits = torch.randn(1, 1, 28, 28, dtype=torch.float64)
        # p4m: one float64 forward takes ~40 s on one core, so only r, s and r s (the names are stored)
        elements = [1, 4, 5] if model_group == "p4m" else None
        out[f"rotMNIST model {model_group} logits 28x28, whitening {whitening:.4g}"] = equivariance_errors(model, group, digits, elements)
    return out


def rotmnist_model(official: dict[str, Any], model_group: str, whitening_scale: float = 1.0) -> nn.Module:
    """The official rotMNIST GSA-Net as the official ``model.py`` builds it (``config.dataset == "rotMNIST"``).

    ``model.py`` fixes the architecture and passes the rest from ``config.py``, whose defaults
    (``norm_type=""``, ``activation_function=""``, ``attention_type=""``) must be set on the
    command line; the commit holds no run commands (``runs/README.md`` has none). We take local
    attention 5x5 (``attention_type="Local"``, ``patch_size=5``, the paper's rotMNIST setting),
    LayerNorm and Swish, dropout 0 (eval mode anyway) and ``config.py``'s default
    ``whitening_scale=1.0`` (``GroupTransformer``'s own default, sqrt(2), is measured for p4 too).
    """
    groups = official["groups"]
    group = {"p4": groups.SE2(num_elements=4), "p4m": groups.E2(num_elements=8)}[model_group]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return official["GroupTransformer"](
            group=group,
            in_channels=1,
            num_channels=20,
            block_sizes=[2, 3],
            expansion_per_block=1,
            crop_per_layer=[2, 0, 2, 1, 1],
            image_size=28,
            num_classes=10,
            dropout_rate_after_maxpooling=0.0,
            maxpool_after_last_block=False,
            normalize_between_layers=False,
            patch_size=5,
            num_heads=9,
            norm_type="LayerNorm",
            activation_function="Swish",
            attention_dropout_rate=0.0,
            value_dropout_rate=0.0,
            whitening_scale=whitening_scale,
        )


# ---- the command -----------------------------------------------------------------------------------


def run(official: dict[str, Any], quick: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    start = time.perf_counter()
    timings: dict[str, float] = {}
    local_size, global_size = (8, 6) if quick else (12, 8)
    groups = ("r4", "m4") if quick else ("r4", "r8", "m4")

    t0 = time.perf_counter()
    lifting = [fidelity_case(official, "lift", g, w, s) for g in groups for w, s in ((5, local_size), (None, global_size))]
    rot90 = [lifting_rot90_check(official, w, s) for w, s in ((5, local_size), (None, global_size))]
    timings["lifting"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    group_cases = [fidelity_case(official, "group", g, w, s) for g in groups for w, s in ((5, local_size), (None, global_size))]
    timings["group"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tables, stored = table_check(official)
    timings["tables"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    errors = real_errors(official, quick)
    timings["real_errors"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    result = {
        "official_repository": "github.com/dwromero/g_selfatt",
        "official_commit": official["commit"],
        "official_commit_expected": OFFICIAL_COMMIT,
        "our_git_sha": git_sha(),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "dtype": "float64",
        "threads": torch.get_num_threads(),
        "mapping": {
            "official_qkv_bias": "set to zero in the official layer (ours have none)",
            "scale": "official logits / sqrt(in_channels); absorbed into our to_q as sqrt(dim_head / in_channels)",
            "heads": "official channel c * heads + m <-> ours m * dim_head + c, dim_head = mid_channels",
            "positions": "official row index = -y, column index = x of our offset (x, y) / window radius",
            "labels": "our element h <-> official element _official_labels(group)[h]",
        },
        "lifting_fidelity": lifting,
        "official_lifting_rot90": rot90,
        "group_fidelity": group_cases,
        "official_tables": tables,
        "official_real_errors": errors,
        "seconds": timings,
    }
    tables_file = {
        "what": "g_indices of the official GroupLocalSelfAttention ([v, t, m], official labels) and labels[h] = the official "
        "element whose acted position table equals our h^-1 * offset; measured by benchmarks/official_fidelity.py",
        "official_repository": "github.com/dwromero/g_selfatt",
        "official_commit": official["commit"],
        "groups": stored,
    }
    return result, tables_file


def _fmt(v: float) -> str:
    return f"{v:.1e}"


def print_report(result: dict[str, Any]) -> None:
    print(f"official commit {result['official_commit']}, ours {result['our_git_sha'][:12]}, torch {result['torch']}\n")
    print("| layer | group | window | size | max|off| | max|diff| (labelled) | unlabelled | exact positions |")
    print("|---|---|---|---|---|---|---|---|")
    for case in result["lifting_fidelity"] + result["group_fidelity"]:
        for name, entry in case.items():
            if isinstance(entry, dict):
                print(
                    f"| {case['kind']} {name} | {case['group']} | {case['window']} | {case['size']} | {_fmt(case['official_max_abs'])} | "
                    f"{_fmt(entry['max_diff_labelled'])} | {_fmt(entry['max_diff_unlabelled'])} | {_fmt(entry['max_diff_labelled_exact_positions'])} |"
                )
    print("\nofficial R4 lifting after torch.rot90(x, 1):")
    for entry in result["official_lifting_rot90"]:
        print("  ", {k: (_fmt(v) if isinstance(v, float) else v) for k, v in entry.items()})
    print("\nofficial tables:")
    for name, entry in result["official_tables"].items():
        print("  ", name, {k: v for k, v in entry.items() if k != "official_constructor"})
    print("\nofficial real equivariance errors (relative Frobenius / max, worst element):")
    for name, entry in result["official_real_errors"].items():
        if isinstance(entry, dict):
            seeds = entry.get("other_weight_seeds", {})
            more = "".join(f"; seed {k}: {_fmt(e['rel_fro'])} / {_fmt(e['rel_max'])}" for k, e in seeds.items())
            print(f"   {name}: {_fmt(entry['rel_fro'])} / {_fmt(entry['rel_max'])}{more}  ({entry['seconds']:.0f} s)")
    print("\nseconds:", {k: round(v, 1) for k, v in result["seconds"].items()})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, help="path to a checkout of github.com/dwromero/g_selfatt")
    parser.add_argument("--pythonpath", action="append", default=[], help="a folder to add to sys.path (e.g. where einops is installed); repeatable")
    parser.add_argument("--quick", action="store_true", help="smaller maps, R4 and M4 only, p4 model only (about 1.5 minutes)")
    parser.add_argument("--out", default=None, help=f"results JSON (default {RESULTS.relative_to(ROOT)}; --quick: not written unless given)")
    parser.add_argument("--tables-out", default=str(TABLES), help="where to store the official group tables")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    try:
        official = load_official(args.official, tuple(args.pythonpath))
    except OfficialCodeNotFound as error:
        raise SystemExit(f"official_fidelity: {error}") from None
    result, tables = run(official, quick=args.quick)
    print_report(result)
    out = args.out or (None if args.quick else RESULTS)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
    if args.tables_out:
        Path(args.tables_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.tables_out).write_text(json.dumps(tables, indent=None, separators=(",", ":")) + "\n")
        print(f"wrote {args.tables_out}")
    return result


if __name__ == "__main__":
    main()
