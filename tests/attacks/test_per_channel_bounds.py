"""Per-channel image boxes (lo/hi as (C,) or (1, C, 1, 1) tensors): PGD, FGSM, APGD and
random_init attack in a model's normalised input space, against plain-PyTorch oracles and
against attacking the Normalize-wrapped model on pixels; the out-of-box refusal and the
errors for bad bounds."""
import pytest
import torch
from torch import nn

from robustops import normalized
from robustops.attacks import APGD, FAB, FGSM, PGD, Square
from robustops.eval import robust_accuracy
from robustops.eval.hygiene import EvaluationHygieneError
from robustops.ops.pgd_step import pgd_step_reference
from robustops.random_init import random_init
from robustops.testing import assert_close
from robustops.testing import small_conv_classifier

MEAN = torch.tensor([0.4914, 0.4822, 0.4465])
STD = torch.tensor([0.2470, 0.2435, 0.2616])
# One std for every channel: then a pixel-space eps ball maps onto a normalised-space ball
# of radius eps / STD_ALL, and the two attacks are the same up to rounding.
STD_ALL = 0.25


def _box(mean, std):
    """The per-channel box of [0, 1] pixels in normalised units."""
    return (0 - mean) / std, (1 - mean) / std


def _model(seed=0):
    return small_conv_classifier(seed)


def _pixels(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _normalise(x, mean, std):
    return (x - mean.reshape(1, -1, 1, 1)) / torch.as_tensor(std).reshape(1, -1, 1, 1)


def _in_box(adv, lo, hi):
    lo, hi = lo.reshape(1, -1, 1, 1), hi.reshape(1, -1, 1, 1)
    return bool(((adv >= lo) & (adv <= hi)).all())


@pytest.mark.parametrize("make", [
    lambda m, e, **kw: PGD(m, e, e / 4, 5, **kw),
    lambda m, e, **kw: FGSM(m, e, **kw),
    lambda m, e, **kw: APGD(m, eps=e, steps=6, loss="ce", **kw),
    lambda m, e, **kw: APGD(m, eps=e, steps=6, loss="dlr", **kw),
], ids=["pgd", "fgsm", "apgd-ce", "apgd-dlr"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_normalised_space_equals_attacking_the_wrapped_model(make, norm):
    # The attack in normalised units, boxed per channel, is the pixel-space attack of the
    # Normalize-wrapped model mapped through (x - mean) / std: same projections, same clamps.
    model, (x, y) = _model(), _pixels()
    std = torch.full((3,), STD_ALL)
    lo, hi = _box(MEAN, std)
    eps = 24 / 255 if norm == "linf" else 0.5
    pixel = make(normalized(model, MEAN, std), eps, norm=norm, random_start=False,
                 channels_last=False)(x, y)
    normal = make(model, eps / STD_ALL, norm=norm, random_start=False, lo=lo, hi=hi,
                  channels_last=False)(_normalise(x, MEAN, std), y)
    assert _in_box(normal, lo, hi)
    assert_close(normal, _normalise(pixel, MEAN, std))
    # The per-channel box binds: some values sit on a channel's own bound, inside the
    # range of the other channels (a single [min lo, max hi] would have let them move).
    at_bound = (normal == lo.reshape(1, 3, 1, 1)) | (normal == hi.reshape(1, 3, 1, 1))
    assert at_bound.any()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_one_step_matches_the_plain_pytorch_oracle(norm):
    # FGSM / one PGD step with a random start: random_init clamped per channel, then
    # pgd_step's formula with its final clamp per channel, written out here.
    model, (x, y) = _model(2), _pixels(seed=3)
    lo, hi = _box(MEAN, STD)
    xn = _normalise(x, MEAN, STD)
    eps, alpha = (0.3, 0.2) if norm == "linf" else (2.0, 1.5)
    atk = PGD(model, eps, alpha, 1, norm=norm, lo=lo.reshape(1, 3, 1, 1), hi=hi, seed=7,
              channels_last=False)
    lo4, hi4 = lo.reshape(1, 3, 1, 1), hi.reshape(1, 3, 1, 1)
    wide = 1e6  # a box no value reaches: the unclamped draw and step
    x0 = torch.maximum(torch.minimum(random_init(xn, eps, norm, 7, lo=-wide, hi=wide), hi4), lo4)
    x0.requires_grad_(True)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(x0), y, reduction="sum"), x0)
    step = pgd_step_reference(x0.detach(), xn, g, eps, alpha, norm, -wide, wide)
    expected = torch.maximum(torch.minimum(step, hi4), lo4)
    assert_close(atk(xn, y), expected)


def test_random_init_clamps_per_channel():
    x = _normalise(_pixels(seed=4)[0], MEAN, STD)
    lo, hi = _box(MEAN, STD)
    for norm in ("linf", "l2"):
        wide = random_init(x, 0.8, norm, seed=3, lo=-1e6, hi=1e6)
        for box in ((lo, hi), (lo.reshape(1, 3, 1, 1), hi.reshape(3, 1, 1)),
                    (lo.tolist(), hi.tolist())):
            got = random_init(x, 0.8, norm, seed=3, lo=box[0], hi=box[1])
            assert torch.equal(got, torch.maximum(torch.minimum(wide, hi.reshape(1, 3, 1, 1)),
                                                  lo.reshape(1, 3, 1, 1)))
    # A float for one side stands for every channel.
    got = random_init(x, 0.8, "linf", seed=3, lo=lo, hi=5.0)
    assert bool((got <= 5.0).all()) and _in_box(got, lo, torch.full((3,), 5.0))


def test_bound_shapes_and_one_value_tensors():
    model = _model()
    lo, hi = _box(MEAN, STD)
    for lo_, hi_ in ((lo, hi), (lo.reshape(3, 1, 1), hi.reshape(1, 3, 1, 1)),
                     (lo.tolist(), tuple(hi.tolist())), (lo.double(), hi.half())):
        atk = PGD(model, lo=lo_, hi=hi_)
        assert atk.lo.shape == (3,) and atk.hi.shape == (3,)
    # One value (a 0-d or one-element tensor) keeps the float fast path.
    atk = PGD(model, lo=torch.tensor(-1.0), hi=torch.tensor([2.0]))
    assert (atk.lo, atk.hi) == (-1.0, 2.0)


@pytest.mark.parametrize("lo,hi,exc,match", [
    (torch.zeros(2, 3), 1.0, ValueError, r"one value per channel.*got shape \(2, 3\)"),
    (torch.zeros(1, 1, 3, 1), 1.0, ValueError, "one value per channel"),
    (torch.zeros(3, dtype=torch.int64), 1.0, TypeError, r"floating point.*\.float\(\)"),
    (torch.zeros(3), torch.ones(4), ValueError, "lo has 3 channels and hi 4"),
    (torch.tensor([0.0, 1.0, 0.0]), torch.ones(3), ValueError, r"lo < hi.*\(channel 1\)"),
    (torch.tensor([0.0, float("nan"), 0.0]), 1.0, ValueError, "finite lo < hi"),
    ("0", 1.0, TypeError, "lo must be a real number or a per-channel tensor"),
    ([0.0, "a"], 1.0, TypeError, "one number per channel"),
], ids=["2d", "wrong-dim", "int", "channels", "lo>hi", "nan", "str", "list-str"])
def test_bad_bounds_are_refused(lo, hi, exc, match):
    with pytest.raises(exc, match=match):
        PGD(_model(), lo=lo, hi=hi)


def test_images_with_another_number_of_channels_are_refused():
    x, y = _pixels()
    with pytest.raises(ValueError, match=r"per-channel lo/hi have 2 channels.*\(8, 3, 8, 8\)"):
        PGD(_model(), lo=torch.zeros(2), hi=torch.ones(2))(x, y)


def test_attacks_without_per_channel_support_say_so():
    for cls in (Square, FAB):
        with pytest.raises(ValueError, match=f"{cls.__name__} takes lo/hi as floats"):
            cls(_model(), lo=torch.zeros(3), hi=torch.ones(3))


def test_inputs_outside_one_channels_box_are_refused():
    # Inside the range of all channels together, outside channel 0's own box: the check
    # is per channel, with robust_accuracy's advice.
    model, (x, y) = _model(), _pixels()
    lo, hi = _box(MEAN, STD)
    xn = _normalise(x, MEAN, STD)
    xn[0, 0, 0, 0] = hi[0] + 0.05
    assert xn[0, 0, 0, 0] < hi.max()
    for atk in (PGD(model, lo=lo, hi=hi), APGD(model, steps=2, lo=lo, hi=hi)):
        with pytest.raises(ValueError, match=r"outside the per-channel box \(\[-1\.989"):
            atk(xn, y)
        with pytest.raises(ValueError, match="normalise inside the model"):
            atk.robust_mask(xn, y)


def test_robust_accuracy_checks_the_per_channel_box():
    model, (x, y) = _model(), _pixels(16)
    lo, hi = _box(MEAN, STD)
    xn = _normalise(x, MEAN, STD)
    atk = PGD(model, 0.1, 0.05, 2, lo=lo, hi=hi)
    res = robust_accuracy(model, (xn, y), [atk], progress=False)
    assert res.n == 16
    # One channel shifted past its own box: the hygiene check names the per-channel box.
    bad = xn.clone()
    bad[:, 2] += 3.0
    with pytest.raises(EvaluationHygieneError, match="per-channel box"):
        robust_accuracy(model, (bad, y), [atk], progress=False)


def test_mean_std_options_equal_the_wrapped_model():
    model, (x, y) = _model(5), _pixels(seed=6)
    ours = PGD(model, 8 / 255, 2 / 255, 4, seed=1, mean=MEAN.tolist(), std=STD.tolist())
    reference = PGD(normalized(model, MEAN, STD), 8 / 255, 2 / 255, 4, seed=1)
    assert torch.equal(ours(x, y), reference(x, y))
    with pytest.raises(ValueError, match="mean and std go together"):
        PGD(model, mean=MEAN.tolist())
