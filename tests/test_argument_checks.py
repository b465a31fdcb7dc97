"""The scalar checks of robustops/arguments.py (issue 18): a TypeError for a wrong type (a
str, None, a float where an int is due, a bool where a number is due), a ValueError for a
value out of range or not finite, each message "<where>: <name> must be <what>, got
<repr>"; and a static check that the converted packages call them instead of inlining
isinstance checks."""
from __future__ import annotations

import ast
import math
import pathlib
import re

import numpy as np
import pytest
import torch

from robustops.arguments import (non_negative, positive_int, require_bool, require_int,
                                 require_real, unit_fraction)

ROOT = pathlib.Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- helpers

# helper, good values with what each returns, wrong types, bad values.
CASES = {
    "positive_int": (lambda v, **kw: positive_int(v, "n", **kw),
                     [(1, 1), (7, 7), (np.int64(3), 3)],
                     [1.0, 2.5, "3", None, True, False, torch.tensor(3)],
                     [0, -1]),
    "non_negative": (lambda v, **kw: non_negative(v, "eps", **kw),
                     [(0, 0.0), (0.5, 0.5), (3, 3.0), (np.float32(0.25), 0.25)],
                     ["0.1", None, True, torch.tensor(0.1), [0.1]],
                     [-1e-9, -1, math.nan, math.inf]),
    "unit_fraction": (lambda v, **kw: unit_fraction(v, "rho", **kw),
                      [(1, 1.0), (0.75, 0.75), (1e-9, 1e-9)],
                      ["0.5", None, True, torch.tensor(0.5)],
                      [0, 0.0, -0.5, 1.5, math.nan, math.inf]),
    "require_int": (lambda v, **kw: require_int(v, "seed", minimum=-2, maximum=5, **kw),
                    [(-2, -2), (5, 5), (np.int32(4), 4)],
                    [0.0, 4.5, "4", None, True, np.float64(1.0)],
                    [-3, 6, 2 ** 70]),
    "require_real": (lambda v, **kw: require_real(v, "sf", low=0, high=1, high_open=True, **kw),
                     [(0, 0.0), (0.999, 0.999), (np.float64(0.5), 0.5)],
                     ["0.5", None, False, torch.tensor(0.5), 1j],
                     [1, 1.0, -0.1, math.nan, -math.inf]),
    "require_bool": (lambda v, **kw: require_bool(v, "noise", **kw),
                     [(True, True), (False, False)],
                     [0, 1, 1.0, "true", None, np.int64(1), torch.tensor(True)],
                     []),
}


@pytest.mark.parametrize("helper", CASES)
def test_good_values_pass_converted(helper):
    check, good, _, _ = CASES[helper]
    for value, expected in good:
        out = check(value)
        assert out == expected and type(out) is type(expected), (value, out)


@pytest.mark.parametrize("helper", CASES)
def test_wrong_types_and_bad_values_raise_errors_naming_the_argument(helper):
    check, _, wrong_types, bad_values = CASES[helper]
    for error, values in ((TypeError, wrong_types), (ValueError, bad_values)):
        for value in values:
            with pytest.raises(error) as err:
                check(value, where="some_op")
            # "<where>: <name> must be <what>, got <repr>", plus " (<type>)" for a TypeError.
            tail = f", got {value!r}" + (f" ({type(value).__name__})" if error is TypeError else "")
            assert re.fullmatch(r"some_op: \w+ must be .+", str(err.value), flags=re.S) \
                and str(err.value).endswith(tail), (value, str(err.value))


def test_bools_are_refused_where_a_number_is_due():
    # bool is an int subclass: True would pass an isinstance(v, int) check as 1.
    for check in (lambda v: positive_int(v, "n"), lambda v: non_negative(v, "eps"),
                  lambda v: unit_fraction(v, "p"), lambda v: require_int(v, "k"),
                  lambda v: require_real(v, "x")):
        for flag in (True, False):
            with pytest.raises(TypeError, match=rf"must be .*, got {flag} \(bool\)"):
                check(flag)


def test_messages_keep_their_wording():
    # Attacks, objectives and tests match on these.
    with pytest.raises(ValueError, match=r"^steps must be an int >= 1, got 0$"):
        positive_int(0, "steps")
    with pytest.raises(ValueError, match=r"^n must be an int >= 0, got -1$"):
        positive_int(-1, "n", minimum=0)
    with pytest.raises(ValueError, match=r"^eps must be a finite number >= 0, got -0.1$"):
        non_negative(-0.1, "eps")
    with pytest.raises(ValueError, match=r"^rho must be a number in \(0, 1\], got 2$"):
        unit_fraction(2, "rho")
    with pytest.raises(TypeError, match=r"^op: flag must be a bool, got 'yes' \(str\)$"):
        require_bool("yes", "flag", where="op")
    with pytest.raises(ValueError, match=r"^k must be an int in \[1, 5\], got 6$"):
        require_int(6, "k", minimum=1, maximum=5)
    with pytest.raises(ValueError, match=r"^k must be an odd int, got 0$"):
        require_int(0, "k", minimum=1, what="an odd int")
    with pytest.raises(ValueError, match=r"^x must be a finite number > 0, got 0$"):
        require_real(0, "x", low=0, low_open=True)


def test_finite_false_leaves_non_finite_values_to_the_caller():
    assert require_real(math.inf, "lo", finite=False) == math.inf
    assert math.isnan(require_real(math.nan, "lo", finite=False))
    with pytest.raises(TypeError, match="lo must be a real number"):
        require_real("0", "lo", finite=False)


# ----------------------------------------------------------------------------- static check

# The packages converted to the helpers: an `if` whose test checks a scalar's type inline
# (isinstance(v, bool / int / float / Real / Integral), type(v) is int) and whose body
# raises belongs in robustops/arguments.py.
CONVERTED = ["robustops/ops", "robustops/nn", "robustops/models", "robustops/data",
             "robustops/attributions", "robustops/eval", "robustops/train",
             "robustops/attacks", "robustops/counter_rng.py", "robustops/image_box.py",
             "robustops/random_init.py"]
SCALAR_TYPES = {"bool", "int", "float", "complex", "Real", "Integral", "Number", "Rational"}
# (file, function) -> why its inline check stays.
ALLOWED: dict = {
    ("robustops/train/checkpoint.py", "_split"):
        "checkpoint encoding: a dict key must be a str or an int to round-trip through JSON",
    ("robustops/train/checkpoint.py", "_join"):
        "JSON decoding: a malformed checkpoint is a CheckpointError, not an argument error",
}


def _names(node: ast.AST) -> set:
    """The bare names in a type argument: bool, (int, float), numbers.Real -> Real."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
    return out


def _is_scalar_type_test(test: ast.AST) -> bool:
    for n in ast.walk(test):
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "isinstance"
                and len(n.args) == 2 and _names(n.args[1]) & SCALAR_TYPES):
            return True
        if (isinstance(n, ast.Compare) and isinstance(n.left, ast.Call)
                and isinstance(n.left.func, ast.Name) and n.left.func.id == "type"
                and any(isinstance(op, (ast.Is, ast.IsNot, ast.Eq, ast.NotEq)) for op in n.ops)
                and set().union(*map(_names, n.comparators)) & SCALAR_TYPES):
            return True
    return False


def inline_scalar_checks(source: str) -> list:
    """[(line, enclosing function)] of each `if <scalar type test>: ... raise ...` in source."""
    found = []

    def visit(node: ast.AST, func: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                    ast.ClassDef)) else func
            if (isinstance(child, ast.If) and _is_scalar_type_test(child.test)
                    and any(isinstance(s, ast.Raise) for s in child.body)):
                found.append((child.lineno, name))
            visit(child, name)

    visit(ast.parse(source), "<module>")
    return found


def _converted_files():
    for entry in CONVERTED:
        path = ROOT / entry
        yield from (sorted(path.rglob("*.py")) if path.is_dir() else [path])


def test_the_detector_finds_inline_checks():
    # It must be able to fail: each of these forms is caught, dispatch without a raise is not.
    caught = '''
def f(n, k, x, flag, w):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError("n must be an int >= 1")
    if type(k) is not int:
        raise TypeError("k")
    if not isinstance(x, (int, float)):
        raise ValueError("x")
    if not all(isinstance(t, numbers.Integral) for t in w):
        raise ValueError("w")
    if not isinstance(flag, bool):
        raise ValueError("flag must be a bool")
'''
    assert [line for line, _ in inline_scalar_checks(caught)] == [3, 5, 7, 9, 11]
    fine = '''
def g(w, v):
    if isinstance(w, Real) and not isinstance(w, bool):
        return float(w)
    if type(v) is not int:
        v = require_int(v, "v")
    if not isinstance(v, (str, bytes)):
        raise TypeError("v")
'''
    assert inline_scalar_checks(fine) == []


def test_converted_packages_have_no_inline_scalar_checks():
    files = list(_converted_files())
    assert len(files) > 20 and all(f.is_file() for f in files), "is CONVERTED up to date?"
    left, allowed_seen = [], set()
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        for line, func in inline_scalar_checks(path.read_text()):
            if (rel, func) in ALLOWED:
                allowed_seen.add((rel, func))
            else:
                left.append(f"{rel}:{line} (in {func})")
    assert not left, ("inline scalar type checks; call robustops.arguments' helpers "
                      "(require_int, require_real, require_bool, ...) instead:\n"
                      + "\n".join(left))
    assert allowed_seen == set(ALLOWED), f"stale ALLOWED entries: {set(ALLOWED) - allowed_seen}"


# ----------------------------------------------------------------------------- call sites



def _check_call_sites(calls):
    """Each (call, wrong type, bad value or None, argument name): the wrong type raises a
    TypeError and the bad value a ValueError, both naming the argument."""
    for call, wrong_type, bad_value, name in calls:
        with pytest.raises(TypeError, match=name):
            call(wrong_type)
        if bad_value is not None:
            with pytest.raises(ValueError, match=name):
                call(bad_value)


def test_converted_call_sites_raise_type_errors_for_wrong_types():
    # One argument per converted package: a wrong type is a TypeError, a bad value of the
    # right type is still a ValueError.
    from robustops.counter_rng import sample_index
    from robustops.data.digits import make_loader
    from robustops.eval.corruptions import corrupt
    from robustops.image_box import check_bounds
    from robustops.models.small_cnn import SmallCNN
    from robustops.nn.normalize import Normalize

    x = torch.rand(2, 3, 8, 8)
    ds = torch.utils.data.TensorDataset(torch.arange(4))
    calls = [
        (lambda v: corrupt(x, "gaussian_noise", v), 2.0, 6, "severity"),
        (lambda v: sample_index(2, v, torch.device("cpu")), True, -1, "index offset"),
        (lambda v: check_bounds(v, 1.0), False, None, "lo"),
        (lambda v: Normalize(v, 1.0), True, None, "mean"),
        (lambda v: SmallCNN(num_classes=v), 10.0, 0, "num_classes"),
        (lambda v: make_loader(ds, batch_size=v, shuffle=False), "2", 0, "batch_size"),
    ]
    _check_call_sites(calls)


def test_attack_train_and_eval_call_sites_raise_type_errors_for_wrong_types(tmp_path):
    # The packages converted second: a wrong type (a bool included) is a TypeError, a bad
    # value of the right type still a ValueError.
    from robustops.attacks import PGD
    from robustops.attacks.attribution_topk import TopKAttributionAttack
    from robustops.eval.dataset_batches import shard_batches
    from robustops.eval.report import format_n
    from robustops.random_init import random_init
    from robustops.train.objectives.ce import CrossEntropy
    from robustops.train.objectives.part_mat import PartMAT
    from robustops.train.objectives.part_semi import PartSemiSupervised
    from robustops.train.objectives.part_trades import PartTRADES
    from robustops.train.objectives.tenet import TenetObjective
    from robustops.train.tensorboard_writer import TensorBoardWriter
    from robustops.train.trainer import Trainer

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x = torch.rand(2, 3, 2, 2)
    data = (x, torch.zeros(2, dtype=torch.long))
    writer = TensorBoardWriter(tmp_path / "tb")
    calls = [
        (lambda v: PGD(net, eps=v), "0.1", -0.1, "eps"),
        (lambda v: PGD(net, seed=v), True, None, "seed"),
        (lambda v: TopKAttributionAttack(net, eps=0.1, k=2, beta=v), "10", 0.0, "beta"),
        (lambda v: TopKAttributionAttack(net, eps=0.1, k=2, seed=v), 1.0, None, "seed"),
        (lambda v: random_init(x, 0.1, seed=v), True, None, "seed"),
        (lambda v: random_init(x, 0.1, restart=v), 1.0, -1, "restart"),
        (lambda v: Trainer(net, CrossEntropy(), data, batch_size=v), 2.0, 0, "batch_size"),
        (lambda v: Trainer(net, CrossEntropy(), data, seed=v), True, -1, "seed"),
        (lambda v: Trainer(net, CrossEntropy(), data, lr=v), "0.1", 0.0, "lr"),
        (lambda v: Trainer(net, CrossEntropy(), data, grad_clip=v), "1", -1.0, "grad_clip"),
        (lambda v: TenetObjective(every=v), 3.0, 0, "every"),
        (lambda v: TenetObjective(orth_weight=v), None, -1e-3, "orth_weight"),
        (lambda v: PartTRADES(beta=v), "6", -1, "beta"),
        (lambda v: PartMAT(beta=v), True, 1.5, "beta"),
        (lambda v: PartSemiSupervised(seg_weight=v), "0.5", 2, "seg_weight"),
        (lambda v: writer.load_state_dict({"last_step": v}), "3", -2, "last_step"),
        (lambda v: next(shard_batches(data, v)), 1.5, 0, "batch_size"),
        (lambda v: format_n(v), True, -1, "n"),
    ]
    _check_call_sites(calls)
