"""One prepared GPU run: CUDA tests, the attention benchmark, and rotated-MNIST training, measured.

A GPU lease is short (about 15 minutes of device time, machine start included), so everything
the book wants from a GPU is this one command, which finishes within ``--budget-minutes``
(default 9) of wall time on a bare CUDA machine::

    python3 -m benchmarks.gpu_run              # or: make gpu-run
    python3 -m benchmarks.gpu_run --device cpu --smoke --data-dir DIR   # the CPU rehearsal (seconds)

What it does, in order, each phase bounded by the time left (a phase that fails or runs out of
time is recorded and the run goes on):

1. ``tests``: ``pytest tests/test_cuda.py`` (every layer and the whole network equivariant on
   CUDA in float64 and float32, AMP bf16/fp16 forward + backward finite, the trainer on CUDA,
   a one-process NCCL ``torchrun`` step);
2. ``attention``: ``python -m benchmarks.attention --device cuda`` (the paper's layer
   configurations, fast against dense, CUDA events, ``torch.cuda.max_memory_allocated``);
3. ``sweep``: one training step of the rotMNIST GSA-Net for every group and batch size
   (median time, images per second, peak memory of the step);
4. ``training``: the ``rotmnist`` preset trained for Z2 and R4, then R8, M4, R12, R16 while time
   is left, on rotated real MNIST digits (below), each under a time budget (``max_minutes`` of
   :class:`gsa_tutorial.train.TrainConfig`: it stops at an epoch boundary with a checkpoint).
   The number of epochs is planned from a timed probe of a few training steps so that the
   cosine schedule ends inside the budget. Recorded per group: test and validation accuracy,
   epochs, seconds per epoch, images per second, peak GPU memory, the invariance error of the
   trained network on CUDA, and the sha256 of its checkpoints.

Data and split (fixed): the 10,000 real MNIST test digits (``t10k-*-idx*-ubyte.gz``, md5-checked
against the published checksums) through the ``mnist-idx-rotated`` loader
(:class:`gsa_tutorial.data.RotatedMNISTFromIDX`, ``source="test"``, ``seed=0``): one seeded
permutation of the digits is cut into 5,000 training, 1,000 validation and 4,000 test digits
(50 / 10 / 40 %), each rotated by its own angle drawn uniformly in [0, 2π). The three parts are
disjoint by construction (the run checks it): test digits are never seen in training or in
model selection. This is a rotated-MNIST-style set built like Larochelle et al.'s (2007), not
their benchmark files (12,000 / 50,000), which cannot be downloaded on the GPU machine.

Output, under ``--out`` (default ``$OUT``, else ``gpu-run-out/``), at most 8 files (what the
device tool brings back), rewritten after every phase so that a killed run leaves what it had:

* ``gpu.json``: everything measured (``meta``, ``tests``, ``attention``, ``sweep``, ``training``);
* ``attention-<device>.json``: the full output of ``benchmarks.attention``;
* ``pytest-cuda.xml``: the JUnit report of the CUDA tests;
* ``checkpoints.tar``: ``<preset>-<group>/{best.pt,last.pt,metrics.json}`` for every trained group
  (load with :func:`gsa_tutorial.train.load_model`; ``last.pt`` resumes the run);
* ``gpu_run.log``: the console output.

The exact call on this workplace's GPU machine (device tool), from the repository root::

    mkdir -p .device-data && cp -r ../shared/data/mnist .device-data/     # once, here
    run(command="PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_run", carry=[".device-data"], timeout_s=600)

``.device-data/`` is ignored by git (``.gitignore``) and carried to the machine; the script reads
the digits from ``.device-data/mnist/`` when that folder exists (else ``--data-dir``, else
``$GSA_DATA_DIR``). The machine's ``python3`` has a CUDA PyTorch, numpy, matplotlib, tqdm and
pytest, but not ipywidgets or nbval, and no registry: the package is used in place (the
repository root is put on ``sys.path`` and on the subprocesses' ``PYTHONPATH``), so nothing is
installed and its torch is never replaced. ``python -m benchmarks.gpu_run --table gpu.json``
prints the README's tables from a result file.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the package is used in place, never installed over the device's torch
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

#: Training order: Z2 and R4 always, the others while time is left.
GROUPS = ("z2", "r4", "r8", "m4", "r12", "r16")
REQUIRED_GROUPS = 2
#: Batch sizes of the step sweep (CUDA), and the largest factorized score tensor it tries.
SWEEP_BATCHES = (8, 32, 128)
SWEEP_LIMIT_BYTES = 16e9
#: The split: see the module docstring.
SPLIT = {"name": "mnist-idx-rotated", "source": "test", "seed": 0}
#: What a smoke run trains: the CPU preset, made smaller still (seconds per epoch on one core).
SMOKE_MODEL = {"channels": 4, "heads": 2, "dim_head": 2, "pos_hidden": 4, "num_blocks": 1}
RESULT_FILES = ("gpu.json", "gpu_run.log", "pytest-cuda.xml", "checkpoints.tar")  # + attention-<device>.json


def _finite_or_none(x: Any) -> Any:
    return x if not isinstance(x, float) or math.isfinite(x) else None


class Run:
    """The state of one GPU run: output folder, log, deadline and the result being built."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.start = time.perf_counter()
        self.deadline = self.start + 60.0 * args.budget_minutes
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gsa-gpu-run-")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.out / "gpu_run.log", "w", buffering=1)
        self.device = torch.device(args.device)
        self.result: dict[str, Any] = {"meta": {}, "tests": None, "attention": None, "sweep": None, "training": None}
        self.failures: list[str] = []

    def left(self) -> float:
        """Seconds left before the deadline."""
        return self.deadline - time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def log(self, message: str) -> None:
        line = f"[{self.elapsed():6.1f} s] {message}"
        print(line, flush=True)
        self.log_file.write(line + "\n")

    def save(self) -> None:
        """Rewrite gpu.json (atomically): called after every phase."""
        self.result["meta"]["wall_s"] = self.elapsed()
        self.result["meta"]["failures"] = list(self.failures)
        _write_json(self.out / "gpu.json", _sanitize(self.result))  # (a copy: phases hold references into result)


def _write_json(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, default=_finite_or_none, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


def _sanitize(obj: Any) -> Any:
    """JSON-safe: NaN and infinities become None (json.dump cannot write them as JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    return obj


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _subprocess_env(run: Run) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    if run.args.threads:
        env["OMP_NUM_THREADS"] = str(run.args.threads)
    return env


def _run_subprocess(run: Run, name: str, cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run ``cmd`` from the repository root with a timeout; its output goes to the log."""
    run.log(f"{name}: {' '.join(cmd)}  (timeout {timeout:.0f} s)")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=_subprocess_env(run), capture_output=True, text=True, timeout=max(timeout, 1.0))
        output, code, timed_out = proc.stdout + proc.stderr, proc.returncode, False
    except subprocess.TimeoutExpired as error:
        def text(b: Any) -> str:
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")

        output, code, timed_out = text(error.stdout) + text(error.stderr), None, True
    seconds = time.perf_counter() - t0
    run.log_file.write(output if output.endswith("\n") else output + "\n")
    tail = "\n".join(output.strip().splitlines()[-15:])
    print(tail, flush=True)
    run.log(f"{name}: {'timed out' if timed_out else f'exit code {code}'} after {seconds:.1f} s")
    return {"command": cmd, "returncode": code, "timed_out": timed_out, "seconds": seconds, "output_tail": output[-3000:]}


# ---- phase 1: the CUDA tests -----------------------------------------------------------------


def _junit_summary(path: Path) -> dict[str, Any]:
    """Counts and the failing tests' names from a pytest JUnit XML report."""
    if not path.exists():
        return {"report": None}
    root = ET.parse(path).getroot()
    cases = root.iter("testcase")
    summary = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, "failing": [], "skip_reasons": {}}
    for case in cases:
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            summary["failed"] += 1
            summary["failing"].append(name)
        elif "error" in kinds:
            summary["errors"] += 1
            summary["failing"].append(name)
        elif "skipped" in kinds:
            summary["skipped"] += 1
            reason = next(child.get("message", "") for child in case if child.tag == "skipped")
            summary["skip_reasons"][reason] = summary["skip_reasons"].get(reason, 0) + 1
        else:
            summary["passed"] += 1
    summary["report"] = path.name
    return summary


def phase_tests(run: Run) -> None:
    timeout = min(run.args.tests_timeout, run.left() - run.args.reserve_for_training)
    report = run.out / "pytest-cuda.xml"
    cmd = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-q", "-rfEs", "-p", "no:cacheprovider", f"--junitxml={report}"]
    entry = _run_subprocess(run, "tests", cmd, timeout)
    entry.update(_junit_summary(report))
    if run.device.type == "cuda" and entry.get("passed", 0) == 0:
        entry["note"] = "no CUDA test passed"
    ok = entry["returncode"] == 0 and not (run.device.type == "cuda" and entry.get("skipped", 0) > 0 and entry.get("passed", 0) == 0)
    if not ok:
        run.failures.append("tests")
    entry["ok"] = ok
    run.result["tests"] = entry
    run.log(f"tests: {entry.get('passed')} passed, {entry.get('failed')} failed, {entry.get('errors')} errors, {entry.get('skipped')} skipped")


# ---- phase 2: the attention benchmark ----------------------------------------------------------


def phase_attention(run: Run) -> None:
    path = run.out / f"attention-{run.device.type}.json"
    cmd = [sys.executable, "-m", "benchmarks.attention", "--device", run.device.type, "--out", str(path)]
    if run.args.smoke:
        cmd += ["--quick", "--only", "rotmnist-z2", "--repeats", "1", "--warmup", "0", "--no-model", "--no-equivariance"]
    if run.args.threads:
        cmd += ["--threads", str(run.args.threads)]
    timeout = min(run.args.attention_timeout, run.left() - run.args.reserve_for_training)
    entry = _run_subprocess(run, "attention", cmd, timeout)
    entry["file"] = path.name if path.exists() else None
    if entry["returncode"] == 0 and path.exists():
        bench = json.loads(path.read_text())
        rows = []
        for r in bench["layers"]:
            row = {"config": r["config"]["name"], "batch": r["config"]["batch"], "speedup": r.get("speedup"),
                   "memory_ratio": r.get("memory_ratio"), "max_abs_diff": r.get("max_abs_diff")}
            for part in ("lifting", "group_fast", "group_dense"):
                m = r[part]
                row[part] = {"time_s": m["time_s"], "peak_bytes": m["peak_bytes"]} if "time_s" in m else {"status": m.get("status")}
            rows.append(row)
        entry["layers"] = rows
        steps = bench.get("model_steps")
        if isinstance(steps, list):
            entry["model_steps"] = [
                {"preset": s["preset"], "group": s["group"], "batch": s["batch"], "fast": s["fast"],
                 "dense": s["dense"], "speedup": s["speedup"], "memory_ratio": s["memory_ratio"]}
                for s in steps
            ]
        entry["total_s"] = bench["meta"].get("total_s")
        entry["ok"] = True
    else:
        entry["ok"] = False
        run.failures.append("attention")
    run.result["attention"] = entry


# ---- phase 3: the step sweep -------------------------------------------------------------------


def _model_overrides(run: Run) -> dict[str, Any]:
    return dict(SMOKE_MODEL) if run.args.smoke else {}


def _oom_types() -> tuple[type[BaseException], ...]:
    return tuple(t for t in (getattr(torch, "OutOfMemoryError", None), MemoryError) if t is not None)


def phase_sweep(run: Run) -> None:
    from gsa_tutorial.profiling import measure_model_step, score_tensor_sizes

    batches = [int(b) for b in run.args.sweep_batches.split(",") if b]
    preset_name = run.args.preset
    rows = []
    stop_at = run.start + 60.0 * run.args.budget_minutes - run.args.reserve_for_training
    for group in run.args.groups:
        for batch in batches:
            row: dict[str, Any] = {"group": group, "batch": batch}
            size = score_tensor_sizes(group, 28, window=5, heads=9, batch=batch)["factorized_bytes"]
            if run.device.type == "cuda" and size > run.args.sweep_limit_gb * 1e9:
                row["status"] = (f"not measured: one factorized score tensor alone would take {size / 1e9:.1f} GB "
                                 f"(limit {run.args.sweep_limit_gb:g} GB)")
            elif time.perf_counter() > stop_at:
                row["status"] = "not measured: out of time"
            else:
                try:
                    m = measure_model_step(preset_name, group, batch=batch, device=run.device, repeats=run.args.sweep_repeats,
                                           warmup=1, dense=False, **_model_overrides(run))
                    row.update(step_s=m["fast"]["time_s"], step_times_s=m["fast"]["times_s"], peak_bytes=m["fast"]["peak_bytes"],
                               images_per_s=batch / m["fast"]["time_s"], parameters=m["parameters"])
                except _oom_types() as error:
                    row["status"] = f"did not fit: {type(error).__name__}: {str(error)[:160]}"
                except RuntimeError as error:
                    if "out of memory" not in str(error).lower():
                        raise
                    row["status"] = f"did not fit: {str(error)[:160]}"
                finally:
                    if run.device.type == "cuda":
                        torch.cuda.empty_cache()
            rows.append(row)
            text = (f"{row['step_s'] * 1e3:.1f} ms/step, {row['images_per_s']:.0f} images/s, peak {row['peak_bytes'] / 1e6:.1f} MB"
                    if "step_s" in row else row["status"])
            run.log(f"sweep {preset_name}-{group} batch {batch}: {text}")
    run.result["sweep"] = {
        "what": "one training step (forward, cross-entropy, backward, Adam) of the GSA-Net on random 28x28 images; "
                "median of the timed repeats after one warm-up; peak = bytes allocated during the step above what "
                "was allocated before it (weights and Adam state not counted)",
        "preset": preset_name, "model_overrides": _model_overrides(run), "repeats": run.args.sweep_repeats, "rows": rows,
    }


# ---- phase 4: training -------------------------------------------------------------------------


def _data_dir(args: argparse.Namespace) -> Path | None:
    if args.data_dir:
        return Path(args.data_dir)
    carried = REPO / ".device-data"
    if (carried / "mnist").is_dir():
        return carried
    return None  # the package's default ($GSA_DATA_DIR or ~/.cache/gsa_tutorial)


def load_split(data_dir: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fixed rotated-MNIST split (module docstring): the three datasets and a description."""
    from gsa_tutorial.data import get_dataset, md5sum

    sets = {s: get_dataset(SPLIT["name"], s, root=data_dir, source=SPLIT["source"], seed=SPLIT["seed"]) for s in ("train", "valid", "test")}
    index = {s: set(d.source_indices.tolist()) for s, d in sets.items()}
    disjoint = not (index["train"] & index["valid"] or index["train"] & index["test"] or index["valid"] & index["test"])
    if not disjoint:
        raise RuntimeError("the train, valid and test digits overlap: the split is broken")
    root = sets["train"].root
    files = sorted(p for p in Path(root).iterdir() if p.name.startswith("t10k-"))
    info = {
        **SPLIT,
        "root": str(Path(root).resolve().relative_to(REPO)) if Path(root).resolve().is_relative_to(REPO) else str(root),
        "package_default_root": data_dir is None,
        "files": {p.name: md5sum(p) for p in files},
        "sizes": {s: len(d) for s, d in sets.items()},
        "disjoint": disjoint,
        "angles": "uniform in [0, 2*pi), one per digit, seeded",
        "description": "rotated real MNIST test digits (t10k), split 50/10/40 % by one seeded permutation; "
                       "not the Larochelle et al. benchmark files",
    }
    return sets, info


def _probe_step_s(model: torch.nn.Module, dataset: Any, batch: int, device: torch.device, steps: int) -> float:
    """Median seconds of one training step (forward, backward, Adam) on real batches, on a copy."""
    from torch.utils.data import DataLoader

    from gsa_tutorial.profiling import time_step

    probe = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-3)
    images, labels = next(iter(DataLoader(dataset, batch_size=batch, shuffle=False)))
    images, labels = images.to(device), labels.to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(probe(images), labels).backward()
        optimizer.step()

    return time_step(step, repeats=steps, warmup=1, device=device)["median_s"]


def _invariance(model: torch.nn.Module, group: str, images: torch.Tensor, device: torch.device) -> dict[str, Any]:
    """Relative invariance error of the trained logits for the grid-exact elements, float32 and float64."""
    from gsa_tutorial.testing import equivariance_error

    out = {}
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        errors = equivariance_error(model, group, images.to(device, dtype))
        out[name] = max(errors.values())
    out["elements"] = len(errors)
    return out


def _train_group(run: Run, group: str, data: dict[str, Any], budget_s: float, *, skip_if_slow: bool = False) -> dict[str, Any]:
    from gsa_tutorial.model import GSANet, preset
    from gsa_tutorial.train import fit, load_model, train_preset

    args = run.args
    config = preset(args.preset, group, **_model_overrides(run))
    torch.manual_seed(0)
    model = GSANet(config)
    n_train, n_valid = len(data["train"]), len(data["valid"])
    batch = args.batch_size
    eval_batch = 2 * batch
    steps = math.ceil(n_train / batch)
    step_s = _probe_step_s(model, data["train"], batch, run.device, args.probe_steps)
    # Plan (not a result): training steps, plus validation at about a third of a training step per
    # batch, plus a second for checkpoints and metrics.
    epoch_estimate = steps * step_s + math.ceil(n_valid / eval_batch) * step_s / 3 + 1.0
    if skip_if_slow and epoch_estimate > budget_s:
        return {"group": group, "skipped": f"one epoch (planned at {epoch_estimate:.0f} s from a probe of {step_s * 1e3:.0f} ms/step) "
                                             f"would not fit in the {budget_s:.0f} s left"}
    epochs = int(max(1, min(args.max_epochs, 0.85 * budget_s // epoch_estimate)))  # 15 % slack for what the probe misses
    preset_train = train_preset(args.preset)
    warmup = min(preset_train.warmup_epochs, 0.1 * epochs)
    train_config = train_preset(
        args.preset, epochs=epochs, batch_size=batch, eval_batch_size=eval_batch, warmup_epochs=warmup,
        device=str(run.device), max_minutes=budget_s / 60.0, progress=False, verbose=True, seed=0,
    )
    run_dir = run.work / f"{args.preset}-{group}"
    run.log(f"train {args.preset}-{group}: {model.num_parameters()} parameters, probe {step_s * 1e3:.1f} ms/step at batch {batch}, "
            f"plan {epochs} epochs in {budget_s:.0f} s")
    if run.device.type == "cuda":  # the peaks of this group's run only (not the probe's cached blocks)
        torch.cuda.synchronize(run.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(run.device)
    t0 = time.perf_counter()
    record = fit(model, data["train"], data["valid"], train_config, run_dir, test_set=data["test"])
    fit_s = time.perf_counter() - t0
    history = record["history"]
    epoch_s = [row["time_s"] for row in history]
    entry: dict[str, Any] = {
        "group": group,
        "preset": args.preset,
        "model_overrides": _model_overrides(run),
        "parameters": record["num_parameters"],
        "batch_size": batch,
        "budget_s": budget_s,
        "plan": {"probe_step_s": step_s, "epoch_estimate_s": epoch_estimate, "epochs": epochs,
                 "note": "planned from a timed probe of training steps; the measured times are in history"},
        "epochs_done": len(history),
        "finished": record["finished"],
        "stop": record.get("stop"),
        "test_acc": record["test"]["acc"] if record["test"] else None,
        "test_n": record["test"]["n"] if record["test"] else None,
        "best": record["best"],
        "final_train_acc": history[-1]["train_acc"] if history else None,
        "epoch_s_mean": sum(epoch_s) / len(epoch_s) if epoch_s else None,
        "epoch_s": epoch_s,
        # training images per second of epoch wall time (which also holds validation and checkpoints)
        "epoch_images_per_s": n_train * len(epoch_s) / sum(epoch_s) if epoch_s else None,
        "probe_images_per_s": batch / step_s,
        "fit_s": fit_s,
        "history": history,
        "train_config": record["train_config"],
    }
    if run.device.type == "cuda":
        entry["peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(run.device))
        entry["peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved(run.device))
    else:
        entry["peak_allocated_bytes"] = None
        entry["process_max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    best = load_model(run_dir / "best.pt").to(run.device)
    sample = data["test"].tensors()[0][: args.invariance_images]
    entry["invariance_error"] = _invariance(best, group, sample, run.device)
    entry["checkpoints"] = {name: {"bytes": (run_dir / name).stat().st_size, "sha256": _sha256(run_dir / name)}
                            for name in ("best.pt", "last.pt")}
    acc = f"{entry['test_acc']:.4f}" if entry["test_acc"] is not None else "—"
    run.log(f"train {args.preset}-{group}: {entry['epochs_done']} epochs ({entry['stop']['reason']}), "
            f"{entry['epoch_s_mean']:.1f} s/epoch, test acc {acc}, invariance error float32 "
            f"{entry['invariance_error']['float32']:.1e} float64 {entry['invariance_error']['float64']:.1e}")
    return entry


def _write_tar(run: Run, groups: list[str]) -> None:
    """checkpoints.tar: rotmnist-<group>/{best.pt, last.pt, metrics.json} of every trained group."""
    path = run.out / "checkpoints.tar"
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
        for group in groups:
            folder = run.work / f"{run.args.preset}-{group}"
            for name in ("best.pt", "last.pt", "metrics.json"):
                if (folder / name).exists():
                    tar.add(folder / name, arcname=f"{folder.name}/{name}")
    os.replace(tmp, path)


def phase_training(run: Run) -> None:
    args = run.args
    entry: dict[str, Any] = {"runs": [], "skipped": []}
    run.result["training"] = entry
    try:
        data, info = load_split(_data_dir(args))
    except Exception as error:
        entry["error"] = f"{type(error).__name__}: {error}"
        run.failures.append("training")
        run.log(f"training: no data: {entry['error']}")
        return
    entry["data"] = info
    run.log(f"training data: {info['sizes']} from {info['root']} ({', '.join(info['files'])})")
    trained = []
    for i, group in enumerate(args.groups):
        per_group = 60.0 * (args.minutes_per_group if i < REQUIRED_GROUPS else args.minutes_per_extra_group)
        left = run.left() - args.reserve_s
        if i >= REQUIRED_GROUPS and left < 0.75 * per_group:
            entry["skipped"].append({"group": group, "reason": f"time budget: {max(left, 0):.0f} s left"})
            run.log(f"train {group}: skipped, {max(left, 0):.0f} s left")
            continue
        budget = max(min(per_group, left), 1.0)
        try:
            outcome = _train_group(run, group, data, budget, skip_if_slow=i >= REQUIRED_GROUPS)
            if "skipped" in outcome:
                entry["skipped"].append({"group": group, "reason": outcome["skipped"]})
                run.log(f"train {group}: skipped, {outcome['skipped']}")
                continue
            entry["runs"].append(outcome)
            trained.append(group)
            _write_tar(run, trained)
        except Exception as error:
            entry["runs"].append({"group": group, "error": f"{type(error).__name__}: {str(error)[:500]}"})
            run.failures.append(f"training-{group}")
            run.log(f"train {group}: failed: {type(error).__name__}: {error}")
            if run.device.type == "cuda":
                torch.cuda.empty_cache()
        run.save()
    entry["checkpoints"] = "checkpoints.tar" if trained else None


# ---- tables ------------------------------------------------------------------------------------


def _bytes(n: Any) -> str:
    from gsa_tutorial.profiling import format_bytes

    return format_bytes(n) if isinstance(n, (int, float)) else "—"


def render_tables(result: dict[str, Any]) -> str:
    """The README's "which GPU do I need" tables (Markdown) from a ``gpu.json``."""
    meta = result.get("meta", {})
    lines = [f"Measured on {meta.get('device_name', '?')} ({meta.get('device', '?')}), torch {meta.get('torch', '?')}, "
             f"{meta.get('date', '?')}{' (smoke run: tiny model, tiny data)' if meta.get('smoke') else ''}.", ""]
    training = result.get("training") or {}
    runs = [r for r in training.get("runs", []) if "error" not in r]
    if runs:
        data = training.get("data", {})
        sizes = data.get("sizes", {})
        lines += [f"Training ({runs[0]['preset']} preset, batch {runs[0]['batch_size']}, rotated MNIST test digits: "
                  f"{sizes.get('train', '?')} train / {sizes.get('valid', '?')} valid / {sizes.get('test', '?')} test):", "",
                  "| group | parameters | epochs | s/epoch | images/s | peak GPU memory | valid acc | test acc | stopped by |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            lines.append(
                f"| {r['group']} | {r['parameters']:,} | {r['epochs_done']} | {r['epoch_s_mean']:.1f} | "
                f"{r['epoch_images_per_s']:.0f} | {_bytes(r.get('peak_allocated_bytes'))} | {r['best']['valid_acc']:.3f} | "
                f"{r['test_acc']:.3f} | {r['stop']['reason']} |"
            )
        lines += ["", "images/s: training images per second of epoch wall time (validation and checkpoints included); "
                      "peak: torch.cuda.max_memory_allocated over the whole run.", ""]
    sweep = result.get("sweep") or {}
    if sweep.get("rows"):
        batches = sorted({r["batch"] for r in sweep["rows"]})
        groups = list(dict.fromkeys(r["group"] for r in sweep["rows"]))
        cell = {(r["group"], r["batch"]): r for r in sweep["rows"]}
        lines += [f"One training step of the {sweep['preset']} GSA-Net (time per step / peak memory of the step):", "",
                  "| group | " + " | ".join(f"batch {b}" for b in batches) + " |", "|---|" + "---|" * len(batches)]
        for g in groups:
            cells = []
            for b in batches:
                r = cell.get((g, b), {})
                cells.append(f"{r['step_s'] * 1e3:.1f} ms / {_bytes(r['peak_bytes'])}" if "step_s" in r else "not measured")
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
    if len(lines) == 2:
        lines.append("(no training or sweep results in this file)")
    return "\n".join(lines)


# ---- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_run", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --smoke: the CPU rehearsal)")
    p.add_argument("--smoke", action="store_true", help="tiny model, few epochs, one benchmark configuration: seconds on a CPU")
    p.add_argument("--out", default=None, help="output folder (default $OUT, else gpu-run-out/)")
    p.add_argument("--work", default=None, help="folder for the run folders (default: a new temporary folder)")
    p.add_argument("--data-dir", default=None, help="folder holding mnist/t10k-*-ubyte[.gz] (default .device-data/, else $GSA_DATA_DIR)")
    p.add_argument("--budget-minutes", type=float, default=9.0, help="wall-time budget of the whole run (default 9)")
    p.add_argument("--groups", default=",".join(GROUPS), help="training order (the first two always train)")
    p.add_argument("--preset", default=None, help="model preset (default rotmnist; small with --smoke)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default 32; 16 with --smoke)")
    p.add_argument("--minutes-per-group", type=float, default=None, help="training budget of Z2 and R4 (default 1.25)")
    p.add_argument("--minutes-per-extra-group", type=float, default=None, help="training budget of each further group (default 0.8)")
    p.add_argument("--max-epochs", type=int, default=None, help="upper bound of the planned epochs (default 300; 2 with --smoke)")
    p.add_argument("--sweep-batches", default=None, help="batch sizes of the step sweep (default 8,32,128; 4 with --smoke)")
    p.add_argument("--sweep-limit-gb", type=float, default=SWEEP_LIMIT_BYTES / 1e9)
    p.add_argument("--skip", default="", help="phases to skip, e.g. tests,attention")
    p.add_argument("--threads", type=int, default=None, help="torch threads here and OMP_NUM_THREADS of subprocesses (default 1 with --smoke)")
    p.add_argument("--table", nargs="?", const="benchmarks/results/gpu.json", default=None, metavar="JSON",
                   help="only print the README tables of a gpu.json (default benchmarks/results/gpu.json)")
    args = p.parse_args(argv)
    smoke = args.smoke
    defaults = dict(
        preset="small" if smoke else "rotmnist", batch_size=16 if smoke else 32, minutes_per_group=0.25 if smoke else 1.25,
        minutes_per_extra_group=0.25 if smoke else 0.8, max_epochs=2 if smoke else 300,
        sweep_batches="4" if smoke else ",".join(map(str, SWEEP_BATCHES)), threads=1 if smoke else None,
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.out = args.out or os.environ.get("OUT") or str(REPO / "gpu-run-out")
    args.groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - {"tests", "attention", "sweep", "training"}
    if unknown:
        p.error(f"--skip takes tests, attention, sweep, training; got {sorted(unknown)}")
    # Fixed reserves (seconds): kept free for training while tests and benchmark run, kept at the end.
    args.reserve_for_training = 30.0 if smoke else REQUIRED_GROUPS * 60.0 * args.minutes_per_group + 40.0
    args.reserve_s = 2.0 if smoke else 20.0
    args.tests_timeout = 120.0 if smoke else 180.0
    args.attention_timeout = 120.0 if smoke else 150.0
    args.sweep_repeats = 1 if smoke else 5
    args.probe_steps = 2 if smoke else 5
    args.invariance_images = 4 if smoke else 16
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table is not None:
        path = Path(args.table)
        if not path.exists():
            print(f"{path} does not exist: no GPU run has been made yet (python -m benchmarks.gpu_run writes it)")
            return 1
        print(render_tables(json.loads(path.read_text())))
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda was asked for but torch.cuda.is_available() is False (use --device cpu --smoke for the rehearsal)",
              file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    run = Run(args)
    from gsa_tutorial.profiling import environment

    meta = environment(run.device)
    meta.update(smoke=args.smoke, argv=sys.argv[1:] if argv is None else list(argv), budget_minutes=args.budget_minutes,
                out=str(run.out), work=str(run.work), status="running")
    try:
        meta["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        meta["git_commit"] = None
    run.result["meta"] = meta
    run.log(f"{meta['device_name']} ({meta['device']}), torch {meta['torch']}, budget {args.budget_minutes:g} min, out {run.out}")
    run.save()
    phases: list[tuple[str, Callable[[Run], None]]] = [
        ("tests", phase_tests), ("attention", phase_attention), ("sweep", phase_sweep), ("training", phase_training)
    ]
    for name, phase in phases:
        if name in args.skip:
            run.result[name] = {"skipped": "--skip"}
            continue
        t0 = time.perf_counter()
        try:
            phase(run)
        except Exception as error:
            run.result[name] = {**(run.result.get(name) or {}), "error": f"{type(error).__name__}: {str(error)[:500]}"}
            run.failures.append(name)
            run.log(f"{name}: failed: {type(error).__name__}: {error}")
        if isinstance(run.result.get(name), dict):
            run.result[name]["phase_s"] = time.perf_counter() - t0
        run.save()
    meta = run.result["meta"]
    meta["status"] = "complete" if not run.failures else "complete with failures"
    if run.device.type == "cuda":
        meta["max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated(run.device))
    run.save()
    print()
    print(render_tables(run.result))
    run.log(f"done in {run.elapsed():.0f} s; failures: {run.failures or 'none'}; results in {run.out}")
    run.log_file.close()
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
