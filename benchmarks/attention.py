"""Time and peak memory of the lifting and group self-attention layers, fast against dense.

Run from the repository root::

    .venv/bin/python -m benchmarks.attention                  # full CPU run (~15 min on 2 cores)
    .venv/bin/python -m benchmarks.attention --quick          # rotMNIST Z2/R4/R12, < 2 min
    .venv/bin/python -m benchmarks.attention --device cuda --batch 8 --out benchmarks/results/h100.json
    # the group-encoding choices against the official layer itself (a checkout of dwromero/g_selfatt):
    .venv/bin/python -m benchmarks.attention --variants-only --official ../g_selfatt --pythonpath DIR_WITH_EINOPS --threads 1

On a machine whose cores are busy with other jobs, use ``--threads 1``: with more threads every
parallel region waits for a core that another job holds, which slows code made of many small
kernels far more than code made of a few large ones, and the comparison measures the load.
``benchmarks/results/cpu.json`` was measured that way.

For every configuration of the paper (rotMNIST 28x28 with 20 channels over Z2, R4, R8, R12,
R16, M4; CIFAR-10 32x32 with 96 channels over M4; PCam 48x48 with 12 channels over R8) it
measures forward+backward of the lifting layer, of the factorized group layer and of the dense
reference (the official ``G³K`` score tensor, same weights, same input, same process), checks
that the two group layers agree, and prints speed-up (dense / fast time) and memory ratio
(fast / dense peak). It then times one training step of a whole GSA-Net (when
:mod:`gsa_tutorial.model` is available) and measures the equivariance error of the lifting layer
at rotations that are not multiples of 90°. Everything is saved as JSON.

With ``--official PATH`` (or ``--variants-only``) it also measures every group-encoding choice of
the group layer (``relative``, ``gevit``, ``pair`` with the sum over query elements, ``relative``
with ``query="own"``) at the rotMNIST R8 configuration (28x28, 20 channels, 9 heads of width 10 =
the official ``mid_channels``, 5x5), against our dense reference and, given a checkout of the
official repository, against the official ``GroupLocalSelfAttention`` itself (same widths, same
process): ``variants`` in the JSON, ``benchmarks/results/cpu-variants.json`` for ``--variants-only``.

The measuring functions are in :mod:`gsa_tutorial.profiling` (chapter 9 uses them too).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from gsa_tutorial.attention import GroupSelfAttention
from gsa_tutorial.groups import get_group
from gsa_tutorial.profiling import (
    LayerConfig,
    _measure,
    environment,
    format_bytes,
    forward_backward,
    measure_layers,
    measure_model_step,
    nongrid_equivariance_errors,
    paper_configs,
    quick_configs,
    results_table,
)

#: Whole-network training steps of the full run: (preset, group, also measure dense?).
MODEL_STEPS_FULL = [("rotmnist", "r4", True), ("rotmnist", "r12", True), ("cifar10", "m4", True), ("pcam", "r8", True)]
MODEL_STEPS_QUICK = [("rotmnist", "r4", True)]


def run_benchmark(
    configs: list[LayerConfig],
    *,
    device: str = "cpu",
    repeats: int = 3,
    warmup: int = 1,
    dense_limit_bytes: float = 8e9,
    model_steps: list[tuple[str, str, bool]] | None = None,
    model_batch: int = 1,
    equivariance_groups: tuple[str, ...] = (),
    quick: bool = False,
    log=print,
) -> dict[str, Any]:
    """Measure ``configs`` (and optionally model steps and non-grid equivariance); return the JSON dict.

    Args:
        configs: layer configurations (:func:`gsa_tutorial.profiling.paper_configs`).
        device: ``"cpu"`` or ``"cuda"``.
        repeats, warmup: timing repeats (median reported) and warm-up runs.
        dense_limit_bytes: skip the dense reference when its score tensor alone is larger.
        model_steps: ``(preset, group, dense)`` triples for whole-network training steps.
        model_batch: batch size of the model steps.
        equivariance_groups: groups for :func:`~gsa_tutorial.profiling.nongrid_equivariance_errors`.
        quick: recorded in the metadata.
        log: where progress lines go.

    Returns:
        ``{"meta": ..., "layers": [...], "model_steps": [...] or {"skipped": ...}, "equivariance": {...}}``.
    """
    start = time.perf_counter()
    meta = environment(device)
    meta.update(quick=quick, repeats=repeats, warmup=warmup, dtype="float32", dense_limit_bytes=dense_limit_bytes)
    log(f"# {meta['device_name']} ({meta['device']}), torch {meta['torch']}, {meta['threads']} threads, load average {meta['load_average']}")
    layers = []
    for c in configs:
        t0 = time.perf_counter()
        r = measure_layers(c, device=device, repeats=repeats, warmup=warmup, dense_limit_bytes=dense_limit_bytes)
        layers.append(r)
        dense = r["group_dense"]
        dense_text = (f"dense {dense['time_s']:.3g} s / {format_bytes(dense['peak_bytes'])}, speed-up {r['speedup']:.2f}x, "
                      f"memory ratio {r['memory_ratio']:.3f}, max |fast - dense| {r['max_abs_diff']:.1e}"
                      if "time_s" in dense else f"dense {dense['status']}")
        log(f"{c.name:>14}: lifting {r['lifting']['time_s']:.3g} s, fast {r['group_fast']['time_s']:.3g} s / "
            f"{format_bytes(r['group_fast']['peak_bytes'])}, {dense_text}  [{time.perf_counter() - t0:.0f} s]")

    result: dict[str, Any] = {"meta": meta, "layers": layers}
    if model_steps:
        try:
            import gsa_tutorial.model  # noqa: F401
        except ImportError as error:
            result["model_steps"] = {"skipped": f"gsa_tutorial.model is not available ({error})"}
            log(f"model steps skipped: {result['model_steps']['skipped']}")
        else:
            steps = []
            for preset_name, group, dense in model_steps:
                t0 = time.perf_counter()
                s = measure_model_step(preset_name, group, batch=model_batch, device=device, repeats=1, warmup=1, dense=dense)
                steps.append(s)
                dense_text = (f"dense {s['dense']['time_s']:.3g} s / {format_bytes(s['dense']['peak_bytes'])}, "
                              f"speed-up {s['speedup']:.2f}x, memory ratio {s['memory_ratio']:.3f}"
                              if "time_s" in s["dense"] else f"dense {s['dense']['status']}")
                log(f"GSANet {preset_name}-{group} train step (batch {model_batch}, {s['parameters']} parameters): "
                    f"fast {s['fast']['time_s']:.3g} s / {format_bytes(s['fast']['peak_bytes'])}, {dense_text}  "
                    f"[{time.perf_counter() - t0:.0f} s]")
            result["model_steps"] = steps
    if equivariance_groups:
        result["equivariance"] = {
            "description": "lifting layer, float64, smooth blob 21x21, 5x5 window, error max over the central disk of "
                           "radius 6 / max |output|, per rotation angle (degrees) that is not a multiple of 90",
            "errors": nongrid_equivariance_errors(equivariance_groups),
        }
        for g, errs in result["equivariance"]["errors"].items():
            log(f"non-grid equivariance {g}: " + ", ".join(f"{a}°: {e:.1e}" for a, e in errs.items()))
    meta["load_average_end"] = environment(device)["load_average"]
    meta["total_s"] = time.perf_counter() - start
    return result


#: The group-encoding choices measured by :func:`measure_variants`: (name, group_encoding, query).
VARIANTS = [("relative", "relative", "all"), ("gevit", "gevit", "all"), ("pair", "pair", "all"), ("own", "relative", "own")]


def measure_variants(
    *,
    group: str = "r8",
    size: int = 28,
    channels: int = 20,
    heads: int = 9,
    dim_head: int = 10,
    window: int = 5,
    batch: int = 1,
    device: str = "cpu",
    repeats: int = 3,
    warmup: int = 1,
    official_path: str | None = None,
    official_pythonpath: tuple[str, ...] = (),
    log=print,
) -> dict[str, Any]:
    """Forward+backward time and peak memory of each group-encoding choice, against our dense reference
    (``relative``, the official ``G³K`` layout) and, with ``official_path``, the official layer itself.

    Returns:
        ``{"config", "official_commit", "reference": {"dense", "official"}, "variants": {name: {...,
        "time_vs_dense", "memory_vs_dense", "time_vs_official", "memory_vs_official"}}}``.
    """
    dev = torch.device(device)
    G = get_group(group).order
    gen = torch.Generator().manual_seed(0)
    lifted = torch.randn(batch, channels, G, size, size, generator=gen).to(dev).requires_grad_()
    config = dict(group=group, size=size, channels=channels, heads=heads, dim_head=dim_head, window=window, batch=batch, dtype="float32")
    result: dict[str, Any] = {"config": config, "official_commit": None, "reference": {}, "variants": {}}

    def layer(encoding: str, query: str, implementation: str = "factorized") -> GroupSelfAttention:
        torch.manual_seed(0)
        return GroupSelfAttention(channels, channels, group=group, heads=heads, dim_head=dim_head, window=window,
                                  group_encoding=encoding, query=query, implementation=implementation).to(dev)  # type: ignore[arg-type]

    result["reference"]["dense"] = _measure(forward_backward(layer("relative", "all", "dense"), lifted), device=dev, repeats=repeats, warmup=warmup)
    log(f"variants {group} {size}x{size}: dense reference {result['reference']['dense']['time_s']:.3g} s / "
        f"{format_bytes(result['reference']['dense']['peak_bytes'])}")
    if official_path is not None:
        from benchmarks.official_fidelity import load_official, official_group

        official = load_official(official_path, official_pythonpath)
        result["official_commit"] = official["commit"]
        torch.manual_seed(0)
        theirs = official["nn"].GroupLocalSelfAttention(official_group(official, group), channels, dim_head, channels, heads, window, 0.0).to(dev)
        result["reference"]["official"] = _measure(forward_backward(theirs, lifted), device=dev, repeats=repeats, warmup=warmup)
        log(f"variants {group}: official GroupLocalSelfAttention {result['reference']['official']['time_s']:.3g} s / "
            f"{format_bytes(result['reference']['official']['peak_bytes'])}")
    for name, encoding, query in VARIANTS:
        entry = _measure(forward_backward(layer(encoding, query), lifted), device=dev, repeats=repeats, warmup=warmup)
        for ref_name, ref in result["reference"].items():
            entry[f"time_vs_{ref_name}"] = entry["time_s"] / ref["time_s"]
            entry[f"memory_vs_{ref_name}"] = entry["peak_bytes"] / max(ref["peak_bytes"], 1)
        result["variants"][name] = {"group_encoding": encoding, "query": query, **entry}
        ratios = ", ".join(f"{k} {v:.3f}" for k, v in entry.items() if k.startswith(("time_vs", "memory_vs")))
        log(f"variants {group}: {name:8s} {entry['time_s']:.3g} s / {format_bytes(entry['peak_bytes'])}  ({ratios})")
    return result


def save_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``result`` as indented JSON (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attention", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="rotMNIST Z2/R4/R12 only, fewer repeats (< 2 min on CPU)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/<device>[-quick].json)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 1 on CPU, 8 on CUDA)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement, median reported (default 3; 2 with --quick)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--dense-limit-gb", type=float, default=8.0, help="skip the dense reference above this score-tensor size")
    parser.add_argument("--only", nargs="+", default=None, help="configuration names, e.g. rotmnist-r12 cifar10-m4")
    parser.add_argument("--no-model", action="store_true", help="skip the whole-network training steps")
    parser.add_argument("--no-equivariance", action="store_true", help="skip the non-grid equivariance errors")
    parser.add_argument("--official", default=None, help="a checkout of github.com/dwromero/g_selfatt: also measure the official group layer")
    parser.add_argument("--pythonpath", nargs="*", default=(), help="folders to put on sys.path for the official code (e.g. where einops is)")
    parser.add_argument("--variants-only", action="store_true", help="only the group-encoding choices (benchmarks/results/<device>-variants.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda was asked for but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (1 if args.device == "cpu" else 8)
    repeats = args.repeats or (2 if args.quick else 3)
    if args.variants_only:
        start = time.perf_counter()
        result = {"meta": environment(args.device)}
        result["meta"].update(repeats=repeats, warmup=args.warmup)
        result.update(measure_variants(batch=batch, device=args.device, repeats=repeats, warmup=args.warmup,
                                       official_path=args.official, official_pythonpath=tuple(args.pythonpath)))
        result["meta"]["total_s"] = time.perf_counter() - start
        out = args.out or Path("benchmarks/results") / f"{args.device}-variants.json"
        print(f"saved {save_json(result, out)} ({result['meta']['total_s']:.0f} s)")
        return result
    configs = quick_configs(batch=batch) if args.quick else paper_configs(batch=batch)
    if args.only:
        known = {c.name: c for c in paper_configs(batch=batch)}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            sys.exit(f"unknown configuration(s) {unknown}; known: {sorted(known)}")
        configs = [known[n] for n in args.only]
    model_steps = None if args.no_model else (MODEL_STEPS_QUICK if args.quick else MODEL_STEPS_FULL)
    equivariance = () if args.no_equivariance else (("r8", "r12") if args.quick else ("r8", "r12", "r16"))
    result = run_benchmark(
        configs, device=args.device, repeats=repeats, warmup=args.warmup, dense_limit_bytes=args.dense_limit_gb * 1e9,
        model_steps=model_steps, model_batch=batch, equivariance_groups=equivariance, quick=args.quick,
    )
    if args.official is not None:
        result["variants"] = measure_variants(batch=batch, device=args.device, repeats=repeats, warmup=args.warmup,
                                              official_path=args.official, official_pythonpath=tuple(args.pythonpath))
    print()
    print(results_table(result["layers"]))
    out = args.out or Path("benchmarks/results") / f"{args.device}{'-quick' if args.quick else ''}.json"
    print(f"\nsaved {save_json(result, out)} ({result['meta']['total_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
