"""random_init: inside the ball and the box, uniform, reproducible per sample."""
import pytest
import torch

from robustops import pgd_step, random_init
from robustops.counter_rng import counter_normal, counter_uniform


def images(b=16, shape=(3, 6, 6), seed=0):
    return torch.rand(b, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_inside_ball_and_box(norm):
    x = images()
    eps = torch.linspace(0.0, 0.5, 16)
    x0 = random_init(x, eps, norm, seed=1, lo=0.0, hi=1.0)
    d = (x0 - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-6).all()
    assert x0.min() >= 0 and x0.max() <= 1
    assert torch.equal(x0[0], x[0])  # eps = 0: no move


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_batch_split_invariance(norm):
    x = images(12)
    full = random_init(x, 0.1, norm, seed=7)
    parts = [random_init(x[i:i + 5], 0.1, norm, seed=7, index=i) for i in range(0, 12, 5)]
    torch.testing.assert_close(torch.cat(parts), full, rtol=0, atol=0)
    idx = torch.tensor([3, 11, 0])
    torch.testing.assert_close(random_init(x[idx], 0.1, norm, seed=7, index=idx), full[idx],
                               rtol=0, atol=0)


def test_seed_and_restart_change_the_draw():
    x = images(4)
    a = random_init(x, 0.1, "linf", seed=1)
    assert torch.equal(a, random_init(x, 0.1, "linf", seed=1))
    assert not torch.equal(a, random_init(x, 0.1, "linf", seed=2))
    assert not torch.equal(a, random_init(x, 0.1, "linf", seed=1, restart=1))


def test_linf_uniform_moments():
    x = torch.full((64, 3, 16, 16), 0.5)
    d = random_init(x, 0.2, "linf", seed=3) - x
    # Uniform on [-eps, eps]: mean 0, variance eps^2 / 3.
    assert abs(d.mean().item()) < 0.003
    assert abs(d.var().item() - 0.04 / 3) < 0.0005


def test_l2_uniform_in_ball_radius():
    # Uniform in a D-ball: (r / eps)^D is uniform on [0, 1].
    x = torch.full((4000, 1, 1, 2), 0.5)
    r = (random_init(x, 0.1, "l2", seed=5, lo=-1, hi=2) - x).flatten(1).norm(dim=1)
    u = (r / 0.1) ** 2
    assert abs(u.mean().item() - 0.5) < 0.02
    assert abs(u.var().item() - 1 / 12) < 0.01


def test_channels_last_and_dtype_preserved():
    x = images(2).to(torch.float64).contiguous(memory_format=torch.channels_last)
    out = random_init(x, 0.1, "linf", seed=0)
    assert out.dtype == torch.float64
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, random_init(x.contiguous(), 0.1, "linf", seed=0))


@pytest.mark.parametrize("bad,exc,match", [
    (dict(eps=-0.1), ValueError, "eps must be finite and >= 0"),
    (dict(norm="l1"), ValueError, "norm must be"),
    (dict(x=torch.zeros(0, 3)), ValueError, "empty batch"),
    (dict(x=torch.zeros(2, 3, dtype=torch.uint8)), TypeError, "floating"),
    (dict(index=-1), ValueError, "index offset"),
    (dict(index=torch.tensor([1])), ValueError, "shape"),
])
def test_bad_input(bad, exc, match):
    args = dict(x=images(2), eps=0.1, norm="linf", index=None)
    args.update(bad)
    with pytest.raises(exc, match=match):
        random_init(args["x"], args["eps"], args["norm"], seed=0, index=args["index"])


@pytest.mark.parametrize("kw,match", [
    (dict(lo=1.0, hi=0.0), r"random_init: need finite lo <= hi, got lo=1.0, hi=0.0"),
    (dict(lo=float("nan")), "random_init: need finite lo <= hi"),
    (dict(hi=float("inf")), "random_init: need finite lo <= hi"),
    (dict(eps=torch.tensor([float("nan"), 0.1])),
     r"random_init: per-sample eps must be finite and >= 0, .*NaN present: True"),
    (dict(eps=torch.tensor([0.1, -0.1])), "random_init: per-sample eps must be finite and >= 0"),
    (dict(eps=torch.tensor(float("inf"))), "random_init: per-sample eps must be finite"),
    (dict(eps=float("nan")), "random_init: eps must be finite and >= 0"),
], ids=str)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_refuses_what_pgd_step_refuses(kw, match, norm):
    # The same checks as pgd_step (not zeros or NaN starts), named after random_init.
    args = dict(eps=0.1, lo=0.0, hi=1.0)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        random_init(images(2), args["eps"], norm, seed=0, lo=args["lo"], hi=args["hi"])
    with pytest.raises(TypeError, match="random_init: lo must be a real number"):
        random_init(images(2), 0.1, norm, lo="0")
    # pgd_step refuses the same arguments.
    x = images(2)
    with pytest.raises(ValueError, match=match.replace("random_init", "pgd_step").split(", got")[0]):
        pgd_step(x, x, torch.zeros_like(x), args["eps"], 0.01, norm=norm, lo=args["lo"],
                 hi=args["hi"])


def test_counter_streams_are_uniform_and_independent():
    idx = torch.arange(256)
    u = counter_uniform(0, 0, idx, 256, torch.float64)
    v = counter_uniform(0, 1, idx, 256, torch.float64)
    assert 0 < u.min() and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01
    corr = torch.corrcoef(torch.stack([u.flatten(), v.flatten()]))[0, 1]
    assert abs(corr.item()) < 0.01
    # Neighbouring samples and elements are not shifted copies of each other.
    assert abs(torch.corrcoef(torch.stack([u[:-1].flatten(), u[1:].flatten()]))[0, 1]) < 0.01
    z = counter_normal(0, 0, idx, 256, torch.float64)
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02
