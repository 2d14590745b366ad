"""The training loop: :func:`fit` as named steps.

The trainer knows nothing about the model: :func:`fit` trains any ``nn.Module`` that maps a
batch of images ``(B, C, H, W)`` to logits ``(B, classes)``. One call of :func:`fit` is

1. :func:`_check_request`: the data sets and batch size make sense;
2. :func:`_open_run_folder`: refuse to replace a run, remove temporary files of a killed one;
3. :func:`_checkpoint_to_resume`: read ``last.pt`` and refuse other settings;
4. :func:`_set_up`: distributed wrapper, sampler, loader, optimiser, schedule, scaler, record;
5. :func:`_restore`: optimiser, schedule, history and random states from the checkpoint;
6. per epoch (:func:`_run_epochs`): :func:`_train_one_epoch`, validation, :func:`_keep_if_best`,
   :func:`_save_epoch`; stop at the end, at ``max_epochs_this_run`` or at the time budget;
7. :func:`_finish`: load the best weights and evaluate the test split once.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .._io import remove_stale_temporaries
from ..model import count_parameters
from .checkpoint import (
    BEST,
    LAST,
    RUN_FILES,
    _model_state,
    _rng_state,
    _set_rng_state,
    _unwrap,
    load_checkpoint,
    load_state_dict,
    save_checkpoint,
)
from .config import TrainConfig
from .distributed import _amp_dtype, _autocast, _Dist, _dist_context, _resolve_device
from .evaluation import evaluate
from .optim import make_optimizer, make_scheduler
from .runs import (
    _RESUME_KEYS,
    ResumeMismatchError,
    _mismatch_error,
    _probe_writable,
    _write_metrics,
    check_run_folder,
    resume_differences,
)

__all__ = ["fit", "NonFiniteLossError"]

# On CPU checking the loss is free; on a GPU every few steps (each check waits for the device).
_FINITE_CHECK_EVERY = 10


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint was left as it was."""


def _progress(iterable: Any, *, enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _log(message: str, enabled: bool) -> None:
    if enabled:
        from tqdm.auto import tqdm

        tqdm.write(message)


def _model_config(model: nn.Module) -> dict[str, Any] | None:
    config: Any = getattr(_unwrap(model), "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else None


def _size(dataset: Dataset) -> int:
    return len(dataset)  # type: ignore[arg-type]  # map-style datasets have __len__


@dataclass
class _Run:
    """Everything one call of :func:`fit` works with."""

    config: TrainConfig
    ctx: _Dist
    device: torch.device
    bare: nn.Module  # the model itself (what is saved)
    net: nn.Module  # what is called: the model, or its DistributedDataParallel wrapper
    run_path: Path | None
    sampler: DistributedSampler
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    record: dict[str, Any]
    best_state: dict[str, torch.Tensor]
    epoch_seconds: list[float] = field(default_factory=list)  # wall time of each epoch of this call

    @property
    def writer(self) -> bool:
        return self.ctx.main and self.run_path is not None

    @property
    def say(self) -> bool:
        return self.config.verbose and self.ctx.main

    @property
    def eval_batch_size(self) -> int:
        return self.config.eval_batch_size or 2 * self.config.batch_size

    def evaluate(self, dataset: Dataset) -> dict[str, float]:
        c = self.config
        return evaluate(self.bare, dataset, batch_size=self.eval_batch_size, device=self.device, amp=c.amp, num_workers=c.num_workers)


# ---- before the first epoch -----------------------------------------------------------------


def _check_request(config: TrainConfig, ctx: _Dist, sets: dict[str, Dataset | None]) -> None:
    if config.batch_size % ctx.world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {ctx.world} processes")
    why = {"train_set": "nothing would be learned", "valid_set": "model selection needs validation images",
           "test_set": "a test accuracy of 0 images means nothing (pass test_set=None to skip the test)"}
    for split, dataset in sets.items():
        if dataset is not None and _size(dataset) == 0:
            raise ValueError(f"{split} is empty (0 images): {why[split]}")


def _open_run_folder(run_dir: str | os.PathLike | None, ctx: _Dist, *, resume: bool, overwrite: bool) -> Path | None:
    run_path = Path(run_dir) if run_dir is not None else None
    if ctx.main and run_path is not None:
        check_run_folder(run_path, resume=resume, overwrite=overwrite)
        run_path.mkdir(parents=True, exist_ok=True)
        _probe_writable(run_path)
        for name in RUN_FILES:  # temporary files of a killed earlier run
            remove_stale_temporaries(run_path / name)
    return run_path


def _checkpoint_to_resume(
    bare: nn.Module, run_path: Path | None, config: TrainConfig, data_record: dict[str, Any], *, resume: bool, say: bool
) -> dict[str, Any] | None:
    """``last.pt`` with the model's weights loaded from it, or None (a fresh run)."""
    if not (resume and run_path is not None and (run_path / LAST).exists()):
        return None
    ckpt = load_checkpoint(run_path / LAST, map_location="cpu", require=_RESUME_KEYS)
    differences, notes = resume_differences(ckpt, model_config=_model_config(bare), train_config=config, data=data_record)
    if differences:
        raise _mismatch_error(run_path / LAST, differences, flags=False)
    try:
        load_state_dict(bare, ckpt["model"])
    except RuntimeError as err:
        raise ResumeMismatchError(
            f"cannot resume {run_path / LAST}: its weights do not fit this model ({str(err).splitlines()[0]}); "
            "it was saved from another architecture. Resume with the run's own model, or start a new run."
        ) from err
    _log(f"resuming {run_path / LAST} after epoch {len(ckpt['history'])}" + "".join(f"; {n}" for n in notes), say)
    return ckpt


def _set_up(bare: nn.Module, train_set: Dataset, config: TrainConfig, ctx: _Dist, device: torch.device,
            run_path: Path | None, data_record: dict[str, Any]) -> _Run:
    net: nn.Module = bare
    if ctx.active:
        if device.type == "cuda":  # batch statistics over the global batch (SyncBatchNorm is CUDA-only)
            bare = nn.SyncBatchNorm.convert_sync_batchnorm(bare)
        device_ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(bare, device_ids=device_ids)
    # DistributedSampler even for one process: the same global batches for any world size.
    sampler: DistributedSampler = DistributedSampler(train_set, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=config.seed)
    loader = DataLoader(
        train_set, batch_size=config.batch_size // ctx.world, sampler=sampler, num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
    )
    optimizer = make_optimizer(bare, config)
    amp = _amp_dtype(config.amp, config.amp_dtype, device)
    record: dict[str, Any] = {
        "history": [],
        "best": {"epoch": 0, "valid_acc": -1.0, "valid_loss": math.inf},
        "test": None,
        "finished": False,
        "num_parameters": count_parameters(bare),
        "train_config": asdict(config),
        "model_config": _model_config(bare),
        "data": data_record,
        "world_size": ctx.world,
    }
    return _Run(
        config=config, ctx=ctx, device=device, bare=bare, net=net, run_path=run_path, sampler=sampler, loader=loader,
        optimizer=optimizer, scheduler=make_scheduler(optimizer, config, len(loader)),
        scaler=torch.amp.GradScaler(device.type, enabled=amp == torch.float16), amp=amp, record=record,
        best_state=_model_state(bare),
    )


def _restore(run: _Run, ckpt: dict[str, Any]) -> None:
    try:
        run.optimizer.load_state_dict(ckpt["optimizer"])
    except ValueError as err:  # e.g. a checkpoint of a version that decayed every parameter (one group)
        raise ResumeMismatchError(
            f"cannot resume {run.run_path and run.run_path / LAST}: its optimiser state does not fit this trainer ({err}); "
            "it was saved by another version of gsa_tutorial. Start a new run (overwrite=True, --overwrite)."
        ) from err
    run.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.record["history"] = list(ckpt["history"])
    run.record["best"] = dict(ckpt["best"])
    if run.run_path is not None and (run.run_path / BEST).exists():
        run.best_state = load_checkpoint(run.run_path / BEST, require=("model",))["model"]
    states = ckpt["rng"]
    if len(states) == run.ctx.world:
        _set_rng_state(states[run.ctx.rank])


# ---- one epoch ------------------------------------------------------------------------------


def _train_one_epoch(run: _Run, epoch: int) -> dict[str, float]:
    """One pass over the training set; returns the mean loss and accuracy (over all processes)."""
    c, device = run.config, run.device
    run.net.train()
    run.sampler.set_epoch(epoch)
    steps = len(run.loader)
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    bad = torch.zeros((), dtype=torch.int32, device=device)  # steps with a non-finite loss
    show = c.progress and run.ctx.main
    bar = _progress(run.loader, enabled=show, total=steps, desc=f"epoch {epoch + 1}/{c.epochs}")
    for step, (images, labels) in enumerate(bar, start=1):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with _autocast(device, run.amp):
            logits = run.net(images)
            loss = F.cross_entropy(logits.float(), labels)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if c.grad_clip is not None:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.bare.parameters(), c.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        bad += (~torch.isfinite(loss.detach())).int()
        if device.type == "cpu" or step % _FINITE_CHECK_EVERY == 0 or step == steps:
            _stop_if_not_finite(bad, run, epoch + 1, step, loss)
        with torch.no_grad():
            totals[0] += loss.detach().double() * labels.numel()
            totals[1] += (logits.argmax(dim=1) == labels).sum()
            totals[2] += labels.numel()
        if show:
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}")
    _stop_if_weights_not_finite(run, epoch + 1)
    if run.ctx.active:
        dist.all_reduce(totals)
    loss_sum, correct, n = totals.tolist()
    return {"train_loss": loss_sum / max(n, 1), "train_acc": correct / max(n, 1)}


def _keep_if_best(run: _Run, row: dict[str, Any]) -> None:
    """Best validation accuracy so far (ties: lower validation loss): keep the weights, save ``best.pt``."""
    best = run.record["best"]
    if not (row["valid_acc"] > best["valid_acc"] or (row["valid_acc"] == best["valid_acc"] and row["valid_loss"] < best["valid_loss"])):
        return
    run.record["best"] = {"epoch": row["epoch"], "valid_acc": row["valid_acc"], "valid_loss": row["valid_loss"]}
    run.best_state = _model_state(run.bare)
    if run.writer and run.run_path is not None:
        save_checkpoint(
            {"model": run.best_state, "epoch": row["epoch"], "model_config": run.record["model_config"], "train_config": asdict(run.config)},
            run.run_path / BEST,
        )


def _save_epoch(run: _Run, epoch: int) -> None:
    """``last.pt`` (everything needed to resume, the random states of every process) and the metrics."""
    rng = [_rng_state()]
    if run.ctx.active:
        gathered: list[Any] = [None] * run.ctx.world
        dist.all_gather_object(gathered, rng[0])
        rng = gathered
    if run.writer and run.run_path is not None:
        save_checkpoint(
            {
                "model": _model_state(run.bare),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(),
                "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
                "epoch": epoch + 1,
                "history": run.record["history"],
                "best": run.record["best"],
                "train_config": asdict(run.config),
                "model_config": run.record["model_config"],
                "data": run.record["data"],
                "rng": rng,
            },
            run.run_path / LAST,
        )
        _write_metrics(run.run_path, run.record)
    if run.ctx.active:
        dist.barrier()


def _over_budget(call_start: float, epoch_seconds: list[float], max_minutes: float, device: torch.device, ctx: _Dist) -> bool:
    """Whether another epoch, as long as the longest one of this call, would end after the budget.

    The first epoch of a call always runs (there is nothing to judge from). Under torchrun
    rank 0 decides for everyone, so all processes stop at the same epoch.
    """
    stop = bool(epoch_seconds) and time.perf_counter() - call_start + max(epoch_seconds) > 60.0 * max_minutes
    if ctx.active:
        flag = torch.tensor([1.0 if stop else 0.0], device=device)
        dist.broadcast(flag, src=0)
        stop = bool(flag.item())
    return stop


def _run_epochs(run: _Run, valid_set: Dataset) -> dict[str, Any]:
    """Train epoch after epoch until the end, ``max_epochs_this_run`` or the time budget; returns ``record["stop"]``."""
    c = run.config
    call_start = time.perf_counter()
    reason, epochs_run = "epochs", 0
    for epoch in range(len(run.record["history"]), c.epochs):
        if c.max_epochs_this_run is not None and epochs_run >= c.max_epochs_this_run:
            reason = "max_epochs_this_run"
            break
        if c.max_minutes is not None and _over_budget(call_start, run.epoch_seconds, c.max_minutes, run.device, run.ctx):
            reason = "max_minutes"
            _log(f"stopping before epoch {epoch + 1}: {time.perf_counter() - call_start:.0f} s elapsed, the longest epoch "
                 f"took {max(run.epoch_seconds):.0f} s, the budget is {60 * c.max_minutes:.0f} s; resume to continue", run.say)
            break
        t0, t_epoch = time.time(), time.perf_counter()
        trained = _train_one_epoch(run, epoch)
        valid = run.evaluate(valid_set)
        row = {"epoch": epoch + 1, "lr": float(run.scheduler.get_last_lr()[0]), **trained,
               "valid_loss": valid["loss"], "valid_acc": valid["acc"], "time_s": time.time() - t0}
        run.record["history"].append(row)
        _keep_if_best(run, row)
        _log(f"epoch {epoch + 1}/{c.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
             f"valid loss {row['valid_loss']:.4f} acc {row['valid_acc']:.4f}  ({row['time_s']:.1f}s)", run.say)
        _save_epoch(run, epoch)
        epochs_run += 1
        run.epoch_seconds.append(time.perf_counter() - t_epoch)
    return {
        "reason": reason,  # "epochs" (all done), "max_epochs_this_run" or "max_minutes"
        "epochs_this_run": epochs_run,
        "elapsed_s": time.perf_counter() - call_start,
        "max_minutes": c.max_minutes,
        "longest_epoch_s": max(run.epoch_seconds, default=None),
    }


def _finish(run: _Run, test_set: Dataset | None) -> None:
    """A finished run (or one stopped by its time budget) gets the best weights and one test.

    A run stopped by its time budget is reported like a finished one, but stays resumable:
    ``last.pt`` is untouched and ``finished`` stays False.
    """
    record = run.record
    finished = len(record["history"]) >= run.config.epochs
    if finished or (record["stop"]["reason"] == "max_minutes" and record["history"]):
        record["finished"] = finished
        load_state_dict(run.bare, run.best_state)
        if test_set is not None:
            record["test"] = run.evaluate(test_set)
            _log(f"test (best epoch {record['best']['epoch']}): loss {record['test']['loss']:.4f} acc {record['test']['acc']:.4f}", run.say)
    if run.writer and run.run_path is not None:
        _write_metrics(run.run_path, record)


def fit(
    model: nn.Module,
    train_set: Dataset,
    valid_set: Dataset,
    config: TrainConfig = TrainConfig(),
    run_dir: str | os.PathLike | None = None,
    *,
    test_set: Dataset | None = None,
    resume: bool = False,
    overwrite: bool = False,
    data_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` with model selection on ``valid_set``; evaluate ``test_set`` once at the end.

    Run safety (chapter 8; README "What happens when..."): a folder that holds a run is never
    overwritten unless ``overwrite=True``; ``resume=True`` refuses a checkpoint whose model or
    training settings differ (:class:`ResumeMismatchError` lists the fields; ``epochs`` may
    change, which is stated); a NaN or infinite loss stops the run
    (:class:`NonFiniteLossError`) and leaves the last good checkpoint as it was; an unwritable
    ``run_dir`` fails before the first epoch.

    Args:
        model: any module mapping images ``(B, C, H, W)`` to logits ``(B, classes)``. It is
            moved to the device and, at the end, holds the *best* weights (by validation
            accuracy, ties broken by validation loss).
        train_set, valid_set, test_set: datasets of ``(image, label)``.
        config: a :class:`TrainConfig`.
        run_dir: folder for checkpoints and metrics; None keeps everything in memory.
        resume: continue from ``run_dir/last.pt`` if it exists.
        overwrite: start a new run in a ``run_dir`` that holds one, replacing it.
        data_spec: how the data were made (name, options, ...), recorded in the checkpoint
            and compared on resume, as the sizes of ``train_set`` and ``valid_set`` are.

    Returns:
        The run record, the same dict as ``metrics.json``: ``history`` (one row per epoch:
        ``epoch, lr, train_loss, train_acc, valid_loss, valid_acc, time_s``), ``best``
        (``epoch, valid_acc, valid_loss``), ``test`` (``loss, acc, n`` or None), ``finished``,
        ``num_parameters``, ``train_config``, ``model_config``, and ``stop``: why this call
        stopped (``reason``: ``"epochs"``, ``"max_epochs_this_run"`` or ``"max_minutes"``),
        ``epochs_this_run``, ``elapsed_s``, ``max_minutes``, ``longest_epoch_s``. A call stopped
        by ``max_minutes`` still evaluates the best model on ``test_set`` (``finished`` stays
        False and the run resumes from ``last.pt``).
    """
    ctx = _dist_context()
    device = _resolve_device(config.device, ctx)
    _check_request(config, ctx, {"train_set": train_set, "valid_set": valid_set, "test_set": test_set})
    run_path = _open_run_folder(run_dir, ctx, resume=resume, overwrite=overwrite)
    data_record = {"train_size": _size(train_set), "valid_size": _size(valid_set), **(data_spec or {})}
    bare = _unwrap(model).to(device)
    ckpt = _checkpoint_to_resume(bare, run_path, config, data_record, resume=resume, say=config.verbose and ctx.main)
    if ckpt is None:
        torch.manual_seed(config.seed + ctx.rank)  # dropout streams (the weights are the caller's)
    run = _set_up(bare, train_set, config, ctx, device, run_path, data_record)
    if ckpt is not None:
        _restore(run, ckpt)
    run.record["stop"] = _run_epochs(run, valid_set)
    _finish(run, test_set)
    return run.record


# ---- a loss or weights that are not finite --------------------------------------------------


def _last_good(run_path: Path | None, record: dict[str, Any]) -> str:
    done = len(record["history"])
    if run_path is None:
        return "nothing was saved (no run folder)"
    if done == 0:
        return f"no epoch had finished, so nothing was saved in {run_path}"
    return f"the last good checkpoint, {run_path / LAST} (after epoch {done}), was left as it was; nothing of this epoch was saved"


def _stop_if_not_finite(bad: torch.Tensor, run: _Run, epoch: int, step: int, loss: torch.Tensor) -> None:
    """Raise :class:`NonFiniteLossError` if any process saw a NaN/inf loss (all processes stop together)."""
    flag = bad.clone()
    if run.ctx.active:
        dist.all_reduce(flag)
    if int(flag.item()) == 0:
        return
    raise NonFiniteLossError(
        f"training stopped: the loss is not finite ({float(loss.detach()):.4g} on this process) at epoch {epoch}, "
        f"step {step} of {len(run.loader)} (lr {run.scheduler.get_last_lr()[0]:.3g}); {_last_good(run.run_path, run.record)}. "
        "Usual causes: a learning rate too high (lower --lr / TrainConfig.lr, or set grad_clip), or NaN/inf "
        "values in the data. The model in memory holds the broken weights; reload the good ones with load_model."
    )


def _stop_if_weights_not_finite(run: _Run, epoch: int) -> None:
    """A last step can break the weights without a non-finite loss being seen: never save those."""
    broken = [name for name, p in run.bare.named_parameters() if not bool(torch.isfinite(p).all())]
    if broken:
        raise NonFiniteLossError(
            f"training stopped: after epoch {epoch} the weights hold NaN/inf values ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}); {_last_good(run.run_path, run.record)}. Lower the learning rate or set grad_clip."
        )
