"""A wrong type is a TypeError, a bad value a ValueError, in every public op (issue 18).

Every tensor argument of every public op (the dispatch bench's table, which lists them
all) is replaced in turn by a list, a numpy array and a float: each must raise a
TypeError that names the op's argument. The per-op tests check the bad values.
"""
import numpy as np
import pytest
import torch

from robustops.bench.dispatch import OPS, inputs, resolve

WRONG_TYPES = {"list": lambda t: t.tolist(), "numpy": lambda t: t.numpy(), "float": lambda t: 0.5}


def _tensor_args():
    t = inputs()
    for name, (path, make) in OPS.items():
        args, _ = make(t)
        for i, a in enumerate(args):
            if isinstance(a, torch.Tensor):
                yield pytest.param(name, i, id=f"{name}-arg{i}")


@pytest.mark.parametrize("kind", list(WRONG_TYPES))
@pytest.mark.parametrize("op,position", list(_tensor_args()))
def test_a_non_tensor_is_a_type_error_naming_the_argument(op, position, kind):
    import inspect

    path, make = OPS[op]
    fn = resolve(path)
    args, kwargs = make(inputs())
    args = list(args)
    args[position] = WRONG_TYPES[kind](args[position])
    param = list(inspect.signature(fn).parameters)[position]
    with pytest.raises(TypeError, match=rf"\b{param} must be .*got {type(args[position]).__name__}"):
        fn(*args, **kwargs)


def test_the_table_covers_array_arguments():
    # numpy arrays are the likeliest wrong type: make sure every op gets one.
    assert {p.values[0] for p in _tensor_args()} == set(OPS)
    assert isinstance(WRONG_TYPES["numpy"](torch.zeros(2)), np.ndarray)
