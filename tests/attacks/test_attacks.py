"""FGSM, PGD and APGD: agreement with torchattacks, strength, early exit, model state, errors."""
import pytest
import torch
from torch import nn

from robustops.attacks import APGD, FGSM, PGD, attack_loss
from robustops.attacks.apgd import apgd_checkpoints
from robustops.testing import assert_close


class _Scale(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, z):
        return z * self.s


def _batch(digits_model, n=64):
    model, x, y = digits_model
    return model, x[:n], y[:n]


# ----------------------------------------------------------------------------- vs torchattacks


def test_fgsm_matches_torchattacks(digits_model):
    ta = pytest.importorskip("torchattacks")
    model, x, y = _batch(digits_model)
    ours = FGSM(model, eps=0.1)(x, y)
    theirs = ta.FGSM(model, eps=0.1)(x, y)
    assert_close(ours, theirs)
    assert not torch.equal(ours, x)


def test_pgd_linf_matches_torchattacks(digits_model):
    ta = pytest.importorskip("torchattacks")
    model, x, y = _batch(digits_model)
    ours = PGD(model, eps=0.1, alpha=0.02, steps=10, random_start=False)(x, y)
    theirs = ta.PGD(model, eps=0.1, alpha=0.02, steps=10, random_start=False)(x, y)
    assert_close(ours, theirs)


def test_pgd_l2_matches_torchattacks(digits_model):
    ta = pytest.importorskip("torchattacks")
    model, x, y = _batch(digits_model)
    # torchattacks normalises the gradient of the batch-MEAN loss by ||g|| + 1e-10;
    # on confidently classified samples ||g|| is ~1e-9 and that 1e-10 shortens
    # its step by a few percent. Softening the logits keeps gradients well above
    # it, so both implement the same formula on every sample.
    soft = nn.Sequential(model, _Scale(0.1)).eval()
    ours = PGD(soft, eps=1.0, alpha=0.2, steps=10, norm="l2", random_start=False)(x, y)
    theirs = ta.PGDL2(soft, eps=1.0, alpha=0.2, steps=10, random_start=False)(x, y)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- strength and semantics


def test_apgd_at_least_as_strong_as_pgd100(digits_model):
    model, x, y = digits_model
    x, y = x[:200], y[:200]
    pgd = PGD(model, eps=0.08, steps=100, alpha=0.008, seed=1).robust_mask(x, y).float().mean()
    apgd = APGD(model, eps=0.08, steps=100, seed=1).robust_mask(x, y).float().mean()
    apgd_dlr = APGD(model, eps=0.08, steps=100, loss="dlr", seed=1).robust_mask(x, y).float().mean()
    assert 0.0 < pgd < 0.95  # the comparison means something
    assert apgd <= pgd and apgd_dlr <= pgd + 0.02


@pytest.mark.parametrize("attack", ["pgd_linf", "pgd_l2", "apgd"])
def test_early_exit_gives_identical_robust_accuracy(digits_model, attack):
    model, x, y = digits_model
    x, y = x[:120], y[:120]
    make = {
        "pgd_linf": lambda: PGD(model, eps=0.06, steps=20, restarts=3, seed=3),
        "pgd_l2": lambda: PGD(model, eps=0.6, steps=20, restarts=3, norm="l2", seed=3),
        "apgd": lambda: APGD(model, eps=0.06, steps=20, restarts=2, seed=3),
    }[attack]
    full = make().robust_mask(x, y, early_exit=False)
    fast = make().robust_mask(x, y, early_exit=True)
    assert torch.equal(full, fast)
    assert 0 < full.sum() < len(y)


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_batched_restarts_equal_sequential_restarts(digits_model, attack):
    model, x, y = digits_model
    x, y = x[:100], y[:100]
    cls = PGD if attack == "pgd" else APGD
    make = lambda: cls(model, eps=0.05, steps=10, restarts=3, seed=8)  # noqa: E731
    seq = make().robust_mask(x, y)
    for early in (True, False):
        assert torch.equal(make().robust_mask(x, y, batch_restarts=True, early_exit=early), seq)


@pytest.mark.parametrize("cls", [PGD, APGD], ids=["pgd", "apgd"])
def test_one_attack_step_compiles_fullgraph(cls):
    """No host synchronisation or data-dependent Python in a step: dynamo traces it whole."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 5)).eval()
    x, y = torch.rand(4, 3, 4, 4), torch.tensor([0, 1, 2, 3])
    atk = cls(model, eps=0.1, steps=3, channels_last=False)

    def one_step(x0, x_nat, y, k: int):
        state = atk._start(x0, x_nat, y, None, 0.1, None)
        logits = atk._step(state, k)
        return state["x"], logits

    torch._dynamo.reset()
    old = torch._dynamo.config.trace_autograd_ops
    torch._dynamo.config.trace_autograd_ops = True
    try:
        compiled = torch.compile(one_step, fullgraph=True)
        for k in (0, 1):
            got, want = compiled(x.clone(), x, y, k), one_step(x.clone(), x, y, k)
            assert_close(got[0], want[0])
            assert_close(got[1], want[1])
    finally:
        torch._dynamo.config.trace_autograd_ops = old


def test_restarts_only_break_more(digits_model):
    model, x, y = _batch(digits_model, 120)
    one = PGD(model, eps=0.05, steps=10, restarts=1, seed=0).robust_mask(x, y)
    three = PGD(model, eps=0.05, steps=10, restarts=3, seed=0).robust_mask(x, y)
    assert (three <= one).all()


def test_perturb_stays_in_ball_and_box_and_fools(digits_model):
    model, x, y = _batch(digits_model)
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        adv = PGD(model, eps=eps, steps=10, norm=norm, restarts=2)(x, y)
        d = (adv - x).flatten(1)
        size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
        assert (size <= eps + 1e-5).all() and adv.min() >= 0 and adv.max() <= 1
        with torch.no_grad():
            assert (model(adv).argmax(1) != y).float().mean() > 0.3


def test_batch_split_invariance_of_random_starts(digits_model):
    model, x, y = _batch(digits_model, 10)
    atk = PGD(model, eps=0.1, steps=3, seed=5)
    whole = atk(x, y)
    parts = torch.cat([atk(x[:4], y[:4], index=0), atk(x[4:], y[4:], index=4)])
    assert_close(parts, whole)


def test_per_sample_eps_and_multi_eps(digits_model):
    model, x, y = _batch(digits_model, 16)
    eps = torch.linspace(0, 0.1, 16)
    adv = PGD(model, eps=eps, steps=5)(x, y)
    assert torch.equal(adv[0], x[0])  # eps = 0
    assert ((adv - x).flatten(1).abs().amax(1) <= eps + 1e-6).all()
    atk = PGD(model, eps=0.0, steps=8, seed=2)
    multi = atk.robust_mask_multi_eps(x, y, [0.02, 0.05, 0.1])
    for row, e in zip(multi, [0.02, 0.05, 0.1]):
        assert torch.equal(row, PGD(model, eps=e, steps=8, seed=2).robust_mask(x, y))
    assert (multi[2] <= multi[0]).all()


def test_channels_last_working_layout_gives_same_result_and_keeps_caller_layout():
    from robustops.models import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(3, 10, 32).eval()
    x, y = torch.rand(6, 3, 32, 32), torch.randint(0, 10, (6,))
    a = PGD(model, eps=0.03, steps=3, seed=1)(x, y)
    b = PGD(model, eps=0.03, steps=3, seed=1, channels_last=False)(x, y)
    assert a.is_contiguous() and b.is_contiguous()
    # Layouts reorder convolution sums: a sign may flip where a gradient is ~0.
    assert (a - b).abs().gt(1e-5).float().mean() < 0.01
    c = PGD(model, eps=0.03, steps=3, seed=1)(x.contiguous(memory_format=torch.channels_last), y)
    assert c.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(c, a)


def test_targeted_attack_reaches_target(digits_model):
    model, x, y = _batch(digits_model)
    target = (y + 1) % 10
    adv = PGD(model, eps=0.2, steps=20, alpha=0.02)(x, y, target=target)
    with torch.no_grad():
        hit = (model(adv).argmax(1) == target).float().mean()
    assert hit > 0.5


def test_losses_per_sample():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 1.0, 0.5]])
    y = torch.tensor([0, 2])
    margin = attack_loss(logits, y, "margin")
    assert torch.allclose(margin, torch.tensor([1.0 - 2.0, 3.0 - 1.0]))
    dlr = attack_loss(logits, y, "dlr")
    assert torch.allclose(dlr, torch.tensor([-(2.0 - 1.0) / (2.0 - 0.0), -(1.0 - 3.0) / (3.0 - 0.5)]))
    ce = attack_loss(logits, y, "ce")
    assert torch.allclose(ce, nn.functional.cross_entropy(logits, y, reduction="none"))


def test_apgd_checkpoints():
    assert apgd_checkpoints(100) == [0, 22, 41, 58, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(1) == [0]


def test_eot_averages_several_forward_passes():
    calls = []

    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            calls.append(1)
            return self.lin(x + 0.01 * torch.randn_like(x))

    torch.manual_seed(0)
    x, y = torch.rand(5, 4), torch.tensor([0, 1, 2, 0, 1])
    PGD(Noisy(), eps=0.1, steps=2, eot_samples=4)(x, y)
    assert len(calls) == 2 * 4


# ----------------------------------------------------------------------------- model state


class _Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(64, 32)
        self.bn = nn.BatchNorm1d(32)
        self.b = nn.Linear(32, 10)
        self.a.weight.requires_grad_(False)  # a partly frozen model

    def forward(self, x):
        return self.b(torch.relu(self.bn(self.a(x.flatten(1)))))


@pytest.mark.parametrize("mode", ["eval", "train", "as_is"])
def test_model_mode_and_flags_restored(mode):
    model = _Mixed().train()
    model.bn.eval()  # mixed modes must come back as they were
    before_train = [m.training for m in model.modules()]
    before_grad = [p.requires_grad for p in model.parameters()]
    seen = {}

    def hook(mod, inp, out):
        seen["training"] = mod.training
        seen["grad"] = [p.requires_grad for p in model.parameters()]

    h = model.b.register_forward_hook(hook)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    PGD(model, eps=0.1, steps=2, model_mode=mode)(x, y)
    h.remove()
    assert seen["grad"] == [False] * len(before_grad)  # parameters frozen during the attack
    if mode != "as_is":
        assert seen["training"] == (mode == "train")
    assert [m.training for m in model.modules()] == before_train
    assert [p.requires_grad for p in model.parameters()] == before_grad
    assert all(p.grad is None for p in model.parameters())


def test_flags_restored_when_the_model_raises():
    model = _Mixed().train()

    class Boom(Exception):
        pass

    def bad_forward(x):
        raise Boom()

    model.forward = bad_forward
    with pytest.raises(Boom):
        PGD(model, eps=0.1, steps=1)(torch.rand(2, 64), torch.tensor([0, 1]))
    assert model.training and model.a.bias.requires_grad and not model.a.weight.requires_grad


def test_attack_under_autocast(digits_model):
    model, x, y = _batch(digits_model, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        adv = PGD(model, eps=0.1, steps=5)(x, y)
    assert adv.dtype == torch.float32
    assert ((adv - x).abs() <= 0.1 + 1e-6).all()


# ----------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(eps=-0.1), ValueError, "eps must be a finite number >= 0"),
    (dict(eps=float("nan")), ValueError, "eps must be"),
    (dict(steps=0), ValueError, "steps must be an int >= 1"),
    (dict(steps=2.5), TypeError, r"steps must be an int >= 1, got 2.5 \(float\)"),
    (dict(norm="l1"), ValueError, "norm must be"),
    (dict(loss="hinge"), ValueError, "unknown attack loss"),
    (dict(restarts=0), ValueError, "restarts must be"),
    (dict(lo=1.0, hi=0.0), ValueError, "lo < hi"),
    (dict(alpha=-1.0), ValueError, "alpha must be"),
    (dict(model_mode="test"), ValueError, "model_mode"),
    (dict(eot_samples=0), ValueError, "eot_samples"),
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        PGD(nn.Linear(4, 3), **kwargs)


def test_bad_batches(digits_model):
    model, x, y = _batch(digits_model, 4)
    atk = PGD(model, eps=0.1, steps=1)
    with pytest.raises(ValueError, match="empty batch"):
        atk(x[:0], y[:0])
    with pytest.raises(ValueError, match="y must be an int64"):
        atk(x, y[:2])
    with pytest.raises(TypeError, match="floating tensor"):
        atk((x * 255).byte(), y)
    with pytest.raises(ValueError, match="per-sample eps"):
        PGD(model, eps=torch.ones(3) * 0.1)(x, y)
    with pytest.raises(ValueError, match="apgd|rho"):
        APGD(model, rho=0)


@pytest.mark.parametrize("value, error", [("x", TypeError), (float("nan"), ValueError),
                                          (0.0, ValueError), (1.5, ValueError), (True, TypeError)])
@pytest.mark.parametrize("name", ["rho", "momentum"])
def test_apgd_names_the_bad_argument(name, value, error):
    with pytest.raises(error, match=rf"^{name} must be a number in \(0, 1\], got"):
        APGD(nn.Linear(4, 3), **{name: value})


# ----------------------------------------------------------------------------- labels


class _SyncCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the ops that read a tensor's value on the host (a sync on a GPU)."""
    SYNCS = ("_local_scalar_dense", "item", "nonzero", "is_nonzero")

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += func.overloadpacket.__name__ in self.SYNCS
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("make", [lambda m: PGD(m, eps=0.1, steps=2),
                                  lambda m: APGD(m, eps=0.1, steps=2),
                                  lambda m: FGSM(m, eps=0.1)], ids=["pgd", "apgd", "fgsm"])
@pytest.mark.parametrize("bad", [-100, -1, 10])
def test_labels_outside_the_classes_are_refused(digits_model, make, bad):
    model, x, y = _batch(digits_model, 8)
    y = y.clone()
    y[3] = bad
    atk = make(model)
    why = r" \(cross-entropy's ignore_index\)" if bad == -100 else ""  # named only for -100
    with pytest.raises(ValueError, match=rf"y holds the label {bad}{why}, outside \[0, 10\)"):
        atk(x, y)
    with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
        atk.robust_mask(x, y)
    target = (y.clamp(0, 9) + 1) % 10
    target[5] = bad
    with pytest.raises(ValueError, match=rf"target holds the label {bad}"):
        atk(x, y.clamp(0, 9), target=target)
    atk(x, y.clamp(0, 9))  # valid labels: attacked as before


def test_label_check_runs_once_per_call_not_per_step(digits_model):
    model, x, y = _batch(digits_model, 8)
    counts = []
    for steps in (1, 5):
        with _SyncCounter() as c:
            PGD(model, eps=0.1, steps=steps)(x, y)
        counts.append(c.n)
    assert counts[0] == counts[1]
