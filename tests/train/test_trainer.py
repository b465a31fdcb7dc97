"""Trainer: every objective trains, checkpoints resume exactly, DDP keeps ranks identical."""
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from robustops.train import (MAT, PGDAT, TRADES, CrossEntropy, FastAT, FreeAT, Trainer,
                             load_checkpoint, load_weights, save_checkpoint)
from robustops.train.checkpoint import CheckpointError, checkpoint_folders


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.mark.parametrize("objective", [
    CrossEntropy(), PGDAT(eps=0.05, steps=3), TRADES(eps=0.05, alpha=0.02, steps=3, beta=6.0),
    MAT(beta=0.5, eps=0.05, steps=2), FastAT(eps=0.05), FreeAT(eps=0.05, replays=3)],
    ids=lambda o: o.name)
def test_each_objective_trains(digits, objective):
    model = _mlp()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(model, objective, digits, batch_size=64, epochs=2, lr=0.05, progress=False,
                      log_every=5)
    metrics = trainer.fit()
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    first, last = trainer.history[0]["loss"], trainer.history[-1]["loss"]
    assert last < first  # it learns
    assert not model.training


def test_free_at_takes_one_optimizer_step_per_replay(digits):
    model = _mlp()
    trainer = Trainer(model, FreeAT(eps=0.05, replays=3), digits, batch_size=64, epochs=1, lr=0.05,
                      progress=False)
    steps = []
    orig = trainer.optimizer.step
    trainer.optimizer.step = lambda *a, **k: (steps.append(1), orig(*a, **k))[1]
    trainer.fit()
    assert len(steps) == 3 * trainer.steps_per_epoch


@pytest.mark.parametrize("make_objective", [lambda: CrossEntropy(), lambda: PGDAT(eps=0.05, steps=2)],
                         ids=["ce", "pgd_at"])
def test_killed_run_resumes_to_the_same_weights(digits, tmp_path, make_objective):
    kw = dict(batch_size=64, epochs=3, lr=0.05, checkpoint_every=5, progress=False, log_every=1)
    ref = _mlp()
    Trainer(ref, make_objective(), digits, out_dir=tmp_path / "ref", **kw).fit()

    victim = _mlp()
    obj = make_objective()
    calls = {"n": 0}
    compute = obj.compute

    def dying(model, x, y, *, replay=0):
        calls["n"] += 1
        if calls["n"] == 28:  # mid-epoch 2, three steps after a checkpoint
            raise KeyboardInterrupt("killed")
        return compute(model, x, y, replay=replay)

    obj.compute = dying
    with pytest.raises(KeyboardInterrupt):
        Trainer(victim, obj, digits, out_dir=tmp_path / "run", **kw).fit()
    folders = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert [f.name for f in folders] == ["step-00000022", "step-00000025"]  # epoch end, newest
    state = load_checkpoint(folders[-1])
    assert state["global_step"] == 25 and state["step_in_epoch"] == 3
    resumed = _mlp(seed=123)  # different init: everything must come from the checkpoint
    trainer = Trainer(resumed, make_objective(), digits, out_dir=tmp_path / "run", **kw)
    assert trainer.global_step == 25
    trainer.fit()
    for a, b in zip(ref.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if "eval" not in line]
    assert steps == sorted(set(steps))  # no step logged twice after the resume
    assert not list((tmp_path / "run").rglob("*.tmp"))


def _trained_run(digits, folder, epochs=1):
    model = _mlp()
    Trainer(model, CrossEntropy(), digits, epochs=epochs, out_dir=folder, progress=False,
            checkpoint_every=5).fit()
    return model


def test_corrupt_checkpoint_gives_clear_error_and_previous_is_used(digits, tmp_path):
    _trained_run(digits, tmp_path)
    newest, previous = [f for _, f in checkpoint_folders(tmp_path / "checkpoints")]
    prev_step = load_checkpoint(previous)["global_step"]
    # Truncate the newest checkpoint's tensors, as a crash of the disk would.
    t = newest / "tensors.safetensors"
    t.write_bytes(t.read_bytes()[: t.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(newest)
    with pytest.warns(UserWarning, match="corrupt or truncated.*previous checkpoint"):
        resumed = Trainer(_mlp(seed=3), CrossEntropy(), digits, epochs=1, out_dir=tmp_path,
                          progress=False)
    assert resumed.global_step == prev_step
    # Every checkpoint damaged: a clear error naming each problem.
    (previous / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="no usable checkpoint.*state.json is corrupt"):
        Trainer(_mlp(), CrossEntropy(), digits, out_dir=tmp_path, progress=False)


def test_foreign_checkpoint_is_refused(digits, tmp_path):
    save_checkpoint({"hello": torch.ones(2)}, tmp_path / "checkpoints" / "step-00000001")
    with pytest.raises(CheckpointError, match="no usable checkpoint.*not a robustops Trainer"):
        Trainer(_mlp(), CrossEntropy(), digits, out_dir=tmp_path, progress=False)


def test_checkpoint_round_trips_nested_state(tmp_path):
    state = {"a": torch.arange(3), "b": {1: [torch.ones(2), 0.5, None, "x"], "t": (1, 2)},
             "tied": [torch.zeros(2)] * 2, "dtype": torch.float16}
    back = load_checkpoint(save_checkpoint(state, tmp_path / "c"))
    assert torch.equal(back["a"], state["a"]) and back["b"][1][1:] == [0.5, None, "x"]
    assert back["b"]["t"] == (1, 2) and 1 in back["b"] and back["dtype"] is torch.float16
    assert torch.equal(back["tied"][1], torch.zeros(2))


def test_final_weights_are_safetensors(digits, tmp_path):
    model = _trained_run(digits, tmp_path)
    from safetensors.torch import load_file
    state = load_file(str(tmp_path / "model.safetensors"))
    fresh = _mlp(seed=5)
    fresh.load_state_dict(state)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    assert set(load_weights(tmp_path / "model.safetensors")) == set(state)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(tmp_path / "bad.safetensors")


def test_autocast_channels_last_and_clipping(digits):
    pytest.importorskip("sklearn")
    from robustops.models import SmallCNN
    from torch.utils.data import TensorDataset

    x, y = digits.tensors
    x16 = nn.functional.interpolate(x, size=16)
    model = SmallCNN(1, 10, 16, width=8, hidden=32)
    trainer = Trainer(model, PGDAT(eps=0.05, steps=2), TensorDataset(x16, y), batch_size=64,
                      epochs=1, lr=0.05, autocast="bf16", channels_last=True, grad_clip=1.0,
                      progress=False)
    metrics = trainer.fit()
    assert torch.isfinite(torch.tensor(metrics["loss"]))


@pytest.mark.parametrize("case", [
    (dict(optimizer="lbfgs"), "optimizer must be"),
    (dict(schedule="exp"), "schedule must be"),
    (dict(autocast="fp8"), "autocast must be"),
    (dict(epochs=0), "epochs must be"),
    (dict(batch_size=0), "batch_size must be"),
    (dict(lr=-1.0), "lr must be a finite number > 0, got -1.0"),
    (dict(lr="0.1"), "lr must be", TypeError),
    (dict(weight_decay=-1e-4), "weight_decay must be a finite number >= 0"),
    (dict(grad_clip=0.0), r"grad_clip must be a finite number > 0 \(or None"),
    (dict(batch_size=100000), "exceeds"),
    # torch's "Overflow when unpacking long long" named nothing; -1 was taken silently.
    (dict(seed=2**70), r"seed must be an int in \[0, 2\*\*63 - 1\], got 1180591620717411303424"),
    (dict(seed=2**63), "seed must be"),
    (dict(seed=-1), "seed must be"),
    # A wrong type is a TypeError (robustops.arguments), a bad value a ValueError.
    (dict(seed=1.5), r"seed must be an int in \[0, 2\*\*63 - 1\], got 1.5 \(float\)", TypeError),
    (dict(seed=True), r"seed must be .*, got True \(bool\)", TypeError),
    (dict(epochs=2.0), r"epochs must be an int >= 1, got 2.0 \(float\)", TypeError),
    (dict(batch_size="64"), "batch_size must be", TypeError),
])
def test_bad_arguments(digits, case):
    kwargs, match, *error = case
    with pytest.raises(error[0] if error else ValueError, match=match):
        Trainer(_mlp(), CrossEntropy(), digits, progress=False, **kwargs).fit()
    with pytest.raises(TypeError, match="Objective"):
        Trainer(_mlp(), nn.CrossEntropyLoss(), digits)


def test_torchrun_two_processes_keep_identical_weights(tmp_path):
    pytest.importorskip("sklearn")
    script = os.path.join(os.path.dirname(__file__), "ddp_train_script.py")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29531", script, str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rank 0/2" in res.stdout and "rank 1/2" in res.stdout
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    assert (tmp_path / "model.safetensors").exists()


class _DictSamples(torch.utils.data.Dataset):
    """(x, y) samples served as dicts with custom keys."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        x, y = self.data[i]
        return {"pixels": x, "digit": y}


def test_dataloader_tensors_and_dict_samples_train_the_same(digits):
    # A DataLoader gives its dataset (the Trainer batches itself), (x, y) tensors a
    # TensorDataset, dict samples their named fields: one run, whatever the form.
    xs = torch.stack([digits[i][0] for i in range(len(digits))])
    ys = torch.tensor([int(digits[i][1]) for i in range(len(digits))])
    forms = {"dataset": digits, "loader": torch.utils.data.DataLoader(digits, batch_size=7),
             "tensors": (xs, ys), "dicts": _DictSamples(digits)}
    weights = {}
    for name, data in forms.items():
        model = _mlp()
        kw = dict(image_key="pixels", label_key="digit") if name == "dicts" else {}
        Trainer(model, CrossEntropy(), data, batch_size=64, epochs=1, lr=0.05, progress=False,
                log_every=5, **kw).fit()
        weights[name] = [p.detach() for p in model.parameters()]
    for name in ("loader", "tensors", "dicts"):
        assert all(torch.equal(a, b) for a, b in zip(weights["dataset"], weights[name])), name
    with pytest.raises((KeyError, ValueError), match="pixels"):  # the keys found are listed
        Trainer(_mlp(), CrossEntropy(), _DictSamples(digits), batch_size=64, progress=False,
                image_key="image_x").fit()


def test_batch_size_message_counts_samples_not_batches(digits):
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(digits, range(40)), batch_size=20)
    with pytest.raises(ValueError, match="exceeds the 40 samples per rank"):
        Trainer(_mlp(), CrossEntropy(), loader, batch_size=64, progress=False).fit()
