"""Evaluate a trained GSA-Net without writing code: ``python -m gsa_tutorial.evaluate RUN`` (chapter 8).

``RUN`` is a run folder written by :mod:`gsa_tutorial.train` (its ``best.pt`` is used, or
``last.pt`` when there is no ``best.pt``) or a checkpoint file. The command prints

* the loss and accuracy on the test split (:func:`gsa_tutorial.train.evaluate`);
* the accuracy of rotated copies of the test images against the rotation angle
  (:func:`gsa_tutorial.train.accuracy_vs_angle`): flat at multiples of 90° for an exactly
  invariant network, approximate in between;
* an invariance check of the loaded network: the relative change of its logits when the input
  is moved by each grid-exact element of its group, in float64
  (:func:`gsa_tutorial.testing.equivariance_error`; exact means ≤ 1e-10).

``--plot out.png`` also saves the training curves (from the run's ``metrics.json``) above
the angle curve; ``--json out.json`` saves every number. The exit status is 1 when the
invariance check fails.

Python API: :func:`evaluate_run` returns the same numbers as a dict::

    from gsa_tutorial.evaluate import evaluate_run
    report = evaluate_run("runs/rotmnist-r12", dataset="rotmnist")
    report["test"]["acc"], report["invariance"]["max_error"]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._io import atomic_write_text
from .data import DATASET_NAMES, get_dataset
from .groups import get_group
from .model import count_parameters
from .testing import default_rtol, equivariance_error
from .train import accuracy_vs_angle, evaluate, load_checkpoint, load_model
from .train.checkpoint import BEST, LAST, METRICS_JSON
from .train.cli import _key_values

__all__ = ["resolve_checkpoint", "evaluate_run", "invariance_check", "format_report", "save_plot", "build_parser", "main"]

#: Default angles of the robustness curve: every 15° from 0° to 360° (in degrees).
DEFAULT_ANGLE_STEP = 15.0


def resolve_checkpoint(path: str | os.PathLike) -> tuple[Path, dict[str, Any] | None]:
    """The checkpoint file to load and the run record (``metrics.json``) next to it, if any.

    Args:
        path: a run folder (``best.pt`` is used, else ``last.pt``) or a checkpoint file.

    Returns:
        ``(checkpoint path, record or None)``.

    Raises:
        FileNotFoundError: the path does not exist, or a folder holds neither checkpoint.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        candidates = [path / BEST, path / LAST]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"{path} is a folder without {BEST} or {LAST}: expected a run folder written by "
                "`python -m gsa_tutorial.train --out FOLDER`, or a checkpoint file"
            )
        checkpoint = found
    elif path.is_file():
        checkpoint = path
    else:
        raise FileNotFoundError(f"{path} does not exist: expected a run folder or a checkpoint file (best.pt, last.pt)")
    metrics = checkpoint.parent / METRICS_JSON
    record = json.loads(metrics.read_text()) if metrics.is_file() else None
    return checkpoint, record


def _dataset_name(dataset: str | None, record: dict[str, Any] | None, checkpoint: dict[str, Any]) -> str:
    """The data set to evaluate on: the argument, else the one the run recorded."""
    name = dataset or (record or {}).get("dataset") or checkpoint.get("dataset")
    if name is None:
        raise ValueError(
            "which data set? The run does not record the data set it was trained on; pass --dataset NAME "
            f"(one of {', '.join(DATASET_NAMES)}; quick-mode runs of `--preset small` use synthetic-rotated)"
        )
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown data set {name!r}: expected one of {', '.join(DATASET_NAMES)}")
    return str(name)


def _stack(dataset: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images and labels of a data set as tensors ``(n, C, H, W)`` and ``(n,)``."""
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    if not items:
        raise ValueError("the test split is empty")
    images = torch.stack([image for image, _ in items])
    labels = torch.as_tensor([int(label) for _, label in items])
    return images, labels


def invariance_check(model: nn.Module, group: str, images: torch.Tensor) -> dict[str, Any]:
    """Relative change of the logits under each grid-exact element of ``group``, in float64.

    Returns:
        ``{"group", "errors": {element name: error}, "max_error", "rtol", "passed"}``.
    """
    h_group = get_group(group)
    x = images.to(dtype=torch.float64, device=next(iter(model.parameters())).device)
    errors = equivariance_error(model, h_group, x, output_kind="invariant")
    rtol = default_rtol(torch.float64)
    worst = max(errors.values())
    return {
        "group": h_group.name,
        "errors": {h_group.element_name(h): e for h, e in errors.items()},
        "max_error": worst,
        "rtol": rtol,
        "passed": bool(worst <= rtol),  # NaN fails
    }


def evaluate_run(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    split: str = "test",
    root: str | os.PathLike | None = None,
    download: bool = False,
    size: int | None = None,
    angles_deg: Sequence[float] | None = None,
    angle_images: int = 1000,
    invariance_images: int = 4,
    batch_size: int = 256,
    device: str | None = None,
    data_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a run's model and measure it: test accuracy, accuracy against angle, invariance.

    Args:
        path: a run folder or a checkpoint file (see :func:`resolve_checkpoint`).
        dataset: a name of :data:`gsa_tutorial.data.DATASET_NAMES`; default: the run's, if it
            recorded one.
        split: the split to evaluate (``"test"``; ``"valid"`` to compare with the run's
            model selection).
        root, download, data_options: passed to :func:`gsa_tutorial.data.get_dataset`.
        size: evaluate only the first ``size`` images of the split (default: all).
        angles_deg: rotation angles of the robustness curve in degrees (default every 15° from
            0° to 360°).
        angle_images: number of images used for the angle curve.
        invariance_images: number of images used for the float64 invariance check.
        batch_size: evaluation batch size.
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available.

    Returns:
        ``{"checkpoint", "dataset", "split", "group", "num_parameters", "best_epoch",
        "test": {"loss", "acc", "n"}, "angles": {"angles_deg", "accuracy", "n"},
        "invariance": {...}, "record": metrics.json or None}``.
    """
    checkpoint_path, record = resolve_checkpoint(path)
    checkpoint = load_checkpoint(checkpoint_path)
    name = _dataset_name(dataset, record, checkpoint)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(checkpoint_path).to(device).eval()
    config: Any = getattr(model, "config", None)  # the GSANetConfig the checkpoint stored
    if config is None:
        raise ValueError(f"{checkpoint_path} did not load as a GSANet (no .config)")
    data: Any = get_dataset(name, split, root=root, download=download, **(data_options or {}))
    if size is not None:
        data = torch.utils.data.Subset(data, range(min(size, len(data))))
    test = evaluate(model, data, batch_size=batch_size, device=device)
    if angles_deg is None:
        angles_deg = [DEFAULT_ANGLE_STEP * i for i in range(int(360 / DEFAULT_ANGLE_STEP) + 1)]
    images, labels = _stack(data, angle_images)
    curve = accuracy_vs_angle(model, images, labels, [math.radians(a) for a in angles_deg], batch_size=batch_size, device=device)
    invariance = invariance_check(model, config.group, images[:invariance_images])
    return {
        "checkpoint": str(checkpoint_path),
        "dataset": name,
        "split": split,
        "group": invariance["group"],
        "num_parameters": count_parameters(model),
        "best_epoch": checkpoint.get("epoch"),
        "test": test,
        "angles": {"angles_deg": [float(a) for a in angles_deg], "accuracy": curve["accuracy"], "n": int(images.shape[0])},
        "invariance": invariance,
        "record": record,
    }


def format_report(report: dict[str, Any]) -> str:
    """The report of :func:`evaluate_run` as the lines the command prints."""
    test, curve, inv = report["test"], report["angles"], report["invariance"]
    lines = [
        f"checkpoint   {report['checkpoint']} (epoch {report['best_epoch']}, group {report['group']}, "
        f"{report['num_parameters']:,} parameters)",
        f"{report['split']:<12s} {report['dataset']}: accuracy {test['acc']:.4f}, loss {test['loss']:.4f} ({test['n']:,} images)",
        f"rotated {report['split']} images (accuracy on the first {curve['n']:,}, rotated by each angle):",
    ]
    for angle, acc in zip(curve["angles_deg"], curve["accuracy"]):
        bar = "#" * round(40 * acc)
        lines.append(f"  {angle:6.1f}°  {acc:.4f}  {bar}")
    accs = curve["accuracy"]
    lines.append(f"  min {min(accs):.4f}, max {max(accs):.4f}, mean {sum(accs) / len(accs):.4f}")
    errors = ", ".join(f"{name} {error:.1e}" for name, error in inv["errors"].items())
    verdict = "invariant" if inv["passed"] else "NOT invariant"
    lines.append(
        f"invariance   {verdict} under the grid-exact elements of {inv['group']} in float64: "
        f"max relative change of the logits {inv['max_error']:.1e} (exact: <= {inv['rtol']:.0e}); {errors}"
    )
    return "\n".join(lines)


def save_plot(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save the training curves (when the run has ``metrics.json``) above the angle curve, as one PNG."""
    import matplotlib.image
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from .plotting import plot_accuracy_vs_angle, plot_training_curves

    label = f"{report['group']} ({Path(report['checkpoint']).parent.name})"
    figures = []
    record = report["record"]
    if record and record.get("history"):
        figures.append(plot_training_curves({label: record}, title="training curves"))
    curve = {"angles": [math.radians(a) for a in report["angles"]["angles_deg"]], "accuracy": report["angles"]["accuracy"]}
    figures.append(plot_accuracy_vs_angle({label: curve}, title=f"{report['split']} accuracy against rotation"))
    pictures = []
    for fig in figures:
        canvas = FigureCanvasAgg(fig)  # the figures are detached from pyplot: draw them off-screen
        fig.set_dpi(100)
        canvas.draw()
        pictures.append(np.asarray(canvas.buffer_rgba())[..., :3])
    width = max(p.shape[1] for p in pictures)
    padded = [  # centred on a white strip as wide as the widest figure
        np.pad(p, ((0, 0), ((width - p.shape[1]) // 2, width - p.shape[1] - (width - p.shape[1]) // 2), (0, 0)), constant_values=255)
        for p in pictures
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(path, np.concatenate(padded, axis=0))
    return path


def _angles(text: str) -> list[float]:
    try:
        return [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--angles expects degrees separated by commas, e.g. 0,45,90; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m gsa_tutorial.evaluate``."""
    p = argparse.ArgumentParser(
        prog="python -m gsa_tutorial.evaluate",
        description="Evaluate a trained GSA-Net: test accuracy, accuracy against rotation angle, invariance check.",
    )
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT", help="run folder of gsa_tutorial.train (uses best.pt) or a .pt file")
    p.add_argument("--dataset", default=None, help=f"data set: {', '.join(DATASET_NAMES)} (default: the run's, if recorded)")
    p.add_argument("--split", default="test", choices=("test", "valid"), help="split to evaluate (default test)")
    p.add_argument("--data-dir", dest="root", metavar="DATA_DIR", default=None, help="data folder (default $GSA_DATA_DIR or ~/.cache/gsa_tutorial)")
    p.add_argument("--download", action="store_true", help="download missing data files")
    p.add_argument("--size", type=int, default=None, help="evaluate only the first N images of the split")
    p.add_argument(
        "--angles", dest="angles_deg", type=_angles, default=None, metavar="DEG,DEG,...", help="angles of the robustness curve (default every 15°)"
    )
    p.add_argument("--angle-images", type=int, default=1000, help="images used for the angle curve (default 1000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE", help="extra argument of get_dataset")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="save the training curves and the angle curve as a PNG")
    p.add_argument("--json", default=None, metavar="OUT.json", help="save the numbers as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m gsa_tutorial.evaluate``; returns the exit status."""
    args = vars(build_parser().parse_args(argv))  # the flags' names are evaluate_run's arguments
    run, plot, json_out, options = args.pop("run"), args.pop("plot"), args.pop("json"), args.pop("data_option")
    try:
        report = evaluate_run(run, **args, data_options=_key_values(options, "--data-option"))
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(format_report(report))
    if json_out:
        atomic_write_text(json_out, json.dumps({k: v for k, v in report.items() if k != "record"}, indent=2))
        print(f"numbers written to {json_out}")
    if plot:
        print(f"figure written to {save_plot(report, plot)}")
    return 0 if report["invariance"]["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
