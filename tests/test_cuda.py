"""CUDA: exact equivariance on the GPU, AMP, the trainer on CUDA, a one-process NCCL step.

Every test that needs a GPU is skipped without one (``make test`` on a CPU machine); the
GPU run (``python -m benchmarks.gpu_run``) runs this file on CUDA. The last tests check the
CUDA timing and memory logic of :mod:`gsa_tutorial.profiling` on any machine, with fakes in
place of ``torch.cuda``.

float32 on CUDA: TF32 (10-bit mantissa) is switched off for these tests; it is a lower
precision than float32, and PyTorch allows it for convolutions by default.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gsa_tutorial import GroupSelfAttention, LiftingSelfAttention, assert_equivariant, get_group
from gsa_tutorial.data import get_dataset
from gsa_tutorial.layers import NORMS, Crop, InvariantPooling, PointwiseMLP, SpatialPool2x2, TransformerBlock, make_norm
from gsa_tutorial.model import GSANet, GSANetConfig, preset
from gsa_tutorial.testing import default_rtol
from gsa_tutorial.train import TrainConfig, fit, load_model

REPO = Path(__file__).resolve().parents[1]
GROUPS = ["z2", "r4", "r8", "r12", "r16", "m4"]
DTYPES = [torch.float64, torch.float32]

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run by benchmarks.gpu_run)")


@pytest.fixture
def no_tf32():
    """float32 means float32: no TF32 in matmuls and convolutions during the test."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def cuda_randn(*shape: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to("cuda", dtype)


def lifted(group: str, size: int, dtype: torch.dtype, channels: int = 4, batch: int = 2) -> torch.Tensor:
    return cuda_randn(batch, channels, get_group(group).order, size, size, dtype=dtype)


def check(fn, group: str, x: torch.Tensor) -> dict[int, float]:
    """assert_equivariant with the dtype's tolerance (1e-10 in float64, 1e-4 in float32)."""
    assert x.is_cuda
    return assert_equivariant(fn, group, x, rtol=default_rtol(x.dtype))


# ---- every layer, every group, float64 and float32 on CUDA ---------------------------------


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("window,size", [(3, 7), (3, 8), (None, 5)])
def test_lifting_layer_equivariant_on_cuda(group, window, size, dtype, no_tf32):
    torch.manual_seed(0)
    layer = LiftingSelfAttention(3, 4, group=group, heads=2, window=window)
    check(layer, group, cuda_randn(2, 3, size, size, dtype=dtype))


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("implementation", ["factorized", "dense"])
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("window,size", [(3, 7), (3, 8), (None, 5)])
def test_group_layer_equivariant_on_cuda(group, window, size, implementation, dtype, no_tf32):
    torch.manual_seed(0)
    layer = GroupSelfAttention(4, 4, group=group, heads=2, window=window, implementation=implementation)
    check(layer, group, lifted(group, size, dtype))


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("encoding,query", [("relative", "all"), ("gevit", "all"), ("pair", "all"), ("relative", "own")])
@pytest.mark.parametrize("group", GROUPS)
def test_group_layer_encodings_equivariant_on_cuda(group, encoding, query, dtype, no_tf32):
    torch.manual_seed(0)
    layer = GroupSelfAttention(4, 4, group=group, heads=2, window=3, group_encoding=encoding, query=query)
    check(layer, group, lifted(group, 7, dtype))


@needs_cuda
@pytest.mark.parametrize("group", ["r4", "m4", "r12"])
def test_chunked_factorized_path_on_cuda(group):
    """Large inputs (the GPU's batches) take the chunked path: same outputs, still equivariant."""
    torch.manual_seed(0)
    layer = GroupSelfAttention(4, 4, group=group, heads=2, window=3).double().cuda()
    x = lifted(group, 7, torch.float64)
    with torch.no_grad():
        whole = layer(x)
        layer.chunk_elements = 64  # force per-head recomputation in chunks over h
        torch.testing.assert_close(layer(x), whole, rtol=1e-10, atol=1e-12)
    check(layer, group, x)


@needs_cuda
@pytest.mark.parametrize("group", ["r4", "m4", "r12"])
def test_factorized_equals_dense_on_cuda(group):
    torch.manual_seed(0)
    fast = GroupSelfAttention(4, 4, group=group, heads=2, window=3).double().cuda()
    dense = GroupSelfAttention(4, 4, group=group, heads=2, window=3, implementation="dense").double().cuda()
    dense.load_state_dict(fast.state_dict())
    x = lifted(group, 7, torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), dense(x), rtol=1e-10, atol=1e-12)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group", ["r4", "m4", "r8"])
def test_other_layers_equivariant_on_cuda(group, dtype, no_tf32):
    torch.manual_seed(0)
    x = lifted(group, 6, dtype)
    for norm in NORMS:
        layer = make_norm(norm, 4)
        if norm == "batch":
            layer.to("cuda", dtype).train()(lifted(group, 6, dtype) + 1.0)  # non-trivial running statistics
        check(layer, group, x)
    check(PointwiseMLP(4, hidden=2), group, x)
    check(Crop(1), group, x)
    check(SpatialPool2x2("max"), group, x)
    check(SpatialPool2x2("mean"), group, x)
    for space in ("mean", "max", "sum"):
        check(InvariantPooling(space=space, group="max"), group, x)
    check(TransformerBlock(4, 6, group=group, heads=2, dim_head=3, window=3, crop=1, pos_hidden=4), group, lifted(group, 7, dtype))


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group", GROUPS)
def test_rotmnist_gsanet_invariant_on_cuda(group, dtype, no_tf32):
    """The paper's rotMNIST network at full size (28x28), every group: invariant logits on CUDA."""
    torch.manual_seed(0)
    net = GSANet(preset("rotmnist", group))
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to("cuda", dtype)
    check(net, group, x)
    check(net.to(x.device, x.dtype).eval().features, group, x)  # the lifted features before the head


@needs_cuda
@pytest.mark.parametrize("group", ["r4", "m4"])
def test_cuda_and_cpu_compute_the_same_network(group):
    torch.manual_seed(0)
    net = GSANet(preset("rotmnist", group)).double().eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        on_cpu = net(x)
        on_cuda = copy.deepcopy(net).cuda()(x.cuda()).cpu()
    torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-10, atol=1e-12)


# ---- mixed precision -----------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("group", ["r4", "m4"])
def test_amp_forward_backward_is_finite(group, amp_dtype):
    """Autocast forward and backward give finite logits, loss and gradients; with float16 the
    GradScaler finds a scale whose scaled gradients do not overflow within a few halvings
    (its first scale, 65536, overflows by design and that step is skipped)."""
    if amp_dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    torch.manual_seed(0)
    net = GSANet(preset("rotmnist", group)).cuda().train()
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(3)).cuda()
    y = torch.arange(8).cuda() % 10

    def loss_and_logits():
        with torch.autocast("cuda", dtype=amp_dtype):
            logits = net(x)
            return F.cross_entropy(logits.float(), y), logits

    def grads():
        return [p.grad for p in net.parameters() if p.grad is not None]

    loss, logits = loss_and_logits()
    assert logits.dtype in (amp_dtype, torch.float32)
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    loss.backward()
    assert grads() and all(torch.isfinite(g).all() for g in grads())
    assert sum(float(g.abs().sum()) for g in grads()) > 0

    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _attempt in range(24):
        optimizer.zero_grad(set_to_none=True)
        loss, _ = loss_and_logits()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        finite = all(bool(torch.isfinite(g).all()) for g in grads())
        scaler.step(optimizer)
        scaler.update()
        if finite:
            break
    assert finite, f"every scaled step overflowed (last scale {scaler.get_scale()})"
    assert all(torch.isfinite(p).all() for p in net.parameters())


@needs_cuda
@pytest.mark.parametrize("amp_dtype", ["bf16", "fp16"])
def test_trainer_runs_on_cuda_with_amp(tmp_path, amp_dtype):
    """fit() on CUDA with AMP (GradScaler for fp16), checkpoints, reload on the CPU."""
    torch.manual_seed(0)
    config = GSANetConfig(group="r4", channels=6, num_blocks=1, heads=2, dim_head=3, window=3, pos_hidden=4)
    net = GSANet(config)
    data = {s: get_dataset("synthetic", s, n=32, size=8) for s in ("train", "valid", "test")}
    train = TrainConfig(epochs=2, batch_size=8, lr=1e-2, device="cuda", amp=True, amp_dtype=amp_dtype, progress=False, verbose=False)
    record = fit(net, data["train"], data["valid"], train, tmp_path, test_set=data["test"])
    assert record["finished"] and len(record["history"]) == 2
    for row in record["history"]:
        assert all(torch.isfinite(torch.tensor(row[k])) for k in ("train_loss", "valid_loss"))
    cpu_net = load_model(tmp_path / "best.pt")
    assert all(p.device.type == "cpu" for p in cpu_net.parameters())


# ---- one-process NCCL torchrun step --------------------------------------------------------

NCCL_WORKER = textwrap.dedent(
    """
    import copy, json, os, sys
    import torch, torch.distributed as dist, torch.nn.functional as F
    from torch import nn
    from gsa_tutorial.model import GSANet, preset

    dist.init_process_group(backend="nccl")
    local = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    device = torch.device("cuda", local)
    torch.manual_seed(0)
    net = GSANet(preset("rotmnist", "r4")).to(device)
    reference = copy.deepcopy(net)
    ddp = nn.parallel.DistributedDataParallel(nn.SyncBatchNorm.convert_sync_batchnorm(net), device_ids=[local])
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 28, 28, generator=gen).to(device)
    y = torch.randint(0, 10, (4,), generator=gen).to(device)
    F.cross_entropy(ddp(x), y).backward()
    F.cross_entropy(reference(x), y).backward()
    diff = max(float((a.grad - b.grad).abs().max()) for a, b in zip(ddp.module.parameters(), reference.parameters()) if a.grad is not None)
    total = torch.tensor([float(dist.get_rank() + 1)], device=device)
    dist.all_reduce(total)
    torch.optim.Adam(ddp.parameters(), lr=1e-3).step()
    finite = all(bool(torch.isfinite(p).all()) for p in ddp.parameters())
    print("NCCL-RESULT " + json.dumps({"backend": dist.get_backend(), "world": dist.get_world_size(),
                                       "all_reduce": total.item(), "max_grad_diff": diff, "finite": finite,
                                       "nccl_version": str(torch.cuda.nccl.version())}))
    dist.destroy_process_group()
    """
)


@needs_cuda
def test_torchrun_one_process_nccl_step(tmp_path):
    script = tmp_path / "nccl_worker.py"
    script.write_text(NCCL_WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", str(script)]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    line = next(row for row in proc.stdout.splitlines() if row.startswith("NCCL-RESULT "))
    result = json.loads(line.split(" ", 1)[1])
    print(result)
    assert result["backend"] == "nccl" and result["world"] == 1 and result["all_reduce"] == 1.0
    assert result["finite"] and result["max_grad_diff"] <= 1e-6


# ---- the CUDA timing and memory logic of profiling, checked anywhere with fakes -------------


class _FakeCuda:
    """Stands in for torch.cuda: a clock in milliseconds, an allocator, and a log of the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.clock_ms = 0.0
        self.allocated = 1000  # bytes live before the measured step
        self.peak = self.allocated

    def install(self, monkeypatch) -> None:
        fake = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing
                self.t = None

            def record(self, stream=None) -> None:
                assert stream == "stream-of-cuda", stream
                fake.calls.append("record")
                self.t = fake.clock_ms

            def elapsed_time(self, other: Event) -> float:
                assert fake.calls[-1] == "synchronize", "elapsed_time read before a synchronisation"
                return other.t - self.t

        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: "stream-of-cuda")
        monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: fake.calls.append("synchronize"))
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", self._reset)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: fake.allocated)
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: fake.peak)

    def _reset(self, device=None) -> None:
        self.calls.append("reset")
        self.peak = self.allocated

    def step(self) -> None:
        """What a step does on the GPU: takes 250 ms, allocates 5000 bytes, frees 4000."""
        self.calls.append("step")
        self.clock_ms += 250.0
        self.allocated += 5000
        self.peak = max(self.peak, self.allocated)
        self.allocated -= 4000


def test_time_step_uses_cuda_events_in_seconds(monkeypatch):
    from gsa_tutorial.profiling import time_step

    fake = _FakeCuda()
    fake.install(monkeypatch)
    timing = time_step(fake.step, repeats=3, warmup=1, device="cuda")
    assert timing["times_s"] == [0.25, 0.25, 0.25] and timing["median_s"] == 0.25
    timed = fake.calls[fake.calls.index("record"):]
    assert timed[:4] == ["record", "step", "record", "synchronize"], timed


def test_peak_memory_on_cuda_is_the_peak_above_what_was_live(monkeypatch):
    from gsa_tutorial.profiling import peak_memory

    fake = _FakeCuda()
    fake.install(monkeypatch)
    assert peak_memory(fake.step, device="cuda") == 5000
    assert fake.calls == ["synchronize", "reset", "step", "synchronize"]
    # a second step starts from 1000 more live bytes: the peak is still measured from there
    assert peak_memory(fake.step, device="cuda") == 5000
