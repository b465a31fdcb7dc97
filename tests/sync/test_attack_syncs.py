"""Host syncs of the attacks: none per step; early exit one per `check_every` steps."""
import pytest
import torch

from robustops.attacks import APGD, FGSM, PGD
from robustops.attacks.base import DEFAULT_CHECK_EVERY
from robustops.sync_counter import SyncCounter

EPS = 0.06  # digits MLP: some samples break at the start, some later, some never
STEPS = 6

MAKERS = {
    "pgd": lambda m, **kw: PGD(m, eps=EPS, **kw),
    "apgd": lambda m, **kw: APGD(m, eps=EPS, **kw),
    "fgsm": lambda m, steps=None, **kw: FGSM(m, eps=EPS, **kw),
}


def _syncs(fn):
    with SyncCounter() as counter:
        fn()
    return counter


@pytest.mark.parametrize("name", MAKERS)
@pytest.mark.parametrize("restarts", [1, 3])
def test_perturb_makes_no_sync(digits_batch, name, restarts, device_syncs):
    model, x, y = digits_batch
    counts = []
    for steps in (1, STEPS):
        atk = MAKERS[name](model, steps=steps, restarts=restarts)
        counter = _syncs(lambda: atk(x, y))
        assert device_syncs(counter) == [], counter.summary()
        counts.append(counter.count)
    assert counts[0] == counts[1]  # unfiltered too: nothing per step


@pytest.mark.parametrize("name", MAKERS)
def test_robust_mask_without_early_exit_makes_no_sync(digits_batch, name, device_syncs):
    model, x, y = digits_batch
    atk = MAKERS[name](model, steps=STEPS, restarts=2)
    for batch_restarts in (False, True):
        counter = _syncs(lambda: atk.robust_mask(x, y, early_exit=False,
                                                 batch_restarts=batch_restarts))
        assert device_syncs(counter) == [], counter.summary()


@pytest.mark.parametrize("name", ["pgd", "apgd"])
@pytest.mark.parametrize("check_every", [1, 2, 4, STEPS, STEPS + 1])
@pytest.mark.parametrize("restarts,batch_restarts", [(1, False), (2, False), (2, True)])
def test_early_exit_syncs_once_per_check(digits_batch, name, check_every, restarts,
                                         batch_restarts, device_syncs):
    model, x, y = digits_batch
    atk = MAKERS[name](model, steps=STEPS, restarts=restarts, check_every=check_every)
    mask = []
    counter = _syncs(lambda: mask.append(atk.robust_mask(x, y, batch_restarts=batch_restarts)))
    robust = mask[0].float().mean()
    assert 0 < robust < 1  # samples stand to the end: no check is skipped by a break
    rounds = 1 if batch_restarts else restarts
    # A check after every check_every-th step, and one at each round's start but the first.
    expected = rounds * (STEPS // check_every) + (rounds - 1)
    syncs = device_syncs(counter)
    assert len(syncs) == expected, counter.summary()
    assert {e.kind for e in syncs} <= {"nonzero"}


def test_fgsm_early_exit_checks_before_the_last_pass_only_when_every_step(digits_batch,
                                                                           device_syncs):
    # One step: a check after it (check_every=1) spares the last forward pass of the
    # samples it broke; with the default there is none, the final iterate is read on device.
    model, x, y = digits_batch
    for check_every, expected in ((1, 1), (DEFAULT_CHECK_EVERY, 0)):
        counter = _syncs(lambda: FGSM(model, eps=EPS, check_every=check_every).robust_mask(x, y))
        assert len(device_syncs(counter)) == expected, counter.summary()


@pytest.mark.parametrize("name", ["pgd", "apgd", "fgsm"])
@pytest.mark.parametrize("batch_restarts", [False, True])
def test_check_every_does_not_change_the_robust_mask(digits_batch, name, batch_restarts):
    model, x, y = digits_batch

    def mask(check_every, early_exit=True):
        atk = MAKERS[name](model, steps=STEPS, restarts=2, seed=3, check_every=check_every)
        return atk.robust_mask(x, y, early_exit=early_exit, batch_restarts=batch_restarts)

    full = mask(1, early_exit=False)
    assert 0 < full.float().mean() < 1
    for check_every in (1, 2, DEFAULT_CHECK_EVERY, STEPS + 1):
        assert torch.equal(mask(check_every), full), check_every


@pytest.mark.parametrize("name", ["pgd", "apgd", "fgsm"])
def test_check_every_does_not_change_perturb(digits_batch, name):
    # perturb has no early exit: its adversarial examples are the same for any check_every.
    model, x, y = digits_batch
    one = MAKERS[name](model, steps=STEPS, check_every=1)(x, y)
    assert torch.equal(MAKERS[name](model, steps=STEPS, check_every=5)(x, y), one)


def test_early_exit_drops_broken_samples_at_checks_only(digits_batch):
    # Rows attacked per step: with check_every=c the batch shrinks only after steps
    # c-1, 2c-1, ..., and to exactly the samples a check_every=1 run keeps at that step.
    model, x, y = digits_batch

    def rows(check_every):
        atk = PGD(model, eps=EPS, steps=STEPS, check_every=check_every)
        seen, step = [], atk._step
        atk._step = lambda state, k: (seen.append(state["x"].shape[0]), step(state, k))[1]
        atk.robust_mask(x, y)
        return seen

    every = rows(1)
    assert every[0] == x.shape[0] and every[-1] < every[0]
    c = 2
    assert rows(c) == [every[(k // c) * c] for k in range(STEPS)]


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                        (True, TypeError), ("2", TypeError)])
def test_check_every_is_validated(digits_model, bad, error):
    model = digits_model[0]
    with pytest.raises(error, match="check_every must be an int >= 1"):
        PGD(model, check_every=bad)


def test_default_check_every_is_the_documented_one():
    assert DEFAULT_CHECK_EVERY == 4
    assert PGD(torch.nn.Linear(2, 2)).check_every == DEFAULT_CHECK_EVERY
