"""Notebooks: train a run once, then load it (:func:`train_or_load`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

from torch import nn
from torch.utils.data import Dataset

from .checkpoint import BEST, LAST, METRICS_JSON, CheckpointError, load_checkpoint, load_state_dict
from .config import TrainConfig
from .evaluation import evaluate
from .loop import _model_config, _size, fit
from .runs import ResumeMismatchError, resume_differences

__all__ = ["train_or_load"]


def train_or_load(
    model: nn.Module,
    train_set: Dataset,
    valid_set: Dataset,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    test_set: Dataset | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load the finished run in ``run_dir`` if there is one, else train (resuming if possible).

    Lets a notebook re-run instantly once its model is trained, and pick up a run that was
    interrupted. The model's weights become the run's best weights. A run made with other
    settings (model, training or data sizes) is never loaded in place of the one asked for:
    :class:`ResumeMismatchError` lists the fields; asking for more epochs continues the run.

    Returns:
        ``(model, record)`` with ``record`` as returned by :func:`fit`.
    """
    run_path = Path(run_dir)
    metrics = run_path / METRICS_JSON
    if metrics.exists() and (run_path / BEST).exists():
        try:
            record = json.loads(metrics.read_text())
        except ValueError as err:
            raise CheckpointError(
                f"cannot read {metrics} ({err}); it is damaged. Delete it to resume from {run_path / LAST}, "
                "or delete the run folder to train again."
            ) from err
        differences, _ = resume_differences(
            record, model_config=_model_config(model), train_config=config,
            data={"train_size": _size(train_set), "valid_size": _size(valid_set)},
        )
        if differences:
            raise ResumeMismatchError(
                f"{run_path} holds a run made with other settings than the ones asked for, in {len(differences)} "
                "field(s):\n  " + "\n  ".join(differences) + f"\nUse another run_dir for the new settings, or delete "
                f"{run_path} to train again there."
            )
        if record.get("finished") and len(record.get("history", [])) >= config.epochs:
            load_state_dict(model, load_checkpoint(run_path / BEST, require=("model",))["model"])
            if record.get("test") is None and test_set is not None:
                record["test"] = evaluate(model, test_set, batch_size=config.eval_batch_size or 2 * config.batch_size)
            return model, cast(dict[str, Any], record)
    record = fit(model, train_set, valid_set, config, run_path, test_set=test_set, resume=True)
    return model, record
