"""Quick-mode GSA-Nets trained once and shipped with the package (chapter 8).

Training the `small` networks takes up to two minutes per run on one CPU core (an R4 run on
2,000 rotated real digits about 100 s), and chapter 8 compares eight runs: too long for a
chapter that should run in two. So the runs of chapter 8 are trained once, by one command,

    python tools/build_pretrained.py            # all records (about 8 minutes of CPU)
    python tools/build_pretrained.py --jobs 2   # two at a time
    python tools/build_pretrained.py --check    # retrain everything and compare, write nothing

and their weights ship in ``gsa_tutorial/assets/pretrained/`` with a ``manifest.json`` that
holds, per record: the weights file and its sha256, the *full* model config
(:meth:`gsa_tutorial.model.GSANetConfig.to_dict`, so a record keeps loading the architecture it was trained with
even when a default changes) and training config, the data set and split sizes, the seeds, the
torch version, the measured validation and test accuracies, and the sha256 of the weights
after the first epoch (:func:`state_dict_sha256`), which the tests reproduce by retraining.

:func:`load_pretrained` checks the file's sha256 before loading it; a damaged or stale file
raises :class:`PretrainedChecksumError` that says what was expected and how to rebuild.

What is trained is :data:`PRETRAINED_SPECS`, the one place that defines the runs.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .data import ChecksumError

__all__ = [
    "PretrainedSpec",
    "PRETRAINED_SPECS",
    "PretrainedChecksumError",
    "list_pretrained",
    "pretrained_info",
    "load_pretrained",
    "state_dict_sha256",
    "build_record",
    "accuracy_by_angle",
]

MANIFEST = "manifest.json"
REBUILD = "python tools/build_pretrained.py"


@dataclass(frozen=True)
class PretrainedSpec:
    """One shipped run: the `small` preset for ``group`` trained on ``dataset``.

    The model's initial weights come from ``torch.manual_seed(seed)``; ``seed`` is also the
    training seed (batch order). ``train_size`` takes the first digits of the train split.
    """

    group: str
    dataset: str  # a get_dataset name: "mnist-mini-rotated" or "mnist-mini" (upright)
    seed: int
    epochs: int
    train_size: int | None = None  # None: the whole train split
    data_seed: int = 0  # seed of the rotation angles (mnist-mini-rotated)


def _rotated(group: str, seed: int) -> tuple[str, PretrainedSpec]:
    return f"rotated-{group}-seed{seed}", PretrainedSpec(group, "mnist-mini-rotated", seed, epochs=8, train_size=2000)


def _upright(group: str) -> tuple[str, PretrainedSpec]:
    return f"upright-{group}-seed0", PretrainedSpec(group, "mnist-mini", 0, epochs=6, train_size=1000)


#: Chapter 8's runs, Z2 and R4 on rotated digits (three seeds each, the rotated-MNIST protocol;
#: 2,000 training digits, 8 epochs) and on upright digits (one seed each, 1,000 digits, 6 epochs:
#: train upright, test rotated). Sized so that all eight train in about 8 minutes of one
#: core (an R4 run on 2,000 digits takes about 100 s there); the slowest come first.
PRETRAINED_SPECS: dict[str, PretrainedSpec] = dict(
    [_rotated(g, s) for g in ("r4", "z2") for s in (0, 1, 2)] + [_upright(g) for g in ("r4", "z2")]
)


class PretrainedChecksumError(ChecksumError):
    """A shipped weights file does not have the sha256 its manifest records."""


# ---------------------------------------------------------------------------------------
# Hashes
# ---------------------------------------------------------------------------------------


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and values (independent of pickling).

    Two state dicts have the same hash exactly when they hold bitwise equal tensors.
    """
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _sha256_bytes(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------------------------------
# Reading the shipped records
# ---------------------------------------------------------------------------------------


def _assets():
    from importlib.resources import files

    return files("gsa_tutorial") / "assets" / "pretrained"


def _manifest() -> dict[str, Any]:
    path = _assets() / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"gsa_tutorial/assets/pretrained/{MANIFEST} is missing; build it with {REBUILD}")
    return json.loads(path.read_text())


def list_pretrained() -> list[str]:
    """Names of the shipped records (those in the manifest)."""
    return sorted(_manifest()["records"])


def pretrained_info(name: str) -> dict[str, Any]:
    """The manifest entry of a record: file, sha256, model and training configs, accuracies."""
    records = _manifest()["records"]
    if name not in records:
        raise ValueError(f"unknown pretrained record {name!r}: expected one of {', '.join(sorted(records))}")
    return records[name]


def load_pretrained(name: str) -> nn.Module:
    """The shipped `small` GSA-Net ``name``, in eval mode, after checking its file's sha256.

    Args:
        name: one of :func:`list_pretrained`, e.g. ``"rotated-r4-seed0"``.

    Returns:
        A :class:`~gsa_tutorial.model.GSANet` built from the record's full model config.

    Raises:
        ValueError: an unknown name, or a config this version of the package cannot build.
        PretrainedChecksumError: the file differs from the one the manifest describes.
    """
    from .model import GSANet, GSANetConfig

    info = pretrained_info(name)
    raw = (_assets() / info["file"]).read_bytes()
    digest = _sha256_bytes(raw)
    if digest != info["sha256"]:
        raise PretrainedChecksumError(
            f"gsa_tutorial/assets/pretrained/{info['file']} has sha256 {digest}, but the manifest expects "
            f"{info['sha256']}: the file is damaged or was rebuilt without its manifest; rebuild both with "
            f"{REBUILD} --only {name}"
        )
    try:
        config = GSANetConfig.from_dict(info["model_config"])
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"pretrained record {name!r} was trained with a model config this version of GSANetConfig "
            f"cannot build ({error}); rebuild the records with {REBUILD}"
        ) from error
    model = GSANet(config)
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------
# Training a record (used by tools/build_pretrained.py and the tests)
# ---------------------------------------------------------------------------------------


def _data(spec: PretrainedSpec):
    from torch.utils.data import Subset

    from .data import get_dataset

    kw: dict[str, Any] = {"seed": spec.data_seed} if spec.dataset.endswith("rotated") else {}
    train = get_dataset(spec.dataset, "train", **kw)
    if spec.train_size is not None:
        train = Subset(train, range(spec.train_size))
    return train, get_dataset(spec.dataset, "valid", **kw), get_dataset(spec.dataset, "test", **kw)


def build_record(name: str, *, epochs_only: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Train record ``name`` of :data:`PRETRAINED_SPECS` from scratch on the CPU, one thread.

    Args:
        name: a key of :data:`PRETRAINED_SPECS`.
        epochs_only: stop after this many epochs (of the full schedule); the tests retrain one
            epoch and compare with the manifest's ``epoch1_sha256``.

    Returns:
        ``(model, entry)``: the model holds the best-validation weights (or, with
        ``epochs_only``, the weights after that epoch); ``entry`` is the manifest entry
        without ``file`` and ``sha256``.
    """
    import tempfile

    from .model import GSANet, preset
    from .train import fit, train_preset

    if name not in PRETRAINED_SPECS:
        raise ValueError(f"unknown pretrained record {name!r}: expected one of {', '.join(PRETRAINED_SPECS)}")
    spec = PRETRAINED_SPECS[name]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same arithmetic on every run of this machine
    try:
        train, valid, test = _data(spec)
        torch.manual_seed(spec.seed)
        model = GSANet(preset("small", spec.group))
        config = train_preset("small", epochs=spec.epochs, seed=spec.seed, device="cpu", progress=False, verbose=False)
        with tempfile.TemporaryDirectory(prefix="gsa_pretrained_") as run:
            first = fit(model, train, valid, _replace(config, max_epochs_this_run=1), run)
            epoch1 = state_dict_sha256(model.state_dict())
            if epochs_only == 1:
                return model, {"epoch1_sha256": epoch1, "history": first["history"]}
            limit = None if epochs_only is None else epochs_only - 1
            record = fit(model, train, valid, _replace(config, max_epochs_this_run=limit), run, test_set=test, resume=True)
        if epochs_only is not None:
            return model, {"epoch1_sha256": epoch1, "history": record["history"]}
        entry = {
            "spec": asdict(spec),
            "preset": "small",
            "model_config": model.config.to_dict(),
            "train_config": {k: v for k, v in asdict(config).items() if k not in ("progress", "verbose")},
            "num_parameters": record["num_parameters"],
            "splits": {"train": len(train), "valid": len(valid), "test": len(test)},
            "best": record["best"],
            "test": record["test"],
            "history": record["history"],
            "epoch1_sha256": epoch1,
            "weights_sha256": state_dict_sha256(model.state_dict()),
            "torch": torch.__version__,
        }
        return model, entry
    finally:
        torch.set_num_threads(threads)


def _replace(config, **changes):
    from dataclasses import replace

    return replace(config, **changes)


# ---------------------------------------------------------------------------------------
# Reading a rotated test set by angle (chapter 8)
# ---------------------------------------------------------------------------------------


@torch.no_grad()
def accuracy_by_angle(model: nn.Module, dataset, *, bins: int = 12, batch_size: int = 250) -> dict[str, Any]:
    """Test accuracy overall and per bin of the digits' own rotation angles (rotated-MNIST protocol).

    Unlike :func:`gsa_tutorial.train.accuracy_vs_angle`, which rotates every test image by each
    angle, this reads a test set whose digits are each rotated once (``dataset.angles``, e.g.
    ``MNISTMini("test", rotated=True)``) and groups them by that angle.

    Args:
        model: maps ``(B, 1, H, W)`` to logits.
        dataset: has ``tensors()`` and ``angles`` (radians in ``[0, 2π)``).
        bins: number of equal angle bins over ``[0, 2π)``.

    Returns:
        A dict with ``"accuracy"`` (overall), ``"angles"`` (bin centres, radians),
        ``"bin_accuracy"`` (per bin), ``"bin_count"`` (digits per bin) and ``"correct"``
        (an ``(N,)`` bool tensor).
    """
    images, labels = dataset.tensors()  # (N, 1, H, W), (N,)
    angles = torch.as_tensor(dataset.angles, dtype=torch.float64)  # (N,)
    was_training = model.training
    model.eval()
    try:
        device = next(iter(model.parameters())).device
        pred = torch.cat([model(images[lo : lo + batch_size].to(device)).argmax(dim=1).cpu()
                          for lo in range(0, images.shape[0], batch_size)])  # (N,)
    finally:
        model.train(was_training)
    correct = pred == labels
    which = torch.clamp((angles / (2 * torch.pi) * bins).long(), 0, bins - 1)  # (N,) bin index
    count = torch.bincount(which, minlength=bins)
    hits = torch.bincount(which, weights=correct.double(), minlength=bins)
    return {
        "accuracy": float(correct.double().mean()),
        "angles": [(b + 0.5) * 2 * torch.pi / bins for b in range(bins)],
        "bin_accuracy": (hits / count.clamp(min=1)).tolist(),
        "bin_count": count.tolist(),
        "correct": correct,
    }
