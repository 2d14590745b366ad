"""Table of measured equivariance errors: layer x group x window x image size (float64).

    .venv/bin/python -m benchmarks.equivariance_table

For every grid-exact element of each group it measures the relative error
max|Φ(h·x) − h·Φ(x)| / max|Φ(x)| of the lifting layer and of the group layer with each group
encoding (``relative``, ``gevit``, ``pair``, ``relative`` with ``query="own"``, and the official
code's table), and prints the largest over the elements as a Markdown table. Random weights
and inputs, seed 0.
"""

from __future__ import annotations

import torch

from gsa_tutorial import GroupSelfAttention, LiftingSelfAttention, get_group
from gsa_tutorial.testing import equivariance_error

#: (column title, group_encoding, query) of the group layers in the table.
CHOICES = [("relative", "relative", "all"), ("gevit", "gevit", "all"), ("pair", "pair", "all"), ("own", "relative", "own"), ("official", "official", "all")]


def main() -> None:
    torch.set_num_threads(1)
    titles = " | ".join(f"group ({title})" for title, _, _ in CHOICES)
    print(f"| group | window | size | grid-exact elements | lifting | {titles} |")
    print("|---|---|---|---|---|" + "---|" * len(CHOICES))
    for name in ["r4", "m4", "r8", "r12", "r16"]:
        group = get_group(name)
        for window in [3, None]:
            torch.manual_seed(0)
            lifting = LiftingSelfAttention(2, 4, group=name, heads=2, window=window).double()
            layers = [GroupSelfAttention(4, 4, group=name, heads=2, window=window, group_encoding=e, query=q).double() for _, e, q in CHOICES]
            for size in [7, 8]:
                x = torch.randn(1, 2, size, size, dtype=torch.float64)  # image
                f = torch.randn(1, 4, group.order, size, size, dtype=torch.float64)  # lifted map
                errors = [max(equivariance_error(lifting, name, x).values())]
                errors += [max(equivariance_error(layer, name, f).values()) for layer in layers]
                where = "global" if window is None else f"{window}x{window}"
                cells = " | ".join(f"{e:.1e}" for e in errors)
                print(f"| {name} | {where} | {size} | {len(group.grid_exact_elements)} | {cells} |")


if __name__ == "__main__":
    main()
