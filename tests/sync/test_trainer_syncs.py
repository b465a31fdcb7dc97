"""Host syncs of the Trainer: none per step, one read per logging point; a non-finite
loss is found on the device and raised at the next logging point, naming its step."""
import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from robustops.sync_counter import SyncCounter
from robustops.train import PGDAT, CrossEntropy, Trainer

BATCH = 32


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def _fit_syncs(digits, device_syncs, objective, steps, log_every):
    trainer = Trainer(_mlp(), objective, Subset(digits, range(steps * BATCH)), batch_size=BATCH,
                      log_every=log_every, checkpoint_every=0, progress=False)
    with SyncCounter() as counter:
        trainer.fit()
    assert len(trainer.history) == steps // log_every
    return len(device_syncs(counter)), counter


@pytest.mark.parametrize("objective", [CrossEntropy(), PGDAT(eps=0.05, steps=2)],
                         ids=lambda o: o.name)
def test_no_sync_between_logging_points(digits, device_syncs, objective):
    base, counter = _fit_syncs(digits, device_syncs, objective, steps=8, log_every=4)
    # Twice the steps between the same number of logging points: not one sync more.
    longer, _ = _fit_syncs(digits, device_syncs, objective, steps=16, log_every=8)
    assert longer == base, counter.summary()
    # Two more logging points: one read each (loss sums and bad-loss record together).
    more_logs, _ = _fit_syncs(digits, device_syncs, objective, steps=8, log_every=2)
    assert more_logs == base + 2
    reads = [e for e in counter.events if "_read_window" in e.where]
    assert len(reads) == 2 and {e.kind for e in reads} == {"tolist"}


class _NanAt(nn.Module):
    """The MLP, whose logits turn NaN at its `bad`-th training forward (0-based)."""

    def __init__(self, bad: int):
        super().__init__()
        self.net, self.bad, self.calls = _mlp(), bad, 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls - 1 == self.bad:
                out = out * float("nan")
        return out


def test_non_finite_loss_raises_at_the_next_logging_point_naming_its_step(digits):
    model = _NanAt(bad=2)
    trainer = Trainer(model, CrossEntropy(), Subset(digits, range(8 * BATCH)), batch_size=BATCH,
                      log_every=4, checkpoint_every=0, progress=False)
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 2 \(found at step 4, "
                                                 r"the next logging point"):
        trainer.fit()
    assert model.calls == 4  # the steps after the bad one ran: no sync stopped them
    assert trainer.history == []


def test_non_finite_loss_found_at_the_epoch_end(digits):
    trainer = Trainer(_NanAt(bad=5), CrossEntropy(), Subset(digits, range(6 * BATCH)),
                      batch_size=BATCH, log_every=4, checkpoint_every=0, progress=False)
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 5 \(found at step 6"):
        trainer.fit()
    assert len(trainer.history) == 1  # the log line of steps 0-3 was written


def test_no_checkpoint_holds_weights_after_a_non_finite_loss(digits, tmp_path):
    from robustops.train.checkpoint import checkpoint_folders

    trainer = Trainer(_NanAt(bad=4), CrossEntropy(), Subset(digits, range(8 * BATCH)),
                      batch_size=BATCH, log_every=100, checkpoint_every=3, progress=False,
                      out_dir=tmp_path)
    with pytest.raises(FloatingPointError, match=r"at step 4 \(found at step 6"):
        trainer.fit()
    steps = [step for step, _ in checkpoint_folders(tmp_path / "checkpoints")]
    assert steps == [3]  # taken before the bad step; the one due at step 6 was refused
