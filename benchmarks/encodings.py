"""Which group encoding to use: a measured study on rotated real MNIST digits (chapter 6).

Run from the repository root (about an hour on 2 free CPU cores; several on a busy machine)::

    .venv/bin/python -m benchmarks.encodings --data ../shared/data/mnist --jobs 2
    .venv/bin/python -m benchmarks.encodings --data ../shared/data/mnist --smoke   # seconds: the pipeline only

Data: the 10,000 MNIST test digits (IDX files, md5-checked by :class:`gsa_tutorial.data.MNISTIDX`)
through the ``mnist-idx-rotated`` loader (:class:`gsa_tutorial.data.RotatedMNISTFromIDX`): one
seeded permutation (data seed 0) split into 1,000 training, 300 validation and 1,500 test digits,
each rotated by its own angle uniform in [0, 2π). The three splits are disjoint, so test digits are
never seen in training or model selection; every run uses the same split.

Models: the ``small`` preset (2 group blocks, 4 heads of width 4, ~4k parameters) for Z2, for R4
with each group encoding (``relative``, ``gevit``, ``pair`` with the paper's sum over query
elements, and ``relative`` with ``query="own"``), and for M4 with the two best R4 choices. The
width (channels) of each variant is chosen so its parameter count is within 5 % of R4
``relative``'s. Training: the small preset's schedule (Adam, lr 2e-2, warm-up + cosine), 6
epochs, model selection on validation, test accuracy of the best epoch; seeds 0, 1, 2.

Results go to ``benchmarks/results/encodings.json`` after every finished run, so an interrupted
study resumes where it stopped (runs already in the file are skipped).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from gsa_tutorial.stored import recommend_encoding as recommend  # the rule lives in the package (chapter 6 uses it)

RESULTS = Path(__file__).resolve().parent / "results" / "encodings.json"

#: (name, group, group_encoding, query) of the R4 and Z2 variants; M4 gets the best two R4 choices.
R4_VARIANTS = [
    ("r4-relative", "r4", "relative", "all"),
    ("r4-gevit", "r4", "gevit", "all"),
    ("r4-pair", "r4", "pair", "all"),
    ("r4-own", "r4", "relative", "own"),
]
Z2_VARIANT = ("z2", "z2", "relative", "all")
SIZES = (1000, 300, 1500)
SMOKE_SIZES = (64, 32, 64)


def matched_channels(group: str, encoding: str, query: str, target: int, tolerance: float = 0.05) -> tuple[int, int]:
    """The ``small`` preset's width whose parameter count is closest to ``target``; ``(channels, count)``.

    Raises:
        ValueError: if no width brings the count within ``tolerance`` of ``target``.
    """
    from gsa_tutorial.model import GSANet, count_parameters, preset

    best = min(
        ((c, count_parameters(GSANet(preset("small", group, channels=c, group_encoding=encoding, query=query)))) for c in range(8, 25)),
        key=lambda item: abs(item[1] - target),
    )
    if abs(best[1] - target) > tolerance * target:
        raise ValueError(f"no width puts {group}/{encoding}/{query} within {tolerance:.0%} of {target} parameters (closest: {best})")
    return best


def _run(job: dict[str, Any]) -> dict[str, Any]:
    """One training run (in a worker process with one thread)."""
    import torch

    torch.set_num_threads(1)
    from gsa_tutorial.data import RotatedMNISTFromIDX
    from gsa_tutorial.model import GSANet, count_parameters, preset
    from gsa_tutorial.train import fit, set_seed, train_preset

    sizes = tuple(job["sizes"])
    data = {s: RotatedMNISTFromIDX(job["data"], split=s, source="test", sizes=sizes, seed=0) for s in ("train", "valid", "test")}
    set_seed(job["seed"])
    config = preset("small", job["group"], channels=job["channels"], group_encoding=job["encoding"], query=job["query"])
    model = GSANet(config)
    train = train_preset("small", epochs=job["epochs"], seed=job["seed"], progress=False, verbose=False, device="cpu")
    t0 = time.perf_counter()
    record = fit(model, data["train"], data["valid"], train, test_set=data["test"])
    times = [row["time_s"] for row in record["history"]]
    return {
        **{k: job[k] for k in ("variant", "group", "encoding", "query", "seed", "channels", "epochs")},
        "parameters": count_parameters(model),
        "test_acc": record["test"]["acc"],
        "best_valid_acc": record["best"]["valid_acc"],
        "best_epoch": record["best"]["epoch"],
        "s_per_epoch": statistics.mean(times),
        "wall_s": time.perf_counter() - t0,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean ± sample standard deviation of test accuracy and time per epoch, per variant."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["variant"] for r in runs):
        rows = [r for r in runs if r["variant"] == name]
        acc = [r["test_acc"] for r in rows]
        sec = [r["s_per_epoch"] for r in rows]
        out[name] = {
            "group": rows[0]["group"],
            "encoding": rows[0]["encoding"],
            "query": rows[0]["query"],
            "parameters": rows[0]["parameters"],
            "seeds": len(rows),
            "test_acc_mean": statistics.mean(acc),
            "test_acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "s_per_epoch_mean": statistics.mean(sec),
            "s_per_epoch_std": statistics.stdev(sec) if len(sec) > 1 else 0.0,
        }
    return out


def _meta(args: argparse.Namespace, sizes: tuple[int, int, int]) -> dict[str, Any]:
    import torch

    from gsa_tutorial.profiling import environment

    return {
        "environment": environment(),
        "torch": torch.__version__,
        "data": "MNIST test digits (t10k IDX), mnist-idx-rotated, data seed 0, angles uniform in [0, 2π)",
        "sizes": {"train": sizes[0], "valid": sizes[1], "test": sizes[2]},
        "epochs": args.epochs,
        "seeds": list(range(args.seeds)),
        "preset": "small",
        "parameter_tolerance": 0.05,
        "jobs": args.jobs,
        **{f"{name}_py_sha256": _sha256(name) for name in ("attention", "positional", "model")},
    }


def _sha256(module: str) -> str:
    import hashlib

    path = Path(__file__).resolve().parents[1] / "gsa_tutorial" / f"{module}.py"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with the MNIST IDX files (t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and 1 epoch: checks the pipeline in seconds")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.seeds < 1 or args.jobs < 1:
        parser.error(f"--epochs, --seeds and --jobs must be >= 1, got {args.epochs}, {args.seeds}, {args.jobs}")
    if not Path(args.data).is_dir():
        parser.error(f"--data must be a folder with the MNIST IDX files, got {args.data!r} (not a folder)")
    sizes = SMOKE_SIZES if args.smoke else SIZES
    if args.smoke:
        args.epochs = 1

    from gsa_tutorial.model import GSANet, count_parameters, preset

    target = count_parameters(GSANet(preset("small", "r4")))
    done: list[dict[str, Any]] = []
    if args.out.exists():
        stored = json.loads(args.out.read_text())
        same = {k: stored.get("meta", {}).get(k) for k in ("sizes", "epochs", "attention_py_sha256", "positional_py_sha256")}
        if same == {k: _meta(args, sizes)[k] for k in same}:
            done = stored.get("runs", [])

    def save() -> dict[str, Any]:
        result = {"meta": {**_meta(args, sizes), "target_parameters": target}, "runs": done, "summary": summarise(done)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(args.out)
        return result

    def jobs_for(variants: list[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
        jobs = []
        for seed in range(args.seeds):  # seed-major: every variant gets seed 0 first
            for name, group, encoding, query in variants:
                if any(r["variant"] == name and r["seed"] == seed for r in done):
                    continue
                channels, _ = matched_channels(group, encoding, query, target)
                jobs.append(dict(variant=name, group=group, encoding=encoding, query=query, seed=seed, channels=channels,
                                 epochs=args.epochs, sizes=sizes, data=str(args.data)))
        return jobs

    def run_all(jobs: list[dict[str, Any]]) -> None:
        if not jobs:
            return
        with mp.get_context("spawn").Pool(min(args.jobs, len(jobs))) as pool:
            for row in pool.imap_unordered(_run, jobs):
                done.append(row)
                save()
                print(f"{row['variant']:12s} seed {row['seed']}  {row['parameters']:5d} params  test {row['test_acc']:.4f}  "
                      f"{row['s_per_epoch']:.1f} s/epoch", flush=True)

    run_all(jobs_for([Z2_VARIANT, *R4_VARIANTS]))
    summary = summarise(done)
    ranked = sorted((v for v in R4_VARIANTS), key=lambda v: -summary[v[0]]["test_acc_mean"])[:2]
    m4 = [(name.replace("r4-", "m4-"), "m4", encoding, query) for name, _, encoding, query in ranked]
    run_all(jobs_for(m4))
    result = save()
    print(json.dumps(result["summary"], indent=1))
    print(f"recommended default: {recommend(result['summary'])}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
