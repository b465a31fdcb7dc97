"""TenetObjective: warm-up of plain CE, inhibition every 3rd iteration on the correctly
classified samples only, training progress, the free-AT variant, checkpointed state."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from robustops.nn import GroupInhibition
from robustops.train import OBJECTIVES, FreeAT, TenetFreeAT, TenetObjective, Trainer


def _net(seed=0, in_channels=3, classes=5):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))


class _Calls(list):
    objective = None


@pytest.fixture
def steps(monkeypatch):
    """Every GroupInhibition.step call: (iteration it ran in, x, y); set .objective first."""
    calls = _Calls()
    real = GroupInhibition.step

    def spy(self, x, y, **kw):
        calls.append((calls.objective.iteration + 1, x.clone(), y.clone()))
        return real(self, x, y, **kw)

    monkeypatch.setattr(GroupInhibition, "step", spy)
    return calls


def test_schedule_warmup_then_every_third_iteration(steps):
    obj = TenetObjective("3", num_groups=2, warmup_iters=4)  # every=3
    steps.objective = obj
    assert [obj.inhibits(t) for t in range(1, 10)] == [False] * 5 + [True, False, False, True]
    model = _net()
    x = torch.rand(16, 3, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample correct at first: inhibition always has samples
    plan = []
    for t in range(1, 10):
        plan.append(obj.replays)
        for r in range(obj.replays):
            model.zero_grad()
            loss, metrics = obj.compute(model, x, y, replay=r)
            if r == 0:  # the normal step is plain CE
                torch.testing.assert_close(loss, F.cross_entropy(model(x), y))
            loss.backward()
            obj.after_backward()
        assert obj.iteration == t
    assert plan == [1, 1, 1, 1, 1, 2, 1, 1, 2]
    assert [c[0] for c in steps] == [6, 9]


def test_inhibition_uses_only_correct_samples(steps):
    obj = TenetObjective("3", num_groups=2, warmup_iters=1, every=1)
    steps.objective = obj
    model = _net()
    x = torch.rand(12, 3, 8, 8)
    with torch.no_grad():
        pred = model(x).argmax(1)
    wrong = torch.arange(12) % 3 == 0
    y = torch.where(wrong, (pred + 1) % 5, pred)
    assert obj.replays == 2
    loss, m = obj.compute(model, x, y, replay=0)
    loss.backward()
    obj.after_backward()
    model.zero_grad()
    loss, m = obj.compute(model, x, y, replay=1)
    (_, xs, ys), = steps
    assert torch.equal(xs, x[~wrong]) and torch.equal(ys, y[~wrong])
    assert m["tenet_fraction"].item() == pytest.approx(8 / 12)
    loss.backward()
    obj.after_backward()
    assert obj.iteration == 1 and obj.drawn == 8
    assert all(p.grad is not None for p in model.parameters())
    obj.close()
    assert len(model[3]._forward_hooks) == 0


def test_no_correct_sample_makes_the_extra_step_a_no_op():
    obj = TenetObjective("3", num_groups=2, warmup_iters=1, every=1)
    model = _net()
    x = torch.rand(6, 3, 8, 8)
    with torch.no_grad():
        y = (model(x).argmax(1) + 1) % 5  # all wrong
    obj.compute(model, x, y, replay=0)[0].backward()
    obj.after_backward()
    model.zero_grad(set_to_none=True)
    loss, m = obj.compute(model, x, y, replay=1)
    loss.backward()
    assert loss.item() == 0 and all(p.grad is None for p in model.parameters())


def test_training_with_tenet_lowers_the_loss():
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(4, 3, 8, 8, generator=g)
    y = torch.arange(64) % 4
    x = (protos[y] + 0.2 * torch.rand(64, 3, 8, 8, generator=g)).clamp(0, 1)
    data = TensorDataset(x, y)
    model = _net(classes=4)
    with torch.no_grad():
        before = F.cross_entropy(model(x), y).item()
    obj = TenetObjective("3", num_groups=3, warmup_iters=2)
    trainer = Trainer(model, obj, data, batch_size=16, epochs=4, lr=0.05, progress=False,
                      log_every=4)
    metrics = trainer.fit()
    with torch.no_grad():
        after = F.cross_entropy(model(x), y).item()
    assert after < before
    assert obj.iteration == 16
    assert metrics["orth_loss"] > 0 and 0 < metrics["tenet_fraction"] <= 1
    # the objective's state rides in the checkpoint state
    clone = TenetObjective("3", num_groups=3)
    clone.load_state_dict(obj.state_dict())
    assert (clone.iteration, clone.drawn) == (obj.iteration, obj.drawn)


def test_free_at_variant_runs():
    obj = TenetFreeAT("3", num_groups=2, warmup_iters=2, replays=2, eps=4 / 255)
    assert isinstance(obj.base, FreeAT) and obj.every == 1
    assert obj.replays == 2 and obj.inhibits(2)
    x = torch.rand(32, 3, 8, 8)
    y = torch.arange(32) % 5
    model = _net()
    trainer = Trainer(model, obj, TensorDataset(x, y), batch_size=16, epochs=2, lr=0.05,
                      progress=False, log_every=1)
    metrics = trainer.fit()
    assert obj.iteration == 4
    assert obj.base.delta is not None and obj.base.delta.abs().max() > 0
    assert obj.base.delta.abs().max() <= 4 / 255 + 1e-6
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert isinstance(TenetObjective.free_at("3"), TenetFreeAT)
    assert OBJECTIVES["tenet"] is TenetObjective and OBJECTIVES["tenet_free_at"] is TenetFreeAT


def test_bad_arguments():
    with pytest.raises(ValueError, match="every"):
        TenetObjective(every=0)
    with pytest.raises(TypeError, match="base"):
        TenetObjective(base=TenetObjective())
    with pytest.raises(ValueError, match="no layer named 'stage9'"):
        TenetObjective("stage9", warmup_iters=0, every=1)._attach(_net())


def test_a_wrong_layer_fails_at_the_first_step_not_at_warmup():
    net = _net()
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    obj = TenetObjective("stage2")  # warmup_iters 500: the layer is first used at t = 500
    with pytest.raises(ValueError, match="no layer named 'stage2'"):
        obj.compute(net, x, y)
    with pytest.raises(ValueError, match=r"layer '5' of Sequential outputs \(1, 8\); TENET"):
        TenetObjective("5").check_model(net, x[:1])  # the flattened output: not (B, C, H, W)
    with pytest.raises(ValueError, match="8 channels, fewer than num_groups = 9"):
        TenetObjective("1", num_groups=9).check_model(net, x[:1])
    TenetObjective("1").check_model(net, x[:1])
    loss, _ = TenetObjective("1").compute(net, x, y)
    assert torch.isfinite(loss)
