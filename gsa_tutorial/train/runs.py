"""The run folder: its files, refusing to replace a run, and what may change on resume.

* a folder that holds a run is never overwritten unless asked (``overwrite=True``,
  ``--overwrite``); ``resume`` refuses a checkpoint whose model config, training settings or
  data differ and lists the fields (only :data:`RESUMABLE_CHANGES` may change; a new
  ``epochs`` is allowed and stated);
* metrics (``metrics.json``, ``metrics.csv``) are written atomically after every epoch.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._io import atomic_write, atomic_write_text
from .checkpoint import BEST, LAST, METRICS_CSV, METRICS_JSON, RUN_FILES
from .config import RESUMABLE_CHANGES, TrainConfig, flag_of

__all__ = ["RunFolderError", "ResumeMismatchError", "check_run_folder", "resume_differences"]


class RunFolderError(FileExistsError):
    """The run folder already holds a run and neither ``resume`` nor ``overwrite`` was asked for,
    or it cannot be written."""


class ResumeMismatchError(ValueError):
    """``resume`` was asked for with settings that differ from the checkpoint's (the fields are listed)."""


def _write_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    atomic_write_text(run_dir / METRICS_JSON, json.dumps(record, indent=2))
    rows = record["history"]
    columns = ["epoch", "lr", "train_loss", "train_acc", "valid_loss", "valid_acc", "time_s"]
    with atomic_write(run_dir / METRICS_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _describe_run(run_path: Path) -> str:
    """``"a finished run of 3 epochs"`` / ``"an unfinished run (2 of 10 epochs)"`` / ``"run files"``."""
    try:
        record = json.loads((run_path / METRICS_JSON).read_text())
        done, planned = len(record["history"]), record["train_config"]["epochs"]
        return f"a finished run of {done} epochs" if record.get("finished") else f"an unfinished run ({done} of {planned} epochs)"
    except (OSError, ValueError, KeyError, TypeError):
        return "run files (" + ", ".join(n for n in RUN_FILES if (run_path / n).exists()) + ")"


def check_run_folder(run_dir: str | os.PathLike, *, resume: bool, overwrite: bool, flags: bool = False) -> None:
    """Refuse to start a new run in a folder that holds one, and a folder that cannot be written.

    A folder with any of ``last.pt``, ``best.pt``, ``metrics.json`` holds a run. Starting a new
    run there needs ``overwrite=True`` (the old files are then replaced epoch by epoch: until the
    first epoch ends the folder still holds the old run); ``resume=True`` continues it instead.

    Args:
        run_dir: the run folder.
        resume, overwrite: as in :func:`fit`.
        flags: word the message with the CLI's flags (``--resume``) instead of the arguments.

    Raises:
        RunFolderError: the folder holds a run (what it holds and the three ways on are in
            the message), or it (or the folder that would hold it) is not a writable folder.
    """
    run_path = Path(run_dir)
    resume_word, overwrite_word, out_word = ("--resume", "--overwrite", "another --out") if flags else ("resume=True", "overwrite=True", "another run_dir")
    if run_path.exists() and not run_path.is_dir():
        raise RunFolderError(f"the run folder {run_path} exists and is not a folder; choose {out_word}")
    existing = next((p for p in (run_path, *run_path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RunFolderError(f"cannot create the run folder {run_path}: {existing} is a file, not a folder; choose {out_word}")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"cannot write to {existing} (read-only or not yours), so the run folder {run_path} cannot be written; choose {out_word}")
    if resume and overwrite:
        raise RunFolderError(f"{resume_word} and {overwrite_word} contradict each other: continue the run in {run_path}, or replace it, not both")
    if overwrite or not run_path.is_dir():
        return
    if resume:
        if not (run_path / LAST).exists() and any((run_path / name).exists() for name in (BEST, METRICS_JSON)):
            raise RunFolderError(
                f"nothing to resume: {run_path} has no {LAST} but holds {_describe_run(run_path)}; starting afresh "
                f"would replace it. Pass {overwrite_word} to train again there, or choose {out_word}."
            )
        return
    if any((run_path / name).exists() for name in (LAST, BEST, METRICS_JSON)):
        raise RunFolderError(
            f"{run_path} already holds {_describe_run(run_path)}; refusing to overwrite it. Pass {resume_word} to "
            f"continue it, {overwrite_word} to replace it, or choose {out_word}."
        )


def _probe_writable(run_path: Path) -> None:
    """Create and remove a file in ``run_path`` (an unwritable folder fails now, not after an epoch)."""
    try:
        with tempfile.TemporaryFile(dir=run_path):
            pass
    except OSError as err:
        raise RunFolderError(f"cannot write to the run folder {run_path} ({err.strerror or err}); choose a writable folder") from err


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (a config read back from JSON or a checkpoint compares equal)."""
    return json.loads(json.dumps(value, default=str))


def resume_differences(
    ckpt: dict[str, Any],
    *,
    model_config: dict[str, Any] | None,
    train_config: TrainConfig,
    data: dict[str, Any] | None = None,
) -> tuple[list[str], list[str]]:
    """Compare a checkpoint with the settings of a resumed run.

    Args:
        ckpt: the checkpoint (``last.pt``).
        model_config: ``GSANetConfig.to_dict()`` of the model (None: not a GSANet, not compared).
        train_config: the requested :class:`TrainConfig`.
        data: what the run trains on (sizes, data set name and options), compared key by key
            with the checkpoint's ``data`` where both have the key.

    Returns:
        ``(differences, notes)``: one line per field that must not change (``model group:
        checkpoint 'r4', requested 'm2'``), and one per allowed change worth stating (the
        extended number of epochs). Fields that the checkpoint does not record are not compared.
    """
    differences, notes = [], []
    saved_model = ckpt.get("model_config")
    if saved_model is not None and model_config is not None:
        saved, wanted = _plain(saved_model), _plain(model_config)
        for key in sorted(set(saved) | set(wanted)):
            if saved.get(key) != wanted.get(key):
                differences.append(f"model {key}: checkpoint {saved.get(key)!r}, requested {wanted.get(key)!r}")
    saved_train, wanted_train = _plain(ckpt.get("train_config") or {}), _plain(asdict(train_config))
    for key in sorted(set(saved_train) & set(wanted_train)):
        if key in RESUMABLE_CHANGES or saved_train[key] == wanted_train[key]:
            continue
        differences.append(f"training {key}: checkpoint {saved_train[key]!r}, requested {wanted_train[key]!r}")
    done = len(ckpt.get("history", []))
    before = saved_train.get("epochs")
    if train_config.epochs < done:
        differences.append(f"training epochs: the checkpoint has trained {done} epochs, requested {train_config.epochs} (fewer)")
    elif before is not None and before != train_config.epochs:
        notes.append(
            f"epochs changed from {before} to {train_config.epochs}: the learning-rate schedule is recomputed for "
            f"{train_config.epochs} epochs from epoch {done + 1} on, so this run differs from one planned for "
            f"{train_config.epochs} epochs from the start"
        )
    saved_data, wanted_data = _plain(ckpt.get("data") or {}), _plain(data or {})
    for key in sorted(set(saved_data) & set(wanted_data)):
        if saved_data[key] != wanted_data[key]:
            differences.append(f"data {key}: checkpoint {saved_data[key]!r}, requested {wanted_data[key]!r}")
    return differences, notes


def _mismatch_error(path: Path, differences: list[str], flags: bool) -> ResumeMismatchError:
    names = [flag_of(n) for n in RESUMABLE_CHANGES] if flags else list(RESUMABLE_CHANGES)
    allowed = ", ".join(n for n in names if n is not None)
    new_run = "another --out, or --overwrite to replace it" if flags else "another run_dir, or overwrite=True to replace it"
    return ResumeMismatchError(
        f"cannot resume {path}: the request differs from the checkpoint in {len(differences)} field(s):\n  "
        + "\n  ".join(differences)
        + f"\nResume with the run's own settings (they are in {path.parent / METRICS_JSON}), or start a new run "
        f"with {new_run}. Only these may change on resume: {allowed}."
    )


#: The entries a resumable ``last.pt`` must hold.
_RESUME_KEYS = ("model", "optimizer", "scheduler", "history", "best", "rng")
