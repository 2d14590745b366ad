"""Measuring time and memory: of one step of a layer or a GSA-Net training step (chapter 9).

:func:`time_step` and :func:`peak_memory` measure any closure; :func:`measure_layers` compares
the fast group layer with the dense reference *in one process* (same weights, same input), and
:func:`measure_model_step` a whole training step, which is what ``python -m benchmarks.attention``
and the chapter run; :func:`environment` records where the numbers come from. The
configurations and the score-tensor arithmetic are in :mod:`gsa_tutorial.costs`, the
approximate equivariance off the grid in :mod:`gsa_tutorial.offgrid`; their names still import
from this module (the notebooks and benchmarks do), but are documented there.

Memory on CPU is measured in-process with the PyTorch profiler: every allocation and free of
the step is an event with a signed size, and the peak of their running sum is the peak of
bytes allocated *on top of what was live before the step* (inputs and parameters are not
counted). PyTorch's CPU allocator does not cache, so this is the memory the step needs. On
CUDA it is ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what
was allocated before.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Literal

import torch
from torch import nn

from . import attention
from .attention import GroupSelfAttention, LiftingSelfAttention
from .costs import LayerConfig, format_bytes, paper_configs, quick_configs, results_table, score_tensor_sizes  # noqa: F401
from .data import PRESET_DATASETS, dataset_info
from .groups import get_group
from .model import GSANet, count_parameters, preset
from .offgrid import nongrid_equivariance_errors  # noqa: F401

__all__ = ["forward_backward", "time_step", "peak_memory", "measure_layers", "measure_model_step", "environment", "is_out_of_memory"]


# Messages of the allocators when a tensor does not fit (CUDA, CPU, MPS).
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "not enough memory", "cannot allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """True for an allocation failure (:class:`torch.OutOfMemoryError`, :class:`MemoryError` or a
    RuntimeError from an allocator), False for any other error, which must not be hidden as
    "did not fit"."""
    oom = getattr(torch, "OutOfMemoryError", None)
    if isinstance(error, MemoryError) or (oom is not None and isinstance(error, oom)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _OOM_MESSAGES)

def forward_backward(module: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A closure that runs one forward and backward pass of ``module`` on ``x``.

    The loss is the sum of the output. Gradients are reset to ``None`` before and after the
    pass, so that every call allocates and frees the same tensors (and :func:`peak_memory`
    counts the gradients as part of the step). Returns the output (detached).
    """

    def step() -> torch.Tensor:
        module.zero_grad(set_to_none=True)
        x.grad = None
        out = module(x)
        out.sum().backward()
        module.zero_grad(set_to_none=True)
        x.grad = None
        return out.detach()

    return step


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(
    fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Wall-clock time of ``fn()``: the median of ``repeats`` runs after ``warmup`` runs.

    On CUDA each run is timed with CUDA events recorded on ``device``'s current stream (the
    stream its kernels run on), after a synchronisation, and read after another one (kernels
    are asynchronous: a host clock would time their launch, not their work); on CPU with
    :func:`time.perf_counter`.

    Returns:
        ``{"median_s": float, "times_s": [float, ...]}``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _synchronize(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            stream = torch.cuda.current_stream(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record(stream)
            fn()
            end.record(stream)
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1000.0)  # elapsed_time is in milliseconds
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "times_s": times}


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to the null device for a moment (C++ messages bypass ``sys.stderr``)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (some embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory(fn: Callable[[], Any], *, device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated by PyTorch during ``fn()``, above what was allocated before it.

    CPU: the running sum of the allocation events recorded by
    ``torch.profiler.profile(profile_memory=True)`` (allocations positive, frees negative);
    its maximum is the peak. CUDA: ``torch.cuda.max_memory_allocated`` after
    ``reset_peak_memory_stats``.

    Returns:
        The peak in bytes (``0`` if ``fn`` allocates nothing).
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    if device.type != "cpu":
        raise ValueError(f"peak_memory measures on 'cpu' or 'cuda', got device {device}")
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():  # the profiler prints a start banner from C++
        prof.start()
    try:
        fn()
    finally:
        with _quiet_stderr():  # ... and a stop banner
            prof.stop()
    assert prof.profiler is not None and prof.profiler.kineto_results is not None
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    running = peak = 0
    for event in events:
        running += event.nbytes()  # type: ignore[attr-defined]  # memory events have nbytes
        peak = max(peak, running)
    return int(peak)


def _measure(fn: Callable[[], Any], *, device: torch.device, repeats: int, warmup: int) -> dict[str, Any]:
    timing = time_step(fn, repeats=repeats, warmup=warmup, device=device)
    return {"time_s": timing["median_s"], "times_s": timing["times_s"], "peak_bytes": peak_memory(fn, device=device)}


def measure_layers(
    config: LayerConfig,
    *,
    device: torch.device | str = "cpu",
    repeats: int = 3,
    warmup: int = 1,
    dense: bool = True,
    lifting: bool = True,
    dense_limit_bytes: float = 8e9,
    seed: int = 0,
) -> dict[str, Any]:
    """Forward+backward time and peak memory of the lifting layer, the fast group layer and the
    dense reference (same weights, same input, same process), and whether they agree.

    Args:
        config: the layer configuration.
        device: where to run.
        repeats, warmup: see :func:`time_step`.
        dense: also measure the dense reference.
        lifting: also measure the lifting layer.
        dense_limit_bytes: skip the dense reference when its score tensor alone
            (:func:`score_tensor_sizes`, ``dense_bytes``) exceeds this; it is also skipped with
            a message when it runs out of memory.
        seed: seeds the weights and the input.

    Returns:
        ``{"config", "sizes", "lifting", "group_fast", "group_dense", "max_abs_diff",
        "max_abs_output", "speedup", "memory_ratio"}``; each measured entry holds ``time_s``,
        ``times_s`` and ``peak_bytes``, or ``status`` when it was not measured. ``speedup`` is
        dense / fast time, ``memory_ratio`` fast / dense peak (``None`` without a dense run).
    """
    device = torch.device(device)
    c = config
    G = get_group(c.group).order
    sizes = score_tensor_sizes(c.group, c.size, window=c.window, heads=c.heads, batch=c.batch, dim_head=c.dim_head)
    torch.manual_seed(seed)
    lift = LiftingSelfAttention(c.in_channels, c.channels, group=c.group, heads=c.heads, dim_head=c.dim_head, window=c.window).to(device)
    fast = GroupSelfAttention(c.channels, c.channels, group=c.group, heads=c.heads, dim_head=c.dim_head, window=c.window).to(device)
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(c.batch, c.in_channels, c.size, c.size, generator=gen).to(device).requires_grad_()
    lifted = torch.randn(c.batch, c.channels, G, c.size, c.size, generator=gen).to(device).requires_grad_()

    result: dict[str, Any] = {"config": asdict(c), "sizes": sizes, "lifting": {"status": "not run"}}
    if lifting:
        result["lifting"] = _measure(forward_backward(lift, image), device=device, repeats=repeats, warmup=warmup)
    fast_step = forward_backward(fast, lifted)
    result["group_fast"] = _measure(fast_step, device=device, repeats=repeats, warmup=warmup)
    result.update(group_dense={"status": "not run"}, max_abs_diff=None, max_abs_output=None, speedup=None, memory_ratio=None)
    if not dense:
        return result
    if sizes["dense_bytes"] > dense_limit_bytes:
        result["group_dense"] = {
            "status": f"skipped: the dense score tensor alone would take {format_bytes(sizes['dense_bytes'])} "
            f"(limit {format_bytes(dense_limit_bytes)})"
        }
        return result
    reference = GroupSelfAttention(
        c.channels, c.channels, group=c.group, heads=c.heads, dim_head=c.dim_head, window=c.window, implementation="dense"
    ).to(device)
    reference.load_state_dict(fast.state_dict())
    dense_step = forward_backward(reference, lifted)
    try:
        result["group_dense"] = _measure(dense_step, device=device, repeats=repeats, warmup=warmup)
        with torch.no_grad():
            a, b = fast(lifted), reference(lifted)
    except (RuntimeError, MemoryError) as error:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(error):
            raise  # a real bug, not a size limit: never report it as "did not fit"
        result["group_dense"] = {"status": f"did not fit: {type(error).__name__}: {str(error)[:200]}"}
        return result
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result["max_abs_diff"] = float((a - b).abs().max())
    result["max_abs_output"] = float(b.abs().max())
    result["speedup"] = result["group_dense"]["time_s"] / result["group_fast"]["time_s"]
    result["memory_ratio"] = result["group_fast"]["peak_bytes"] / max(result["group_dense"]["peak_bytes"], 1)
    return result


def _set_group_implementation(model: nn.Module, implementation: Literal["factorized", "dense"]) -> int:
    """Switch every :class:`GroupSelfAttention` inside ``model``; returns how many were switched."""
    count = 0
    for module in model.modules():
        if isinstance(module, GroupSelfAttention):
            module.implementation = implementation
            count += 1
    return count


def measure_model_step(
    preset_name: str,
    group: str,
    *,
    batch: int = 1,
    device: torch.device | str = "cpu",
    repeats: int = 1,
    warmup: int = 1,
    dense: bool = True,
    seed: int = 0,
    **overrides: Any,
) -> dict[str, Any]:
    """One training step (forward, cross-entropy, backward, Adam step) of a :class:`~gsa_tutorial.model.GSANet`.

    The network is measured with its group layers on the fast path and, if ``dense``, again
    with every group layer switched to the dense reference (same weights).

    Args:
        preset_name: a preset of :func:`gsa_tutorial.model.preset` (``"rotmnist"``, ...).
        group: the group.
        batch: batch size.
        device, repeats, warmup: see :func:`time_step`.
        dense: also measure with the dense group layers.
        seed: seeds weights, input and labels.
        **overrides: passed to the preset.

    Returns:
        ``{"preset", "group", "batch", "image_size", "parameters", "fast", "dense", "speedup",
        "memory_ratio"}``.

    """
    device = torch.device(device)
    config = preset(preset_name, group=group, **overrides)
    torch.manual_seed(seed)
    model = GSANet(config).to(device)
    size = dataset_info(PRESET_DATASETS[preset_name.strip().lower()]).image_size
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, config.in_channels, size, size, generator=gen).to(device)
    y = torch.randint(0, config.num_classes, (batch,), generator=gen).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # free the gradients inside the measured step

    result: dict[str, Any] = {
        "preset": preset_name, "group": group, "batch": batch, "image_size": size,
        "parameters": count_parameters(model),
        "dense": {"status": "not run"}, "speedup": None, "memory_ratio": None,
    }
    model.train()
    result["fast"] = _measure(step, device=device, repeats=repeats, warmup=warmup)
    if dense:
        _set_group_implementation(model, "dense")
        try:
            result["dense"] = _measure(step, device=device, repeats=repeats, warmup=warmup)
        except (RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                raise  # a real bug, not a size limit: never report it as "did not fit"
            result["dense"] = {"status": f"did not fit: {type(error).__name__}: {str(error)[:200]}"}
        finally:
            _set_group_implementation(model, "factorized")
        if "time_s" in result["dense"]:
            result["speedup"] = result["dense"]["time_s"] / result["fast"]["time_s"]
            result["memory_ratio"] = result["fast"]["peak_bytes"] / max(result["dense"]["peak_bytes"], 1)
    return result


# ---- where the numbers come from ------------------------------------------------------------


def _tf32_settings() -> dict[str, Any]:
    """Whether float32 matmuls and convolutions may use TF32 (legacy flags; newer PyTorch also has
    ``fp32_precision``, and refuses to read one API after the other was set, hence the guards)."""
    out: dict[str, Any] = {}
    for key, get in (
        ("tf32_matmul", lambda: bool(torch.backends.cuda.matmul.allow_tf32)),
        ("tf32_cudnn", lambda: bool(torch.backends.cudnn.allow_tf32)),
        ("fp32_precision_matmul", lambda: str(torch.backends.cuda.matmul.fp32_precision)),
        ("fp32_precision_cudnn", lambda: str(torch.backends.cudnn.fp32_precision)),
    ):
        try:
            out[key] = get()
        except (AttributeError, RuntimeError):
            pass
    return out


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Where the numbers come from: device name, torch version, threads, load average, date, and
    the first 12 hex digits of the SHA-256 of ``gsa_tutorial/attention.py`` (the code measured).
    On CUDA also the CUDA and cuDNN versions, compute capability, memory, multiprocessors and
    whether TF32 is allowed (it lowers float32 matmul and convolution precision)."""
    device = torch.device(device)
    cuda: dict[str, Any] = {}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        props = torch.cuda.get_device_properties(device)
        cuda = {
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "capability": list(torch.cuda.get_device_capability(device)),
            "total_memory_bytes": int(props.total_memory),
            "multiprocessors": int(props.multi_processor_count),
            "device_count": torch.cuda.device_count(),
            **_tf32_settings(),
        }
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    with open(attention.__file__, "rb") as f:  # which version of the layers was measured
        attention_sha = hashlib.sha256(f.read()).hexdigest()[:12]
    return {
        "device": device.type,
        "device_name": name,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": load,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "attention_py_sha256": attention_sha,
        **cuda,
    }
