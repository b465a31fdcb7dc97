"""Trainer callbacks: hooks at the logging points only (no host sync added), state kept
across a kill and resume; TensorBoardWriter's events read back with TensorBoard's own
reader, one step numbering across a resume."""
import json
import sys
import types

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from robustops import cli
from robustops.sync_counter import SyncCounter
from robustops.train import Callback, CrossEntropy, TensorBoardWriter, Trainer
from robustops.train.checkpoint import checkpoint_folders, load_checkpoint

BATCH = 64


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


class Recorder(Callback):
    """Every hook call, in order; its state: the number of records seen (a resumed run
    must continue the count of the run it resumes)."""

    def __init__(self):
        self.calls, self.logged = [], 0

    def on_fit_start(self, trainer):
        self.calls.append(("fit_start", trainer.global_step))

    def on_log(self, step, record):
        self.logged += 1
        self.calls.append(("log", step, record))

    def on_epoch_end(self, epoch, metrics):
        self.calls.append(("epoch_end", epoch, metrics))

    def on_checkpoint(self, step):
        self.calls.append(("checkpoint", step))

    def on_fit_end(self, metrics):
        self.calls.append(("fit_end", metrics))

    def close(self):
        self.calls.append(("close",))

    def state_dict(self):
        return {"logged": self.logged}

    def load_state_dict(self, state):
        self.logged = state["logged"]


def _event_scalars(log_dir):
    """{tag: [(step, value)]} as TensorBoard shows log_dir (purged events left out)."""
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    acc = accumulator.EventAccumulator(str(log_dir), size_guidance={accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _without_wall_time(scalars):
    """The scalars less the values of train/seconds (wall time), whose steps are kept."""
    return {tag: [s for s, _ in v] if tag == "train/seconds" else v for tag, v in scalars.items()}


def _as_float32(x):
    return torch.tensor(x, dtype=torch.float32).item()  # event files hold float32 values


def test_hooks_run_at_the_logging_points_in_order(digits, tmp_path):
    recorder = Recorder()
    steps = 22  # 1437 // 64 per epoch
    trainer = Trainer(_mlp(), CrossEntropy(), digits, batch_size=BATCH, epochs=2, lr=0.05,
                      log_every=5, checkpoint_every=10, out_dir=tmp_path / "run",
                      eval_fn=lambda model: {"clean": 0.5, "n": 64}, progress=False,
                      callbacks=[recorder])
    last = trainer.fit()
    kinds = [c[0] for c in recorder.calls]
    assert kinds[0] == "fit_start" and kinds[-2:] == ["fit_end", "close"]
    logged = [c[2] for c in recorder.calls if c[0] == "log"]
    assert logged == trainer.history  # every metrics.jsonl record, as written
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    written = [json.loads(line) for line in lines]
    assert logged == written
    assert [c[1] for c in recorder.calls if c[0] == "log" and "eval" not in c[2]] == \
        list(range(5, 2 * steps + 1, 5))
    checkpoints = [c[1] for c in recorder.calls if c[0] == "checkpoint"]
    assert checkpoints == [10, 20, steps, 30, 40, 2 * steps]
    assert [c[1] for c in recorder.calls if c[0] == "epoch_end"] == [1, 2]
    # The epoch-end hook sees the epoch's evaluation; fit_end the metrics fit() returns.
    assert recorder.calls[kinds.index("epoch_end")][2]["eval_clean"] == 0.5
    assert recorder.calls[-2][1] == last
    # A checkpoint after its epoch's end hook; the evaluation logged before both.
    end = kinds.index("epoch_end")
    assert kinds[end - 1] == "log" and "eval" in recorder.calls[end - 1][2]
    assert kinds[end + 1] == "checkpoint"
    state = load_checkpoint(checkpoint_folders(tmp_path / "run" / "checkpoints")[0][1])
    assert state["callbacks"] == {"0:Recorder": {"logged": recorder.logged}}


def test_callbacks_add_no_host_sync(digits, tmp_path):
    pytest.importorskip("tensorboard")

    def syncs(callbacks):
        trainer = Trainer(_mlp(), CrossEntropy(), Subset(digits, range(8 * BATCH)),
                          batch_size=BATCH, log_every=2, checkpoint_every=0, progress=False,
                          callbacks=callbacks)
        with SyncCounter() as counter:
            trainer.fit()
        return counter.count, counter

    base, _ = syncs([])
    with_callbacks, counter = syncs([Recorder(), TensorBoardWriter(tmp_path / "tb")])
    assert with_callbacks == base, counter.summary()


@pytest.mark.parametrize("callbacks, match", [
    ("tb", "callbacks must be a list"),
    ([object()], r"callbacks\[0\] is a object, not a robustops.train.Callback"),
    ([Recorder(), lambda step, record: None], r"callbacks\[1\] is a function"),
])
def test_callbacks_that_are_not_callbacks_are_refused(digits, callbacks, match):
    with pytest.raises(TypeError, match=match):
        Trainer(_mlp(), CrossEntropy(), digits, batch_size=BATCH, progress=False,
                callbacks=callbacks)


def test_tensorboard_writer_writes_the_logged_metrics(digits, tmp_path):
    pytest.importorskip("tensorboard")
    trainer = Trainer(_mlp(), CrossEntropy(), digits, batch_size=BATCH, epochs=2, lr=0.05,
                      log_every=4, progress=False, eval_fn=lambda model: {"clean": 0.25},
                      callbacks=[TensorBoardWriter(tmp_path / "tb")])
    trainer.fit()
    scalars = _event_scalars(tmp_path / "tb")
    train = [r for r in trainer.history if "eval" not in r]
    for name in ("loss", "lr", "epoch"):
        assert scalars[f"train/{name}"] == [(r["step"], _as_float32(r[name])) for r in train]
    assert scalars["eval/clean"] == [(22, 0.25), (44, 0.25)]
    assert "train/step" not in scalars


class FakeSummaryWriter:
    """torch's SummaryWriter as far as TensorBoardWriter uses it: each call recorded."""

    calls = []

    def __init__(self, log_dir, purge_step=None):
        self.calls.append(("open", purge_step))

    def add_scalar(self, tag, value, global_step):
        self.calls.append(("scalar", tag, value, global_step))

    def flush(self):
        self.calls.append(("flush",))

    def close(self):
        self.calls.append(("close",))


def test_tensorboard_writer_flushes_at_each_checkpoint(monkeypatch, tmp_path):
    """A run killed right after a checkpoint keeps every event logged before it: the
    writer queues events for a background thread, and the checkpoint hook flushes."""
    from robustops.train import tensorboard_writer
    monkeypatch.setattr(tensorboard_writer, "_summary_writer_class", lambda: FakeSummaryWriter)
    monkeypatch.setattr(FakeSummaryWriter, "calls", [])
    writer = TensorBoardWriter(tmp_path / "tb")
    writer.on_fit_start(types.SimpleNamespace(global_step=0))
    writer.on_log(2, {"step": 2, "epoch": 0, "loss": 0.5, "ok": True})
    writer.on_checkpoint(3)
    writer.close()
    assert FakeSummaryWriter.calls == [("open", 0), ("scalar", "train/epoch", 0.0, 2),
                                       ("scalar", "train/loss", 0.5, 2), ("flush",), ("close",)]


def test_tensorboard_writer_without_tensorboard_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TensorBoardWriter(tmp_path / "tb")


def test_tensorboard_writer_refuses_a_file_and_a_non_path(tmp_path):
    pytest.importorskip("tensorboard")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a folder"):
        TensorBoardWriter(tmp_path / "file")
    with pytest.raises(TypeError, match="log_dir must be a path"):
        TensorBoardWriter(3)


@pytest.mark.parametrize("kill_step", [28, 22 + 22])  # mid-epoch 2; after epoch 2's last step
def test_killed_run_resumes_the_same_tensorboard_steps_and_callback_state(digits, tmp_path,
                                                                          kill_step):
    """The killed run's events after its checkpoint reach the disk (close() flushes them
    on the way out), and so do those before it (flushed at each checkpoint, checked at
    the kill); the resumed run's TensorBoard view equals an uninterrupted run's."""
    pytest.importorskip("tensorboard")
    kw = dict(batch_size=BATCH, epochs=3, lr=0.05, checkpoint_every=5, progress=False,
              log_every=2, eval_fn=lambda model: {"clean": 0.5})
    ref_recorder = Recorder()
    Trainer(_mlp(), CrossEntropy(), digits, out_dir=tmp_path / "ref",
            callbacks=[TensorBoardWriter(tmp_path / "ref_tb"), ref_recorder], **kw).fit()

    objective = CrossEntropy()
    calls = {"n": 0}
    compute = objective.compute

    def dying(model, x, y, *, replay=0):
        calls["n"] += 1
        if calls["n"] == kill_step + 1:
            # Steps up to the newest checkpoint are on disk before any close().
            newest = checkpoint_folders(tmp_path / "run" / "checkpoints")[0][0]
            on_disk = [s for s, _ in _event_scalars(tmp_path / "tb")["train/loss"]]
            assert [s for s in on_disk if s <= newest] == list(range(2, newest + 1, 2))
            raise KeyboardInterrupt("killed")
        return compute(model, x, y, replay=replay)

    objective.compute = dying
    with pytest.raises(KeyboardInterrupt):
        Trainer(_mlp(), objective, digits, out_dir=tmp_path / "run",
                callbacks=[TensorBoardWriter(tmp_path / "tb"), Recorder()], **kw).fit()
    killed_view = _event_scalars(tmp_path / "tb")["train/loss"]
    resumed_recorder = Recorder()
    trainer = Trainer(_mlp(seed=1), CrossEntropy(), digits, out_dir=tmp_path / "run",
                      callbacks=[TensorBoardWriter(tmp_path / "tb"), resumed_recorder], **kw)
    checkpoint_step = trainer.global_step
    assert 0 < checkpoint_step <= kill_step <= killed_view[-1][0]  # events up to the kill
    assert resumed_recorder.logged > 0  # restored from the checkpoint
    trainer.fit()
    assert resumed_recorder.logged == ref_recorder.logged
    assert _without_wall_time(_event_scalars(tmp_path / "tb")) == \
        _without_wall_time(_event_scalars(tmp_path / "ref_tb"))


def test_cli_train_tensorboard_flag(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("tensorboard")
    out, tb = tmp_path / "run", tmp_path / "tb"
    assert cli.main(["train", "--dataset", "digits", "--epochs", "1", "--objective", "ce",
                     "--batch-size", "256", "--eval-samples", "32", "--eval-steps", "1",
                     "--out", str(out), "--tensorboard", str(tb),
                     "--set", "run.progress=false"]) == 0
    assert f"tensorboard: {tb}" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scalars = _event_scalars(tb)
    evals = [r for r in records if "eval" in r]
    assert [s for s, _ in scalars["eval/clean"]] == [r["step"] for r in evals] != []
    (tmp_path / "file").write_text("")
    assert cli.main(["train", "--dataset", "digits", "--out", str(tmp_path / "other"),
                     "--tensorboard", str(tmp_path / "file")]) == 2
    assert "is not a folder" in capsys.readouterr().err
