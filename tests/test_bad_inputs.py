"""Every bad input a careful user might try gets a clear error: the right type, and a message
that says what was expected and what was given (issue 9: nothing silent, nothing low-level).

Each case is ``(callable, error type, [texts the message must contain])``: the texts name what
was expected *and* what was given. The command-line cases also check that the error comes
from argparse (exit code 2) before any data is loaded or any model trained.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gsa_tutorial import data
from gsa_tutorial import train as train_module
from gsa_tutorial.actions import act_on_image, act_on_lifted, pixel_coordinates
from gsa_tutorial.attention import GroupSelfAttention, LiftingSelfAttention
from gsa_tutorial.groups import CyclicGroup, DihedralGroup, get_group
from gsa_tutorial.images import disk_mask, gaussian_image, sample_image
from gsa_tutorial.layers import (
    ChannelLayerNorm,
    Crop,
    GroupLayerNorm,
    InvariantPooling,
    Pointwise,
    PointwiseMLP,
    SpatialPool2x2,
    TransformerBlock,
    make_norm,
)
from gsa_tutorial.model import GSANet, GSANetConfig, preset
from gsa_tutorial.profiling import is_out_of_memory
from gsa_tutorial.testing import assert_equivariant, equivariance_error, translation_error
from gsa_tutorial.train import TrainConfig, load_checkpoint, main

TINY = dict(group="r4", channels=4, num_blocks=1, heads=2, dim_head=2, window=3, pos_hidden=4, input_pool=1, pool_after=(), norm="layer")


def lift() -> LiftingSelfAttention:
    return LiftingSelfAttention(1, 4, group="r4", heads=2, window=3)


def glayer() -> GroupSelfAttention:
    return GroupSelfAttention(4, 4, group="r4", heads=2, window=3)


def net(**kw: Any) -> GSANet:
    torch.manual_seed(0)
    return GSANet(GSANetConfig(**{**TINY, **kw}))


def img(*shape: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> torch.Tensor:
    return torch.rand(*shape, dtype=dtype, device=device) if dtype.is_floating_point else torch.zeros(*shape, dtype=dtype, device=device)


def identity_fn(x: torch.Tensor) -> torch.Tensor:
    return x


def shift_fn(x: torch.Tensor) -> torch.Tensor:
    """Not rotation-equivariant: a roll by one pixel."""
    return torch.roll(x, 1, dims=-1)


# ---- layers, model and groups: (id, call, error type, texts) ------------------------------

F32 = "torch.float32"
LAYER_CASES: list[tuple[str, Callable[[], Any], type[BaseException], list[str]]] = [
    # dtype rule: floating inputs of the module's dtype only
    ("lift-float16", lambda: lift()(img(1, 1, 5, 5, dtype=torch.float16)), TypeError, [F32, "torch.float16"]),
    ("lift-bfloat16", lambda: lift()(img(1, 1, 5, 5, dtype=torch.bfloat16)), TypeError, [F32, "torch.bfloat16"]),
    ("lift-float64", lambda: lift()(img(1, 1, 5, 5, dtype=torch.float64)), TypeError, [F32, "torch.float64"]),
    ("lift-int64", lambda: lift()(img(1, 1, 5, 5, dtype=torch.int64)), TypeError, [F32, "torch.int64"]),
    ("lift-bool", lambda: lift()(img(1, 1, 5, 5, dtype=torch.bool)), TypeError, [F32, "torch.bool"]),
    ("lift-complex", lambda: lift()(torch.zeros(1, 1, 5, 5, dtype=torch.complex64)), TypeError, [F32, "torch.complex64"]),
    ("group-float64", lambda: glayer()(img(1, 4, 4, 5, 5, dtype=torch.float64)), TypeError, [F32, "torch.float64"]),
    ("group-uint8", lambda: glayer()(img(1, 4, 4, 5, 5, dtype=torch.uint8)), TypeError, [F32, "torch.uint8"]),
    ("model-float16", lambda: net()(img(1, 1, 8, 8, dtype=torch.float16)), TypeError, [F32, "torch.float16"]),
    ("model-uint8", lambda: net()(img(1, 1, 8, 8, dtype=torch.uint8)), TypeError, [F32, "torch.uint8", "x.float() / 255"]),
    ("model-int64", lambda: net()(img(1, 1, 8, 8, dtype=torch.int64)), TypeError, [F32, "torch.int64", "[0, 1]"]),
    ("preset-uint8", lambda: GSANet(preset("small", "r4"))(img(2, 1, 28, 28, dtype=torch.uint8)), TypeError, ["torch.uint8", "/ 255"]),
    ("pointwise-float64", lambda: Pointwise(4, 3)(img(1, 4, 5, 5, dtype=torch.float64)), TypeError, [F32, "torch.float64"]),
    ("layernorm-int", lambda: GroupLayerNorm(4)(img(1, 4, 5, 5, dtype=torch.int32)), TypeError, [F32, "torch.int32"]),
    ("block-float16", lambda: TransformerBlock(4, 4, group="r4", heads=2, window=3)(img(1, 4, 4, 5, 5, dtype=torch.float16)), TypeError, [F32, "torch.float16"]),
    # empty inputs, other devices, wrong types
    ("lift-batch-0", lambda: lift()(img(0, 1, 5, 5)), ValueError, ["non-empty", "(0, 1, 5, 5)"]),
    ("lift-0x0", lambda: lift()(img(1, 1, 0, 0)), ValueError, ["non-empty", "(1, 1, 0, 0)"]),
    ("group-batch-0", lambda: glayer()(img(0, 4, 4, 5, 5)), ValueError, ["non-empty", "(0, 4, 4, 5, 5)"]),
    ("model-batch-0", lambda: net()(img(0, 1, 8, 8)), ValueError, ["non-empty", "(0, 1, 8, 8)"]),
    ("model-0x0", lambda: net()(img(2, 1, 0, 0)), ValueError, ["non-empty", "(2, 1, 0, 0)"]),
    ("lift-meta", lambda: lift()(img(1, 1, 5, 5, device="meta")), ValueError, ["on cpu", "on meta"]),
    ("model-meta", lambda: net()(img(1, 1, 8, 8, device="meta")), ValueError, ["on cpu", "on meta"]),
    ("lift-numpy", lambda: lift()(np.zeros((1, 1, 5, 5), dtype=np.float32)), TypeError, ["tensor", "ndarray"]),
    ("model-list", lambda: net()([[0.0]]), TypeError, ["tensor", "list"]),
    ("model-rank-3", lambda: net()(img(1, 8, 8)), ValueError, ["(B, 1, H, W)", "(1, 8, 8)"]),
    ("model-3-channels", lambda: net()(img(1, 3, 8, 8)), ValueError, ["(B, 1, H, W)", "(1, 3, 8, 8)"]),
    ("pooling-rank-3", lambda: InvariantPooling()(img(2, 4, 5)), ValueError, ["(B, C, |H|, H, W)", "(2, 4, 5)"]),
    ("pooling-rank-6", lambda: InvariantPooling()(img(2, 4, 4, 5, 5, 1)), ValueError, ["(B, C, |H|, H, W)", "(2, 4, 4, 5, 5, 1)"]),
    ("pool2x2-rank-3", lambda: SpatialPool2x2()(img(2, 4, 4)), ValueError, ["(B, C, [|H|,] H, W)", "(2, 4, 4)"]),
    ("pointwise-channels", lambda: Pointwise(4, 3)(img(1, 5, 5, 5)), ValueError, ["4 channels", "(1, 5, 5, 5)"]),
    ("channelnorm-channels", lambda: ChannelLayerNorm(4)(img(1, 3, 5, 5)), ValueError, ["4 channels", "(1, 3, 5, 5)"]),
    ("batchnorm-channels", lambda: make_norm("batch", 4)(img(2, 3, 4, 5, 5)), ValueError, ["4 channels", "(2, 3, 4, 5, 5)"]),
    ("block-image", lambda: TransformerBlock(4, 4, group="r4", heads=2, window=3)(img(1, 4, 5, 5)), ValueError, ["(B, C_in, |H|, H, W)", "(1, 4, 5, 5)"]),
    # constructor arguments
    ("dim_head-0", lambda: LiftingSelfAttention(1, 4, group="r4", dim_head=0), ValueError, ["dim_head", ">= 1", "0"]),
    ("dim_head-negative", lambda: GroupSelfAttention(4, 4, group="r4", dim_head=-2), ValueError, ["dim_head", ">= 1", "-2"]),
    ("pos_hidden-negative", lambda: LiftingSelfAttention(1, 4, group="r4", pos_hidden=-1), ValueError, ["pos_hidden", ">= 1", "-1"]),
    ("pos_hidden-0", lambda: LiftingSelfAttention(1, 4, group="r4", pos_hidden=0), ValueError, ["pos_hidden", ">= 1", "0"]),
    ("in_channels-True", lambda: LiftingSelfAttention(True, 4, group="r4"), ValueError, ["in_channels", "integer", "True"]),
    ("heads-float", lambda: LiftingSelfAttention(1, 4, group="r4", heads=2.0), ValueError, ["heads", "integer", "2.0"]),
    ("window-True", lambda: LiftingSelfAttention(1, 4, group="r4", window=True), ValueError, ["odd", "True"]),
    ("config-window-True", lambda: GSANetConfig(**{**TINY, "window": True}), ValueError, ["odd", "True"]),
    ("config-in_channels-True", lambda: GSANetConfig(**{**TINY, "in_channels": True}), ValueError, ["positive integer", "True"]),
    ("config-mlp_ratio-tiny", lambda: GSANetConfig(**{**TINY, "mlp_ratio": 1e-9}), ValueError, ["at least one hidden channel", "1e-09"]),
    ("config-mlp_ratio-nan", lambda: GSANetConfig(**{**TINY, "mlp_ratio": float("nan")}), ValueError, ["finite number > 0", "nan"]),
    ("config-input_std-nan", lambda: GSANetConfig(**{**TINY, "input_mean": (0.1,), "input_std": (float("nan"),)}), ValueError, ["finite numbers", "nan"]),
    ("config-input_mean-inf", lambda: GSANetConfig(**{**TINY, "input_mean": (float("inf"),), "input_std": (0.3,)}), ValueError, ["finite numbers", "inf"]),
    ("config-crops-float", lambda: GSANetConfig(**{**TINY, "crops": (1.5,)}), ValueError, ["integer >= 0 per block", "1.5"]),
    ("config-norm_between-str", lambda: GSANetConfig(**{**TINY, "norm_between_blocks": "yes"}), ValueError, ["True or False", "'yes'"]),
    ("block-mlp_ratio-tiny", lambda: TransformerBlock(4, 4, group="r4", mlp_ratio=1e-9), ValueError, ["at least one hidden channel", "1e-09"]),
    ("block-dropout-1", lambda: TransformerBlock(4, 4, group="r4", dropout=1.0), ValueError, ["[0, 1)", "1.0"]),
    ("mlp-hidden-0", lambda: PointwiseMLP(4, hidden=0), ValueError, ["at least one hidden channel", "hidden=0"]),
    ("pointwise-0", lambda: Pointwise(0, 3), ValueError, ["in_channels", ">= 1", "0"]),
    ("crop-2.5", lambda: Crop(2.5), ValueError, ["integer >= 0", "2.5"]),
    ("crop-True", lambda: Crop(True), ValueError, ["integer >= 0", "True"]),
    ("crop-negative", lambda: Crop(-1), ValueError, ["integer >= 0", "-1"]),
    ("crop-too-much", lambda: Crop(3)(img(1, 2, 5, 5)), ValueError, ["cannot crop 3", "5x5"]),
    ("pool2x2-odd", lambda: SpatialPool2x2()(img(1, 2, 5, 5)), ValueError, ["odd", "5x5"]),
    ("cyclic-True", lambda: CyclicGroup(True), ValueError, ["integer n >= 1", "True"]),
    ("cyclic-2.0", lambda: CyclicGroup(2.0), ValueError, ["integer n >= 1", "2.0"]),
    ("dihedral-0", lambda: DihedralGroup(0), ValueError, ["integer n >= 1", "0"]),
    ("group-name-int", lambda: get_group(4), TypeError, ["string such as 'r4'", "4"]),
    ("group-name-unknown", lambda: get_group("so2"), ValueError, ["r4", "'so2'"]),
    ("element-out-of-range", lambda: act_on_image("r4", 4, img(1, 1, 5, 5)), ValueError, ["0..3", "4"]),
    ("element-float", lambda: act_on_lifted("r4", 1.0, img(1, 1, 4, 5, 5)), TypeError, ["integers 0..3", "1.0"]),
    ("pixel-coordinates-2.5", lambda: pixel_coordinates(2.5, 3), ValueError, ["positive integer height", "2.5"]),
    ("pixel-coordinates-negative", lambda: pixel_coordinates(-1, 3), ValueError, ["positive integer height", "-1"]),
    ("pixel-coordinates-int-dtype", lambda: pixel_coordinates(3, 3, dtype=torch.int64), TypeError, ["floating dtype", "torch.int64"]),
    ("sample-image-small", lambda: sample_image(4), ValueError, [">= 8", "4"]),
    ("act-int-image-non-grid", lambda: act_on_image("r8", 1, img(1, 1, 5, 5, dtype=torch.int64)), TypeError, ["floating-point", "torch.int64"]),
    ("act-int-lifted-non-grid", lambda: act_on_lifted("r8", 1, img(1, 1, 8, 5, 5, dtype=torch.uint8)), TypeError, ["floating-point", "torch.uint8"]),
    ("rotate-nan-angle", lambda: data.rotate_images(img(1, 1, 5, 5), float("nan")), ValueError, ["finite numbers", "nan"]),
    ("gaussian-sigma-nan", lambda: gaussian_image(9, sigma=(float("nan"), 1.0)), ValueError, ["finite positive", "nan"]),
    ("disk-radius-negative", lambda: disk_mask(5, radius=-1), ValueError, ["finite number > 0", "-1"]),
    ("translation-margin-negative", lambda: translation_error(identity_fn, img(1, 1, 9, 9), (1, 1), margin=-1), ValueError, ["integer >= 0", "-1"]),
    ("translation-zero-shift", lambda: translation_error(identity_fn, img(1, 1, 9, 9), (0, 0), margin=1), ValueError, ["not both 0", "(0, 0)"]),
    ("angle-curve-float-labels", lambda: train_module.accuracy_vs_angle(net(), img(2, 1, 8, 8), torch.tensor([0.0, 1.0]), [0.0]), TypeError, ["integer class labels", "torch.float32"]),
    ("angle-curve-no-images", lambda: train_module.accuracy_vs_angle(net(), img(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), [0.0]), ValueError, ["at least one image", "(0, 1, 8, 8)"]),
]

# ---- the equivariance checker ---------------------------------------------------------------

X64 = torch.randn(2, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
CHECKER_CASES: list[tuple[str, Callable[[], Any], type[BaseException], list[str]]] = [
    ("no-elements", lambda: assert_equivariant(identity_fn, "r4", X64, elements=[]), ValueError, ["no group element", "elements=[]"]),
    ("identity-only", lambda: assert_equivariant(shift_fn, "r4", X64, elements=[0]), ValueError, ["only the identity", "passes for any map"]),
    ("r3-only-identity-exact", lambda: assert_equivariant(shift_fn, "r3", X64), ValueError, ["only the identity", "r3 has no grid-exact element"]),
    ("z2-nothing-to-check", lambda: assert_equivariant(shift_fn, "z2", X64), ValueError, ["only the identity", "translation_error"]),
    ("rtol-negative", lambda: assert_equivariant(identity_fn, "r4", X64, rtol=-1), ValueError, ["finite number >= 0", "-1"]),
    ("rtol-nan", lambda: assert_equivariant(identity_fn, "r4", X64, rtol=float("nan")), ValueError, ["finite number >= 0", "nan"]),
    ("rtol-inf", lambda: assert_equivariant(shift_fn, "r4", X64, rtol=float("inf")), ValueError, ["finite number >= 0", "inf"]),
    ("rtol-string", lambda: assert_equivariant(identity_fn, "r4", X64, rtol="1e-3"), ValueError, ["finite number >= 0", "'1e-3'"]),
    ("x-int64", lambda: assert_equivariant(identity_fn, "r4", torch.ones(1, 1, 4, 4, dtype=torch.int64)), TypeError, ["floating-point", "torch.int64"]),
    ("x-bool", lambda: equivariance_error(identity_fn, "r4", torch.ones(1, 1, 4, 4, dtype=torch.bool)), TypeError, ["floating-point", "torch.bool"]),
    ("x-numpy", lambda: assert_equivariant(identity_fn, "r4", np.zeros((1, 1, 4, 4))), TypeError, ["must be a tensor", "ndarray"]),
    ("x-nan", lambda: assert_equivariant(identity_fn, "r4", torch.full((1, 1, 4, 4), float("nan"), dtype=torch.float64)), ValueError, ["finite input", "NaN"]),
    ("x-empty", lambda: assert_equivariant(identity_fn, "r4", torch.zeros(0, 1, 4, 4, dtype=torch.float64)), ValueError, ["nothing to check", "(0, 1, 4, 4)"]),
    ("x-constant", lambda: assert_equivariant(shift_fn, "r4", torch.ones(1, 1, 4, 4, dtype=torch.float64)), ValueError, ["leaves x unchanged", "random input"]),
    ("output-zero", lambda: assert_equivariant(lambda x: torch.zeros_like(x), "r4", X64), ValueError, ["zero everywhere", "not zero"]),
    ("x-rank-3", lambda: assert_equivariant(identity_fn, "r4", torch.randn(1, 4, 4, dtype=torch.float64)), ValueError, ["(B, C, H, W)", "(1, 4, 4)"]),
    ("element-out-of-range", lambda: assert_equivariant(identity_fn, "r4", X64, elements=[1, 7]), ValueError, ["0..3", "7"]),
    ("no-input", lambda: assert_equivariant(identity_fn, "r4"), ValueError, ["needs an input x or its shape", "shape="]),
]


@pytest.mark.parametrize("call,error,texts", [c[1:] for c in LAYER_CASES + CHECKER_CASES], ids=[c[0] for c in LAYER_CASES + CHECKER_CASES])
def test_bad_input_is_refused_clearly(call: Callable[[], Any], error: type[BaseException], texts: list[str]) -> None:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for text in texts:
        assert text in message, f"{text!r} not in {message!r}"


# ---- the training configuration ----------------------------------------------------------

TRAIN_CONFIG_CASES = [
    (dict(epochs=0), ["epochs", ">= 1", "0"]),
    (dict(epochs=True), ["epochs", "integer", "True"]),
    (dict(batch_size=2.5), ["batch_size", "integer", "2.5"]),
    (dict(lr=float("inf")), ["lr", "finite number > 0", "inf"]),
    (dict(lr=float("nan")), ["lr", "finite number > 0", "nan"]),
    (dict(lr=0.0), ["lr", "finite number > 0", "0.0"]),
    (dict(weight_decay=-1e-4), ["weight_decay", ">= 0", "-0.0001"]),
    (dict(warmup_epochs=float("nan")), ["warmup_epochs", ">= 0", "nan"]),
    (dict(grad_clip=-1.0), ["grad_clip", "> 0", "-1.0"]),
    (dict(grad_clip=0.0), ["grad_clip", "> 0", "0.0"]),
    (dict(momentum=1.5), ["momentum", "<= 1", "1.5"]),
    (dict(seed=-1), ["seed", ">= 0", "-1"]),
    (dict(num_workers=-2), ["num_workers", ">= 0", "-2"]),
    (dict(eval_batch_size=0), ["eval_batch_size", ">= 1", "0"]),
    (dict(amp="yes"), ["amp", "True or False", "'yes'"]),
    (dict(device="gpu0"), ["device", "'cuda'", "'gpu0'"]),
]


@pytest.mark.parametrize("kw,texts", TRAIN_CONFIG_CASES, ids=[next(iter(k)) + "=" + repr(v) for k, _ in TRAIN_CONFIG_CASES for v in k.values()])
def test_bad_train_config_is_refused_clearly(kw: dict[str, Any], texts: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        TrainConfig(**kw)
    for text in texts:
        assert text in str(info.value), (text, str(info.value))


# ---- the command line: argparse errors before any data is loaded -------------------------

BASE = ["--preset=small", "--dataset=synthetic", "--device=cpu", "--no-progress", "--epochs=1"]
CLI_CASES = [
    (["--lr", "inf"], ["--lr", "finite number > 0", "'inf'"]),
    (["--lr", "nan"], ["--lr", "finite number > 0", "'nan'"]),
    (["--lr", "-1"], ["--lr", "finite number > 0", "'-1'"]),
    (["--grad-clip", "-1"], ["--grad-clip", "> 0", "'-1'"]),
    (["--grad-clip", "0"], ["--grad-clip", "> 0", "'0'"]),
    (["--warmup-epochs", "nan"], ["--warmup-epochs", ">= 0", "'nan'"]),
    (["--weight-decay", "-0.1"], ["--weight-decay", ">= 0", "'-0.1'"]),
    (["--train-size", "0"], ["--train-size", ">= 1", "'0'"]),
    (["--train-size", "-5"], ["--train-size", ">= 1", "'-5'"]),
    (["--valid-size", "0"], ["--valid-size", ">= 1", "'0'"]),
    (["--test-size", "0"], ["--test-size", ">= 1", "'0'"]),
    (["--epochs", "0"], ["--epochs", ">= 1", "'0'"]),
    (["--epochs", "2.5"], ["--epochs", "integer", "'2.5'"]),
    (["--batch-size", "0"], ["--batch-size", ">= 1", "'0'"]),
    (["--seed", "-3"], ["--seed", ">= 0", "'-3'"]),
    (["--group", "so2"], ["--group", "r4", "'so2'"]),
    (["--preset", "imagenet"], ["--preset", "rotmnist", "'imagenet'"]),
    (["--dataset", "mnist"], ["--dataset", "rotmnist", "'mnist'"]),
    (["--optimizer", "lamb"], ["--optimizer", "adam", "'lamb'"]),
    (["--model", "channels"], ["--model", "KEY=VALUE", "'channels'"]),
    (["--model", "widht=3"], ["GSANetConfig fields", "widht"]),
    (["--model", "channels=-4"], ["positive integer", "-4"]),
    (["--data-option", "=3"], ["--data-option", "KEY=VALUE", "'=3'"]),
    (["--device", "gpu0"], ["device", "'cuda'", "'gpu0'"]),
    (["--resume", "--overwrite"], ["--resume and --overwrite", "not both"]),
]


@pytest.fixture
def no_data_no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CLI error must come before any data is loaded or any epoch trained."""
    monkeypatch.setattr(train_module.cli, "get_dataset", lambda *a, **k: pytest.fail("data were loaded before the flags were checked"))
    monkeypatch.setattr(train_module.cli, "fit", lambda *a, **k: pytest.fail("training started before the flags were checked"))


@pytest.mark.parametrize("flags,texts", CLI_CASES, ids=[" ".join(f) for f, _ in CLI_CASES])
def test_bad_flag_is_an_argparse_error_before_any_work(flags, texts, tmp_path, capsys, no_data_no_training) -> None:
    with pytest.raises(SystemExit) as info:
        main([*BASE, f"--out={tmp_path / 'run'}", *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "error:" in err
    for text in texts:
        assert text in err, (text, err)


def test_help_lists_the_data_set_names(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for name in data.DATASET_NAMES:
        assert name in out


def test_data_dir_given_as_the_data_sets_own_folder_says_what_to_pass(tmp_path, capsys) -> None:
    own = tmp_path / "rotmnist"
    own.mkdir()
    with pytest.raises(SystemExit) as info:
        main(["--preset=small", "--dataset=rotmnist", f"--data-dir={own}", f"--out={tmp_path / 'run'}", "--device=cpu", "--no-progress"])
    assert info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"pass --data-dir {tmp_path}" in err  # what to pass
    assert f"--data-dir {own}" in err  # what was given
    assert "--download" in err and "download=True" not in err  # CLI flags, not the API's arguments


def test_unknown_data_option_is_a_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([*BASE, f"--out={tmp_path / 'run'}", "--data-option", "bogus=1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "'synthetic' does not take it" in err


def test_out_under_a_file_fails_before_training(tmp_path, capsys, no_data_no_training) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as info:
        main([*BASE, f"--out={blocker / 'run'}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "another --out" in err


# ---- data files ---------------------------------------------------------------------------


def _idx(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t10k-images-idx3-ubyte").write_bytes(_idx(images, 0x803))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels, 0x801))


def test_idx_images_of_the_wrong_size_are_refused(tmp_path) -> None:
    _write_mnist(tmp_path, np.zeros((4, 14, 14)), np.zeros(4))
    with pytest.raises(ValueError) as info:
        data.MNISTIDX(tmp_path, split="test")
    message = str(info.value)
    assert "(N, 28, 28)" in message and "(4, 14, 14)" in message and "t10k-images-idx3-ubyte" in message


def test_idx_labels_out_of_range_are_refused(tmp_path) -> None:
    _write_mnist(tmp_path, np.zeros((4, 28, 28)), np.array([0, 3, 12, 9]))
    with pytest.raises(ValueError) as info:
        data.MNISTIDX(tmp_path, split="test")
    assert "0..9" in str(info.value) and "to 12" in str(info.value)


def test_short_download_without_md5_is_refused_and_leaves_nothing(monkeypatch, tmp_path) -> None:
    class Short:
        headers = {"Content-Length": "1000"}

        def __init__(self) -> None:
            self.sent = False

        def read(self, n: int = -1) -> bytes:
            if self.sent:
                return b""
            self.sent = True
            return b"x" * 400

        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(data.files, "urlopen", lambda request, timeout=None: Short())
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.download_url("https://example.org/f.bin", tmp_path / "f.bin", None, progress=False)
    assert "announced 1000 bytes" in str(info.value) and "after 400" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_errors_name_the_file_and_what_to_do(tmp_path) -> None:
    empty, garbage, truncated, missing = (tmp_path / n for n in ("empty.pt", "garbage.pt", "truncated.pt", "missing.pt"))
    empty.write_bytes(b"")
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save({"model": {"w": torch.zeros(100)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    for path, what in ((empty, "is empty"), (garbage, "cannot read"), (truncated, "cannot read"), (missing, "does not exist")):
        with pytest.raises(train_module.CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert str(path) in message and what in message
        if path is not missing:
            assert "Delete it" in message and "weights_only=False" not in message.split("(Do not")[0]


def test_checkpoint_without_the_entries_to_resume_is_refused(tmp_path) -> None:
    torch.save({"model": {}}, tmp_path / "last.pt")
    with pytest.raises(train_module.CheckpointError) as info:
        load_checkpoint(tmp_path / "last.pt", require=("model", "optimizer"))
    assert "lacks ['optimizer']" in str(info.value) and "it has ['model']" in str(info.value)


def test_profiling_tells_out_of_memory_from_a_bug() -> None:
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape '[2, 3]' is invalid for input of size 5"))


# ---- what is accepted on purpose ---------------------------------------------------------


def test_autocast_accepts_lower_precision_inside_the_model() -> None:
    """The dtype rule's one exception: under torch.autocast layers see the autocast dtype."""
    model = net().eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(model(img(2, 1, 8, 8)).float()).all()


def test_a_float64_model_takes_float64_inputs() -> None:
    model = net().double().eval()
    assert model(img(2, 1, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_nan_pixel_in_a_training_batch_keeps_batchnorm_statistics_finite() -> None:
    model = net(norm="batch").train()
    x = img(4, 1, 8, 8)
    model(x)
    x[0, 0, 3, 3] = float("nan")
    assert not torch.isfinite(model(x)).all()  # the output is NaN, as it must be
    for name, buf in model.named_buffers():
        if "running" in name:
            assert torch.isfinite(buf).all(), name
    model.eval()
    assert torch.isfinite(model(img(4, 1, 8, 8))).all()


def test_checker_with_explicit_nongrid_elements_and_loose_rtol_works() -> None:
    """r3 is checkable when asked for explicitly (interpolated rotations, a loose rtol)."""
    errors = assert_equivariant(identity_fn, "r3", X64, elements=[1, 2], rtol=10.0)
    assert set(errors) == {1, 2}


def test_counts() -> None:
    """Keep the promise of issue 9: at least 80 distinct bad inputs in this module."""
    n = len(LAYER_CASES) + len(CHECKER_CASES) + len(TRAIN_CONFIG_CASES) + len(CLI_CASES) + 10  # + the data/checkpoint tests above
    assert n >= 80, n
    assert len({c[0] for c in LAYER_CASES}) == len(LAYER_CASES)
    assert len({c[0] for c in CHECKER_CASES}) == len(CHECKER_CASES)
