"""robust_accuracy: numbers, early exit, worst case, and the hygiene checks."""
import copy
import warnings

import pytest
import torch
from torch import nn

from robustops.attacks import APGD, FGSM, PGD
from robustops.eval import EvaluationHygieneError, robust_accuracy
from robustops.eval.hygiene import find_problems


def test_numbers_match_robust_masks(digits_model):
    model, x, y = digits_model
    x, y = x[:150], y[:150]
    pgd = PGD(model, eps=0.06, steps=10, seed=1)
    fgsm = FGSM(model, eps=0.06)
    res = robust_accuracy(model, (x, y), {"pgd": pgd, "fgsm": fgsm}, batch_size=64, progress=False)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    pgd_mask = clean & PGD(model, eps=0.06, steps=10, seed=1).robust_mask(x, y)
    fgsm_mask = clean & FGSM(model, eps=0.06).robust_mask(x, y)
    assert res.n == 150
    assert res.clean == pytest.approx(clean.float().mean().item())
    assert res.per_attack["pgd"] == pytest.approx(pgd_mask.float().mean().item())
    assert res.per_attack["fgsm"] == pytest.approx(fgsm_mask.float().mean().item())
    assert res.worst_case == pytest.approx((pgd_mask & fgsm_mask).float().mean().item())
    assert "worst case" in res.table()


def test_early_exit_and_sequence_give_identical_results(digits_model):
    model, x, y = digits_model
    data = (x[:160], y[:160])
    attacks = [PGD(model, eps=0.05, steps=15, restarts=3, seed=4), APGD(model, eps=0.05, steps=15)]
    full = robust_accuracy(model, data, attacks, early_exit=False, progress=False)
    fast = robust_accuracy(model, data, attacks, early_exit=True, progress=False)
    seq = robust_accuracy(model, data, attacks, per_attack=False, progress=False)
    batched = robust_accuracy(model, data, attacks, batch_restarts=True, progress=False)
    assert full.per_attack == fast.per_attack == batched.per_attack
    assert full.worst_case == fast.worst_case
    assert seq.worst_case == full.worst_case
    assert set(full.per_attack) == {"PGD", "APGD"}


def test_batch_size_does_not_change_results(digits_model):
    model, x, y = digits_model
    atk = [PGD(model, eps=0.05, steps=5, seed=9)]
    a = robust_accuracy(model, (x[:100], y[:100]), atk, batch_size=100, progress=False)
    b = robust_accuracy(model, (x[:100], y[:100]), atk, batch_size=33, progress=False)
    assert a.per_attack == b.per_attack


class _Probs(nn.Module):
    def __init__(self, base):
        super().__init__()
        self.base = base

    def forward(self, x):
        return self.base(x).softmax(1)


class _Stochastic(nn.Module):
    def __init__(self, base):
        super().__init__()
        self.base = base

    def forward(self, x):
        return self.base(x + 0.05 * torch.randn_like(x))


class _Masked(nn.Module):
    def __init__(self, base):
        super().__init__()
        self.base = base

    def forward(self, x):
        return self.base(torch.round(x * 4) / 4)  # round() has zero gradient


@pytest.mark.parametrize("case,match", [
    ("train_mode", "train mode"),
    ("probabilities", "probabilities"),
    ("zero_grad", "gradient is zero"),
    ("stochastic", "stochastic"),
    ("out_of_box", "inputs span"),
    ("nan", "NaN"),
])
def test_each_hygiene_check_fires(digits_model, case, match):
    model, x, y = digits_model
    x, y = x[:32].clone(), y[:32]
    m = {"train_mode": lambda: copy.deepcopy(model).train(),
         "probabilities": lambda: _Probs(model).eval(),
         "zero_grad": lambda: _Masked(model).eval(),
         "stochastic": lambda: _Stochastic(model).eval()}.get(case, lambda: model)()
    if case == "out_of_box":
        x = x * 255
    if case == "nan":
        x[0, 0, 0, 0] = float("nan")
    atk = [PGD(m, eps=0.05, steps=2)]
    with pytest.raises(EvaluationHygieneError, match=match):
        robust_accuracy(m, (x, y), atk, progress=False)
    if case != "nan":
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            if case == "out_of_box":  # warned, then the attack itself refuses the box
                with pytest.raises(ValueError, match="normalise inside the model"):
                    robust_accuracy(m, (x, y), atk, checks="warn", progress=False)
            else:
                robust_accuracy(m, (x, y), atk, checks="warn", progress=False)
        assert any(match in str(i.message) for i in w)


def test_clean_model_passes_and_eot_silences_stochastic(digits_model):
    model, x, y = digits_model
    assert find_problems(model, x[:32], y[:32], lo=0, hi=1, uses_eot=False) == []
    noisy = _Stochastic(model).eval()
    robust_accuracy(noisy, (x[:32], y[:32]), [PGD(noisy, eps=0.05, steps=2, eot_samples=2)],
                    progress=False)


def test_bad_arguments(digits_model):
    model, x, y = digits_model
    with pytest.raises(ValueError, match="attacks is empty"):
        robust_accuracy(model, (x, y), [], progress=False)
    with pytest.raises(TypeError, match="not a robustops Attack"):
        robust_accuracy(model, (x, y), [lambda a, b: a], progress=False)
    with pytest.raises(ValueError, match="checks must be"):
        robust_accuracy(model, (x, y), [FGSM(model)], checks="maybe", progress=False)
    with pytest.raises(ValueError, match="no samples"):
        robust_accuracy(model, [], [FGSM(model)], progress=False)


def test_datasets_with_extra_fields_are_evaluated_and_bad_samples_are_explained():
    from robustops.eval.dataset_batches import shard_batches

    x, y = torch.rand(5, 1, 4, 4), torch.arange(5)

    class WithMasks(torch.utils.data.Dataset):  # (x, y, mask) samples, as part datasets give
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return x[i], y[i], torch.zeros(4, 4)

    (off, xb, yb), = shard_batches(WithMasks(), batch_size=8)
    assert off == 0 and torch.equal(xb, x) and torch.equal(yb, y)
    batches = list(shard_batches([(x[:3], y[:3], None), (x[3:], y[3:], None)], batch_size=8))
    assert [b[0] for b in batches] == [0, 3]

    class Bare(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return x[i]

    with pytest.raises(ValueError, match="sample 0 of the data is Tensor, not an"):
        list(shard_batches(Bare(), batch_size=2))


def test_nan_input_is_reported_as_nan_not_as_a_stochastic_model(digits_model):
    model, x, y = digits_model
    x = x[:32].clone()
    x[0, 0, 0, 0] = float("nan")
    problems = find_problems(model, x, y[:32], lo=0, hi=1, uses_eot=False)
    assert problems == ["inputs contain 1 NaN (of 2048 values); check the data pipeline"]
    with pytest.raises(EvaluationHygieneError) as info:
        robust_accuracy(model, (x, y[:32]), [PGD(model, eps=0.05, steps=2)], progress=False)
    assert "NaN" in str(info.value) and "stochastic" not in str(info.value)


def test_probability_check_builds_no_tensor_on_another_device(digits_model):
    """The check compares on the output's device: run it with every tensor created without
    an explicit device landing on 'meta' (what a CPU constant is to a CUDA model)."""
    model, x, y = digits_model
    probs = _Probs(model).eval()
    with torch.device("meta"):
        problems = find_problems(probs, x[:8], y[:8], lo=0, hi=1, uses_eot=False)
    assert any("probabilities" in p for p in problems)


@pytest.mark.cuda
def test_probability_check_on_a_cuda_model(digits_model):
    model, x, y = digits_model
    probs = _Probs(copy.deepcopy(model)).cuda().eval()
    problems = find_problems(probs, x[:8].cuda(), y[:8].cuda(), lo=0, hi=1, uses_eot=False)
    assert any("probabilities" in p for p in problems)


def test_labels_outside_the_classes_are_refused(digits_model):
    model, x, y = digits_model
    y = y[:64].clone()
    y[40] = -100  # cross-entropy's ignore_index
    atk = [PGD(model, eps=0.05, steps=2)]
    with pytest.raises(ValueError, match=r"y holds the label -100 \(cross-entropy's ignore_index\), outside \[0, 10\)"):
        robust_accuracy(model, (x[:64], y), atk, progress=False, checks="off")
    with pytest.raises(ValueError, match=r"y holds the label -100"):  # in the first batch too
        robust_accuracy(model, (x[:64], y), atk, progress=False, batch_size=64)
