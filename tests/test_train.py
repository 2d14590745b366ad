"""The training loop: it learns, resumes exactly, saves safe checkpoints, runs under torchrun."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from gsa_tutorial import train as train_module
from gsa_tutorial.data import get_dataset
from gsa_tutorial.model import GSANet, GSANetConfig
from gsa_tutorial.train import (
    TrainConfig,
    accuracy_vs_angle,
    clean_state_dict,
    evaluate,
    fit,
    load_checkpoint,
    load_model,
    load_state_dict,
    main,
    make_optimizer,
    make_scheduler,
    train_or_load,
    train_preset,
)

REPO = Path(__file__).resolve().parents[1]
SIZE = 8  # tiny images keep every test in this file at a second or two on a laptop CPU

# A tiny GSA-Net: lifting + one group block + the invariant head (a few hundred parameters).
TINY = dict(group="r4", channels=6, num_blocks=1, heads=2, dim_head=3, window=3, pos_hidden=4, input_pool=1, pool_after=(), norm="layer")
TINY_CLI = [f"--model={k}={json.dumps(v)}" for k, v in TINY.items() if k != "group"]


def tiny_net(seed: int = 0, **kw) -> GSANet:
    torch.manual_seed(seed)
    return GSANet(GSANetConfig(**{**TINY, **kw}))


def digits(split: str, n: int, size: int = SIZE) -> Dataset:
    return get_dataset("synthetic", split, n=n, size=size)


def quiet(**kw) -> TrainConfig:
    return TrainConfig(**{"progress": False, "verbose": False, "device": "cpu", **kw})


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class CountingDataset(Dataset):
    """Counts item reads, to check that the test set is evaluated exactly once."""

    def __init__(self, base: Dataset) -> None:
        self.base, self.reads = base, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        return self.base[i]


# ---- learning ----------------------------------------------------------------------------


def test_fit_overfits_sixteen_images():
    """Loss falls and all 16 training digits end up right. Z2 (the trivial group) keeps it a
    few seconds; a group net runs the same code with |H|² times the work per step."""
    data = digits("train", 16)
    net = tiny_net(group="z2", channels=8, heads=4, dim_head=2, window=5)
    config = quiet(epochs=60, batch_size=8, lr=3e-2, weight_decay=0.0, schedule="constant")
    history = fit(net, data, data, config)["history"]
    assert history[-1]["train_loss"] < 0.25 * history[0]["train_loss"]
    assert evaluate(net, data)["acc"] == 1.0


# ---- checkpoints, resume, model selection -------------------------------------------------


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    train, valid = digits("train", 16), digits("valid", 4)
    config = quiet(epochs=3, batch_size=8, lr=1e-2, warmup_epochs=1)
    kw = dict(dropout=0.2, input_dropout=0.1)  # random streams must be restored too

    straight = tiny_net(**kw)
    rec_a = fit(straight, train, valid, config, tmp_path / "a")

    first = tiny_net(**kw)
    rec_b1 = fit(first, train, valid, replace(config, max_epochs_this_run=1), tmp_path / "b")
    assert len(rec_b1["history"]) == 1 and not rec_b1["finished"]
    resumed = tiny_net(seed=123, **kw)  # different initial weights: they must come from the checkpoint
    rec_b = fit(resumed, train, valid, config, tmp_path / "b", resume=True)

    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(rec_b["history"]) == strip(rec_a["history"])
    assert rec_b["best"] == rec_a["best"]
    for name, tensor in weights(straight).items():
        assert torch.equal(tensor, weights(resumed)[name]), name
    last_a, last_b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for name, tensor in last_a["model"].items():
        assert torch.equal(tensor, last_b["model"][name]), name


def test_checkpoint_loads_with_weights_only_and_has_everything(tmp_path):
    fit(tiny_net(), digits("train", 8), digits("valid", 8), quiet(epochs=1, batch_size=4), tmp_path)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "train_config", "model_config", "rng", "history", "best"} <= set(ckpt)
    assert ckpt["epoch"] == 1
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in ckpt["model"])
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert GSANetConfig.from_dict(best["model_config"]) == GSANetConfig(**TINY)


def test_load_model_rebuilds_the_trained_network(tmp_path):
    net = tiny_net()
    fit(net, digits("train", 8), digits("valid", 8), quiet(epochs=1, batch_size=4), tmp_path)
    x = digits("test", 4).tensors()[0]
    rebuilt = load_model(tmp_path / "best.pt").eval()
    torch.testing.assert_close(rebuilt(x), net.eval()(x), rtol=0, atol=0)


def test_state_dict_with_module_prefix_loads_strictly():
    source, target = tiny_net(seed=1), tiny_net(seed=2)
    wrapped = torch.nn.DataParallel(source).state_dict()  # keys "module.lift.to_q.weight", ...
    assert all(k.startswith("module.") for k in wrapped)
    load_state_dict(target, {"_orig_mod." + k: v for k, v in wrapped.items()})
    for name, tensor in source.state_dict().items():
        assert torch.equal(tensor, target.state_dict()[name])


def test_state_dict_with_missing_keys_is_refused():
    state = clean_state_dict(tiny_net().state_dict())
    state.pop("classifier.bias")
    with pytest.raises(RuntimeError, match="classifier.bias"):
        load_state_dict(tiny_net(), state)


def test_model_selection_on_validation_and_test_evaluated_once_with_best_weights(tmp_path):
    test = CountingDataset(digits("test", 8))
    net = tiny_net()
    record = fit(net, digits("train", 16), digits("valid", 8), quiet(epochs=3, batch_size=8, lr=1e-2), tmp_path, test_set=test)
    history = record["history"]
    best = max(history, key=lambda r: (r["valid_acc"], -r["valid_loss"]))
    assert record["best"]["epoch"] == best["epoch"]
    assert test.reads == len(test)  # once, at the end
    best_weights = load_checkpoint(tmp_path / "best.pt")["model"]
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, best_weights[name]), name
    assert record["test"] == pytest.approx(evaluate(net, test.base))


def test_metrics_files_have_one_row_per_epoch(tmp_path):
    fit(tiny_net(), digits("train", 8), digits("valid", 8), quiet(epochs=2, batch_size=4), tmp_path, test_set=digits("test", 4))
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in record["history"]] == [1, 2]
    assert record["finished"] and record["test"]["n"] == 4
    rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].split(",")[:6] == ["epoch", "lr", "train_loss", "train_acc", "valid_loss", "valid_acc"]
    assert len(rows) == 3


def test_interrupted_run_is_not_tested(tmp_path):
    test = CountingDataset(digits("test", 4))
    record = fit(tiny_net(), digits("train", 8), digits("valid", 4), quiet(epochs=3, batch_size=4, max_epochs_this_run=1), tmp_path, test_set=test)
    assert not record["finished"] and record["test"] is None and test.reads == 0


def test_train_or_load_trains_once_then_loads(tmp_path, monkeypatch):
    args = (digits("train", 8), digits("valid", 4), quiet(epochs=1, batch_size=4), tmp_path)
    trained, _ = train_or_load(tiny_net(), *args)
    monkeypatch.setattr("gsa_tutorial.train.notebook.fit", lambda *a, **k: pytest.fail("train_or_load retrained a finished run"))
    loaded, record = train_or_load(tiny_net(seed=5), *args)
    assert record["finished"]
    for name, tensor in trained.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])


# ---- schedule, AMP, evaluation helpers ---------------------------------------------------


def test_warmup_cosine_schedule_rises_then_decays_to_zero():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, TrainConfig(epochs=10, warmup_epochs=2), steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = lrs.index(max(lrs))
    assert 15 <= peak <= 21 and max(lrs) == pytest.approx(1.0, abs=0.06)
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))  # warm-up increases
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))  # then decays
    assert lrs[-1] < 1e-2


def _train_recording_dtypes(**amp) -> tuple[dict, set[torch.dtype]]:
    """One epoch from the same initial weights; the dtypes the first projection computed in."""
    net, seen = tiny_net(), set()
    net.lift.to_q.register_forward_hook(lambda module, args, out: seen.add(out.dtype))
    record = fit(net, digits("train", 8), digits("valid", 4), quiet(epochs=1, batch_size=4, **amp))
    return record, seen


def test_amp_bf16_on_cpu_computes_in_bf16_and_agrees_with_float32():
    bf16, bf16_dtypes = _train_recording_dtypes(amp=True, amp_dtype="bf16")
    fp32, fp32_dtypes = _train_recording_dtypes()
    assert bf16_dtypes == {torch.bfloat16} and fp32_dtypes == {torch.float32}  # autocast really ran (or not)
    # bf16 keeps 8 significant bits (relative rounding 2^-8 = 0.4 % per operation): the losses of
    # one epoch from the same weights and batches agree to a few percent, not to float32 round-off.
    for key in ("train_loss", "valid_loss"):
        a, b = bf16["history"][0][key], fp32["history"][0][key]
        assert math.isfinite(a) and abs(a - b) <= 0.03 * abs(b), (key, a, b)
    assert bf16["history"][0]["train_loss"] != fp32["history"][0]["train_loss"]  # not silently the same run


def test_weight_decay_applies_to_weights_only():
    net = tiny_net()
    optimizer = make_optimizer(net, TrainConfig(weight_decay=0.1))
    names = {id(p): n for n, p in net.named_parameters()}
    decay = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.1 for p in g["params"]}
    no_decay = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert decay | no_decay == set(names.values()) and not decay & no_decay  # every parameter, once
    assert "lift.to_q.weight" in decay and "classifier.weight" in decay and "lift.pos.net.0.weight" in decay
    assert all(n.endswith(".weight") for n in decay)
    assert {n for n in no_decay if n.endswith("bias")} == {n for n in names.values() if n.endswith("bias")}
    assert any("group_embedding" in n for n in no_decay)  # the group layer's embedding table
    norm_types = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm)
    norms = {f"{m}.weight" for m, module in net.named_modules() if isinstance(module, norm_types)}
    assert norms and norms <= no_decay
    assert not any("group_embedding" in n or "norm" in n for n in decay)


def test_accuracy_vs_angle_is_flat_at_quarter_turns_for_an_invariant_net():
    images, labels = digits("test", 10, size=9).tensors()
    net = tiny_net().double()
    curve = accuracy_vs_angle(net, images.double(), labels, [0.0, math.pi / 2, math.pi, 3 * math.pi / 2, 0.3])
    assert len(curve["accuracy"]) == 5
    assert curve["accuracy"][:4] == [curve["accuracy"][0]] * 4
    assert curve["accuracy"][0] == pytest.approx(evaluate(net, TensorDataset(images.double(), labels))["acc"])


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(epochs=0), "epochs"),
        (dict(optimizer="lamb"), "optimizer"),
        (dict(schedule="step"), "schedule"),
        (dict(amp_dtype="fp8"), "amp_dtype"),
    ],
)
def test_bad_train_config_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_train_preset_applies_overrides_and_rejects_unknown_names():
    assert train_preset("rotmnist", epochs=3).epochs == 3
    with pytest.raises(ValueError, match="rotmnist, cifar10, pcam, small"):
        train_preset("mnist")


# ---- command line and torchrun -----------------------------------------------------------

CLI_ARGS = [
    "--preset=small",
    "--group=r4",
    "--dataset=synthetic",
    f"--data-option=size={SIZE}",
    "--train-size=16",
    "--valid-size=8",
    "--test-size=8",
    "--epochs=2",
    "--batch-size=8",
    "--lr=0.01",
    "--device=cpu",
    "--no-progress",
    *TINY_CLI,
]


def test_cli_trains_and_resumes(tmp_path):
    first = main([*CLI_ARGS, f"--out={tmp_path}", "--max-epochs-this-run=1"])
    assert len(first["history"]) == 1 and not first["finished"]
    second = main([*CLI_ARGS, f"--out={tmp_path}", "--resume"])
    assert [r["epoch"] for r in second["history"]] == [1, 2] and second["finished"]
    assert second["test"]["n"] == 8


def test_torchrun_two_processes_agree_with_one(tmp_path):
    one = main([*CLI_ARGS, f"--out={tmp_path / 'one'}"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gsa_tutorial.train"]
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, *CLI_ARGS, f"--out={tmp_path / 'two'}"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["world_size"] == 2 and two["finished"]
    for a, b in zip(one["history"], two["history"]):
        for key in ("train_loss", "train_acc", "valid_loss", "valid_acc", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    # Compare the trained *functions*: a few parameters (the last bias of each positional MLP
    # adds the same logit to every key, which the softmax ignores) have an exactly zero
    # gradient, so their round-off noise, normalised by Adam, moves them by up to lr per step.
    x = digits("test", 8).tensors()[0]
    net1, net2 = load_model(tmp_path / "one" / "last.pt").eval(), load_model(tmp_path / "two" / "last.pt").eval()
    with torch.no_grad():
        torch.testing.assert_close(net2(x), net1(x), rtol=1e-4, atol=1e-5)
    print(f"torchrun (2 processes) took {time.perf_counter() - t0:.1f}s")


# ---- run safety: nothing overwritten, no silent resume, no NaN run, nothing left behind ----


def tiny_cli(out: Path, *extra: str) -> list[str]:
    return [*CLI_ARGS, f"--out={out}", *extra]


def test_finished_run_is_not_overwritten_without_overwrite(tmp_path, capsys):
    main(tiny_cli(tmp_path))
    before = {name: (tmp_path / name).read_bytes() for name in ("last.pt", "best.pt", "metrics.json")}
    with pytest.raises(SystemExit) as info:
        main(tiny_cli(tmp_path))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "a finished run of 2 epochs" in err and "--resume" in err and "--overwrite" in err
    assert {name: (tmp_path / name).read_bytes() for name in before} == before  # untouched
    with pytest.raises(train_module.RunFolderError, match="overwrite=True"):
        fit(tiny_net(), digits("train", 8), digits("valid", 4), quiet(epochs=1, batch_size=4), tmp_path)


def test_overwrite_replaces_the_run(tmp_path):
    main(tiny_cli(tmp_path))
    record = main(tiny_cli(tmp_path, "--overwrite", "--epochs=1"))
    assert [r["epoch"] for r in record["history"]] == [1]
    assert json.loads((tmp_path / "metrics.json").read_text())["train_config"]["epochs"] == 1


@pytest.mark.parametrize(
    "flags,fields",
    [
        (["--group=m2"], ["model group: checkpoint 'r4', requested 'm2'"]),
        (["--lr=0.5", "--seed=9"], ["training lr: checkpoint 0.01, requested 0.5", "training seed: checkpoint 0, requested 9"]),
        (["--train-size=12"], ["data train_limit: checkpoint 16, requested 12"]),
        (["--model=channels=8"], ["model channels: checkpoint 6, requested 8"]),
        (["--epochs=1"], ["the checkpoint has trained 2 epochs, requested 1 (fewer)"]),
    ],
)
def test_resume_refuses_other_settings_and_lists_them(tmp_path, capsys, flags, fields):
    main(tiny_cli(tmp_path, "--max-epochs-this-run=2", "--epochs=3"))
    last = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(SystemExit) as info:
        main(tiny_cli(tmp_path, "--epochs=3", "--resume", *flags))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and str(tmp_path / "last.pt") in err
    for field in fields:
        assert field in err, (field, err)
    assert (tmp_path / "last.pt").read_bytes() == last


def test_resume_may_extend_the_epochs_and_says_so(tmp_path, capsys):
    main(tiny_cli(tmp_path))  # 2 epochs, finished
    capsys.readouterr()
    record = main(tiny_cli(tmp_path, "--resume", "--epochs=3"))
    assert [r["epoch"] for r in record["history"]] == [1, 2, 3] and record["finished"]


def test_resume_note_is_stated(tmp_path):
    train, valid = digits("train", 8), digits("valid", 4)
    fit(tiny_net(), train, valid, quiet(epochs=1, batch_size=4), tmp_path)
    logged = []
    import gsa_tutorial.train.loop as tm

    original = tm._log
    tm._log = lambda message, enabled: logged.append(message)
    try:
        record = fit(tiny_net(), train, valid, quiet(epochs=2, batch_size=4), tmp_path, resume=True)
    finally:
        tm._log = original
    assert len(record["history"]) == 2
    assert any("epochs changed from 1 to 2" in m and "recomputed" in m for m in logged), logged


def test_resume_api_refuses_a_different_model(tmp_path):
    train, valid = digits("train", 8), digits("valid", 4)
    fit(tiny_net(), train, valid, quiet(epochs=2, batch_size=4, max_epochs_this_run=1), tmp_path)
    with pytest.raises(train_module.ResumeMismatchError) as info:
        fit(tiny_net(group="m2"), train, valid, quiet(epochs=2, batch_size=4), tmp_path, resume=True)
    assert "model group: checkpoint 'r4', requested 'm2'" in str(info.value)
    with pytest.raises(train_module.ResumeMismatchError, match="train_size: checkpoint 8, requested 6"):
        fit(tiny_net(), digits("train", 6), valid, quiet(epochs=2, batch_size=4), tmp_path, resume=True)


class PoisonedAfter(Dataset):
    """Returns NaN images once ``after`` items have been read (a corrupt batch in a later epoch)."""

    def __init__(self, base: Dataset, after: int) -> None:
        self.base, self.after, self.reads = base, after, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        x, y = self.base[i]
        return (torch.full_like(x, float("nan")) if self.reads > self.after else x), y


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    train = PoisonedAfter(digits("train", 8), after=8)  # epoch 1 clean, epoch 2 NaN
    with pytest.raises(train_module.NonFiniteLossError) as info:
        fit(tiny_net(), train, digits("valid", 4), quiet(epochs=3, batch_size=4), tmp_path)
    message = str(info.value)
    assert "epoch 2, step 1 of 2" in message and "after epoch 1" in message and "lower --lr" in message
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 1 and all(torch.isfinite(t).all() for t in last["model"].values())
    assert len(json.loads((tmp_path / "metrics.json").read_text())["history"]) == 1


def test_huge_learning_rate_fails_with_exit_code_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(tiny_cli(tmp_path, "--lr=1e12", "--epochs=3"))
    assert info.value.code == 1
    assert "training stopped" in capsys.readouterr().err


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_run_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        fit(tiny_net(), digits("train", 8), digits("valid", 4), quiet(epochs=1, batch_size=4), tmp_path)
    finally:
        os.umask(old)
    for name in ("last.pt", "best.pt", "metrics.json", "metrics.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


@pytest.mark.parametrize("damage", [b"", b"\x00garbage" * 100, None])
def test_damaged_last_pt_is_named_on_resume(tmp_path, capsys, damage):
    main(tiny_cli(tmp_path, "--max-epochs-this-run=1"))
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[:500] if damage is None else damage)
    with pytest.raises(SystemExit) as info:
        main(tiny_cli(tmp_path, "--resume"))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert str(last) in err and "Delete it" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only folder")
def test_read_only_out_fails_before_training(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(SystemExit) as info:
            main(tiny_cli(out / "run"))
        assert info.value.code == 2 and "cannot write" in capsys.readouterr().err
    finally:
        out.chmod(0o755)


def test_unwritable_folder_fails_before_the_first_epoch(tmp_path, monkeypatch):
    """The write probe runs before training (simulated: root ignores permissions)."""
    monkeypatch.setattr(train_module.runs.tempfile, "TemporaryFile", lambda **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    monkeypatch.setattr(train_module.loop, "make_optimizer", lambda *a: pytest.fail("training started"))
    with pytest.raises(train_module.RunFolderError, match=r"cannot write to the run folder .*\(Permission denied\)"):
        fit(tiny_net(), digits("train", 8), digits("valid", 4), quiet(epochs=1, batch_size=4), tmp_path / "run")


KILL_DURING_SAVE = r"""
import sys, time, torch
import gsa_tutorial.train as t
out, marker = sys.argv[1], sys.argv[2]
real_save = torch.save
def slow_save(obj, f, *a, **k):
    f.write(b"half a checkpoint")
    f.flush()
    open(marker, "w").close()
    time.sleep(60)
torch.save = slow_save  # the checkpoint is saved by torch.save (through gsa_tutorial._io)
t.main(sys.argv[3:] + ["--out=" + out])
"""


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_kill_during_a_checkpoint_save_leaves_nothing_after_a_rerun(tmp_path, sig):
    import signal

    out, marker = tmp_path / "run", tmp_path / "saving"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_DURING_SAVE, str(out), str(marker), *CLI_ARGS], env=env, cwd=REPO, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    proc.wait(timeout=60)
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    if sig == "SIGKILL":
        assert leftovers, "the test did not catch the save in flight"
    else:
        assert leftovers == []  # SIGTERM unwinds like Ctrl-C: removed at once
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()
    record = main(tiny_cli(out, "--resume"))  # the rerun
    assert record["finished"]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "metrics.csv", "metrics.json"]


def test_train_or_load_never_loads_a_run_made_with_other_settings(tmp_path):
    args = (digits("train", 8), digits("valid", 4))
    train_or_load(tiny_net(), *args, quiet(epochs=1, batch_size=4), tmp_path)
    with pytest.raises(train_module.ResumeMismatchError, match="training lr: checkpoint 0.001, requested 0.5"):
        train_or_load(tiny_net(), *args, quiet(epochs=1, batch_size=4, lr=0.5), tmp_path)
    with pytest.raises(train_module.ResumeMismatchError, match="model group: checkpoint 'r4', requested 'm4'"):
        train_or_load(tiny_net(group="m4"), *args, quiet(epochs=1, batch_size=4), tmp_path)
    _, record = train_or_load(tiny_net(), *args, quiet(epochs=2, batch_size=4), tmp_path)  # more epochs: continues
    assert [r["epoch"] for r in record["history"]] == [1, 2]


def test_empty_splits_are_refused():
    data = digits("train", 8)
    with pytest.raises(ValueError, match="train_set is empty"):
        fit(tiny_net(), torch.utils.data.Subset(data, []), data, quiet(epochs=1))
    with pytest.raises(ValueError, match="valid_set is empty .* model selection"):
        fit(tiny_net(), data, torch.utils.data.Subset(data, []), quiet(epochs=1))
    with pytest.raises(ValueError, match="evaluate: the dataset is empty"):
        evaluate(tiny_net(), torch.utils.data.Subset(data, []))


def test_resume_without_last_pt_does_not_silently_start_afresh(tmp_path, capsys):
    main(tiny_cli(tmp_path))
    (tmp_path / "last.pt").unlink()
    with pytest.raises(SystemExit) as info:
        main(tiny_cli(tmp_path, "--resume"))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "no last.pt" in err and "--overwrite" in err
