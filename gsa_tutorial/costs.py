"""What the benchmarks of chapter 9 measure and how their numbers are reported: the paper's
layer configurations, the size of the score tensors (the arithmetic of the cost), and the
results table.

Legend: ``B`` batch, ``m`` heads, ``d`` dim_head, ``G = |H|`` group size, ``N = H*W`` query
pixels, ``K = k*k`` window offsets.

What dominates the cost of the group layer (chapter 6) is the score tensor: one logit per query
``(i, h̃)``, key ``(j, ĥ)`` and output element ``h``, i.e. ``B·m·G³·N·K`` numbers in the
textbook ("dense") layout of the official code, and ``B·m·G²·N·K`` in the factorized layout of
:class:`~gsa_tutorial.attention.GroupSelfAttention` (module docstring of
:mod:`gsa_tutorial.attention`). :func:`score_tensor_sizes` does that arithmetic; the
measurements themselves are :mod:`gsa_tutorial.profiling`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .data import PRESET_DATASETS, dataset_info
from .groups import get_group
from .model import preset

__all__ = ["LayerConfig", "paper_configs", "quick_configs", "score_tensor_sizes", "format_bytes", "results_table", "BYTES_PER_FLOAT32"]

#: Bytes of one float32 number.
BYTES_PER_FLOAT32 = 4


@dataclass(frozen=True)
class LayerConfig:
    """One benchmark point: a lifting layer and a group layer of the same width.

    Attributes:
        name: a label, e.g. ``"rotmnist-r12"``.
        group: the group (``"z2"``, ``"r4"``, ..., ``"m4"``).
        size: the image side (square images ``size x size``).
        channels: input and output channels of the group layer (output of the lifting layer).
        heads: attention heads.
        dim_head: width of each head.
        window: odd window side ``k`` (``K = k*k`` keys per query).
        batch: batch size.
        in_channels: channels of the image fed to the lifting layer.
    """

    name: str
    group: str
    size: int
    channels: int
    heads: int
    dim_head: int
    window: int = 5
    batch: int = 1
    in_channels: int = 1


def _preset_dim_head(preset_name: str, channels: int) -> int:
    """The ``dim_head`` a :mod:`gsa_tutorial.model` preset gives a layer of ``channels`` channels."""
    return preset(preset_name).dim_head_for(channels)


def paper_configs(*, batch: int = 1) -> list[LayerConfig]:
    """The paper's layer configurations (Romero & Cordonnier 2021, §5).

    rotMNIST 28x28, 20 channels, 9 heads, 5x5 windows over Z2, R4, R8, R12, R16 and M4;
    CIFAR-10 32x32 with 96 channels over M4; PCam 48x48 with 12 channels over R8.
    ``dim_head`` is the one the model presets use; the image sizes of rotMNIST and CIFAR-10
    are those of the data sets (:func:`gsa_tutorial.data.dataset_info`); PCam's layers run
    at 48×48, after the network's first pooling of the 96×96 patches.
    """
    mnist, cifar, pcam = (dataset_info(PRESET_DATASETS[name]) for name in ("rotmnist", "cifar10", "pcam"))
    mnist_d = _preset_dim_head("rotmnist", 20)
    configs = [
        LayerConfig(f"rotmnist-{g}", g, mnist.image_size, 20, 9, mnist_d, 5, batch, mnist.in_channels)
        for g in ("z2", "r4", "r8", "r12", "r16", "m4")
    ]
    configs.append(LayerConfig("cifar10-m4", "m4", cifar.image_size, 96, 9, _preset_dim_head("cifar10", 96), 5, batch, cifar.in_channels))
    configs.append(LayerConfig("pcam-r8", "r8", pcam.image_size // 2, 12, 9, _preset_dim_head("pcam", 12), 5, batch, pcam.in_channels))
    return configs


def quick_configs(*, batch: int = 1) -> list[LayerConfig]:
    """A reduced set for a quick check: rotMNIST over Z2, R4 and R12."""
    return [c for c in paper_configs(batch=batch) if c.name in ("rotmnist-z2", "rotmnist-r4", "rotmnist-r12")]


def score_tensor_sizes(
    group: str, height: int, width: int | None = None, *, window: int, heads: int, batch: int = 1, dim_head: int = 1
) -> dict[str, int]:
    """How many numbers the attention layers hold per step (the arithmetic of chapter 9).

    Args:
        group: the group H.
        height, width: the feature-map size (``width`` defaults to ``height``).
        window: the window side k.
        heads: attention heads m.
        batch: batch size B.
        dim_head: head width d (for the unfolded keys and values).

    Returns:
        ``lifting`` (``B m G N K``: one logit per query, key and output element),
        ``factorized`` (``B m G² N K``: the largest tensors of the fast group layer),
        ``dense`` (``B m G³ N K``: the score tensor of the official layout),
        ``unfold`` (``B m G N K 2d``: keys and values gathered into every window), and the
        same with a ``_bytes`` suffix in float32.
    """
    width = height if width is None else width
    G = get_group(group).order
    N, K = height * width, window * window
    sizes = {
        "lifting": batch * heads * G * N * K,
        "factorized": batch * heads * G**2 * N * K,
        "dense": batch * heads * G**3 * N * K,
        "unfold": batch * heads * G * N * K * 2 * dim_head,
    }
    sizes.update({f"{k}_bytes": v * BYTES_PER_FLOAT32 for k, v in list(sizes.items())})
    return sizes


def format_bytes(n: float | None) -> str:
    """``1.5 GB``-style text (powers of 1000) for a number of bytes; ``—`` for ``None``."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def _time_text(entry: dict[str, Any]) -> str:
    return f"{entry['time_s']:.3g}" if "time_s" in entry else "—"


def _peak_text(entry: dict[str, Any]) -> str:
    return format_bytes(entry["peak_bytes"]) if "peak_bytes" in entry else "—"


def results_table(layers: Sequence[dict[str, Any]], *, markdown: bool = False) -> str:
    """A table of :func:`measure_layers` results: times (s) and peaks of the lifting layer, the fast
    group layer and the dense reference, speed-up (dense / fast time) and memory ratio
    (fast / dense peak).

    Args:
        layers: results of :func:`measure_layers`.
        markdown: a Markdown table instead of aligned text.
    """
    header = ["config", "|H|", "B", "m×d", "lift s", "lift peak", "fast s", "dense s", "speed-up",
              "fast peak", "dense peak", "mem ratio"]
    rows = []
    notes = []
    for r in layers:
        c = r["config"]
        dense = r["group_dense"]
        rows.append([
            c["name"], str(get_group(c["group"]).order), str(c["batch"]), f"{c['heads']}×{c['dim_head']}",
            _time_text(r["lifting"]), _peak_text(r["lifting"]),
            _time_text(r["group_fast"]), _time_text(dense),
            f"{r['speedup']:.1f}×" if r.get("speedup") else "—",
            _peak_text(r["group_fast"]), _peak_text(dense),
            f"{r['memory_ratio']:.2f}" if r.get("memory_ratio") else "—",
        ])
        if "status" in dense:
            notes.append(f"{c['name']}: dense {dense['status']}")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines + notes)
