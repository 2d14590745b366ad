"""The command line, ``python -m gsa_tutorial.train`` (the same under ``torchrun``).

The flags of the training settings are derived from :class:`~gsa_tutorial.train.TrainConfig`:
one flag per field (``lr`` -> ``--lr``), with the field's help, bounds and choices from its
metadata, so a new field is a new flag without a second statement. A flag that is not given
keeps the preset's value (:func:`~gsa_tutorial.train.train_preset`).

Every flag, the run folder and (with ``--resume``) the checkpoint's settings are checked before
any data is loaded: a problem is an argparse error, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch.utils.data import Dataset, Subset

from ..data import DATASET_NAMES, PRESET_DATASETS, ChecksumError, DatasetNotFoundError, dataset_folder, get_dataset
from ..groups import get_group
from ..model import PRESETS, GSANet, GSANetConfig, preset
from .checkpoint import LAST, CheckpointError, load_checkpoint, set_seed
from .config import _PRESET_SETTINGS, TrainConfig, flag_of, train_preset
from .distributed import _init_distributed_from_env
from .loop import NonFiniteLossError, fit
from .runs import _RESUME_KEYS, ResumeMismatchError, RunFolderError, _mismatch_error, check_run_folder, resume_differences

__all__ = ["build_parser", "main"]


def _parse_value(text: str) -> Any:
    """``--model KEY=VALUE`` values: JSON (numbers, lists, null, true) or a bare string."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def _key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; ``ValueError`` for an item without ``=`` or a key."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = _parse_value(value)
    return out


def _limit(dataset: Dataset, n: int | None) -> Dataset:
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))  # type: ignore[arg-type]  # map-style datasets have __len__


# argparse types: a bad value is a usage error ("argument --lr: ..."), exit code 2.


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _finite_float(*, positive: bool) -> Any:
    want = "a finite number > 0" if positive else "a finite number >= 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}")
        return value

    parse.__name__ = want
    return parse


def _group_name(text: str) -> str:
    try:
        get_group(text)
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _config_flag(parser: argparse.ArgumentParser, name: str) -> None:
    """Add the flag of :class:`TrainConfig` field ``name``, as its metadata describes it."""
    spec = TrainConfig.__dataclass_fields__[name]
    flag, meta = flag_of(name), spec.metadata
    if flag is None:
        return
    kind = str(spec.type).split("|")[0].strip()  # "int", "float", "str", "bool" (annotations are strings)
    preset_note = " (default: the preset's)" if any(name in s for s in _PRESET_SETTINGS.values()) else ""
    common: dict[str, Any] = {"dest": name, "default": None, "help": meta["help"] + preset_note}
    if kind == "bool":  # a switch that flips the default: --amp, --no-progress
        parser.add_argument(flag, action="store_const", const=not spec.default, **common)
    elif "choices" in meta:
        parser.add_argument(flag, choices=meta["choices"], **common)
    elif kind == "int":
        parser.add_argument(flag, type=_int_at_least(meta.get("minimum", 1)), **common)
    elif kind == "float":
        parser.add_argument(flag, type=_finite_float(positive=meta["positive"]), **common)
    else:
        parser.add_argument(flag, **common)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's flags; every value is checked here (a bad one is an argparse error, exit code 2)."""
    p = argparse.ArgumentParser(
        prog="python -m gsa_tutorial.train",
        description="Train a GSA-Net (Romero & Cordonnier, 2021). Works the same under torchrun.",
    )
    p.add_argument("--preset", default="small", choices=PRESETS, help="model preset: %(choices)s (default: %(default)s)")
    p.add_argument("--group", default="r4", type=_group_name, help="z2, r4, r8, r12, r16, m4 (any rN / mN)")
    p.add_argument(
        "--dataset", default=None, choices=DATASET_NAMES, metavar="NAME",
        help=f"data set: {', '.join(DATASET_NAMES)} (default: the preset's; small: {PRESET_DATASETS['small']}, "
        "the real digits shipped with the package)",
    )
    p.add_argument(
        "--data-dir", default=None,
        help="the data folder that holds one folder per data set (rotmnist/, cifar10/, ...), not the data set's "
        "own folder (default $GSA_DATA_DIR or ~/.cache/gsa_tutorial)",
    )
    p.add_argument("--download", action="store_true", help="download missing data files")
    p.add_argument("--out", default=None, help="run folder (default runs/<preset>-<group>-seed<seed>)")
    p.add_argument("--overwrite", action="store_true", help="start a new run in --out even if it holds one, replacing it")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt (same settings; --epochs may grow)")
    for spec in fields(TrainConfig):
        _config_flag(p, spec.name)
    positive = _int_at_least(1)
    for split, words in (("train", "training"), ("valid", "validation"), ("test", "test")):
        p.add_argument(f"--{split}-size", type=positive, default=None, help=f"use only the first N {words} images")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE", help="override a GSANetConfig field, e.g. --model channels=8")
    p.add_argument(
        "--data-option", action="append", default=[], metavar="KEY=VALUE", help="extra argument of get_dataset, e.g. --data-option size=14 (synthetic)"
    )
    return p


def _settings(args: argparse.Namespace) -> tuple[GSANetConfig, TrainConfig, dict[str, Any], str]:
    """Model config, training config, data options and data set name from the flags (ValueError if bad)."""
    model_config = preset(args.preset, args.group, **_key_values(args.model, "--model"))
    data_options = _key_values(args.data_option, "--data-option")
    given = {spec.name: getattr(args, spec.name) for spec in fields(TrainConfig) if getattr(args, spec.name, None) is not None}
    config = train_preset(args.preset, **given)
    name = args.dataset or PRESET_DATASETS[args.preset.strip().lower()]
    return model_config, config, data_options, name


def _data_error_for_the_cli(err: Exception, args: argparse.Namespace, name: str) -> str:
    """A data error worded with the CLI's flags (the data module speaks of ``download=True``/``root=``)."""
    text = str(err).replace("or pass download=True", "or pass --download").replace("unless you pass root=...", "unless you pass --data-dir")
    hints = []
    if args.data_dir is not None:
        given = Path(args.data_dir).expanduser()
        folders = {dataset_folder(n) for n in DATASET_NAMES} - {None}
        if given.name == (dataset_folder(name) or name) or given.name in folders:
            hints.append(
                f"--data-dir {args.data_dir} looks like the data set's own folder; --data-dir is the folder that holds "
                f"it: pass --data-dir {given.parent}"
            )
    if not args.download:
        hints.append("add --download to download missing files")
    return text + ("\nOn the command line: " + "; ".join(hints) + "." if hints else "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m gsa_tutorial.train``; returns the run record.

    Every flag, the run folder (``--resume``/``--overwrite``) and, with ``--resume``, the
    checkpoint's settings are checked before any data is loaded: a problem is an argparse
    error (exit code 2) that says what was expected and what was given. A run that fails
    later (a non-finite loss, a damaged checkpoint) ends with ``error: ...`` and exit code 1.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        model_config, config, data_options, name = _settings(args)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    out = Path(args.out or f"runs/{args.preset}-{args.group}-seed{config.seed}")
    data_spec = {"dataset": name, "data_options": data_options, "train_limit": args.train_size, "valid_limit": args.valid_size}
    try:
        check_run_folder(out, resume=args.resume, overwrite=args.overwrite, flags=True)
        if args.resume and (out / LAST).exists():
            ckpt = load_checkpoint(out / LAST, require=_RESUME_KEYS)
            differences, _ = resume_differences(ckpt, model_config=model_config.to_dict(), train_config=config, data=data_spec)
            if differences:
                raise _mismatch_error(out / LAST, differences, flags=True)
    except (RunFolderError, ResumeMismatchError, CheckpointError) as err:
        parser.error(str(err))

    ctx = _init_distributed_from_env(config.device)
    previous_sigterm = None
    if not ctx.active and _in_main_thread():
        # SIGTERM (a scheduler's kill, `kill PID`) unwinds like Ctrl-C, so temporary files are removed now.
        previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:

        def load_data() -> dict[str, Dataset]:
            return {
                split: _limit(get_dataset(name, split, root=args.data_dir, download=args.download, **data_options), n)
                for split, n in (("train", args.train_size), ("valid", args.valid_size), ("test", args.test_size))
            }

        # Rank 0 first (it may download), then the others read the cached files.
        try:
            data = load_data() if ctx.main else None
            if ctx.active:
                dist.barrier()
            if data is None:
                data = load_data()
        except TypeError as err:
            if "argument" not in str(err):
                raise
            parser.error(f"--data-option {', '.join(data_options) or '(none)'}: the data set {name!r} does not take it ({err})")
        except (DatasetNotFoundError, ChecksumError) as err:
            parser.error(_data_error_for_the_cli(err, args, name))
        set_seed(config.seed)  # the same initial weights on every process
        model = GSANet(model_config)
        if ctx.main:
            print(f"{args.preset} / {args.group}: {model.num_parameters():,} parameters; data {name} "
                  f"(train {len(data['train'])}, valid {len(data['valid'])}, test {len(data['test'])}); run folder {out}")  # type: ignore[arg-type]  # map-style datasets have __len__
        try:
            record = fit(
                model, data["train"], data["valid"], config, out, test_set=data["test"],
                resume=args.resume, overwrite=args.overwrite, data_spec=data_spec,
            )
        except (NonFiniteLossError, CheckpointError, ResumeMismatchError, RunFolderError) as err:
            print(f"{parser.prog}: error: {err}", file=sys.stderr)
            raise SystemExit(1) from err
        if ctx.main and record["test"] is not None:
            test = record["test"]
            print(f"best epoch {record['best']['epoch']}: valid acc {record['best']['valid_acc']:.4f}; "
                  f"test acc {test['acc']:.4f}" if test else "")
        return record
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        if ctx.active and dist.is_initialized():
            dist.destroy_process_group()


def _in_main_thread() -> bool:
    """True in the main thread (only there can signal handlers be installed)."""
    import threading

    return threading.current_thread() is threading.main_thread()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
