"""Training and evaluation: a plain PyTorch loop, checkpoints, resume, AMP, ``torchrun`` (chapters 8, 9).

The trainer knows nothing about the model: :func:`fit` trains any ``nn.Module`` that maps a
batch of images ``(B, C, H, W)`` to logits ``(B, classes)``.

Python API (used by the book)::

    record = fit(model, train_set, valid_set, TrainConfig(epochs=5), "runs/demo", test_set=test_set)
    evaluate(model, test_set)                                 # {"loss": ..., "acc": ..., "n": ...}
    accuracy_vs_angle(model, images, labels, angles)          # accuracy of rotated copies
    model, record = train_or_load(model, train_set, valid_set, config, "runs/demo")

Command line (the same under ``torchrun``)::

    python -m gsa_tutorial.train --preset rotmnist --group r12 --out runs/rotmnist-r12
    torchrun --nproc_per_node 4 -m gsa_tutorial.train --preset cifar10 --group m4 --amp

What happens in a run (``run_dir``):

* weight decay applies to the weights of linear and convolution layers only; norms, biases and
  embeddings are not decayed (:func:`decay_parameter_names`);
* each epoch: train, evaluate on the *validation* split, append a row to ``metrics.json`` /
  ``metrics.csv``, save ``last.pt`` (everything needed to resume) and, when the validation
  accuracy is the best so far, ``best.pt`` (weights only). Files are written atomically
  (temporary file + rename), so a killed run never leaves a half-written checkpoint;
* at the end: the best weights are loaded back and the *test* split is evaluated once
  (model selection never looks at the test set; the official code selects on it);
* ``resume=True`` continues from ``last.pt``: weights, optimiser, schedule, AMP scaler,
  history and random states, so a resumed run ends bitwise equal to an uninterrupted one
  (on the same device);
* ``max_minutes`` (``--max-minutes``) is a time budget for one call: before each epoch after
  the first, the run stops if the time spent so far plus its longest epoch would overrun the
  budget. ``last.pt`` is then the last finished epoch (resume later with ``resume=True`` /
  ``--resume``), the best model is evaluated on the test split all the same, and
  ``record["stop"]`` says why the call stopped (for Colab sessions and time-limited GPUs).

Run safety (nothing silent, no run lost):

* a folder that holds a run is never overwritten unless asked (``overwrite=True``,
  ``--overwrite``); ``resume`` refuses a checkpoint whose model config, training settings or
  data differ and lists the fields (only :data:`RESUMABLE_CHANGES` may change; a new
  ``epochs`` is allowed and stated);
* a NaN/inf loss stops the run with :class:`NonFiniteLossError`; nothing of the failed epoch
  is saved, so ``last.pt`` is the last good epoch;
* checkpoints and metrics are written with ``gsa_tutorial._io.atomic_write`` (normal
  permissions under the umask; temporary files of a killed run removed by the next run);
  a damaged checkpoint gives a :class:`CheckpointError` naming the file and what to do;
* the CLI checks every flag, the run folder and (with ``--resume``) the checkpoint's
  settings before loading any data: a problem is an argparse error, exit code 2.

The package, one idea per module: ``config`` (:class:`TrainConfig`, presets), ``optim``
(weight decay on weights only, the schedule), ``checkpoint`` (saving and loading weights,
random states), ``runs`` (the run folder, resume checks, metrics files), ``distributed``
(devices, ``torchrun``, precision), ``evaluation`` (loss, accuracy, accuracy against angle),
``loop`` (:func:`fit` as named steps), ``notebook`` (:func:`train_or_load`) and ``cli`` (the command line,
its flags derived from :class:`TrainConfig`).

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with
``torch.load(path, weights_only=True)``; state dicts are saved without the ``module.``
(DDP) / ``_orig_mod.`` (``torch.compile``) prefixes and loaded with ``strict=True`` (the
official code saves with the prefix and loads with ``strict=False``, which silently loads
nothing).

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) every process trains on its shard of
each global batch (``DistributedSampler``; the per-process batch is ``batch_size /
world_size``, so the global batch and the schedule do not change with the number of
processes), gradients are averaged by ``DistributedDataParallel``, metrics are summed over
processes, and only rank 0 prints and writes files. Backend: NCCL on CUDA, Gloo on CPU.
BatchNorm layers become ``SyncBatchNorm`` on CUDA; on CPU (PyTorch has no CPU SyncBatchNorm)
each process normalises with the statistics of its own shard.
"""

from .checkpoint import (
    CheckpointError,
    clean_state_dict,
    load_checkpoint,
    load_model,
    load_state_dict,
    save_checkpoint,
    set_seed,
)
from .cli import build_parser, main
from .config import RESUMABLE_CHANGES, TrainConfig, train_preset, validate_train_config
from .evaluation import accuracy_vs_angle, evaluate
from .loop import NonFiniteLossError, fit
from .notebook import train_or_load
from .optim import decay_parameter_names, make_optimizer, make_scheduler
from .runs import ResumeMismatchError, RunFolderError, check_run_folder, resume_differences

#: TrainConfig fields that may differ between a checkpoint and a resumed run (``epochs`` too:
#: the schedule is then recomputed, which :func:`fit` states). Documented here for the API reference.
RESUMABLE_CHANGES = RESUMABLE_CHANGES

__all__ = [
    "TrainConfig",
    "train_preset",
    "fit",
    "evaluate",
    "accuracy_vs_angle",
    "train_or_load",
    "load_checkpoint",
    "save_checkpoint",
    "clean_state_dict",
    "load_state_dict",
    "load_model",
    "set_seed",
    "main",
    "build_parser",
    "validate_train_config",
    "check_run_folder",
    "resume_differences",
    "decay_parameter_names",
    "make_optimizer",
    "make_scheduler",
    "CheckpointError",
    "RunFolderError",
    "ResumeMismatchError",
    "NonFiniteLossError",
    "RESUMABLE_CHANGES",
]
